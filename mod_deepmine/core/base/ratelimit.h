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

#endif
