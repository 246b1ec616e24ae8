/*
 * members.c — dm-benchgen members: a referral tree of any shape and size.
 * This file decides only the shape (who is under whom, from a seeded
 * generator); core's member bulk path writes the rows.
 */
#include <apr_strings.h>
#include <apr_time.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "members/member_bulk.h"
#include "members/members.h"
#include "members/password.h"

#define GEN_PASSWORD "generated-member-password"
#define GEN_TERMS_VERSION "generated"
#define GEN_BATCH 250000 /* members per transaction */

typedef struct shape {
    const char *name;               /* "random", "chain" or "star" */
    int64_t under;                  /* 0: the population starts new roots */
    uint64_t rng;                   /* splitmix64 state */
    apr_array_header_t *candidates; /* random: ids a new member may be placed under */
    int64_t last;                   /* chain: the tip; star: the hub */
} shape;

static uint64_t next_random(shape *s)
{
    uint64_t z = (s->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0) up to a bias of n / 2^64 (multiply-shift). */
static uint64_t below(shape *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)next_random(s) * n) >> 64);
}

/* The referrer of the k-th generated member (0: a root). */
static int64_t pick(shape *s, int64_t k)
{
    if (strcmp(s->name, "chain") == 0) {
        return s->last;
    }
    if (strcmp(s->name, "star") == 0) {
        return k == 0 && s->under == 0 ? 0 : s->last; /* the first is the hub */
    }
    /* random: the population's root (--under, else none) with probability
     * 1%, else uniformly a member that already exists */
    if (s->candidates->nelts == 0 || below(s, 100) == 0) {
        return s->under;
    }
    return APR_ARRAY_IDX(s->candidates, below(s, (uint64_t)s->candidates->nelts), int64_t);
}

/* The shape's state after the k-th member got its id. */
static void placed(shape *s, int64_t k, int64_t id)
{
    if (strcmp(s->name, "chain") == 0 ||
        (strcmp(s->name, "star") == 0 && k == 0 && s->under == 0)) {
        s->last = id;
    }
    if (strcmp(s->name, "random") == 0) {
        APR_ARRAY_PUSH(s->candidates, int64_t) = id;
    }
}

/* One argon2id hash for everyone (hashing a million passwords would take
 * hours), and the terms "generated": there is no text behind that
 * version, so the recorded content hash is that of the version string. */
static dm_err *shared_values(apr_pool_t *p, dm_member_bulk_spec *spec, dm_legal_doc *terms,
                             int64_t password_mib)
{
    /* --password-mib M: 1 pass, M MiB (DeepMinePasswordHash 1 M) */
    dm_pw_params params = {password_mib ? 1 : 0, (size_t)password_mib * 1024 * 1024};
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    dm_err *e = dm_pw_hash(p, NULL, &params, GEN_PASSWORD, &spec->password_hash);

    crypto_hash_sha256(h, (const unsigned char *)GEN_TERMS_VERSION, strlen(GEN_TERMS_VERSION));
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    memset(terms, 0, sizeof(*terms));
    terms->name = "terms";
    terms->version = GEN_TERMS_VERSION;
    terms->hash = apr_pstrdup(p, hex);
    spec->terms = terms;
    spec->email_prefix = "gen";
    spec->email_domain = "example.test";
    spec->ip = "127.0.0.1";
    return e;
}

/* The members in transactions of GEN_BATCH; then, even after a failure
 * (the committed batches need them), the counters the bulk path left. */
static dm_err *generate(dm_cli *c, dm_member_bulk *b, shape *s, int64_t count, int64_t *changed)
{
    dm_err *e = NULL, *fe;

    for (int64_t k = 0; !e && k < count;) {
        int64_t end = k + GEN_BATCH < count ? k + GEN_BATCH : count;
        e = dm_db_begin(c->db, c->pool);
        for (; !e && k < end; k++) {
            int64_t id = 0;
            e = dm_member_bulk_add(b, pick(s, k), &id);
            if (!e) {
                placed(s, k, id);
            }
        }
        if (!e) {
            e = dm_member_bulk_flush(b);
        }
        if (!e) {
            e = dm_db_commit(c->db, c->pool);
        } else {
            dm_db_rollback(c->db);
        }
    }
    fe = dm_db_begin(c->db, c->pool);
    if (!fe) {
        fe = dm_member_bulk_finish(b, changed);
    }
    if (!fe) {
        fe = dm_db_commit(c->db, c->pool);
    } else {
        dm_db_rollback(c->db);
    }
    return e ? e : fe;
}

int dm_bench_members(dm_cli *c)
{
    const char *name = dm_cli_opt(c, "shape");
    int64_t count = 0, seed = 0, changed = 0, password_mib = 0;
    dm_member_bulk_spec spec;
    dm_legal_doc terms;
    dm_member_bulk *b = NULL;
    dm_member m;
    shape s;
    apr_time_t t0 = apr_time_now();
    int rc;
    dm_err *e;

    memset(&s, 0, sizeof(s));
    memset(&spec, 0, sizeof(spec));
    if (dm_cli_opt_int64(c, "count", 1, &count) != 1 || dm_cli_opt_int64(c, "seed", 1, &seed) < 0 ||
        dm_cli_opt_int64(c, "under", 1, &s.under) < 0 ||
        dm_cli_opt_int64(c, "password-mib", 8, &password_mib) < 0 ||
        (password_mib && password_mib > 4096) || !name ||
        (strcmp(name, "random") != 0 && strcmp(name, "chain") != 0 && strcmp(name, "star") != 0)) {
        return dm_cli_usage(c);
    }
    s.name = name;
    if (seed) {
        s.rng = (uint64_t)seed;
    } else {
        randombytes_buf(&s.rng, sizeof(s.rng));
    }
    spec.per_row = dm_cli_flag(c, "per-row");
    rc = dm_cli_open(c, 1);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    e = dm_db_bulk_load_mode(c->db, c->pool, 1024);
    if (!e && s.under) {
        e = dm_member_get(c->db, c->pool, s.under, &m);
        if (e && e->code == DM_E_NOT_FOUND) {
            e = dm_err_make(c->pool, DM_E_NOT_FOUND, NULL,
                            "--under: member %" APR_INT64_T_FMT " does not exist",
                            (apr_int64_t)s.under);
        }
    }
    s.last = s.under;
    s.candidates = apr_array_make(c->pool, 1024, sizeof(int64_t));
    if (!e && strcmp(name, "random") == 0) {
        if (s.under) {
            APR_ARRAY_PUSH(s.candidates, int64_t) = s.under;
        } else {
            e = dm_member_ids(c->db, c->pool, 0, &s.candidates); /* appended to what exists */
        }
    }
    if (!e) {
        e = shared_values(c->pool, &spec, &terms, password_mib);
    }
    if (!e) {
        e = dm_member_bulk_begin(c->db, c->pool, &spec, &b);
    }
    if (!e) {
        e = generate(c, b, &s, count, &changed);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    printf("members: %" APR_INT64_T_FMT " %s member(s) in %.2f s (%s%s)\n", (apr_int64_t)count,
           name, (double)(apr_time_now() - t0) / APR_USEC_PER_SEC,
           spec.per_row ? "registration's insert per member" : "bulk path, counters rebuilt: ",
           spec.per_row ? ""
                        : apr_psprintf(c->pool, "%" APR_INT64_T_FMT " rows", (apr_int64_t)changed));
    return DM_CLI_OK;
}
