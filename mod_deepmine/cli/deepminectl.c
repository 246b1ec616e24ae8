/*
 * deepminectl — the operator CLI. It uses core/ directly (no Apache), on the
 * same database the module serves.
 *
 * Exit codes: 0 ok, 1 a check or an operation failed, 2 usage.
 */
#include <apr_file_io.h>
#include <apr_general.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "staff/member_admin.h"
#include "shop/capacity.h"
#include "shop/catalogue.h"
#include "referral/commission.h"
#include "store/db.h"
#include "cron/cron.h"
#include "base/json.h"
#include "ledger/ledger.h"
#include "members/members.h"
#include "store/migrate.h"
#include "shop/pool_payouts.h"
#include "referral/referral.h"
#include "staff/staff.h"

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2

typedef struct cli {
    apr_pool_t *pool;
    const char *db_path;
    int test_mode; /* --test-mode: test-only jobs visible */
    int argc;
    const char *const *argv;
} cli;

typedef int command_fn(cli *c);

static int fail(const dm_err *e)
{
    fprintf(stderr, "deepminectl: %s\n", e->message);
    return EXIT_FAIL;
}

static dm_err *open_db(cli *c, dm_db **db)
{
    return dm_db_open(c->pool, c->db_path, NULL, db);
}

static int cmd_migrate(cli *c)
{
    dm_db *db;
    int applied = 0, version = 0;
    dm_err *e = open_db(c, &db);

    if (!e) {
        e = dm_migrate(db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    if (e) {
        return fail(e);
    }
    printf("schema version %d (%d migration(s) applied)\n", version, applied);
    return EXIT_OK;
}

static int cmd_status(cli *c)
{
    dm_db *db;
    int version = 0, found;
    int64_t total = 0, active = 0;
    dm_err *e;

    if (access(c->db_path, F_OK) != 0) {
        fprintf(stderr, "deepminectl: no database at %s\n", c->db_path);
        return EXIT_FAIL;
    }
    e = open_db(c, &db);
    if (!e) {
        e = dm_migrate_version(db, c->pool, &version);
    }
    if (e) {
        return fail(e);
    }
    printf("database:       %s\n", c->db_path);
    printf("schema version: %d (this build: %d)%s\n", version, dm_migrate_latest(),
           version < dm_migrate_latest() ? " — run `deepminectl migrate`" : "");
    if (version > 0) {
        e = dm_db_query_int64(db, c->pool, "SELECT COUNT(*) FROM packages", &total, &found);
        if (!e) {
            e = dm_db_query_int64(db, c->pool, "SELECT COUNT(*) FROM packages WHERE active = 1",
                                  &active, &found);
        }
        if (e) {
            return fail(e);
        }
        printf("packages:       %lld (%lld active)\n", (long long)total, (long long)active);
    }
    return version == dm_migrate_latest() ? EXIT_OK : EXIT_FAIL;
}

static int cmd_seed_demo(cli *c)
{
    dm_db *db;
    int applied, version, inserted = 0;
    dm_err *e = open_db(c, &db);

    if (!e) {
        e = dm_migrate(db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    if (!e) {
        e = dm_catalogue_seed_demo(db, c->pool, &inserted);
    }
    if (e) {
        return fail(e);
    }
    printf(inserted ? "demo catalogue: %d packages added\n"
                    : "demo catalogue: the catalogue is not empty, nothing added\n",
           inserted);
    return EXIT_OK;
}

static int cmd_keygen(cli *c)
{
    unsigned char key[32];
    const char *path;
    int fd;
    ssize_t n;

    if (c->argc != 1) {
        fprintf(stderr, "usage: deepminectl keygen <path>\n");
        return EXIT_USAGE;
    }
    path = c->argv[0];
    /* O_EXCL: never overwrite a key (every session would die with it). */
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        fprintf(stderr, "deepminectl: cannot create %s: %s\n", path, strerror(errno));
        return EXIT_FAIL;
    }
    randombytes_buf(key, sizeof(key));
    n = write(fd, key, sizeof(key));
    sodium_memzero(key, sizeof(key));
    if (n != (ssize_t)sizeof(key) || fsync(fd) != 0 || close(fd) != 0) {
        fprintf(stderr, "deepminectl: cannot write %s: %s\n", path, strerror(errno));
        unlink(path);
        return EXIT_FAIL;
    }
    printf("wrote a new 32-byte secret key to %s (mode 0600)\n", path);
    return EXIT_OK;
}

/* ---- gen-members: test populations ---- */

#define GEN_PASSWORD "generated-member-password"
#define GEN_TERMS_VERSION "generated"
#define GEN_IP "127.0.0.1"
#define GEN_BATCH 250000 /* members per transaction */
#define GEN_ROWS 2048    /* users rows per INSERT statement (10 parameters each) */
#define GEN_CODE_TRIES 5

typedef struct gen {
    cli *c;
    dm_db *db;
    apr_pool_t *tmp; /* cleared after each GEN_ROWS members */
    int64_t count;
    const char *shape; /* "random", "chain" or "star" */
    int64_t under;     /* 0: the population starts new roots */
    int per_row;       /* dm_referral_attach per member instead of the bulk path */
    dm_referral_bulk *bulk;
    uint64_t rng;     /* splitmix64 state: the tree's shape, not the codes */
    const char *hash; /* one argon2id hash, shared by every generated member */
    const char *terms_hash;
    int64_t now;
    apr_array_header_t *candidates; /* random: ids a new member may be placed under */
    int64_t last;                   /* chain: the tip; star: the hub */
    int64_t ids[GEN_ROWS], refs[GEN_ROWS];
} gen;

static uint64_t gen_next(gen *g)
{
    uint64_t z = (g->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0) up to a bias of n / 2^64 (multiply-shift). */
static uint64_t gen_below(gen *g, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)gen_next(g) * n) >> 64);
}

/* The referrer of the k-th generated member (0: a root), and the shape's
 * state updated with its id. */
static int64_t gen_pick_referrer(gen *g, int64_t k, int64_t id)
{
    int64_t ref;

    if (strcmp(g->shape, "chain") == 0) {
        ref = g->last;
        g->last = id;
    } else if (strcmp(g->shape, "star") == 0) {
        if (k == 0 && g->under == 0) {
            g->last = id; /* the hub, itself a root */
        }
        ref = g->last == id ? 0 : g->last;
    } else if (g->candidates->nelts == 0 || gen_below(g, 100) == 0) {
        /* random: the population's root (--under, else none) with
         * probability 1%, else uniformly a member that already exists */
        ref = g->under;
    } else {
        ref = APR_ARRAY_IDX(g->candidates, gen_below(g, (uint64_t)g->candidates->nelts), int64_t);
    }
    if (strcmp(g->shape, "random") == 0) {
        *(int64_t *)apr_array_push(g->candidates) = id;
    }
    return ref;
}

/* Several users rows per statement: inside a transaction every statement
 * that writes to users_fts makes FTS5 flush its pending terms (a statement
 * savepoint), which costs ~50 us a row when rows go one by one. The text
 * depends only on `rows`, never on input. */
static const char *gen_users_sql(apr_pool_t *p, int rows)
{
    static const char head[] =
        "INSERT INTO users (id, email, email_key, name, password_hash, referral_code, "
        "referrer_id, depth, vip_level, status, token_version, email_verified_at, kyc_status, "
        "marketing_opt_in, terms_version, terms_accepted_at, created_at, updated_at) VALUES ";
    static const char row[] =
        "(?, ?, ?, NULL, ?, ?, ?, 0, 1, 'active', 0, NULL, 'none', 0, ?, ?, ?, ?)";
    apr_array_header_t *parts = apr_array_make(p, 2 * rows + 1, sizeof(const char *));

    *(const char **)apr_array_push(parts) = head;
    for (int i = 0; i < rows; i++) {
        *(const char **)apr_array_push(parts) = i ? ", " : "";
        *(const char **)apr_array_push(parts) = row;
    }
    return apr_array_pstrcat(p, parts, 0);
}

#define GEN_USER_PARAMS 10

/* The users rows of registration, with the generated member's values:
 * e-mail gen<id>@example.test, the shared hash, terms "generated". Ids are
 * given (MAX(id) + 1 onwards, what SQLite would pick) so that a member's
 * referrer can be in the same statement. */
static dm_err *gen_insert_users(gen *g, int rows)
{
    dm_stmt *st;
    dm_err *e = NULL;
    int row = 0;

    for (int tries = 0; tries < GEN_CODE_TRIES; tries++) {
        e = dm_db_prepare(g->db, g->tmp, gen_users_sql(g->tmp, rows), &st);
        if (e) {
            return e;
        }
        for (int j = 0; j < rows; j++) {
            const char *email = apr_psprintf(g->tmp, "gen%" APR_INT64_T_FMT "@example.test",
                                             (apr_int64_t)g->ids[j]);
            int b = j * GEN_USER_PARAMS;
            dm_stmt_bind_int64(st, b + 1, g->ids[j]);
            dm_stmt_bind_text(st, b + 2, email, strlen(email));
            dm_stmt_bind_text(st, b + 3, email, strlen(email));
            dm_stmt_bind_text(st, b + 4, g->hash, strlen(g->hash));
            dm_stmt_bind_text(st, b + 5, dm_referral_code_new(g->tmp), DM_REFERRAL_CODE_LEN);
            if (g->refs[j]) {
                dm_stmt_bind_int64(st, b + 6, g->refs[j]);
            } else {
                dm_stmt_bind_null(st, b + 6);
            }
            dm_stmt_bind_text(st, b + 7, GEN_TERMS_VERSION, strlen(GEN_TERMS_VERSION));
            dm_stmt_bind_int64(st, b + 8, g->now);
            dm_stmt_bind_int64(st, b + 9, g->now);
            dm_stmt_bind_int64(st, b + 10, g->now);
        }
        e = dm_stmt_step(st, g->tmp, &row);
        dm_stmt_done(st);
        /* a conflict is most likely a referral code already taken: new
         * codes and again (an address taken fails every time, and is
         * reported) */
        if (!e || e->code != DM_E_CONFLICT) {
            break;
        }
    }
    return e;
}

/* The rest of registration for one member: the referral placement, then
 * the terms record. */
static dm_err *gen_place(gen *g, int64_t id, int64_t referrer)
{
    dm_stmt *st;
    dm_err *e;
    int row = 0;

    e = g->per_row ? dm_referral_attach(g->db, g->tmp, id, referrer)
                   : dm_referral_bulk_add(g->bulk, id, referrer);
    if (e) {
        return e;
    }
    e = dm_db_prepare(g->db, g->tmp,
                      "INSERT INTO legal_acceptances (user_id, document, version, content_hash, "
                      "ip, accepted_at) VALUES (?, 'terms', ?, ?, ?, ?)",
                      &st);
    if (e) {
        return e;
    }
    dm_stmt_bind_int64(st, 1, id);
    dm_stmt_bind_text(st, 2, GEN_TERMS_VERSION, strlen(GEN_TERMS_VERSION));
    dm_stmt_bind_text(st, 3, g->terms_hash, strlen(g->terms_hash));
    dm_stmt_bind_text(st, 4, GEN_IP, strlen(GEN_IP));
    dm_stmt_bind_int64(st, 5, g->now);
    e = dm_stmt_step(st, g->tmp, &row);
    dm_stmt_done(st);
    return e;
}

static dm_err *gen_prepare(gen *g)
{
    apr_pool_t *p = g->c->pool;
    char hash[crypto_pwhash_STRBYTES];
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[2 * crypto_hash_sha256_BYTES + 1];
    int found = 0;
    dm_stmt *st;
    dm_err *e;

    /* One hash for everyone: hashing a million passwords would take hours. */
    if (crypto_pwhash_str_alg(
            hash, GEN_PASSWORD, strlen(GEN_PASSWORD), crypto_pwhash_OPSLIMIT_INTERACTIVE,
            crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13) != 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "cannot hash the generated password");
    }
    g->hash = apr_pstrdup(p, hash);
    /* There is no terms text behind version "generated": the recorded
     * content hash is that of the version string. */
    crypto_hash_sha256(h, (const unsigned char *)GEN_TERMS_VERSION, strlen(GEN_TERMS_VERSION));
    sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
    g->terms_hash = apr_pstrdup(p, hex);
    g->now = dm_now();

    if (g->under) {
        e = dm_db_prepare(g->db, p, "SELECT id FROM users WHERE id = ?", &st);
        if (e) {
            return e;
        }
        dm_stmt_bind_int64(st, 1, g->under);
        e = dm_stmt_step(st, p, &found);
        dm_stmt_done(st);
        if (e) {
            return e;
        }
        if (!found) {
            return dm_err_make(p, DM_E_NOT_FOUND, NULL,
                               "--under: member %" APR_INT64_T_FMT " does not exist",
                               (apr_int64_t)g->under);
        }
    }
    e = dm_referral_bulk_begin(g->db, p, &g->bulk);
    if (e) {
        return e;
    }
    g->last = g->under;
    g->candidates = apr_array_make(p, 1024, sizeof(int64_t));
    if (strcmp(g->shape, "random") != 0) {
        return NULL;
    }
    if (g->under) {
        *(int64_t *)apr_array_push(g->candidates) = g->under;
        return NULL;
    }
    /* appended to whatever the database holds */
    e = dm_db_prepare(g->db, p, "SELECT id FROM users ORDER BY id", &st);
    if (e) {
        return e;
    }
    while (!(e = dm_stmt_step(st, p, &found)) && found) {
        *(int64_t *)apr_array_push(g->candidates) = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    return e;
}

/* GEN_ROWS members at most: ids and referrers first, then their users rows
 * in one statement, then each one's placement in id order (a referrer is
 * always placed before the members under it). */
static dm_err *gen_chunk(gen *g, int64_t *last_id, int64_t k, int rows)
{
    dm_err *e;

    for (int j = 0; j < rows; j++) {
        g->ids[j] = ++*last_id;
        g->refs[j] = gen_pick_referrer(g, k + j, g->ids[j]);
    }
    e = gen_insert_users(g, rows);
    for (int j = 0; !e && j < rows; j++) {
        e = gen_place(g, g->ids[j], g->refs[j]);
    }
    apr_pool_clear(g->tmp);
    return e;
}

static dm_err *gen_run(gen *g, int64_t *rebuilt)
{
    apr_pool_t *p = g->c->pool;
    dm_err *e = NULL;
    int64_t k = 0;

    while (!e && k < g->count) {
        int64_t end = k + GEN_BATCH < g->count ? k + GEN_BATCH : g->count;
        int64_t last_id = 0;
        int found = 0;

        e = dm_db_begin(g->db, p);
        if (!e) {
            /* under the write lock: nobody else inserts until commit */
            e = dm_db_query_int64(g->db, p, "SELECT MAX(id) FROM users", &last_id, &found);
        }
        while (!e && k < end) {
            int rows = end - k < GEN_ROWS ? (int)(end - k) : GEN_ROWS;
            e = gen_chunk(g, &last_id, k, rows);
            k += rows;
        }
        if (!e && !g->per_row) {
            e = dm_referral_bulk_flush(g->bulk);
        }
        if (!e) {
            e = dm_db_commit(g->db, p);
        } else {
            dm_db_rollback(g->db);
        }
    }
    /* The bulk path leaves the ancestors' counters stale until this; it
     * runs after a failure too, so the committed batches are counted. */
    if (!g->per_row) {
        dm_err *re = dm_db_begin(g->db, p);
        if (!re) {
            re = dm_referral_rebuild_counts(g->db, p, rebuilt);
        }
        if (!re) {
            re = dm_db_commit(g->db, p);
        } else {
            dm_db_rollback(g->db);
        }
        if (!e) {
            e = re;
        }
    }
    return e;
}

static int gen_usage(void)
{
    fprintf(stderr, "usage: deepminectl gen-members --count N --shape random|chain|star "
                    "[--seed S] [--under ID] [--per-row]\n");
    return EXIT_USAGE;
}

/* Reads a positive integer option value; 0 on a bad one. */
static int64_t gen_int_arg(const char *s)
{
    char *end = NULL;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(s, &end, 10);
    return (errno || !end || *end || end == s || v <= 0) ? 0 : (int64_t)v;
}

static int cmd_gen_members(cli *c)
{
    gen g;
    int applied = 0, version = 0;
    int64_t rebuilt = 0;
    apr_time_t t0;
    dm_err *e;

    memset(&g, 0, sizeof(g));
    g.c = c;
    randombytes_buf(&g.rng, sizeof(g.rng));
    for (int i = 0; i < c->argc; i++) {
        const char *opt = c->argv[i], *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (strcmp(opt, "--per-row") == 0) {
            g.per_row = 1;
            continue;
        }
        if (!val) {
            return gen_usage();
        }
        i++;
        if (strcmp(opt, "--count") == 0 && (g.count = gen_int_arg(val)) > 0) {
            continue;
        }
        if (strcmp(opt, "--under") == 0 && (g.under = gen_int_arg(val)) > 0) {
            continue;
        }
        if (strcmp(opt, "--seed") == 0 && gen_int_arg(val) > 0) {
            g.rng = (uint64_t)gen_int_arg(val);
            continue;
        }
        if (strcmp(opt, "--shape") == 0 &&
            (strcmp(val, "random") == 0 || strcmp(val, "chain") == 0 || strcmp(val, "star") == 0)) {
            g.shape = val;
            continue;
        }
        return gen_usage();
    }
    if (g.count <= 0 || !g.shape) {
        return gen_usage();
    }
    t0 = apr_time_now();
    e = open_db(c, &g.db);
    if (!e) {
        e = dm_migrate(g.db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
    }
    /* Test populations only: a crash mid-run loses generated members, never
     * business data, so the generator trades durability for speed. */
    if (!e) {
        e = dm_db_exec(
            g.db, c->pool,
            "PRAGMA synchronous=OFF; PRAGMA cache_size=-1048576; PRAGMA temp_store=MEMORY");
    }
    if (!e) {
        e = gen_prepare(&g);
    }
    if (!e) {
        apr_pool_create(&g.tmp, c->pool);
        e = gen_run(&g, &rebuilt);
    }
    if (e) {
        return fail(e);
    }
    printf("gen-members: %" APR_INT64_T_FMT " %s member(s) in %.2f s (%s%s)\n",
           (apr_int64_t)g.count, g.shape, (double)(apr_time_now() - t0) / APR_USEC_PER_SEC,
           g.per_row ? "dm_referral_attach per member" : "bulk path, counters rebuilt: ",
           g.per_row ? ""
                     : apr_psprintf(c->pool, "%" APR_INT64_T_FMT " rows", (apr_int64_t)rebuilt));
    return EXIT_OK;
}

/* ---- staff accounts and the import from the old platform ---- */

#define IMPORT_MAX_BYTES ((apr_size_t)1 << 30)

static dm_err *open_migrated(cli *c, dm_db **db)
{
    int applied = 0, version = 0;
    dm_err *e = open_db(c, db);

    return e ? e : dm_migrate(*db, c->pool, dm_migrations, dm_migrations_count, &applied, &version);
}

static int staff_usage(void)
{
    fprintf(stderr, "usage: deepminectl staff create --email E --role owner|finance|support|kyc\n"
                    "       deepminectl staff list\n"
                    "       deepminectl staff ensure-owner --email E\n");
    return EXIT_USAGE;
}

/* --email and --role from argv[from..]; 0 on a usage error. */
static int staff_opts(cli *c, int from, const char **email, const char **role)
{
    for (int i = from; i < c->argc; i += 2) {
        const char *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!val) {
            return 0;
        }
        if (strcmp(c->argv[i], "--email") == 0) {
            *email = val;
        } else if (role && strcmp(c->argv[i], "--role") == 0) {
            *role = val;
        } else {
            return 0;
        }
    }
    return *email && (!role || *role);
}

static void print_credentials(const dm_staff *st, const char *password)
{
    printf("  email:    %s\n"
           "  role:     %s\n"
           "  password: %s\n"
           "  (a one-time password: it is shown only now and stored only as a hash)\n",
           st->email, st->role, password);
}

static int cmd_staff(cli *c)
{
    dm_services svc;
    dm_staff st;
    dm_db *db;
    const char *email = NULL, *role = NULL, *password = NULL;
    dm_err *e;

    memset(&svc, 0, sizeof(svc));
    if (c->argc < 1) {
        return staff_usage();
    }
    if (strcmp(c->argv[0], "create") == 0) {
        if (!staff_opts(c, 1, &email, &role)) {
            return staff_usage();
        }
        e = open_migrated(c, &db);
        if (!e) {
            e = dm_staff_create(db, c->pool, &svc, 0, NULL, email, role, &st, &password);
        }
        if (e) {
            return fail(e);
        }
        printf("staff account %" APR_INT64_T_FMT " created:\n", (apr_int64_t)st.id);
        print_credentials(&st, password);
        return EXIT_OK;
    }
    if (strcmp(c->argv[0], "ensure-owner") == 0) {
        int created = 0;
        if (!staff_opts(c, 1, &email, NULL)) {
            return staff_usage();
        }
        e = open_migrated(c, &db);
        if (!e) {
            e = dm_staff_ensure_owner(db, c->pool, &svc, email, &created, &st, &password);
        }
        if (e) {
            return fail(e);
        }
        if (created) {
            printf("no staff owner existed; created one:\n");
            print_credentials(&st, password);
        }
        return EXIT_OK;
    }
    if (strcmp(c->argv[0], "list") == 0 && c->argc == 1) {
        apr_array_header_t *rows = NULL;
        e = open_migrated(c, &db);
        if (!e) {
            e = dm_staff_list(db, c->pool, &rows);
        }
        if (e) {
            return fail(e);
        }
        printf("%-6s %-8s %-9s %-21s %s\n", "id", "role", "status", "created", "email");
        for (int i = 0; i < rows->nelts; i++) {
            const dm_staff *s = &APR_ARRAY_IDX(rows, i, dm_staff);
            char when[APR_RFC822_DATE_LEN + 1];
            apr_time_exp_t tm;
            apr_size_t n = 0;
            apr_time_exp_gmt(&tm, apr_time_from_sec(s->created_at));
            apr_strftime(when, &n, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("%-6" APR_INT64_T_FMT " %-8s %-9s %-21s %s\n", (apr_int64_t)s->id, s->role,
                   s->status, when, s->email);
        }
        return EXIT_OK;
    }
    return staff_usage();
}

static int cmd_import_users(cli *c)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t got = 0;
    char *buf;
    dm_db *db;
    dm_import_report rep;
    apr_status_t rv;
    dm_err *e;

    if (c->argc != 1) {
        fprintf(stderr, "usage: deepminectl import-users <file.csv>\n");
        return EXIT_USAGE;
    }
    memset(&rep, 0, sizeof(rep));
    rv = apr_file_open(&f, c->argv[0], APR_FOPEN_READ | APR_FOPEN_BINARY, 0, c->pool);
    if (rv == APR_SUCCESS) {
        rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f);
    }
    if (rv == APR_SUCCESS && (fi.size < 0 || (apr_size_t)fi.size > IMPORT_MAX_BYTES)) {
        rv = APR_EINVAL;
    }
    if (rv == APR_SUCCESS) {
        buf = apr_palloc(c->pool, (apr_size_t)fi.size + 1);
        rv = fi.size ? apr_file_read_full(f, buf, (apr_size_t)fi.size, &got) : APR_SUCCESS;
        buf[got] = '\0';
    }
    if (rv != APR_SUCCESS) {
        char msg[256];
        fprintf(stderr, "deepminectl: cannot read %s: %s\n", c->argv[0],
                apr_strerror(rv, msg, sizeof(msg)));
        return EXIT_FAIL;
    }
    e = open_migrated(c, &db);
    if (!e) {
        e = dm_admin_import_users(db, c->pool, buf, got, c->argv[0], &rep);
    }
    if (e) {
        fprintf(stderr, "deepminectl: import-users: %s\n", e->message);
        fprintf(stderr, "import-users: nothing imported (%" APR_INT64_T_FMT " row(s) read)\n",
                (apr_int64_t)rep.rows);
        return EXIT_FAIL;
    }
    printf("import-users: %" APR_INT64_T_FMT " member(s) imported from %s\n",
           (apr_int64_t)rep.imported, c->argv[0]);
    return EXIT_OK;
}

/* ---- the ledger ---- */

static int ledger_usage(void)
{
    fprintf(stderr, "usage: deepminectl ledger verify\n"
                    "       deepminectl ledger show --user ID\n"
                    "       deepminectl ledger adjust --user ID --amount MICROS --reason TEXT "
                    "[--key adj:…]\n");
    return EXIT_USAGE;
}

/* A signed whole number of micro-units; 0 on a bad one. */
static int ledger_int_arg(const char *s, int64_t *out)
{
    char *end = NULL;
    apr_int64_t v;

    errno = 0;
    v = apr_strtoi64(s, &end, 10);
    if (errno || !end || *end || end == s) {
        return 0;
    }
    *out = (int64_t)v;
    return 1;
}

/* "-1.500000" for -1500000 micro-units: integer arithmetic only. */
static const char *ledger_amount(apr_pool_t *p, int64_t micros)
{
    uint64_t a = micros < 0 ? 0 - (uint64_t)micros : (uint64_t)micros;

    return apr_psprintf(p, "%s%" APR_UINT64_T_FMT ".%06" APR_UINT64_T_FMT, micros < 0 ? "-" : "",
                        (apr_uint64_t)(a / 1000000), (apr_uint64_t)(a % 1000000));
}

static int ledger_verify(cli *c)
{
    dm_db *db;
    dm_ledger_report rep;
    dm_err *e = open_db(c, &db);

    if (!e) {
        e = dm_ledger_verify(db, c->pool, &rep);
    }
    if (e) {
        return fail(e);
    }
    if (!rep.ok) {
        if (rep.account_id) {
            fprintf(stderr,
                    "ledger verify: FAILED at account %" APR_INT64_T_FMT " (%s): %s: stored "
                    "%" APR_INT64_T_FMT ", expected %" APR_INT64_T_FMT " from its transfers\n",
                    (apr_int64_t)rep.account_id, rep.account_name, rep.problem,
                    (apr_int64_t)rep.stored_micros, (apr_int64_t)rep.expected_micros);
        } else {
            fprintf(stderr, "ledger verify: FAILED: %s\n", rep.problem);
        }
        return EXIT_FAIL;
    }
    printf("ledger verify: ok: %" APR_INT64_T_FMT " accounts, %" APR_INT64_T_FMT
           " transfers, total %" APR_INT64_T_FMT " (every balance matches its transfers)\n",
           (apr_int64_t)rep.accounts, (apr_int64_t)rep.transfers, (apr_int64_t)rep.total_micros);
    return EXIT_OK;
}

static int ledger_show(cli *c, int64_t user)
{
    dm_db *db;
    dm_member m;
    dm_balances b;
    dm_err *e = open_db(c, &db);

    if (!e) {
        e = dm_member_get(db, c->pool, user, &m);
    }
    if (!e) {
        e = dm_ledger_member_balances(db, c->pool, user, DM_LEDGER_CURRENCY, &b);
    }
    if (e) {
        return fail(e);
    }
    printf("member %" APR_INT64_T_FMT " <%s>\n", (apr_int64_t)m.id, m.email);
    printf("  wallet  %s %s (%" APR_INT64_T_FMT " micros)%s\n",
           ledger_amount(c->pool, b.wallet_micros), DM_LEDGER_CURRENCY,
           (apr_int64_t)b.wallet_micros,
           b.wallet_micros < 0 ? " — a debt: later credits settle it first" : "");
    printf("  held    %s %s (%" APR_INT64_T_FMT " micros)\n", ledger_amount(c->pool, b.held_micros),
           DM_LEDGER_CURRENCY, (apr_int64_t)b.held_micros);
    return EXIT_OK;
}

static int ledger_adjust(cli *c, int64_t user, int64_t amount, const char *reason, const char *key)
{
    dm_db *db;
    dm_transfer t;
    dm_balances b;
    int created = 0;
    dm_err *e = open_migrated(c, &db);

    if (!e) {
        e = dm_ledger_adjust(db, c->pool, 0, NULL, user, amount, reason, key, &t, &created);
    }
    if (!e) {
        e = dm_ledger_member_balances(db, c->pool, user, DM_LEDGER_CURRENCY, &b);
    }
    if (e) {
        return fail(e);
    }
    printf(created ? "adjustment posted: transfer %" APR_INT64_T_FMT "\n"
                   : "adjustment already posted as transfer %" APR_INT64_T_FMT
                     "; nothing changed\n",
           (apr_int64_t)t.id);
    printf("  idempotency key: %s\n", t.idempotency_key);
    printf("  member %" APR_INT64_T_FMT " wallet: %s%s %s, now %s %s\n", (apr_int64_t)user,
           t.credit_account_id == b.wallet_account_id ? "+" : "-",
           ledger_amount(c->pool, t.amount_micros), t.currency,
           ledger_amount(c->pool, b.wallet_micros), DM_LEDGER_CURRENCY);
    return EXIT_OK;
}

/* `adjust` is an operator's repair tool: documented in operations.md, not
 * listed by `help`. */
static int cmd_ledger(cli *c)
{
    const char *reason = NULL, *key = NULL;
    int64_t user = 0, amount = 0;
    int has_amount = 0;

    if (c->argc < 1) {
        return ledger_usage();
    }
    for (int i = 1; i < c->argc; i += 2) {
        const char *opt = c->argv[i], *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!val) {
            return ledger_usage();
        }
        if (strcmp(opt, "--user") == 0 && ledger_int_arg(val, &user) && user > 0) {
            continue;
        }
        if (strcmp(opt, "--amount") == 0 && ledger_int_arg(val, &amount)) {
            has_amount = 1;
            continue;
        }
        if (strcmp(opt, "--reason") == 0) {
            reason = val;
            continue;
        }
        if (strcmp(opt, "--key") == 0) {
            key = val;
            continue;
        }
        return ledger_usage();
    }
    if (strcmp(c->argv[0], "verify") == 0 && c->argc == 1) {
        return ledger_verify(c);
    }
    if (strcmp(c->argv[0], "show") == 0 && user && !has_amount && !reason && !key) {
        return ledger_show(c, user);
    }
    if (strcmp(c->argv[0], "adjust") == 0 && user && has_amount && reason) {
        return ledger_adjust(c, user, amount, reason, key);
    }
    return ledger_usage();
}

/* ---- capacity ---- */

static int capacity_usage(void)
{
    fprintf(stderr, "usage: deepminectl capacity show\n"
                    "       deepminectl capacity set --ghs N [--note TEXT]\n"
                    "       deepminectl capacity ensure --ghs N [--note TEXT]\n");
    return EXIT_USAGE;
}

static int capacity_show(cli *c, dm_db *db)
{
    dm_capacity_row cur;
    int found = 0;
    int64_t sold = 0;
    dm_err *e = dm_capacity_current(db, c->pool, &cur, &found);

    if (!e) {
        e = dm_capacity_sold(db, c->pool, &sold);
    }
    if (e) {
        return fail(e);
    }
    if (!found) {
        printf("capacity: none recorded — nothing can be sold (sold: %" APR_INT64_T_FMT " GH/s)\n",
               (apr_int64_t)sold);
        return EXIT_OK;
    }
    printf("capacity: %" APR_INT64_T_FMT " GH/s, sold %" APR_INT64_T_FMT " GH/s%s%s\n",
           (apr_int64_t)cur.hashrate_ghs, (apr_int64_t)sold, cur.note ? " — " : "",
           cur.note ? cur.note : "");
    return EXIT_OK;
}

/* `set` records a new capacity (audited, by the console); `ensure` only
 * when none exists (scripts/run.sh's demo figure). */
static int cmd_capacity(cli *c)
{
    const char *note = NULL;
    int64_t ghs = -1;
    int set = 0;
    dm_capacity_row row;
    dm_db *db;
    dm_err *e;

    if (c->argc < 1) {
        return capacity_usage();
    }
    for (int i = 1; i < c->argc; i += 2) {
        const char *opt = c->argv[i], *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (val && strcmp(opt, "--ghs") == 0 && ledger_int_arg(val, &ghs) && ghs >= 0) {
            continue;
        }
        if (val && strcmp(opt, "--note") == 0) {
            note = val;
            continue;
        }
        return capacity_usage();
    }
    if (strcmp(c->argv[0], "show") != 0 && strcmp(c->argv[0], "set") != 0 &&
        strcmp(c->argv[0], "ensure") != 0) {
        return capacity_usage();
    }
    if ((strcmp(c->argv[0], "show") == 0) != (ghs < 0)) {
        return capacity_usage();
    }
    e = open_migrated(c, &db);
    if (e) {
        return fail(e);
    }
    if (strcmp(c->argv[0], "show") == 0) {
        return capacity_show(c, db);
    }
    if (strcmp(c->argv[0], "set") == 0) {
        e = dm_capacity_set(db, c->pool, 0, NULL, ghs, note, &row);
        set = 1;
    } else {
        e = dm_capacity_ensure(db, c->pool, ghs, note ? note : "demo capacity", &set);
    }
    if (e) {
        return fail(e);
    }
    printf(set ? "capacity: %" APR_INT64_T_FMT " GH/s recorded\n"
               : "capacity: already recorded, nothing changed (wanted %" APR_INT64_T_FMT " GH/s)\n",
           (apr_int64_t)ghs);
    return EXIT_OK;
}

/* ---- commissions ---- */

/* `commissions release [--now UNIX]`: moves due held commissions to the
 * wallets (the cron issue schedules it). --now pretends the clock says
 * so, for tests and for catching up after downtime. */
static int cmd_commissions(cli *c)
{
    dm_db *db;
    int64_t now = dm_now(), released = 0;
    dm_err *e;

    if (c->argc < 1 || strcmp(c->argv[0], "release") != 0 ||
        (c->argc != 1 && !(c->argc == 3 && strcmp(c->argv[1], "--now") == 0 &&
                           ledger_int_arg(c->argv[2], &now) && now > 0))) {
        fprintf(stderr, "usage: deepminectl commissions release [--now UNIX-SECONDS]\n");
        return EXIT_USAGE;
    }
    e = open_migrated(c, &db);
    if (!e) {
        e = dm_commission_release_due(db, c->pool, now, &released);
    }
    if (e) {
        return fail(e);
    }
    printf("commissions release: %" APR_INT64_T_FMT " commission(s) released\n",
           (apr_int64_t)released);
    return EXIT_OK;
}

/* ---- jobs ---- */

static int jobs_usage(void)
{
    fprintf(stderr, "usage: deepminectl jobs list\n"
                    "       deepminectl jobs run <job> [--period RFC3339|UNIX] [--force]\n");
    return EXIT_USAGE;
}

static const char *sched_text(apr_pool_t *p, const dm_job_def *d)
{
    switch (d->sched) {
    case DM_SCHED_HOURLY:
        return "hourly";
    case DM_SCHED_INTERVAL:
        return apr_psprintf(p, "every %ds", d->interval_s);
    case DM_SCHED_MANUAL:
        break;
    }
    return "manual";
}

static int jobs_list(cli *c, dm_db *db, const dm_job_env *env)
{
    int64_t now = dm_now();

    printf("%-20s %-12s %-22s %s\n", "job", "schedule", "next run", "last run");
    for (const dm_job_def *d = dm_jobs_table(); d->name; d++) {
        int64_t next = 0;
        dm_stmt *st;
        int row = 0;
        const char *last = "-";
        dm_err *e;

        if (d->test_only && !c->test_mode) {
            continue;
        }
        e = dm_job_next_run(db, c->pool, env, d, now, &next);
        if (!e) {
            e = dm_db_prepare(db, c->pool,
                              "SELECT period, status, attempts FROM job_runs WHERE job = ? "
                              "ORDER BY period_start DESC, id DESC LIMIT 1",
                              &st);
        }
        if (e) {
            return fail(e);
        }
        dm_stmt_bind_text(st, 1, d->name, strlen(d->name));
        e = dm_stmt_step(st, c->pool, &row);
        if (!e && row) {
            last = apr_psprintf(c->pool, "%s %s (attempt %" APR_INT64_T_FMT ")",
                                dm_stmt_text(st, 0, NULL), dm_stmt_text(st, 1, NULL),
                                (apr_int64_t)dm_stmt_int64(st, 2));
        }
        dm_stmt_done(st);
        if (e) {
            return fail(e);
        }
        printf("%-20s %-12s %-22s %s\n", d->name, sched_text(c->pool, d),
               next ? dm_json_time(c->pool, next) : "-", last);
    }
    return EXIT_OK;
}

/* `jobs list | run <job> [--period P] [--force]`: the same runner and lease
 * as the daemon, so running a job by hand while the daemon runs it is safe
 * (one of them is told "busy"). Jobs that need plugins (mail) run only in
 * the daemon. */
static int cmd_jobs(cli *c)
{
    dm_job_env env;
    dm_db *db;
    dm_err *e;
    const dm_job_def *def;
    int64_t period = 0;
    int force = 0;
    dm_job_outcome outcome;
    dm_job_run_opts o;
    const char *delay = getenv("DEEPMINE_ACCRUAL_DELAY");

    if (c->argc < 1) {
        return jobs_usage();
    }
    memset(&env, 0, sizeof(env));
    env.database = c->db_path;
    env.accrual_delay = delay && *delay ? (int)strtol(delay, NULL, 10) : 120;
    env.test_mode = c->test_mode;
    if (strcmp(c->argv[0], "list") == 0) {
        if (c->argc != 1) {
            return jobs_usage();
        }
        e = open_migrated(c, &db);
        return e ? fail(e) : jobs_list(c, db, &env);
    }
    if (strcmp(c->argv[0], "run") != 0 || c->argc < 2) {
        return jobs_usage();
    }
    def = dm_job_find(c->argv[1], c->test_mode);
    if (!def) {
        fprintf(stderr, "deepminectl: no job named %s (see `deepminectl jobs list`)\n", c->argv[1]);
        return EXIT_USAGE;
    }
    for (int i = 2; i < c->argc; i++) {
        if (strcmp(c->argv[i], "--force") == 0) {
            force = 1;
        } else if (strcmp(c->argv[i], "--period") == 0 && i + 1 < c->argc) {
            if (dm_json_parse_time(c->pool, "period", c->argv[++i], &period)) {
                fprintf(stderr, "deepminectl: --period takes an RFC 3339 time or Unix seconds\n");
                return EXIT_USAGE;
            }
        } else {
            return jobs_usage();
        }
    }
    if (!period) {
        period = dm_job_default_period(&env, def, dm_now());
    } else if (def->sched == DM_SCHED_HOURLY) {
        period = dm_hour_floor(period);
    } else if (def->sched == DM_SCHED_INTERVAL) {
        period -= period % def->interval_s;
    }
    e = open_migrated(c, &db);
    if (e) {
        return fail(e);
    }
    memset(&o, 0, sizeof(o));
    o.holder = dm_job_holder(c->pool);
    o.force = force;
    e = dm_job_run(db, c->pool, &env, def, period, &o, &outcome);
    if (e) {
        return fail(e);
    }
    {
        dm_stmt *st;
        int row = 0;
        int64_t items = 0;
        const char *err = NULL;
        e = dm_db_prepare(db, c->pool,
                          "SELECT items, error FROM job_runs WHERE job = ? AND period = ?", &st);
        if (!e) {
            const char *pt = dm_json_time(c->pool, period);
            dm_stmt_bind_text(st, 1, def->name, strlen(def->name));
            dm_stmt_bind_text(st, 2, pt, strlen(pt));
            e = dm_stmt_step(st, c->pool, &row);
            if (!e && row) {
                items = dm_stmt_int64(st, 0);
                err = dm_stmt_dup_text(st, c->pool, 1);
            }
            dm_stmt_done(st);
        }
        printf("job %s period %s: %s, %" APR_INT64_T_FMT " item(s)%s%s\n", def->name,
               dm_json_time(c->pool, period), dm_job_outcome_name(outcome), (apr_int64_t)items,
               err ? ": " : "", err ? err : "");
    }
    switch (outcome) {
    case DM_JOB_RAN_OK:
    case DM_JOB_RAN_WAITING:
    case DM_JOB_ALREADY_DONE:
        return EXIT_OK;
    default:
        return EXIT_FAIL;
    }
}

/* ---- gen-contracts: bench populations of contracts ---- */

#define GENC_ROWS 500     /* rows per INSERT statement */
#define GENC_BATCH 100000 /* contracts per transaction */
#define GENC_ORDER_PARAMS 4
#define GENC_CONTRACT_PARAMS 6

typedef struct genc {
    dm_db *db;
    apr_pool_t *tmp; /* cleared after each chunk */
    int64_t count;
    const char *mode;
    int64_t started;
    dm_package pkg;
    apr_array_header_t *members; /* int64_t ids */
} genc;

/* One INSERT of `rows` orders (contracts == 0) or contracts: what every
 * row shares (the package's terms, the times) is in the text, the ids are
 * parameters; the text depends only on `rows` and those numbers. */
static const char *genc_sql(genc *g, int rows, int contracts)
{
    apr_array_header_t *parts = apr_array_make(g->tmp, 2 * rows + 1, sizeof(const char *));
    const char *row;

    if (contracts) {
        *(const char **)apr_array_push(parts) =
            "INSERT INTO contracts (id, order_id, user_id, package_id, name, yield_mode, "
            "hashrate_ghs, price_micros, daily_yield_micros, duration_days, currency, "
            "started_at, expires_at, status, fee_bp) VALUES ";
        row = apr_psprintf(g->tmp,
                           "(?, ?, ?, ?, ?, ?, %" APR_INT64_T_FMT ", %" APR_INT64_T_FMT
                           ", %" APR_INT64_T_FMT ", %" APR_INT64_T_FMT ", 'USD', %" APR_INT64_T_FMT
                           ", %" APR_INT64_T_FMT ", 'active', %" APR_INT64_T_FMT ")",
                           (apr_int64_t)g->pkg.hashrate_ghs, (apr_int64_t)g->pkg.price_micros,
                           (apr_int64_t)g->pkg.daily_yield_micros,
                           (apr_int64_t)g->pkg.duration_days, (apr_int64_t)g->started,
                           (apr_int64_t)(g->started + g->pkg.duration_days * 86400),
                           (apr_int64_t)g->pkg.fee_bp);
    } else {
        *(const char **)apr_array_push(parts) =
            "INSERT INTO orders (id, user_id, package_id, amount_micros, currency, status, "
            "gateway, created_at, paid_at, updated_at) VALUES ";
        row =
            apr_psprintf(g->tmp,
                         "(?, ?, ?, ?, 'USD', 'paid', 'balance', %" APR_INT64_T_FMT
                         ", %" APR_INT64_T_FMT ", %" APR_INT64_T_FMT ")",
                         (apr_int64_t)g->started, (apr_int64_t)g->started, (apr_int64_t)g->started);
    }
    for (int i = 0; i < rows; i++) {
        *(const char **)apr_array_push(parts) = i ? ", " : "";
        *(const char **)apr_array_push(parts) = row;
    }
    return apr_array_pstrcat(g->tmp, parts, 0);
}

/* `rows` orders and their contracts, the k-th for member k mod members. */
static dm_err *genc_chunk(genc *g, int64_t order_id, int64_t contract_id, int64_t k, int rows)
{
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_db_prepare(g->db, g->tmp, genc_sql(g, rows, 0), &st);

    if (e) {
        return e;
    }
    for (int j = 0; j < rows; j++) {
        int b = j * GENC_ORDER_PARAMS;
        dm_stmt_bind_int64(st, b + 1, order_id + j);
        dm_stmt_bind_int64(st, b + 2,
                           APR_ARRAY_IDX(g->members, (k + j) % g->members->nelts, int64_t));
        dm_stmt_bind_int64(st, b + 3, g->pkg.id);
        dm_stmt_bind_int64(st, b + 4, g->pkg.price_micros);
    }
    e = dm_stmt_step(st, g->tmp, &row);
    dm_stmt_done(st);
    if (!e) {
        e = dm_db_prepare(g->db, g->tmp, genc_sql(g, rows, 1), &st);
    }
    if (e) {
        return e;
    }
    for (int j = 0; j < rows; j++) {
        int b = j * GENC_CONTRACT_PARAMS;
        dm_stmt_bind_int64(st, b + 1, contract_id + j);
        dm_stmt_bind_int64(st, b + 2, order_id + j);
        dm_stmt_bind_int64(st, b + 3,
                           APR_ARRAY_IDX(g->members, (k + j) % g->members->nelts, int64_t));
        dm_stmt_bind_int64(st, b + 4, g->pkg.id);
        dm_stmt_bind_text(st, b + 5, g->pkg.name, strlen(g->pkg.name));
        dm_stmt_bind_text(st, b + 6, g->mode, strlen(g->mode));
    }
    e = dm_stmt_step(st, g->tmp, &row);
    dm_stmt_done(st);
    return e;
}

/* The package (the first active one of the mode) and the members. */
static dm_err *genc_prepare(genc *g, apr_pool_t *p)
{
    apr_array_header_t *pkgs = NULL;
    dm_stmt *st;
    int row = 0;
    dm_err *e = dm_catalogue_list(g->db, p, 1, &pkgs);

    for (int i = 0; !e && i < pkgs->nelts && !g->pkg.id; i++) {
        const dm_package *k = &APR_ARRAY_IDX(pkgs, i, dm_package);
        if (strcmp(k->yield_mode, g->mode) == 0 && strcmp(k->currency, "USD") == 0) {
            g->pkg = *k;
        }
    }
    if (!e && !g->pkg.id) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL,
                        "no active %s-yield package in USD (seed-demo has both)", g->mode);
    }
    if (!e) {
        e = dm_db_prepare(g->db, p, "SELECT id FROM users WHERE status = 'active' ORDER BY id",
                          &st);
    }
    if (e) {
        return e;
    }
    g->members = apr_array_make(p, 1024, sizeof(int64_t));
    while (!(e = dm_stmt_step(st, p, &row)) && row) {
        APR_ARRAY_PUSH(g->members, int64_t) = dm_stmt_int64(st, 0);
    }
    dm_stmt_done(st);
    if (!e && g->members->nelts == 0) {
        e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "no members: run gen-members first");
    }
    return e;
}

/* Every member who gets a contract has a wallet before the accrual runs,
 * as a member who bought one has (the accrual would make it otherwise,
 * which is not what the bench measures). Through the ledger, which alone
 * writes accounts. */
static dm_err *genc_wallets(genc *g, apr_pool_t *p)
{
    int64_t n = g->count < g->members->nelts ? g->count : g->members->nelts;
    dm_err *e = NULL;

    for (int64_t i = 0; !e && i < n; i += GENC_BATCH) {
        e = dm_db_begin(g->db, p);
        for (int64_t j = i; !e && j < i + GENC_BATCH && j < n; j++) {
            int64_t id = 0;
            e = dm_ledger_member_account(g->db, g->tmp, APR_ARRAY_IDX(g->members, j, int64_t),
                                         DM_ACCOUNT_WALLET, "USD", &id);
            if ((j & 1023) == 0) {
                apr_pool_clear(g->tmp);
            }
        }
        if (!e) {
            e = dm_db_commit(g->db, p);
        } else {
            dm_db_rollback(g->db);
        }
    }
    apr_pool_clear(g->tmp);
    return e;
}

static dm_err *genc_run(genc *g, apr_pool_t *p)
{
    dm_err *e = NULL;

    for (int64_t k = 0; !e && k < g->count;) {
        int64_t end = k + GENC_BATCH < g->count ? k + GENC_BATCH : g->count;
        int64_t orders = 0, contracts = 0;
        int found = 0;

        e = dm_db_begin(g->db, p);
        if (!e) {
            e = dm_db_query_int64(g->db, p, "SELECT COALESCE(MAX(id), 0) FROM orders", &orders,
                                  &found);
        }
        if (!e) {
            e = dm_db_query_int64(g->db, p, "SELECT COALESCE(MAX(id), 0) FROM contracts",
                                  &contracts, &found);
        }
        while (!e && k < end) {
            int rows = end - k < GENC_ROWS ? (int)(end - k) : GENC_ROWS;
            e = genc_chunk(g, orders + 1, contracts + 1, k, rows);
            orders += rows;
            contracts += rows;
            k += rows;
            apr_pool_clear(g->tmp);
        }
        if (!e) {
            e = dm_db_commit(g->db, p);
        } else {
            dm_db_rollback(g->db);
        }
    }
    return e;
}

static int genc_usage(void)
{
    fprintf(stderr, "usage: deepminectl gen-contracts --count N [--mode fixed|pool] "
                    "[--started RFC3339|UNIX]\n");
    return EXIT_USAGE;
}

/* `gen-contracts --count N`: N active contracts of the first active
 * package of the mode (default fixed), spread over the existing members
 * round-robin, started --started (default a day ago), each with its paid
 * order (bench data: no payment transfer, like the bench's SQL orders). */
static int cmd_gen_contracts(cli *c)
{
    genc g;
    dm_err *e;
    apr_time_t t0 = apr_time_now();

    memset(&g, 0, sizeof(g));
    g.mode = DM_YIELD_FIXED;
    g.started = dm_now() - 86400;
    for (int i = 0; i < c->argc; i += 2) {
        const char *opt = c->argv[i], *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!val) {
            return genc_usage();
        }
        if (strcmp(opt, "--count") == 0 && (g.count = gen_int_arg(val)) > 0) {
            continue;
        }
        if (strcmp(opt, "--mode") == 0 &&
            (strcmp(val, DM_YIELD_FIXED) == 0 || strcmp(val, DM_YIELD_POOL) == 0)) {
            g.mode = strcmp(val, DM_YIELD_POOL) == 0 ? DM_YIELD_POOL : DM_YIELD_FIXED;
            continue;
        }
        if (strcmp(opt, "--started") == 0 &&
            !dm_json_parse_time(c->pool, "started", val, &g.started)) {
            continue;
        }
        return genc_usage();
    }
    if (g.count <= 0) {
        return genc_usage();
    }
    e = open_migrated(c, &g.db);
    /* bench data: durability traded for speed, as gen-members */
    if (!e) {
        e = dm_db_exec(
            g.db, c->pool,
            "PRAGMA synchronous=OFF; PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY");
    }
    if (!e) {
        apr_pool_create(&g.tmp, c->pool);
        e = genc_prepare(&g, c->pool);
    }
    if (!e) {
        e = genc_wallets(&g, c->pool);
    }
    if (!e) {
        e = genc_run(&g, c->pool);
    }
    if (e) {
        return fail(e);
    }
    printf("gen-contracts: %" APR_INT64_T_FMT " %s-yield contract(s) of package %" APR_INT64_T_FMT
           " (%s) over %d member(s), started %s, in %.2f s\n",
           (apr_int64_t)g.count, g.mode, (apr_int64_t)g.pkg.id, g.pkg.name, g.members->nelts,
           dm_json_time(c->pool, g.started), (double)(apr_time_now() - t0) / APR_USEC_PER_SEC);
    return EXIT_OK;
}

/* ---- pool payouts ---- */

static int payouts_usage(void)
{
    fprintf(stderr, "usage: deepminectl pool-payouts record --kind hour|day --period "
                    "RFC3339|UNIX --amount MICROS [--note TEXT]\n"
                    "       deepminectl pool-payouts list\n");
    return EXIT_USAGE;
}

static void payout_line(apr_pool_t *p, const dm_pool_payout *r)
{
    printf("%-6" APR_INT64_T_FMT " %-4s %-20s %14" APR_INT64_T_FMT " %s", (apr_int64_t)r->id,
           r->period_kind, dm_json_time(p, r->period_start), (apr_int64_t)r->amount_micros,
           r->currency);
    if (r->distributed_at) {
        printf("  distributed: credits %" APR_INT64_T_FMT " + fee %" APR_INT64_T_FMT
               " + remainder %" APR_INT64_T_FMT " over %" APR_INT64_T_FMT " contract(s)%s\n",
               (apr_int64_t)r->credits_micros, (apr_int64_t)r->fee_micros,
               (apr_int64_t)r->remainder_micros, (apr_int64_t)r->contracts,
               r->credits_micros + r->fee_micros + r->remainder_micros == r->amount_micros
                   ? ""
                   : "  DOES NOT BALANCE");
    } else {
        printf("  pending\n");
    }
}

/* `record` is audited as the console's; the daemon is asked to run the
 * pool-accrual period that distributes it (docs/operations.md). */
static int cmd_pool_payouts(cli *c)
{
    const char *kind = NULL, *note = NULL;
    int64_t period = 0, amount = 0;
    dm_pool_payout r;
    dm_db *db;
    dm_err *e;

    if (c->argc == 1 && strcmp(c->argv[0], "list") == 0) {
        apr_array_header_t *rows = NULL;
        int64_t next = 0;
        e = open_migrated(c, &db);
        if (!e) {
            e = dm_pool_payouts_list(db, c->pool, 0, DM_POOL_PAGE_MAX, &rows, &next);
        }
        if (e) {
            return fail(e);
        }
        for (int i = 0; i < rows->nelts; i++) {
            payout_line(c->pool, &APR_ARRAY_IDX(rows, i, dm_pool_payout));
        }
        return EXIT_OK;
    }
    if (c->argc < 1 || strcmp(c->argv[0], "record") != 0) {
        return payouts_usage();
    }
    for (int i = 1; i < c->argc; i += 2) {
        const char *opt = c->argv[i], *val = i + 1 < c->argc ? c->argv[i + 1] : NULL;
        if (!val) {
            return payouts_usage();
        }
        if (strcmp(opt, "--kind") == 0) {
            kind = val;
        } else if (strcmp(opt, "--note") == 0) {
            note = val;
        } else if (!(strcmp(opt, "--period") == 0 &&
                     !dm_json_parse_time(c->pool, "period", val, &period)) &&
                   !(strcmp(opt, "--amount") == 0 && ledger_int_arg(val, &amount))) {
            return payouts_usage();
        }
    }
    if (!kind || !period || !amount) {
        return payouts_usage();
    }
    e = open_migrated(c, &db);
    if (!e) {
        e = dm_pool_payout_record(db, c->pool, 0, NULL, kind, period, amount, DM_LEDGER_CURRENCY,
                                  note, &r);
    }
    if (e) {
        return fail(e);
    }
    printf("pool payout %" APR_INT64_T_FMT " recorded: %s of %s, %" APR_INT64_T_FMT
           " micros %s; the pool-accrual job distributes it\n",
           (apr_int64_t)r.id, r.period_kind, dm_json_time(c->pool, r.period_start),
           (apr_int64_t)r.amount_micros, r.currency);
    return EXIT_OK;
}

static int cmd_help(cli *c);

static const struct command {
    const char *name;
    const char *args;
    const char *help;
    command_fn *fn;
} commands[] = {
    {"migrate", "", "apply the pending schema migrations", cmd_migrate},
    {"status", "", "schema version and counts; exit 1 if migrations are pending", cmd_status},
    {"seed-demo", "", "migrate, then add the 6-package demo catalogue if there is none",
     cmd_seed_demo},
    {"keygen", "<path>", "create a new secret key file (32 random bytes, mode 0600)", cmd_keygen},
    {"gen-members", "--count N --shape S",
     "add N test members gen<id>@example.test, S random|chain|star; also --seed S, --under ID, "
     "--per-row (docs/operations.md)",
     cmd_gen_members},
    {"gen-contracts", "--count N [--mode M]",
     "add N active bench contracts (mode fixed or pool, of the first such active package) over "
     "the existing members, with wallets; also --started T (default a day ago)",
     cmd_gen_contracts},
    {"pool-payouts", "record --kind K --period P --amount M | list",
     "the mining pool's payout for an hour or a day (audited; the pool-accrual job shares it "
     "out), and the payouts with their reconciliation",
     cmd_pool_payouts},
    {"staff", "create --email E --role R | list | ensure-owner --email E",
     "staff accounts (roles owner, finance, support, kyc); create prints a one-time password",
     cmd_staff},
    {"import-users", "<file.csv>",
     "import members from the old platform (email,bcrypt_hash,referral_code,referrer_code,"
     "created_at); all or nothing",
     cmd_import_users},
    {"ledger", "verify | show --user ID",
     "verify: recompute every balance from the transfers (exit 1 names the first bad account); "
     "show: a member's wallet and held balances",
     cmd_ledger},
    {"commissions", "release",
     "move held commissions whose hold period is over to the wallets (skips flagged pairs)",
     cmd_commissions},
    {"capacity", "show | set --ghs N [--note T] | ensure --ghs N",
     "the hash power owned or leased, in GH/s (nothing can be sold without one); ensure sets it "
     "only when none is recorded",
     cmd_capacity},
    {"jobs", "list | run <job> [--period P] [--force]",
     "scheduled jobs: list shows each job's schedule, next and last run; run runs one period "
     "now through the same lease as the cron daemon (--force retries a dead period)",
     cmd_jobs},
    {"help", "", "this text", cmd_help},
};

static int cmd_help(cli *c)
{
    (void)c;
    printf("usage: deepminectl [--db PATH] [--clock-file PATH] [--test-mode] <command> [args]\n\n"
           "The database is --db, else $DEEPMINE_DB, else ./var/deepmine.db.\n"
           "--clock-file (tests): the platform's time is read from that file (RFC 3339).\n"
           "--test-mode (tests): test-only jobs can be run.\n\n"
           "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        printf("  %-10s %-8s %s\n", commands[i].name, commands[i].args, commands[i].help);
    }
    printf("\nexit codes: 0 ok, 1 failed, 2 usage\n");
    return EXIT_OK;
}

int main(int argc, const char *const *argv)
{
    cli c;
    int i = 1;
    const char *env = getenv("DEEPMINE_DB");

    dm_db_global_init();
    if (apr_app_initialize(&argc, &argv, NULL) != APR_SUCCESS || sodium_init() < 0) {
        fprintf(stderr, "deepminectl: cannot initialise APR or libsodium\n");
        return EXIT_FAIL;
    }
    atexit(apr_terminate);
    memset(&c, 0, sizeof(c));
    apr_pool_create(&c.pool, NULL);
    c.db_path = (env && *env) ? env : "./var/deepmine.db";
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            c.db_path = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--db=", 5) == 0) {
            c.db_path = argv[i] + 5;
            i++;
        } else if (strcmp(argv[i], "--clock-file") == 0 && i + 1 < argc) {
            /* Tests: the platform's time from a file (see clock.h). */
            if (dm_clock_use_file(argv[i + 1]) != 0) {
                fprintf(stderr, "deepminectl: --clock-file path too long\n");
                return EXIT_USAGE;
            }
            i += 2;
        } else if (strcmp(argv[i], "--test-mode") == 0) {
            c.test_mode = 1;
            i++;
        } else if (strcmp(argv[i], "--help") == 0) {
            return cmd_help(&c);
        } else {
            fprintf(stderr, "deepminectl: unknown option %s (see `deepminectl help`)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        cmd_help(&c);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        if (strcmp(argv[i], commands[k].name) == 0) {
            c.argc = argc - i - 1;
            c.argv = argv + i + 1;
            /* commands whose args text is empty take no arguments */
            if (!commands[k].args[0] && c.argc != 0) {
                fprintf(stderr, "deepminectl: %s takes no arguments\n", commands[k].name);
                return EXIT_USAGE;
            }
            return commands[k].fn(&c);
        }
    }
    fprintf(stderr, "deepminectl: unknown command %s (see `deepminectl help`)\n", argv[i]);
    return EXIT_USAGE;
}
