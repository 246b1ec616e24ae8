/*
 * mcproto.h — memcached's text protocol, only the three commands the shared
 * rate limiter needs (gets, add, cas), as pure functions: a request is
 * written into a buffer, a reply is parsed from the bytes received so far.
 * No I/O here (base/memcache.c does it), so the parser of what another
 * machine sends can be fuzzed on its own (tests/fuzz/fuzz_mcproto.c).
 *
 * The parser is strict: one reply to one command, nothing before or after
 * it, the key of a VALUE line equal to the key asked for, every number in
 * range. Anything else is DM_MC_BAD and the caller drops the connection, so
 * a stream that lost its place is never read again.
 */
#ifndef DM_MCPROTO_H
#define DM_MCPROTO_H

#include <stddef.h>
#include <stdint.h>

#define DM_MC_KEY_MAX 250   /* memcached's own limit */
#define DM_MC_VALUE_MAX 64  /* our values are decimal numbers */
#define DM_MC_REPLY_MAX 512 /* a longer reply is refused */
/* memcached reads an expiry above 30 days as a Unix time. */
#define DM_MC_RELATIVE_MAX 2592000u

typedef enum dm_mc_parse {
    DM_MC_BAD = -1, /* not a reply we accept: drop the connection */
    DM_MC_MORE = 0, /* a prefix of one: read on */
    DM_MC_DONE = 1
} dm_mc_parse;

typedef enum dm_mc_stored {
    DM_MC_STORED = 1,
    DM_MC_NOT_STORED, /* add: the key exists */
    DM_MC_EXISTS,     /* cas: changed since gets */
    DM_MC_NOT_FOUND   /* cas: gone since gets */
} dm_mc_stored;

typedef struct dm_mc_item {
    int found;
    uint32_t flags;
    uint64_t cas;
    size_t len;
    char value[DM_MC_VALUE_MAX + 1]; /* NUL-terminated */
} dm_mc_item;

/* 1..DM_MC_KEY_MAX bytes, each a printable ASCII character other than
 * space (what the text protocol can carry). */
int dm_mc_key_ok(const char *key);

/* "gets <key>\r\n". The length written (NUL-terminated), or 0 when the key
 * is not dm_mc_key_ok or buf is too small. */
size_t dm_mc_format_gets(char *buf, size_t size, const char *key);

/* "add <key> 0 <exptime> <len>\r\n<value>\r\n" when cas is 0, else
 * "cas <key> 0 <exptime> <len> <cas>\r\n<value>\r\n". The value holds no
 * CR or LF and is at most DM_MC_VALUE_MAX bytes. The length written, or 0
 * when an argument is bad or buf is too small. */
size_t dm_mc_format_store(char *buf, size_t size, const char *key, uint32_t exptime,
                          const char *value, size_t len, uint64_t cas);

/* The reply to `gets <key>` in buf[0..len): "END\r\n" (out->found = 0) or
 * "VALUE <key> <flags> <bytes> <cas>\r\n<data>\r\nEND\r\n". */
dm_mc_parse dm_mc_parse_gets(const char *buf, size_t len, const char *key, dm_mc_item *out);

/* The reply to add or cas: STORED, NOT_STORED, EXISTS or NOT_FOUND. */
dm_mc_parse dm_mc_parse_store(const char *buf, size_t len, dm_mc_stored *out);

#endif
