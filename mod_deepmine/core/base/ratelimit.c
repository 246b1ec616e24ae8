/*
 * ratelimit.c — see ratelimit.h.
 *
 * GCRA keeps, per key, one "theoretical arrival time" (TAT): the moment the
 * key's bucket would be empty again. A hit at `now` is allowed when
 * max(TAT, now) + interval - now <= count * interval, and then moves TAT on
 * by one interval (period / count). A key whose TAT is in the past carries
 * no information, so it can be dropped at any time: that is what makes a
 * bounded table with eviction safe.
 *
 * Time is kept in nanoseconds inside, so period/count (at least 1 s / 10^6
 * = 1000 ns) loses at most 1/1000 to integer division, and never lets more
 * than `count` hits through in a burst.
 *
 * Table layout in the caller's block (all links are 1-based entry indices,
 * 0 meaning "none"; no pointer is ever stored):
 *
 *     rl_header | uint32 bucket heads [nbuckets] | rl_entry [entries]
 *
 * Entries are taken from a free list, then from the never-used tail
 * (`fresh`), then by evicting the least recently used entry. A doubly
 * linked LRU list orders them by last hit; each hit also drops up to two
 * expired entries from the LRU's cold end, so dead keys rarely pile up.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>
#include "base/ratelimit.h"
#include "base/spinlock.h"

#include <apr_strings.h>
#include <sodium.h>
#include <string.h>

#define RL_MAGIC 0x444d524cu /* "DMRL" */
#define RL_VERSION 2u        /* 2: the lock word */
#define RL_NIL 0u
#define RL_EXPIRE_PER_HIT 2
#define RL_MAX_NOW_US ((INT64_MAX - 4 * DM_RL_MAX_PERIOD_US * 1000) / 1000)

typedef struct rl_header {
    uint32_t magic;
    uint32_t version;
    uint32_t entries;
    uint32_t nbuckets; /* a power of two, >= entries */
    uint32_t used;
    uint32_t fresh;     /* entries [1, fresh] have been handed out at least once */
    uint32_t free_head; /* singly linked through rl_entry.chain */
    uint32_t lru_head;  /* most recently hit */
    uint32_t lru_tail;  /* least recently hit */
    uint32_t lock;      /* 0 free, else the pid of the holder (dm_rl_lock) */
    uint64_t evictions;
    uint64_t size;
    unsigned char key[DM_RL_KEY_BYTES];
} rl_header;

typedef struct rl_entry {
    uint64_t id[2]; /* SipHash-x-2-4 of "rule\0key" */
    int64_t tat_ns;
    uint32_t chain; /* next in the bucket (or in the free list) */
    uint32_t prev;  /* LRU neighbour, more recent */
    uint32_t next;  /* LRU neighbour, less recent */
    uint32_t pad;
} rl_entry;

static int64_t ceil_div(int64_t a, int64_t b)
{
    return a <= 0 ? 0 : (a + b - 1) / b;
}

dm_rl_result dm_rl_gcra(int64_t *tat_ns, int64_t count, int64_t period_us, int64_t now_us)
{
    dm_rl_result res = {1, count, count, 0, 0};
    int64_t now, interval, tolerance, tat, next_tat, allow_at;

    if (count < 1 || count > DM_RL_MAX_COUNT || period_us < 1 || period_us > DM_RL_MAX_PERIOD_US ||
        now_us < 0 || now_us > RL_MAX_NOW_US) {
        return res;
    }
    now = now_us * 1000;
    interval = period_us * 1000 / count;
    if (interval < 1) {
        interval = 1;
    }
    tolerance = interval * count;
    tat = *tat_ns > now ? *tat_ns : now;
    next_tat = tat + interval;
    allow_at = next_tat - tolerance;
    if (allow_at > now) {
        res.allowed = 0;
        res.remaining = 0;
        res.retry_after_us = ceil_div(allow_at - now, 1000);
        res.reset_after_us = ceil_div(tat - now, 1000);
        return res;
    }
    *tat_ns = next_tat;
    res.remaining = (tolerance - (next_tat - now)) / interval;
    res.reset_after_us = ceil_div(next_tat - now, 1000);
    return res;
}

static uint32_t buckets_for(unsigned entries)
{
    uint32_t n = DM_RL_MIN_ENTRIES;

    while (n < entries) {
        n <<= 1;
    }
    return n;
}

size_t dm_rl_table_size(unsigned entries)
{
    if (entries < DM_RL_MIN_ENTRIES || entries > DM_RL_MAX_ENTRIES) {
        return 0;
    }
    return sizeof(rl_header) + (size_t)buckets_for(entries) * sizeof(uint32_t) +
           (size_t)entries * sizeof(rl_entry);
}

static uint32_t *buckets(rl_header *h)
{
    return (uint32_t *)(void *)((char *)h + sizeof(*h));
}

/* Entry `i` (1-based). */
static rl_entry *entry(rl_header *h, uint32_t i)
{
    rl_entry *base =
        (rl_entry *)(void *)((char *)h + sizeof(*h) + (size_t)h->nbuckets * sizeof(uint32_t));
    return &base[i - 1];
}

static apr_status_t table_init(void *mem, size_t size, unsigned entries,
                               const unsigned char key[DM_RL_KEY_BYTES], int zeroed)
{
    rl_header *h = mem;
    size_t need = dm_rl_table_size(entries);

    if (!mem || need == 0 || size < need || ((uintptr_t)mem % 8) != 0) {
        return APR_EINVAL;
    }
    memset(h, 0, sizeof(*h));
    h->magic = RL_MAGIC;
    h->version = RL_VERSION;
    h->entries = entries;
    h->nbuckets = buckets_for(entries);
    h->size = size;
    memcpy(h->key, key, DM_RL_KEY_BYTES);
    /* Entries are initialised when first handed out (`fresh`), so a large
     * table costs only its bucket array at start-up; memory known to be
     * zero already costs not even that (the array's pages, 256 KiB for the
     * default table, stay untouched until a key lands in them). */
    if (!zeroed) {
        memset(buckets(h), 0, (size_t)h->nbuckets * sizeof(uint32_t));
    }
    return APR_SUCCESS;
}

apr_status_t dm_rl_table_init(void *mem, size_t size, unsigned entries,
                              const unsigned char key[DM_RL_KEY_BYTES])
{
    return table_init(mem, size, entries, key, 0);
}

apr_status_t dm_rl_table_init_zeroed(void *mem, size_t size, unsigned entries,
                                     const unsigned char key[DM_RL_KEY_BYTES])
{
    return table_init(mem, size, entries, key, 1);
}

/* The critical section is a hash lookup and a few additions (well under a
 * microsecond), taken by every API request of every child. A kernel mutex
 * (APR's process-shared pthread mutex is priority-inheriting, so every
 * contended lock is a syscall and a context switch) turned it into a convoy
 * that left the CPUs idle; a spin lock in the segment spins for a moment,
 * then yields. A holder that died (a killed child) never unlocks: a waiter
 * that finds the holder's process gone takes the lock over. */
void dm_rl_lock(void *mem)
{
    dm_spin_lock(&((rl_header *)mem)->lock);
}

void dm_rl_unlock(void *mem)
{
    dm_spin_unlock(&((rl_header *)mem)->lock);
}

int dm_rl_table_usable(const void *mem, size_t size, unsigned entries)
{
    const rl_header *h = mem;

    return h && size >= sizeof(*h) && h->magic == RL_MAGIC && h->version == RL_VERSION &&
           h->entries == entries && h->nbuckets == buckets_for(entries) && h->size == size &&
           dm_rl_table_size(entries) <= size;
}

unsigned dm_rl_table_used(const void *mem)
{
    return ((const rl_header *)mem)->used;
}

uint64_t dm_rl_table_evictions(const void *mem)
{
    return ((const rl_header *)mem)->evictions;
}

/* The 128-bit identity of (rule, key). A key too long for the buffer is
 * replaced by its own digest, after two NULs that no plain key has. */
static void identify(const rl_header *h, const char *rule, const char *key, uint64_t id[2])
{
    unsigned char buf[256];
    unsigned char digest[crypto_shorthash_siphashx24_BYTES];
    size_t rl = strnlen(rule, DM_RL_NAME_MAX);
    size_t kl = strlen(key);
    size_t n;

    memcpy(buf, rule, rl);
    buf[rl] = '\0';
    n = rl + 1;
    if (kl <= sizeof(buf) - n) {
        memcpy(buf + n, key, kl);
        n += kl;
    } else {
        crypto_shorthash_siphashx24(digest, (const unsigned char *)key, kl, h->key);
        buf[n++] = '\0';
        memcpy(buf + n, digest, sizeof(digest));
        n += sizeof(digest);
    }
    crypto_shorthash_siphashx24(digest, buf, n, h->key);
    memcpy(id, digest, sizeof(digest));
}

static void lru_unlink(rl_header *h, uint32_t i)
{
    rl_entry *e = entry(h, i);

    if (e->prev) {
        entry(h, e->prev)->next = e->next;
    } else {
        h->lru_head = e->next;
    }
    if (e->next) {
        entry(h, e->next)->prev = e->prev;
    } else {
        h->lru_tail = e->prev;
    }
    e->prev = e->next = RL_NIL;
}

static void lru_push_head(rl_header *h, uint32_t i)
{
    rl_entry *e = entry(h, i);

    e->prev = RL_NIL;
    e->next = h->lru_head;
    if (h->lru_head) {
        entry(h, h->lru_head)->prev = i;
    } else {
        h->lru_tail = i;
    }
    h->lru_head = i;
}

static uint32_t *bucket_of(rl_header *h, const uint64_t id[2])
{
    return &buckets(h)[id[0] & (h->nbuckets - 1)];
}

/* Takes entry i out of its bucket chain and the LRU list, onto the free
 * list. */
static void release(rl_header *h, uint32_t i)
{
    rl_entry *e = entry(h, i);
    uint32_t *link = bucket_of(h, e->id);

    while (*link && *link != i) {
        link = &entry(h, *link)->chain;
    }
    if (*link == i) {
        *link = e->chain;
    }
    lru_unlink(h, i);
    e->chain = h->free_head;
    h->free_head = i;
    h->used--;
}

static void expire_cold(rl_header *h, int64_t now_ns)
{
    for (int k = 0; k < RL_EXPIRE_PER_HIT && h->lru_tail; k++) {
        uint32_t i = h->lru_tail;
        if (entry(h, i)->tat_ns > now_ns) {
            return;
        }
        release(h, i);
    }
}

/* A free entry: recycled, never used, or the least recently hit one. */
static uint32_t take_entry(rl_header *h, int64_t now_ns)
{
    uint32_t i;

    if (!h->free_head && h->fresh < h->entries) {
        i = ++h->fresh;
        memset(entry(h, i), 0, sizeof(rl_entry));
        h->used++;
        return i;
    }
    if (!h->free_head) {
        /* Full: only live entries left past expire_cold, unless the LRU
         * order and the TAT order differ (rules of different periods). */
        if (entry(h, h->lru_tail)->tat_ns > now_ns) {
            h->evictions++;
        }
        release(h, h->lru_tail);
    }
    i = h->free_head;
    h->free_head = entry(h, i)->chain;
    memset(entry(h, i), 0, sizeof(rl_entry));
    h->used++;
    return i;
}

static uint32_t find(rl_header *h, const uint64_t id[2])
{
    uint32_t i = *bucket_of(h, id);

    while (i) {
        const rl_entry *e = entry(h, i);
        if (e->id[0] == id[0] && e->id[1] == id[1]) {
            return i;
        }
        i = e->chain;
    }
    return RL_NIL;
}

dm_rl_result dm_rl_hit(void *mem, const char *rule, const char *key, int64_t count,
                       int64_t period_us, int64_t now_us)
{
    rl_header *h = mem;
    uint64_t id[2];
    uint32_t i;
    int64_t tat = 0;
    int64_t now_ns = now_us >= 0 && now_us <= RL_MAX_NOW_US ? now_us * 1000 : 0;
    dm_rl_result res;

    if (!h || h->magic != RL_MAGIC || !rule) {
        res = (dm_rl_result){1, count, count, 0, 0};
        return res;
    }
    identify(h, rule, key ? key : "", id);
    expire_cold(h, now_ns);
    i = find(h, id);
    if (i) {
        tat = entry(h, i)->tat_ns;
    }
    res = dm_rl_gcra(&tat, count, period_us, now_us);
    if (i) {
        entry(h, i)->tat_ns = tat;
        lru_unlink(h, i);
        lru_push_head(h, i);
    } else if (tat > now_ns) {
        uint32_t *b;
        rl_entry *e;

        i = take_entry(h, now_ns);
        e = entry(h, i);
        e->id[0] = id[0];
        e->id[1] = id[1];
        e->tat_ns = tat;
        b = bucket_of(h, id);
        e->chain = *b;
        *b = i;
        lru_push_head(h, i);
    }
    return res;
}

void dm_rl_shared_key(char out[DM_RL_SHARED_KEY_MAX], const char *rule, const char *subject)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[16];
    size_t rl = strnlen(rule ? rule : "", DM_RL_NAME_MAX);
    size_t sl = strlen(subject ? subject : "");
    int plain = sl <= 64;
    char *o = out;

    subject = subject ? subject : "";
    for (size_t i = 0; plain && i < sl; i++) {
        char c = subject[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == ':' || c == '-';
    }
    memcpy(o, "dmrl:", 5);
    o += 5;
    memcpy(o, rule ? rule : "", rl);
    o += rl;
    if (plain) {
        *o++ = ':';
        memcpy(o, subject, sl);
        o += sl;
    } else {
        /* Unkeyed: every node must find the same key. */
        crypto_generichash(digest, sizeof(digest), (const unsigned char *)subject, sl, NULL, 0);
        *o++ = '#';
        for (size_t i = 0; i < sizeof(digest); i++) {
            *o++ = hex[digest[i] >> 4];
            *o++ = hex[digest[i] & 15];
        }
    }
    *o = '\0';
}

apr_status_t dm_rl_cas_hit(const dm_rl_cas_store *st, const char *rule, const char *subject,
                           int64_t count, int64_t period_us, int64_t now_us, dm_rl_result *out)
{
    char key[DM_RL_SHARED_KEY_MAX];

    dm_rl_shared_key(key, rule, subject);
    for (int t = 0; t < DM_RL_CAS_TRIES; t++) {
        int found = 0, stored = 0;
        int64_t tat = 0, before;
        uint64_t version = 0;
        dm_rl_result res;
        apr_status_t rv = st->get(st->baton, key, &found, &tat, &version);

        if (rv != APR_SUCCESS) {
            return rv;
        }
        before = tat;
        res = dm_rl_gcra(&tat, count, period_us, now_us);
        if (!res.allowed || tat == before) {
            /* refused, or bad parameters (allowed, nothing counted) */
            *out = res;
            return APR_SUCCESS;
        }
        rv = st->put(st->baton, key, found, version, tat,
                     ceil_div(tat - now_us * 1000, 1000000000) + 1, &stored);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (stored) {
            *out = res;
            return APR_SUCCESS;
        }
    }
    *out = (dm_rl_result){0, count, 0, period_us, period_us / count > 0 ? period_us / count : 1};
    return APR_SUCCESS;
}

const char *dm_rl_scope_name(dm_rl_scope scope)
{
    return scope == DM_RL_SCOPE_MEMBER ? "member" : "ip";
}

/* "<count>/<N><unit>"; the unit is s, m, h or d. */
static const char *parse_rate(apr_pool_t *p, const char *rate, int64_t *count, int64_t *period_us)
{
    const char *c = rate;
    int64_t n = 0, unit_s;
    int64_t seconds = 0;

    for (; *c >= '0' && *c <= '9'; c++) {
        n = n > DM_RL_MAX_COUNT ? n : n * 10 + (*c - '0'); /* saturates past the limit */
    }
    if (c == rate || *c != '/') {
        return apr_psprintf(p,
                            "'%s' is not a rate: write <count>/<period>, e.g. 5/1m "
                            "(periods end in s, m, h or d)",
                            rate);
    }
    if (n < 1 || n > DM_RL_MAX_COUNT) {
        return apr_psprintf(p, "the count in '%s' must be between 1 and %d", rate, DM_RL_MAX_COUNT);
    }
    *count = n;
    rate = ++c;
    for (n = 0; *c >= '0' && *c <= '9'; c++) {
        n = n > DM_RL_MAX_PERIOD_US / 1000000 ? n : n * 10 + (*c - '0');
    }
    switch (*c) {
    case 's':
        unit_s = 1;
        break;
    case 'm':
        unit_s = 60;
        break;
    case 'h':
        unit_s = 3600;
        break;
    case 'd':
        unit_s = 86400;
        break;
    default:
        unit_s = 0;
        break;
    }
    if (c == rate || unit_s == 0 || c[1] != '\0') {
        return apr_psprintf(p,
                            "the period '%s' must be a whole number followed by s, m, h or d, "
                            "e.g. 30s, 1m, 1h, 1d",
                            rate);
    }
    if (n < 1) {
        return apr_psprintf(p, "the period '%s' must be at least 1%c", rate, *c);
    }
    if (n > DM_RL_MAX_PERIOD_US / 1000000 / unit_s) {
        return apr_psprintf(p, "the period '%s' is longer than 366 days", rate);
    }
    seconds = n * unit_s;
    *period_us = seconds * 1000000;
    return NULL;
}

const char *dm_rl_parse_rule(apr_pool_t *p, const char *name, const char *rate, const char *scope,
                             dm_rl_rule *out)
{
    size_t len = name ? strlen(name) : 0;
    dm_rl_rule rule;
    const char *err;

    if (len < 1 || len > DM_RL_NAME_MAX) {
        return apr_psprintf(p, "the rule name '%s' must be 1 to %d characters long",
                            name ? name : "", DM_RL_NAME_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            return apr_psprintf(p,
                                "the rule name '%s' may hold only lower-case letters a-z, "
                                "digits and '-'",
                                name);
        }
    }
    err = parse_rate(p, rate ? rate : "", &rule.count, &rule.period_us);
    if (err) {
        return err;
    }
    if (scope && strcmp(scope, "ip") == 0) {
        rule.scope = DM_RL_SCOPE_IP;
    } else if (scope && strcmp(scope, "member") == 0) {
        rule.scope = DM_RL_SCOPE_MEMBER;
    } else {
        return apr_psprintf(p, "the scope '%s' must be ip or member", scope ? scope : "");
    }
    rule.name = apr_pstrdup(p, name);
    *out = rule;
    return NULL;
}
