/*
 * db_pg.c — the PostgreSQL driver behind db.h (see db_pg.h).
 *
 * Concurrency (docs/decisions.md): SQLite lets one writer in at a time
 * (BEGIN IMMEDIATE); every rule the domain code keeps — a wallet never
 * negative, a withdrawal spent once, one contract per paid order, each
 * contract-hour once, one lease holder — was written against that. So
 * here every transaction (dm_pg_begin) and every write outside one takes
 * the same transaction-level advisory lock first: writers run one at a
 * time, exactly as on SQLite, and since each READ COMMITTED statement
 * sees every commit made before it started, a writer that holds the lock
 * sees everything the writers before it did. Readers outside transactions
 * never wait (MVCC).
 *
 * SQLite aborts only the failing statement inside a transaction;
 * PostgreSQL aborts the whole transaction. Domain code that carries on
 * after a UNIQUE conflict (a new referral code, say) needs SQLite's
 * behaviour, so an INSERT inside a transaction runs behind a savepoint:
 * SAVEPOINT, the INSERT and RELEASE go in one pipeline (one round trip,
 * while the writers' lock is held); only a failed INSERT costs a second
 * (ROLLBACK TO the savepoint).
 *
 * Invariants: a statement's result is cleared by dm_pg_done; a statement
 * is prepared on this connection when its `gen` equals the connection's
 * (a reset after a lost connection bumps it, so all are prepared again).
 *
 * libpq is loaded (dlopen) the first time a connection string is read,
 * not linked: a server on SQLite never maps it nor the libraries it pulls
 * in (docs/decisions.md "Memory, fifth round"). Every libpq call goes
 * through the table pq, filled by pq_ready; the functions that take a
 * dm_pg run only after dm_pg_open has called it.
 */
#include "store/db_pg.h"

#include <apr_strings.h>
#include <ctype.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dynlib.h"
#include "base/log.h"
#include "base/metrics.h"

/* The one lock every writer takes ("dmine"): see the comment above. */
#define WRITER_LOCK_SQL "SELECT pg_advisory_xact_lock(435459926629)"
#define STATEMENT_TIMEOUT_MS 60000

/* PostgreSQL type oids (pg_type.h is a server header) */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_NUMERIC 1700
#define OID_BPCHAR 1042
#define OID_VARCHAR 1043
#define OID_NAME 19

struct dm_pg {
    PGconn *conn;
    apr_pool_t *pool;
    const char *display;
    int busy_ms;
    int readonly;
    int gen;       /* bumped by every reset: statements are prepared again */
    int next_name; /* statement names s1, s2, ... */
    int in_txn;
    int64_t changes;
    int64_t last_id; /* what the last INSERT ... RETURNING id returned */
};

/* A parameter's buffer up to this size is kept after dm_pg_done. */
#define DONE_KEEP 256

struct dm_pg_stmt {
    dm_pg *pg;
    const char *sql;  /* as the domain wrote it */
    const char *text; /* as PostgreSQL gets it */
    char name[16];
    int gen;
    int nparams;
    int is_write; /* not a SELECT: outside a transaction it takes the lock */
    int needs_sp; /* an INSERT with no ON CONFLICT: behind a savepoint */
    char **vals;  /* what libpq gets: bufs[i], or NULL for a NULL */
    char **bufs;  /* malloc'd, per parameter; kept from one run to the next */
    size_t *caps; /* of bufs */
    Oid *types;   /* the bound types at the first step (prepare) */
    PGresult *res;
    int row, nrows;
};

/* ---- libpq, loaded on first use ---- */

#define DM_LIBPQ_SONAME "libpq.so.5"

/* The libpq functions this file calls, and the table that holds them. */
#define PQ_FUNCTIONS(X)                                                                            \
    X(PQclear)                                                                                     \
    X(PQcmdStatus)                                                                                 \
    X(PQcmdTuples)                                                                                 \
    X(PQconnectdbParams)                                                                           \
    X(PQconninfoFree)                                                                              \
    X(PQconninfoParse)                                                                             \
    X(PQenterPipelineMode)                                                                         \
    X(PQerrorMessage)                                                                              \
    X(PQexec)                                                                                      \
    X(PQexecPrepared)                                                                              \
    X(PQexitPipelineMode)                                                                          \
    X(PQfinish)                                                                                    \
    X(PQfname)                                                                                     \
    X(PQfnumber)                                                                                   \
    X(PQfreemem)                                                                                   \
    X(PQftype)                                                                                     \
    X(PQgetResult)                                                                                 \
    X(PQgetisnull)                                                                                 \
    X(PQgetlength)                                                                                 \
    X(PQgetvalue)                                                                                  \
    X(PQnfields)                                                                                   \
    X(PQntuples)                                                                                   \
    X(PQpipelineSync)                                                                              \
    X(PQprepare)                                                                                   \
    X(PQreset)                                                                                     \
    X(PQresultErrorField)                                                                          \
    X(PQresultErrorMessage)                                                                        \
    X(PQresultStatus)                                                                              \
    X(PQsendQueryParams)                                                                           \
    X(PQsendQueryPrepared)                                                                         \
    X(PQsetNoticeProcessor)                                                                        \
    X(PQstatus)                                                                                    \
    X(PQtransactionStatus)

static struct {
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f names a member */
#define PQ_MEMBER(f) __typeof__(f) *f;
    PQ_FUNCTIONS(PQ_MEMBER)
#undef PQ_MEMBER
} pq;

static pthread_once_t pq_once = PTHREAD_ONCE_INIT;
static char pq_error[256]; /* why libpq cannot be used; empty when it can */

static const char *const pq_names[] = {PQ_FUNCTIONS(DM_DYNLIB_NAME)};

static void pq_load(void)
{
    void *slot[DM_DYNLIB_COUNT(pq_names)];
    size_t i = 0;

    if (!dm_dynlib_load(DM_LIBPQ_SONAME, pq_names, slot, DM_DYNLIB_COUNT(pq_names), pq_error,
                        sizeof(pq_error))) {
        dm_log(DM_L_ERR, "DM01901: database: %s: PostgreSQL cannot be used", pq_error);
        return;
    }
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f names a member */
#define PQ_SET(f) pq.f = (__typeof__(pq.f))slot[i++];
    PQ_FUNCTIONS(PQ_SET)
#undef PQ_SET
}

/* Loads libpq once per process (thread-safe); the error says why it
 * cannot be used. */
static dm_err *pq_ready(apr_pool_t *p)
{
    pthread_once(&pq_once, pq_load);
    if (pq_error[0]) {
        return dm_err_make(p, DM_E_UNAVAILABLE, "database", "PostgreSQL: %s", pq_error);
    }
    return NULL;
}

/* ---- text ---- */

int dm_pg_is_conninfo(const char *s)
{
    const char *eq, *sl;

    if (!s) {
        return 0;
    }
    if (strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0) {
        return 1;
    }
    eq = strchr(s, '=');
    sl = strchr(s, '/');
    return eq && (!sl || eq < sl);
}

/* SQLite-only text the domain SQL uses, as PostgreSQL says it. */
static const struct {
    const char *from, *to;
} rewrites[] = {
    {"users_fts MATCH ?",
     "dm_fts_match(users_fts.email, users_fts.name, users_fts.referral_code, ?)"},
};

static const char *apply_rewrites(apr_pool_t *p, const char *sql)
{
    const char *at;

    /* SQLite's index hint "INDEXED BY name": PostgreSQL plans by itself */
    while ((at = strstr(sql, " INDEXED BY ")) != NULL) {
        const char *end = at + 12;
        while (isalnum((unsigned char)*end) || *end == '_') {
            end++;
        }
        sql = apr_pstrcat(p, apr_pstrndup(p, sql, (apr_size_t)(at - sql)), end, NULL);
    }
    for (size_t i = 0; i < sizeof(rewrites) / sizeof(rewrites[0]); i++) {
        const char *at = strstr(sql, rewrites[i].from);
        if (at) {
            sql = apr_pstrcat(p, apr_pstrndup(p, sql, (apr_size_t)(at - sql)), rewrites[i].to,
                              at + strlen(rewrites[i].from), NULL);
        }
    }
    return sql;
}

const char *dm_pg_translate(apr_pool_t *p, const char *sql, int *nparams)
{
    const char *s = apply_rewrites(p, sql);
    size_t n = strlen(s);
    /* each '?' becomes at most '$' and 5 digits */
    char *out = apr_palloc(p, n * 6 + 1), *w = out;
    int auto_n = 0, max_n = 0;

    while (*s) {
        if (*s == '\'' || *s == '"') {
            char q = *s;
            *w++ = *s++;
            while (*s) {
                if (*s == q && s[1] == q) {
                    *w++ = *s++;
                    *w++ = *s++;
                } else if (*s == q) {
                    *w++ = *s++;
                    break;
                } else {
                    *w++ = *s++;
                }
            }
        } else if (s[0] == '-' && s[1] == '-') {
            while (*s && *s != '\n') {
                *w++ = *s++;
            }
        } else if (s[0] == '/' && s[1] == '*') {
            const char *end = strstr(s + 2, "*/");
            size_t len = end ? (size_t)(end + 2 - s) : strlen(s);
            memcpy(w, s, len);
            w += len;
            s += len;
        } else if (*s == '?') {
            int num;
            s++;
            if (isdigit((unsigned char)*s)) {
                num = 0;
                while (isdigit((unsigned char)*s) && num < 100000) {
                    num = num * 10 + (*s++ - '0');
                }
                if (num > auto_n) {
                    auto_n = num;
                }
            } else {
                num = ++auto_n;
            }
            if (num > max_n) {
                max_n = num;
            }
            w += sprintf(w, "$%d", num);
        } else {
            *w++ = *s++;
        }
    }
    *w = '\0';
    *nparams = max_n;
    return out;
}

/* ---- errors ---- */

dm_code dm_pg_err_code(const char *state)
{
    if (!state || strlen(state) != 5) {
        return DM_E_UNAVAILABLE; /* no SQLSTATE: libpq lost the server */
    }
    if (strcmp(state, "23505") == 0) {
        return DM_E_CONFLICT;
    }
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 || strcmp(state, "55P03") == 0 ||
        strcmp(state, "57014") == 0 || strncmp(state, "08", 2) == 0 ||
        strncmp(state, "57P", 3) == 0 || strcmp(state, "53100") == 0 ||
        strcmp(state, "53200") == 0 || strcmp(state, "53300") == 0 || strcmp(state, "58030") == 0) {
        return DM_E_UNAVAILABLE;
    }
    return DM_E_INTERNAL;
}

static const char *first_line(apr_pool_t *p, const char *msg)
{
    const char *nl = msg ? strchr(msg, '\n') : NULL;
    return msg ? (nl ? apr_pstrndup(p, msg, (apr_size_t)(nl - msg)) : msg) : "";
}

/* The dm_err for a failed result (res may be NULL: then the connection's). */
static dm_err *pg_err(apr_pool_t *p, dm_pg *pg, const PGresult *res, const char *what)
{
    const char *state = res ? pq.PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg =
        first_line(p, res ? pq.PQresultErrorMessage(res) : pq.PQerrorMessage(pg->conn));
    dm_code code = dm_pg_err_code(state);

    if (code == DM_E_CONFLICT) {
        return dm_err_make(p, DM_E_CONFLICT, NULL, "%s: already exists", what);
    }
    if (state && (strcmp(state, "53100") == 0 || strcmp(state, "58030") == 0)) {
        dm_db_storage_failed(state[1] == '3' ? "full" : "io", msg);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           state[1] == '3' ? "the database's storage is full; try again later"
                                           : "the database's storage failed to read or write; "
                                             "try again later");
    }
    if (code == DM_E_UNAVAILABLE) {
        if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0 ||
                      strcmp(state, "55P03") == 0 || strcmp(state, "57014") == 0)) {
            return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "database busy, try again (%s: %s)", what,
                               msg);
        }
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "database unavailable, try again (%s: %s)",
                           what, msg);
    }
    return dm_err_make(p, DM_E_INTERNAL, NULL, "database error in %s: %s", what, msg);
}

/* ---- connection ---- */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static apr_status_t pg_cleanup(void *data)
{
    dm_pg *pg = data;

    if (pg->conn) {
        pq.PQfinish(pg->conn);
        pg->conn = NULL;
    }
    return APR_SUCCESS;
}

static dm_err *session_setup(dm_pg *pg, apr_pool_t *p)
{
    return dm_pg_exec(pg, p,
                      apr_psprintf(p,
                                   "SET statement_timeout = %d; SET lock_timeout = %d; "
                                   "SET client_min_messages = warning; SET TIME ZONE 'UTC'%s",
                                   STATEMENT_TIMEOUT_MS, pg->busy_ms,
                                   pg->readonly ? "; SET default_transaction_read_only = on" : ""));
}

/* A secret given as env:NAME or file:PATH, else the text itself. */
static dm_err *resolve_secret(apr_pool_t *p, const char *v, const char **out)
{
    if (strncmp(v, "env:", 4) == 0) {
        const char *x = getenv(v + 4);
        if (!x) {
            return dm_err_make(p, DM_E_INVALID, "database",
                               "the database password's variable %s is not set", v + 4);
        }
        *out = apr_pstrdup(p, x);
        return NULL;
    }
    if (strncmp(v, "file:", 5) == 0) {
        FILE *f = fopen(v + 5, "r");
        char buf[1024];
        size_t n;
        if (!f) {
            return dm_err_make(p, DM_E_INVALID, "database",
                               "cannot read the database password file %s", v + 5);
        }
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
            n--;
        }
        *out = apr_pstrmemdup(p, buf, n);
        return NULL;
    }
    *out = v;
    return NULL;
}

dm_err *dm_pg_open(apr_pool_t *p, const char *conninfo, const dm_db_options *opt, dm_pg **out)
{
    dm_pg *pg = apr_pcalloc(p, sizeof(*pg));
    char *perr = NULL;
    PQconninfoOption *opts, *o;
    const char **keys, **vals;
    const char *display = "";
    int n = 0, i = 0;
    dm_err *e = pq_ready(p);

    if (e) {
        return e;
    }
    opts = pq.PQconninfoParse(conninfo, &perr);
    if (!opts) {
        e = dm_err_make(p, DM_E_INVALID, "database", "bad PostgreSQL connection string: %s",
                        first_line(p, perr ? perr : "out of memory"));
        pq.PQfreemem(perr);
        return e;
    }
    for (o = opts; o->keyword; o++) {
        n++;
    }
    keys = apr_pcalloc(p, sizeof(*keys) * (size_t)(n + 1));
    vals = apr_pcalloc(p, sizeof(*vals) * (size_t)(n + 1));
    for (o = opts; o->keyword && !e; o++) {
        if (!o->val) {
            continue;
        }
        keys[i] = apr_pstrdup(p, o->keyword);
        if (strcmp(o->keyword, "password") == 0) {
            e = resolve_secret(p, o->val, &vals[i]);
        } else {
            vals[i] = apr_pstrdup(p, o->val);
            display =
                apr_psprintf(p, "%s%s%s=%s", display, *display ? " " : "", o->keyword, o->val);
        }
        i++;
    }
    pq.PQconninfoFree(opts);
    if (e) {
        return e;
    }
    pg->pool = p;
    pg->display = display;
    pg->busy_ms = (opt && opt->busy_timeout_ms) ? opt->busy_timeout_ms : 5000;
    pg->readonly = opt && opt->readonly;
    pg->gen = 1;
    pg->conn = pq.PQconnectdbParams(keys, vals, 0);
    if (!pg->conn || pq.PQstatus(pg->conn) != CONNECTION_OK) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "cannot connect to PostgreSQL (%s): %s", display,
                        first_line(p, pg->conn ? pq.PQerrorMessage(pg->conn) : "out of memory"));
        if (pg->conn) {
            pq.PQfinish(pg->conn);
        }
        return e;
    }
    apr_pool_cleanup_register(p, pg, pg_cleanup, apr_pool_cleanup_null);
    pq.PQsetNoticeProcessor(pg->conn, quiet_notices, NULL);
    e = session_setup(pg, p);
    if (e) {
        dm_pg_close(pg);
        return e;
    }
    *out = pg;
    return NULL;
}

/* A libpq value quoted for a key=value string. */
static const char *quote_value(apr_pool_t *p, const char *v)
{
    size_t n = strlen(v);
    char *out = apr_palloc(p, n * 2 + 3), *o = out;

    *o++ = '\'';
    for (; *v; v++) {
        if (*v == '\'' || *v == '\\') {
            *o++ = '\\';
        }
        *o++ = *v;
    }
    *o++ = '\'';
    *o = '\0';
    return out;
}

dm_err *dm_db_pg_conninfo(apr_pool_t *p, const char *conninfo, const char *dbname, int for_tool,
                          const char **out, const char **password)
{
    char *perr = NULL;
    PQconninfoOption *opts, *o;
    const char *s = "";
    dm_err *e = pq_ready(p);

    *password = NULL;
    if (e) {
        return e;
    }
    opts = pq.PQconninfoParse(conninfo, &perr);
    if (!opts) {
        e = dm_err_make(p, DM_E_INVALID, "database", "bad PostgreSQL connection string: %s",
                        first_line(p, perr ? perr : "out of memory"));
        pq.PQfreemem(perr);
        return e;
    }
    for (o = opts; o->keyword && !e; o++) {
        const char *v = o->val;
        if (strcmp(o->keyword, "dbname") == 0 && dbname) {
            v = dbname;
        }
        if (!v) {
            continue;
        }
        if (strcmp(o->keyword, "password") == 0 && for_tool) {
            e = resolve_secret(p, v, password);
            continue;
        }
        s = apr_pstrcat(p, s, *s ? " " : "", o->keyword, "=", quote_value(p, v), NULL);
    }
    pq.PQconninfoFree(opts);
    *out = s;
    return e;
}

const char *dm_pg_redact(apr_pool_t *p, const char *conninfo)
{
    PQconninfoOption *opts, *o;
    const char *out = "";

    if (pq_ready(p)) {
        return "(a PostgreSQL connection string: libpq cannot be loaded)";
    }
    opts = pq.PQconninfoParse(conninfo, NULL);
    if (!opts) {
        return "(a PostgreSQL connection string libpq cannot read)";
    }
    for (o = opts; o->keyword; o++) {
        if (o->val && strcmp(o->keyword, "password") != 0) {
            out = apr_psprintf(p, "%s%s%s=%s", out, *out ? " " : "", o->keyword, o->val);
        }
    }
    pq.PQconninfoFree(opts);
    return out;
}

const char *dm_pg_sidecar_path(apr_pool_t *p, const char *conninfo, const char *suffix)
{
    PQconninfoOption *opts, *o;
    const char *host = NULL, *dbname = NULL, *out = NULL;

    if (pq_ready(p)) {
        return NULL;
    }
    opts = pq.PQconninfoParse(conninfo, NULL);
    for (o = opts; o && o->keyword; o++) {
        if (o->val && strcmp(o->keyword, "host") == 0) {
            host = apr_pstrdup(p, o->val);
        } else if (o->val && strcmp(o->keyword, "dbname") == 0) {
            dbname = apr_pstrdup(p, o->val);
        }
    }
    pq.PQconninfoFree(opts);
    if (host && *host == '/' && dbname && !strchr(dbname, '/')) {
        out = apr_pstrcat(p, host, "/", dbname, suffix, NULL);
    }
    return out;
}

void dm_pg_close(dm_pg *pg)
{
    if (pg) {
        apr_pool_cleanup_run(pg->pool, pg, pg_cleanup);
    }
}

const char *dm_pg_display(const dm_pg *pg)
{
    return pg->display;
}

/* After a lost connection, outside a transaction: connect again (once).
 * 1 when the connection is usable again. */
static int reconnect(dm_pg *pg)
{
    apr_pool_t *tmp;
    int ok;

    if (pq.PQstatus(pg->conn) == CONNECTION_OK) {
        return 1;
    }
    pq.PQreset(pg->conn);
    pg->gen++;
    pg->in_txn = 0;
    if (pq.PQstatus(pg->conn) != CONNECTION_OK) {
        dm_log(DM_L_ERR,
               "DM01700: lost the PostgreSQL connection (%s) and could not connect "
               "again: %s",
               pg->display, pq.PQerrorMessage(pg->conn));
        return 0;
    }
    pq.PQsetNoticeProcessor(pg->conn, quiet_notices, NULL);
    if (apr_pool_create(&tmp, NULL) != APR_SUCCESS) {
        return 0;
    }
    ok = session_setup(pg, tmp) == NULL;
    apr_pool_destroy(tmp);
    dm_log(DM_L_NOTICE, "DM01701: connected to PostgreSQL (%s) again after a lost connection",
           pg->display);
    return ok;
}

void dm_pg_set_busy_timeout(dm_pg *pg, int ms)
{
    char sql[64];
    PGresult *r;

    pg->busy_ms = ms;
    snprintf(sql, sizeof(sql), "SET lock_timeout = %d", ms);
    r = pq.PQexec(pg->conn, sql);
    pq.PQclear(r);
}

/* Runs simple-protocol text (several statements allowed). */
static dm_err *simple(dm_pg *pg, apr_pool_t *p, const char *sql, const char *what)
{
    PGresult *r = pq.PQexec(pg->conn, sql);
    ExecStatusType s = r ? pq.PQresultStatus(r) : PGRES_FATAL_ERROR;
    dm_err *e = NULL;

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && s != PGRES_EMPTY_QUERY) {
        e = pg_err(p, pg, r, what);
    }
    pq.PQclear(r);
    return e;
}

dm_err *dm_pg_exec(dm_pg *pg, apr_pool_t *p, const char *sql)
{
    dm_err *e;

    if (!pg->in_txn && !reconnect(pg)) {
        return pg_err(p, pg, NULL, "exec");
    }
    e = simple(pg, p, sql, apr_pstrndup(p, sql, 40));
    if (e && e->code == DM_E_INTERNAL) {
        e->message = apr_psprintf(p, "database error: %s", e->message);
    }
    return e;
}

dm_err *dm_pg_bulk_load_mode(dm_pg *pg, apr_pool_t *p)
{
    return simple(pg, p, "SET synchronous_commit = off", "bulk load mode");
}

dm_err *dm_pg_begin(dm_pg *pg, apr_pool_t *p)
{
    int64_t t0 = dm_metrics_now_us();
    dm_err *e = NULL;

    if (!pg->in_txn && !reconnect(pg)) {
        return pg_err(p, pg, NULL, "begin");
    }
    e = simple(pg, p, "BEGIN; " WRITER_LOCK_SQL, "begin");
    dm_metrics_observe_us(DM_M_DB_WRITE_LOCK_WAIT, dm_metrics_now_us() - t0, DM_ML_END);
    if (e) {
        if (strncmp(e->message, "database busy", 13) == 0) {
            dm_metrics_inc(DM_M_DB_WRITE_LOCK_TIMEOUT, DM_ML_END);
        }
        pq.PQclear(pq.PQexec(pg->conn, "ROLLBACK"));
        return e;
    }
    pg->in_txn = 1;
    return NULL;
}

dm_err *dm_pg_commit(dm_pg *pg, apr_pool_t *p)
{
    PGresult *r = pq.PQexec(pg->conn, "COMMIT");
    dm_err *e = NULL;

    /* COMMIT of a failed transaction answers ROLLBACK: it did not commit */
    if (!r || pq.PQresultStatus(r) != PGRES_COMMAND_OK) {
        e = pg_err(p, pg, r, "commit");
    } else if (strcmp(pq.PQcmdStatus(r), "COMMIT") != 0) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL,
                        "database error in commit: the transaction had failed and was rolled "
                        "back");
    }
    pq.PQclear(r);
    pg->in_txn = 0;
    return e;
}

void dm_pg_rollback(dm_pg *pg)
{
    if (pq.PQtransactionStatus(pg->conn) != PQTRANS_IDLE &&
        pq.PQtransactionStatus(pg->conn) != PQTRANS_UNKNOWN) {
        pq.PQclear(pq.PQexec(pg->conn, "ROLLBACK"));
    }
    pg->in_txn = 0;
}

int dm_pg_in_transaction(const dm_pg *pg)
{
    PGTransactionStatusType t = pq.PQtransactionStatus(pg->conn);
    return pg->in_txn || t == PQTRANS_INTRANS || t == PQTRANS_INERROR;
}

/* ---- statements ---- */

static int starts_with_word(const char *s, const char *word)
{
    size_t n = strlen(word);
    while (isspace((unsigned char)*s) || *s == '(') {
        s++;
    }
    return strncasecmp(s, word, n) == 0 && !isalnum((unsigned char)s[n]);
}

static apr_status_t stmt_cleanup(void *data)
{
    dm_pg_stmt *st = data;

    if (st->res) {
        pq.PQclear(st->res);
        st->res = NULL;
    }
    for (int i = 0; i < st->nparams; i++) {
        free(st->bufs[i]);
        st->bufs[i] = NULL;
        st->vals[i] = NULL;
    }
    return APR_SUCCESS;
}

dm_err *dm_pg_prepare(dm_pg *pg, apr_pool_t *p, const char *sql, dm_pg_stmt **out)
{
    dm_pg_stmt *st = apr_pcalloc(pg->pool, sizeof(*st));

    (void)p;
    st->pg = pg;
    st->sql = apr_pstrdup(pg->pool, sql);
    st->text = dm_pg_translate(pg->pool, sql, &st->nparams);
    snprintf(st->name, sizeof(st->name), "s%d", ++pg->next_name);
    st->is_write = !starts_with_word(sql, "SELECT") && !starts_with_word(sql, "VALUES");
    st->needs_sp = starts_with_word(sql, "INSERT") && !strstr(sql, "ON CONFLICT");
    if (st->nparams) {
        st->vals = apr_pcalloc(pg->pool, sizeof(*st->vals) * (size_t)st->nparams);
        st->bufs = apr_pcalloc(pg->pool, sizeof(*st->bufs) * (size_t)st->nparams);
        st->caps = apr_pcalloc(pg->pool, sizeof(*st->caps) * (size_t)st->nparams);
        st->types = apr_pcalloc(pg->pool, sizeof(*st->types) * (size_t)st->nparams);
    }
    st->row = -1;
    apr_pool_cleanup_register(pg->pool, st, stmt_cleanup, apr_pool_cleanup_null);
    *out = st;
    return NULL;
}

static void set_val(dm_pg_stmt *st, int idx, const char *s, size_t len, Oid type)
{
    int i = idx - 1;

    if (i < 0 || i >= st->nparams) {
        return;
    }
    st->types[i] = type;
    st->vals[i] = NULL;
    if (!s) {
        return;
    }
    if (!st->bufs[i] || st->caps[i] < len + 1) {
        char *n = realloc(st->bufs[i], len + 1);
        if (!n) {
            return;
        }
        st->bufs[i] = n;
        st->caps[i] = len + 1;
    }
    memcpy(st->bufs[i], s, len);
    st->bufs[i][len] = '\0';
    st->vals[i] = st->bufs[i];
}

/* NULL in vals marks a NULL parameter for libpq; the parameter's buffer
 * stays for its next value (a statement of a batch binds thousands of
 * numbers per run: no malloc and free for each). */
void dm_pg_bind_int64(dm_pg_stmt *st, int idx, int64_t v)
{
    char b[24], *w = b + sizeof(b);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--w = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--w = '-';
    }
    set_val(st, idx, w, (size_t)(b + sizeof(b) - w), OID_INT8);
}

void dm_pg_bind_text(dm_pg_stmt *st, int idx, const char *s, size_t len)
{
    set_val(st, idx, s ? s : "", s ? len : 0, OID_TEXT);
}

void dm_pg_bind_null(dm_pg_stmt *st, int idx)
{
    set_val(st, idx, NULL, 0, 0);
}

static int is_type_error(const PGresult *r)
{
    const char *s = r ? pq.PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    /* indeterminate_datatype, ambiguous_parameter, undefined_function,
     * ambiguous_function, datatype_mismatch */
    return s && (strcmp(s, "42P18") == 0 || strcmp(s, "42P08") == 0 || strcmp(s, "42883") == 0 ||
                 strcmp(s, "42725") == 0 || strcmp(s, "42804") == 0);
}

/* Prepares on this connection. PostgreSQL infers the parameters' types
 * from the text; where it cannot (`? IS NULL`), the types bound at this
 * first step are given instead. A failed prepare inside a transaction
 * would abort it, so there the attempt runs behind a savepoint. */
static dm_err *ensure_prepared(dm_pg_stmt *st, apr_pool_t *p)
{
    dm_pg *pg = st->pg;
    PGresult *r;
    dm_err *e = NULL;

    if (st->gen == pg->gen) {
        return NULL;
    }
    if (pg->in_txn && (e = simple(pg, p, "SAVEPOINT dm_prep", "prepare"))) {
        return e;
    }
    r = pq.PQprepare(pg->conn, st->name, st->text, st->nparams, NULL);
    if (r && pq.PQresultStatus(r) != PGRES_COMMAND_OK && is_type_error(r)) {
        pq.PQclear(r);
        if (pg->in_txn) {
            pq.PQclear(pq.PQexec(pg->conn, "ROLLBACK TO SAVEPOINT dm_prep"));
        }
        for (int i = 0; i < st->nparams; i++) {
            /* text stays "unknown" so it may meet any column type */
            if (st->types[i] != OID_INT8 && st->types[i] != 0) {
                st->types[i] = 0;
            }
        }
        r = pq.PQprepare(pg->conn, st->name, st->text, st->nparams, st->types);
        if (r && pq.PQresultStatus(r) != PGRES_COMMAND_OK && is_type_error(r)) {
            pq.PQclear(r);
            if (pg->in_txn) {
                pq.PQclear(pq.PQexec(pg->conn, "ROLLBACK TO SAVEPOINT dm_prep"));
            }
            for (int i = 0; i < st->nparams; i++) {
                if (st->types[i] == 0) {
                    st->types[i] = OID_TEXT; /* text, or a NULL given alone */
                }
            }
            r = pq.PQprepare(pg->conn, st->name, st->text, st->nparams, st->types);
        }
    }
    if (!r || pq.PQresultStatus(r) != PGRES_COMMAND_OK) {
        e = pg_err(p, pg, r, "prepare");
        if (pq.PQstatus(pg->conn) == CONNECTION_OK) {
            e->message = apr_psprintf(p, "%s [%s]", e->message, st->text);
        }
    } else {
        st->gen = pg->gen;
    }
    pq.PQclear(r);
    if (pg->in_txn && pq.PQstatus(pg->conn) == CONNECTION_OK) {
        pq.PQclear(
            pq.PQexec(pg->conn, e ? "ROLLBACK TO SAVEPOINT dm_prep; RELEASE SAVEPOINT dm_prep"
                                  : "RELEASE SAVEPOINT dm_prep"));
    }
    return e;
}

/* SAVEPOINT dm_sp, the prepared statement, RELEASE SAVEPOINT dm_sp: one
 * pipeline, one round trip. Returns the statement's result (or the
 * savepoint's error, or NULL when the connection failed); the savepoint
 * is released when the statement succeeded and still open when it failed. */
static PGresult *exec_behind_savepoint(dm_pg_stmt *st)
{
    PGconn *c = st->pg->conn;
    PGresult *r, *out = NULL, *sp_err = NULL;
    int q = 0;

    if (!pq.PQenterPipelineMode(c)) {
        return NULL;
    }
    if (!pq.PQsendQueryParams(c, "SAVEPOINT dm_sp", 0, NULL, NULL, NULL, NULL, 0) ||
        !pq.PQsendQueryPrepared(c, st->name, st->nparams, (const char *const *)st->vals, NULL, NULL,
                                0) ||
        !pq.PQsendQueryParams(c, "RELEASE SAVEPOINT dm_sp", 0, NULL, NULL, NULL, NULL, 0) ||
        !pq.PQpipelineSync(c)) {
        q = 3; /* nothing (more) to read: the connection failed */
    }
    /* each query's results end with a NULL; the pipeline with its sync */
    while (q < 3 || (q == 3 && pq.PQstatus(c) == CONNECTION_OK)) {
        r = pq.PQgetResult(c);
        if (!r) {
            if (++q > 3) {
                break;
            }
            continue;
        }
        if (pq.PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            pq.PQclear(r);
            break;
        }
        if (q == 1 && !out) {
            out = r;
        } else if (q == 0 && !sp_err && pq.PQresultStatus(r) == PGRES_FATAL_ERROR) {
            sp_err = r;
        } else {
            pq.PQclear(r);
        }
    }
    if (!pq.PQexitPipelineMode(c) && pq.PQstatus(c) == CONNECTION_OK) {
        /* results left unread: never expected; the connection is unusable */
        pq.PQreset(c);
        st->pg->gen++;
    }
    if (sp_err) {
        pq.PQclear(out);
        return sp_err;
    }
    return out;
}

/* Runs the prepared statement once; its rows are then stepped through. */
static dm_err *run(dm_pg_stmt *st, apr_pool_t *p)
{
    dm_pg *pg = st->pg;
    PGresult *r;
    ExecStatusType s;
    dm_err *e;
    int sp = st->needs_sp && pg->in_txn;

    if ((e = ensure_prepared(st, p))) {
        return e;
    }
    if (sp) {
        r = exec_behind_savepoint(st);
    } else {
        r = pq.PQexecPrepared(pg->conn, st->name, st->nparams, (const char *const *)st->vals, NULL,
                              NULL, 0);
    }
    s = r ? pq.PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (s != PGRES_TUPLES_OK && s != PGRES_COMMAND_OK) {
        e = pg_err(p, pg, r, "query");
        pq.PQclear(r);
        if (sp && pq.PQstatus(pg->conn) == CONNECTION_OK) {
            /* as SQLite: only this statement failed, the transaction lives */
            pq.PQclear(pq.PQexec(pg->conn, "ROLLBACK TO SAVEPOINT dm_sp; RELEASE SAVEPOINT dm_sp"));
        }
        return e;
    }
    if (!starts_with_word(pq.PQcmdStatus(r), "SELECT")) {
        pg->changes = strtoll(pq.PQcmdTuples(r), NULL, 10);
    }
    if (starts_with_word(pq.PQcmdStatus(r), "INSERT") && s == PGRES_TUPLES_OK &&
        pq.PQntuples(r) > 0 && pq.PQfnumber(r, "id") >= 0 &&
        !pq.PQgetisnull(r, 0, pq.PQfnumber(r, "id"))) {
        pg->last_id = strtoll(pq.PQgetvalue(r, 0, pq.PQfnumber(r, "id")), NULL, 10);
    }
    st->res = r;
    st->nrows = s == PGRES_TUPLES_OK ? pq.PQntuples(r) : 0;
    st->row = -1;
    return NULL;
}

dm_err *dm_pg_step(dm_pg_stmt *st, apr_pool_t *p, int *row)
{
    dm_pg *pg = st->pg;
    dm_err *e = NULL;

    *row = 0;
    if (!st->res) {
        int own_txn = 0;

        if (!pg->in_txn && !reconnect(pg)) {
            return pg_err(p, pg, NULL, "query");
        }
        /* A write outside a transaction is one of its own, behind the
         * writers' lock like every other write. */
        if (st->is_write && !pg->in_txn) {
            if ((e = dm_pg_begin(pg, p))) {
                return e;
            }
            own_txn = 1;
        }
        e = run(st, p);
        if (e && !own_txn && !pg->in_txn && pq.PQstatus(pg->conn) == CONNECTION_BAD &&
            !st->is_write && reconnect(pg)) {
            /* a read on a connection the server dropped: once more */
            e = run(st, p);
        }
        if (own_txn) {
            if (e) {
                dm_pg_rollback(pg);
            } else if ((e = dm_pg_commit(pg, p))) {
                pq.PQclear(st->res);
                st->res = NULL;
            }
        }
        if (e) {
            if (pq.PQstatus(pg->conn) == CONNECTION_BAD) {
                pg->in_txn = 0;
            }
            return e;
        }
    }
    if (st->row + 1 < st->nrows) {
        st->row++;
        *row = 1;
    } else {
        st->row = st->nrows;
    }
    return NULL;
}

static const char *cell(dm_pg_stmt *st, int col)
{
    if (!st->res || st->row < 0 || st->row >= st->nrows || col < 0 ||
        col >= pq.PQnfields(st->res) || pq.PQgetisnull(st->res, st->row, col)) {
        return NULL;
    }
    return pq.PQgetvalue(st->res, st->row, col);
}

int64_t dm_pg_int64(dm_pg_stmt *st, int col)
{
    const char *v = cell(st, col);

    if (!v) {
        return 0;
    }
    if (pq.PQftype(st->res, col) == OID_BOOL) {
        return v[0] == 't';
    }
    return strtoll(v, NULL, 10);
}

const char *dm_pg_text(dm_pg_stmt *st, int col, size_t *len)
{
    const char *v = cell(st, col);

    if (len) {
        *len = v ? (size_t)pq.PQgetlength(st->res, st->row, col) : 0;
    }
    if (v && pq.PQftype(st->res, col) == OID_BOOL) {
        if (len) {
            *len = 1;
        }
        return v[0] == 't' ? "1" : "0";
    }
    return v ? v : "";
}

int dm_pg_is_null(dm_pg_stmt *st, int col)
{
    return cell(st, col) == NULL;
}

int dm_pg_column_count(dm_pg_stmt *st)
{
    return st->res ? pq.PQnfields(st->res) : 0;
}

const char *dm_pg_column_name(dm_pg_stmt *st, int col)
{
    return st->res ? pq.PQfname(st->res, col) : NULL;
}

int dm_pg_column_kind(dm_pg_stmt *st, int col)
{
    if (!cell(st, col)) {
        return 0;
    }
    switch (pq.PQftype(st->res, col)) {
    case OID_INT8:
    case OID_INT4:
    case OID_INT2:
    case OID_BOOL:
    case OID_NUMERIC:
        return 1;
    case OID_TEXT:
    case OID_VARCHAR:
    case OID_BPCHAR:
    case OID_NAME:
        return 2;
    default:
        return 3;
    }
}

void dm_pg_done(dm_pg_stmt *st)
{
    if (st->res) {
        pq.PQclear(st->res);
        st->res = NULL;
    }
    st->row = -1;
    st->nrows = 0;
    for (int i = 0; i < st->nparams; i++) {
        st->vals[i] = NULL;
        if (st->caps[i] > DONE_KEEP) {
            /* a large value (a document, a backup's row) is not kept */
            free(st->bufs[i]);
            st->bufs[i] = NULL;
            st->caps[i] = 0;
        }
    }
}

int64_t dm_pg_changes(dm_pg *pg)
{
    return pg->changes;
}

int64_t dm_pg_last_insert_id(dm_pg *pg)
{
    return pg->last_id;
}
