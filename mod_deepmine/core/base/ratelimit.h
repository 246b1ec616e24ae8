/*
 * ratelimit.h — the rate limiter's arithmetic and its table, with no httpd
 * header: GCRA (the generic cell rate algorithm, a leaky bucket that keeps
 * one timestamp per key) and a fixed-size hash table laid out in a block the
 * caller provides (shared memory in Apache, plain memory in the tests).
 *
 * The table holds only indices relative to the block, never pointers, so it
 * works wherever each process maps it. It does no locking: the caller holds
 * one lock around each dm_rl_hit. Keys are hashed with SipHash under a
 * random key given at init, so clients cannot aim collisions at a bucket.
 */
#ifndef DM_RATELIMIT_H
#define DM_RATELIMIT_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <stddef.h>
#include <stdint.h>

#define DM_RL_KEY_BYTES 16
#define DM_RL_MIN_ENTRIES 1024u
#define DM_RL_MAX_ENTRIES 16777216u
#define DM_RL_DEFAULT_ENTRIES 65536u
#define DM_RL_MAX_COUNT 1000000
#define DM_RL_MAX_PERIOD_US ((int64_t)366 * 86400 * 1000000)
#define DM_RL_NAME_MAX 32

/* The answer to one hit. Times are microseconds from `now`. */
typedef struct dm_rl_result {
    int allowed;            /* 1: go on; 0: refuse with 429 */
    int64_t limit;          /* the rule's count */
    int64_t remaining;      /* hits still allowed right now (0 when refused) */
    int64_t reset_after_us; /* until the full count is available again */
    int64_t retry_after_us; /* refused: until one hit is allowed again; else 0 */
} dm_rl_result;

typedef enum dm_rl_scope { DM_RL_SCOPE_IP = 1, DM_RL_SCOPE_MEMBER } dm_rl_scope;

/* One rule: `count` hits per `period_us` for each key of `scope`. */
typedef struct dm_rl_rule {
    const char *name; /* [a-z0-9-]{1,32} */
    int64_t count;    /* 1 .. DM_RL_MAX_COUNT */
    int64_t period_us;
    dm_rl_scope scope;
} dm_rl_rule;

/* GCRA on one key's state, a pure function. `*tat_ns` is the theoretical
 * arrival time (nanoseconds, on the same clock as now_us; 0 for a key never
 * seen); it is advanced only when the hit is allowed. `count` hits in a
 * burst are allowed, then one every period/count. Bad parameters (count or
 * period out of range, negative now) allow the hit and leave the state. */
dm_rl_result dm_rl_gcra(int64_t *tat_ns, int64_t count, int64_t period_us, int64_t now_us);

/* Bytes needed for a table of `entries` keys, or 0 when entries is outside
 * DM_RL_MIN_ENTRIES..DM_RL_MAX_ENTRIES. */
size_t dm_rl_table_size(unsigned entries);

/* Lays out an empty table in `mem` (8-byte aligned, `size` bytes as given
 * by dm_rl_table_size). APR_EINVAL when entries is out of range or size is
 * too small. */
apr_status_t dm_rl_table_init(void *mem, size_t size, unsigned entries,
                              const unsigned char key[DM_RL_KEY_BYTES]);
/* dm_rl_table_init for memory that is all zero already (fresh anonymous
 * shared memory, a fresh file): the bucket array is not written, so the
 * process that lays the table out (Apache's parent) does not make its
 * pages resident. */
apr_status_t dm_rl_table_init_zeroed(void *mem, size_t size, unsigned entries,
                                     const unsigned char key[DM_RL_KEY_BYTES]);

/* True when `mem` holds a table of this layout version with `entries`
 * entries, so a surviving block can be used again (graceful restart). */
int dm_rl_table_usable(const void *mem, size_t size, unsigned entries);

/* The table's own lock (a spin lock in the segment, safe across processes
 * and threads, taken over from a holder whose process died); hold it
 * around dm_rl_hit. */
void dm_rl_lock(void *mem);
void dm_rl_unlock(void *mem);

/* Counts one hit of `rule` for `key` at `now_us` (a monotonic clock). When
 * the table is full, expired entries go first, then the least recently
 * used one. */
dm_rl_result dm_rl_hit(void *mem, const char *rule, const char *key, int64_t count,
                       int64_t period_us, int64_t now_us);

/* Keys currently held, and keys evicted while still carrying state. */
unsigned dm_rl_table_used(const void *mem);
uint64_t dm_rl_table_evictions(const void *mem);

/* Parses the arguments of `DeepMineRateLimit <name> <count>/<period>
 * <ip|member>`: count 1..1000000, period `Ns`, `Nm`, `Nh` or `Nd` with
 * N >= 1 and at most 366 days in all. NULL when good, else a sentence
 * (in p) saying what is wrong. */
const char *dm_rl_parse_rule(apr_pool_t *p, const char *name, const char *rate, const char *scope,
                             dm_rl_rule *out);

/* "ip" or "member". */
const char *dm_rl_scope_name(dm_rl_scope scope);

/* ---- the store several nodes share (DeepMineRateLimitStore memcache) ---- */

/* A store that keeps one TAT per key where every node sees it, read with
 * a version and written only when that version is still current (memcached:
 * gets, and add or cas). `get` sets *found (0 when the key is absent) and,
 * when found, *tat_ns (0 when the stored value is not a TAT) and *version
 * (never 0). `put` creates the key when found is 0 and it is still absent,
 * else replaces it when it is still at `version`; *stored is 0 when another
 * writer came first. ttl_s: how long the TAT still carries information.
 * Either returns a non-success status when the store cannot be reached. */
typedef struct dm_rl_cas_store {
    apr_status_t (*get)(void *baton, const char *key, int *found, int64_t *tat_ns,
                        uint64_t *version);
    apr_status_t (*put)(void *baton, const char *key, int found, uint64_t version, int64_t tat_ns,
                        int64_t ttl_s, int *stored);
    void *baton;
} dm_rl_cas_store;

/* Rounds of get and put one hit tries before it gives up (see
 * dm_rl_cas_hit). */
#define DM_RL_CAS_TRIES 32
#define DM_RL_SHARED_KEY_MAX 128

/* The shared store's key of (rule, subject), the same on every node:
 * "dmrl:<rule>:<subject>" when the subject is at most 64 characters of
 * A-Z a-z 0-9 . _ : - (an address, a member id), else
 * "dmrl:<rule>#<32 hex digits of BLAKE2b-128 of the subject>". A rule name
 * is cut at DM_RL_NAME_MAX characters. */
void dm_rl_shared_key(char out[DM_RL_SHARED_KEY_MAX], const char *rule, const char *subject);

/* Counts one hit of (rule, subject) in a shared store, with the same GCRA
 * as dm_rl_hit (dm_rl_gcra) and `now_us` on a clock every node shares (the
 * wall clock). Reads the TAT, decides, and writes the new TAT only if
 * nobody wrote it in between, else reads again: two nodes never both
 * admit the last hit. A refusal writes nothing. After DM_RL_CAS_TRIES lost
 * races in a row the hit is refused (each lost race is another hit
 * admitted, so the key is at its limit or close to it). A status other
 * than APR_SUCCESS when the store failed; *out is then not set. */
apr_status_t dm_rl_cas_hit(const dm_rl_cas_store *st, const char *rule, const char *subject,
                           int64_t count, int64_t period_us, int64_t now_us, dm_rl_result *out);

#endif
