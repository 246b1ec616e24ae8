/*
 * backup.c — see backup.h. Streams: the snapshot file is read in pieces,
 * hashed (SHA-256), compressed (zstd streaming) and sealed (secretstream,
 * DM_BACKUP_CHUNK compressed bytes a chunk) into a temporary object file,
 * which is then put through the storage plugin; a fetch runs the other way
 * in the plugin's write callback, straight into the destination file.
 */
#include "ops/backup.h"

#include <apr_file_io.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <sodium.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "base/log.h"
#include "ledger/ledger.h"
#include "store/db.h"
#include "store/db_copy.h"

#define SEALED_CHUNK (DM_BACKUP_CHUNK + crypto_secretstream_xchacha20poly1305_ABYTES)
#define MANIFEST_MAX (1024 * 1024)

void dm_backup_keys_derive(const unsigned char secret[32], dm_backup_keys *out)
{
    static const char ctx[crypto_kdf_CONTEXTBYTES] = {'D', 'M', 'b', 'a', 'c', 'k', 'u', 'p'};
    unsigned char id[crypto_kdf_BYTES_MIN]; /* the first 8 bytes name the secret */

    crypto_kdf_derive_from_key(out->enc, sizeof(out->enc), 1, ctx, secret);
    crypto_kdf_derive_from_key(out->mac, sizeof(out->mac), 2, ctx, secret);
    crypto_kdf_derive_from_key(id, sizeof(id), 3, ctx, secret);
    sodium_bin2hex(out->key_id, sizeof(out->key_id), id, DM_BACKUP_KEY_ID_CHARS / 2);
}

static const char *hex(apr_pool_t *p, const unsigned char *b, size_t n)
{
    char *h = apr_palloc(p, n * 2 + 1);
    sodium_bin2hex(h, n * 2 + 1, b, n);
    return h;
}

static dm_err *storage_err(apr_pool_t *p, dm_status st, const char *what, const dm_message *m)
{
    return dm_err_make(p, st == DM_ERR_NOT_FOUND ? DM_E_NOT_FOUND : DM_E_UNAVAILABLE, NULL,
                       "backup: %s: %s", what, m->text);
}

static const char *obj_key(apr_pool_t *p, const char *id)
{
    return apr_pstrcat(p, DM_BACKUP_PREFIX, id, ".dmb", NULL);
}

static const char *man_key(apr_pool_t *p, const char *id)
{
    return apr_pstrcat(p, DM_BACKUP_PREFIX, id, ".json", NULL);
}

/* HMAC over the manifest without "hmac", keys sorted, compact. */
static const char *manifest_mac(apr_pool_t *p, const dm_backup_keys *k, json_t *m)
{
    json_t *c = json_deep_copy(m);
    char *text;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    const char *out;

    json_object_del(c, "hmac");
    text = json_dumps(c, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(c);
    if (!text) {
        return "";
    }
    crypto_auth_hmacsha256(mac, (const unsigned char *)text, strlen(text), k->mac);
    free(text);
    out = hex(p, mac, sizeof(mac));
    return out;
}

/* ---- create ---- */

/* Row counts per table of an open copy (sp: a scratch pool). */
static dm_err *count_rows_db(apr_pool_t *p, apr_pool_t *sp, dm_db *db, json_t *tables,
                             int64_t *schema, int64_t *total)
{
    apr_array_header_t *names = apr_array_make(p, 64, sizeof(const char *));
    dm_stmt *st;
    int row = 0, found = 0;
    dm_err *e;

    {
        e = dm_db_prepare(db, sp,
                          strcmp(dm_db_engine(db), "postgresql") == 0
                              ? "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = "
                                "current_schema() ORDER BY tablename"
                              : "SELECT name FROM sqlite_master WHERE type = 'table' AND name "
                                "NOT LIKE 'sqlite_%' ORDER BY name",
                          &st);
        while (!e && !(e = dm_stmt_step(st, sp, &row)) && row) {
            APR_ARRAY_PUSH(names, const char *) = dm_stmt_dup_text(st, p, 0);
        }
        if (!e) {
            dm_stmt_done(st);
        }
    }
    *total = 0;
    for (int i = 0; !e && i < names->nelts; i++) {
        const char *n = APR_ARRAY_IDX(names, i, const char *);
        int64_t c = 0;
        if (strchr(n, '"')) {
            continue;
        }
        e = dm_db_query_int64(db, sp, apr_psprintf(sp, "SELECT count(*) FROM \"%s\"", n), &c,
                              &found);
        json_object_set_new(tables, n, json_integer(c));
        *total += c;
    }
    *schema = 0;
    if (!e) {
        e = dm_db_query_int64(db, sp, "SELECT MAX(version) FROM schema_migrations", schema, &found);
    }
    return e;
}

/* Opens the copy at path (read-write, so its close folds and removes its
 * WAL: the file alone is the whole database), counts its rows, and leaves
 * it in rollback-journal mode (the server sets WAL again when it opens it). */
static dm_err *count_rows(apr_pool_t *p, const char *path, json_t *tables, int64_t *schema,
                          int64_t *total)
{
    apr_pool_t *sp;
    dm_db *db = NULL;
    dm_err *e;

    apr_pool_create(&sp, p);
    e = dm_db_open(sp, path, NULL, &db);
    if (!e) {
        e = count_rows_db(p, sp, db, tables, schema, total);
    }
    if (!e) {
        /* synchronous=OFF: the switch rewrites the header in a journalled
         * transaction whose fsync would flush the whole scratch copy at once
         * (hundreds of MB), holding up every writer's commit on the disk;
         * the copy is a scratch file, checked end to end by its SHA-256 */
        e = dm_db_exec(db, sp, "PRAGMA synchronous=OFF; PRAGMA journal_mode=DELETE");
    }
    apr_pool_destroy(sp);
    return e;
}

/* ---- PostgreSQL: pg_dump and pg_restore ---- */

extern char **environ;

/* Where scratch files of a PostgreSQL backup go (the database has no
 * directory of its own here): $TMPDIR, else /tmp. */
static const char *scratch_dir(apr_pool_t *p)
{
    const char *d = NULL;

    if (apr_temp_dir_get(&d, p) != APR_SUCCESS || !d) {
        d = "/tmp";
    }
    return d;
}

/* A PostgreSQL client program: the first on PATH, else the newest
 * /usr/lib/postgresql/<version>/bin (Debian), else NULL. */
static const char *find_tool(apr_pool_t *p, const char *name)
{
    const char *path = getenv("PATH");
    glob_t g;
    const char *out = NULL;

    while (path && *path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        if (n) {
            const char *f = apr_pstrcat(p, apr_pstrndup(p, path, n), "/", name, NULL);
            if (access(f, X_OK) == 0) {
                return f;
            }
        }
        path = colon ? colon + 1 : NULL;
    }
    if (glob(apr_pstrcat(p, "/usr/lib/postgresql/*/bin/", name, NULL), 0, NULL, &g) == 0) {
        /* versions sort as numbers: the longest name, then the last */
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (!out || strlen(g.gl_pathv[i]) >= strlen(out)) {
                out = apr_pstrdup(p, g.gl_pathv[i]);
            }
        }
        globfree(&g);
    }
    return out;
}

/* Runs a PostgreSQL client program (argv[0] its name) with the password,
 * if any, in PGPASSWORD (never on its command line), stdout to /dev/null
 * and stderr to err_path; waits. DM_E_UNAVAILABLE with the program's
 * first line of complaint when it fails. */
static dm_err *run_tool(apr_pool_t *p, const char **argv, const char *password,
                        const char *err_path)
{
    const char *tool = find_tool(p, argv[0]);
    apr_array_header_t *env = apr_array_make(p, 64, sizeof(char *));
    posix_spawn_file_actions_t fa;
    pid_t pid;
    int rc, status = 0;
    char buf[512];
    ssize_t n = 0;
    int fd;

    if (!tool) {
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL,
                           "backup: %s is not installed (PATH, /usr/lib/postgresql/*/bin): "
                           "install PostgreSQL's client programs (postgresql-client)",
                           argv[0]);
    }
    for (char **v = environ; *v; v++) {
        if (strncmp(*v, "PGPASSWORD=", 11) != 0) {
            APR_ARRAY_PUSH(env, char *) = *v;
        }
    }
    if (password) {
        APR_ARRAY_PUSH(env, char *) = apr_pstrcat(p, "PGPASSWORD=", password, NULL);
    }
    APR_ARRAY_PUSH(env, char *) = NULL;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    rc = posix_spawn(&pid, tool, &fa, NULL, (char *const *)argv, (char *const *)env->elts);
    posix_spawn_file_actions_destroy(&fa);
    if (password) {
        char *pw = APR_ARRAY_IDX(env, env->nelts - 2, char *);
        sodium_memzero(pw, strlen(pw));
    }
    if (rc != 0) {
        unlink(err_path);
        return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "backup: cannot run %s: %s", tool,
                           strerror(rc));
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    fd = open(err_path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
    }
    unlink(err_path);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        return NULL;
    }
    buf[n > 0 ? n : 0] = '\0';
    if (strchr(buf, '\n')) {
        *strchr(buf, '\n') = '\0';
    }
    return dm_err_make(p, DM_E_UNAVAILABLE, NULL, "backup: %s failed (%s %d): %s", argv[0],
                       WIFEXITED(status) ? "exit status" : "signal",
                       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                       *buf ? buf : "no message");
}

/* The dump of the PostgreSQL database `conninfo` into dump_path (pg_dump
 * --format=custom) and its row counts, both of one snapshot: a REPEATABLE
 * READ transaction exports its snapshot, counts the rows in it, and
 * pg_dump --snapshot dumps exactly that while the transaction stays open. */
static dm_err *pg_dump_counted(apr_pool_t *p, const char *conninfo, const char *dump_path,
                               json_t *tables, int64_t *schema, int64_t *total)
{
    apr_pool_t *sp;
    dm_db *db = NULL;
    const char *snapshot = NULL, *ci = NULL, *pw = NULL;
    int open_txn = 0;
    dm_err *e;

    apr_pool_create(&sp, p);
    e = dm_db_pg_conninfo(sp, conninfo, NULL, 1, &ci, &pw);
    if (!e) {
        e = dm_db_open(sp, conninfo, NULL, &db);
    }
    if (!e) {
        e = dm_db_exec(db, sp, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY");
        open_txn = !e;
    }
    if (!e) {
        e = dm_db_query_text(db, sp, "SELECT pg_export_snapshot()", &snapshot);
    }
    if (!e) {
        e = count_rows_db(p, sp, db, tables, schema, total);
    }
    if (!e) {
        const char *argv[] = {"pg_dump",
                              "--format=custom",
                              "--no-password",
                              "--compress=0",
                              apr_pstrcat(sp, "--snapshot=", snapshot ? snapshot : "", NULL),
                              apr_pstrcat(sp, "--file=", dump_path, NULL),
                              apr_pstrcat(sp, "--dbname=", ci, NULL),
                              NULL};
        e = run_tool(sp, argv, pw, apr_pstrcat(sp, dump_path, ".err", NULL));
    }
    if (open_txn) {
        dm_err *ce = dm_db_exec(db, sp, "COMMIT");
        e = e ? e : ce;
    }
    if (e) {
        e = dm_err_make(p, e->code, e->field, "%s", e->message);
    }
    apr_pool_destroy(sp);
    return e;
}

typedef struct sealer {
    int fd;
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char buf[DM_BACKUP_CHUNK];
    size_t used;
    unsigned char out[SEALED_CHUNK];
    crypto_hash_sha256_state obj_hash;
    int64_t obj_bytes;
} sealer;

static int write_all(int fd, const void *b, size_t n)
{
    const unsigned char *c = b;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Scratch and fetched files are written at disk speed, hundreds of MB;
 * left to the kernel, they go to the disk in bursts (write-back, or one
 * fsync at the end) during which every database commit's fsync on the same
 * disk waits behind them (ext4 orders a commit after the data written
 * before it). Writing behind in FLUSH_STEP pieces keeps each burst small;
 * removing a large file in FLUSH_STEP pieces does the same for the freed
 * blocks (and their discards) a single unlink would hand to one commit. */
#define FLUSH_STEP (8 * 1024 * 1024)

/* Starts the write-back of what fd holds past *started (once FLUSH_STEP
 * bytes are there) and waits for the piece before. A pacing hint only:
 * durability is the caller's fsync, errors are that fsync's to report. */
static void write_behind(int fd, int64_t *started, int64_t written)
{
    if (written - *started < FLUSH_STEP) {
        return;
    }
#ifdef SYNC_FILE_RANGE_WRITE
    (void)sync_file_range(fd, *started, written - *started, SYNC_FILE_RANGE_WRITE);
    if (*started >= FLUSH_STEP) {
        (void)sync_file_range(fd, *started - FLUSH_STEP, FLUSH_STEP,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    }
#else
    (void)fd;
#endif
    *started = written;
}

/* Removes a file that may be large: shrunk by FLUSH_STEP at a time, 2 ms
 * apart, then unlinked. */
static void remove_gently(const char *path)
{
    int fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat sb;

    if (fd >= 0 && fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        for (off_t size = sb.st_size; size > 0;) {
            size = size > FLUSH_STEP ? size - FLUSH_STEP : 0;
            if (ftruncate(fd, size) != 0) {
                break;
            }
            if (size > 0) {
                apr_sleep(apr_time_from_msec(2));
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    unlink(path);
}

static int seal_flush(sealer *s, int final)
{
    unsigned long long clen = 0;
    crypto_secretstream_xchacha20poly1305_push(
        &s->st, s->out, &clen, s->buf, s->used, NULL, 0,
        final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL : 0);
    s->used = 0;
    crypto_hash_sha256_update(&s->obj_hash, s->out, clen);
    s->obj_bytes += (int64_t)clen;
    return write_all(s->fd, s->out, clen);
}

static int seal_add(sealer *s, const unsigned char *b, size_t n)
{
    while (n) {
        size_t take = DM_BACKUP_CHUNK - s->used;
        if (take > n) {
            take = n;
        }
        memcpy(s->buf + s->used, b, take);
        s->used += take;
        b += take;
        n -= take;
        if (s->used == DM_BACKUP_CHUNK && seal_flush(s, 0) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Reads the snapshot, hashes, compresses and seals it into obj_path. */
static dm_err *pack(apr_pool_t *p, const dm_backup_keys *k, const char *snap, const char *obj_path,
                    unsigned char db_sha[32], int64_t *db_bytes, unsigned char obj_sha[32],
                    int64_t *obj_bytes)
{
    sealer *s = apr_pcalloc(p, sizeof(*s));
    unsigned char hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    size_t inb = ZSTD_CStreamInSize(), outb = ZSTD_CStreamOutSize();
    unsigned char *in = apr_palloc(p, inb), *out = apr_palloc(p, outb);
    crypto_hash_sha256_state dbh;
    ZSTD_CCtx *z = ZSTD_createCCtx();
    int in_fd = open(snap, O_RDONLY | O_CLOEXEC);
    dm_err *e = NULL;
    int done = 0;

    s->fd = open(obj_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    *db_bytes = 0;
    if (in_fd < 0 || s->fd < 0 || !z) {
        e = dm_err_make(p, DM_E_INTERNAL, NULL, "backup: cannot open %s or %s: %s", snap, obj_path,
                        strerror(errno));
        goto cleanup;
    }
    ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, 3);
    crypto_hash_sha256_init(&dbh);
    crypto_hash_sha256_init(&s->obj_hash);
    crypto_secretstream_xchacha20poly1305_init_push(&s->st, hdr, k->enc);
    crypto_hash_sha256_update(&s->obj_hash, hdr, sizeof(hdr));
    s->obj_bytes = sizeof(hdr);
    if (write_all(s->fd, hdr, sizeof(hdr)) < 0) {
        goto write_failed;
    }
    while (!done) {
        ssize_t n = read(in_fd, in, inb);
        ZSTD_inBuffer ib;
        ZSTD_EndDirective mode;
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            e = dm_err_make(p, DM_E_INTERNAL, NULL, "backup: reading %s: %s", snap,
                            strerror(errno));
            goto cleanup;
        }
        crypto_hash_sha256_update(&dbh, in, (size_t)n);
        *db_bytes += n;
        mode = n == 0 ? ZSTD_e_end : ZSTD_e_continue;
        ib = (ZSTD_inBuffer){in, (size_t)n, 0};
        for (;;) {
            ZSTD_outBuffer ob = {out, outb, 0};
            size_t left = ZSTD_compressStream2(z, &ob, &ib, mode);
            if (ZSTD_isError(left)) {
                e = dm_err_make(p, DM_E_INTERNAL, NULL, "backup: zstd: %s",
                                ZSTD_getErrorName(left));
                goto cleanup;
            }
            if (seal_add(s, out, ob.pos) < 0) {
                goto write_failed;
            }
            if (mode == ZSTD_e_end ? left == 0 : ib.pos == ib.size) {
                break;
            }
        }
        done = n == 0;
    }
    /* no fsync: a scratch file, read back at once by the put (the storage
     * plugin makes its copy durable) */
    if (seal_flush(s, 1) < 0) {
        goto write_failed;
    }
    crypto_hash_sha256_final(&dbh, db_sha);
    crypto_hash_sha256_final(&s->obj_hash, obj_sha);
    *obj_bytes = s->obj_bytes;
    goto cleanup;
write_failed:
    e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "backup: writing %s: %s", obj_path, strerror(errno));
cleanup:
    ZSTD_freeCCtx(z);
    if (in_fd >= 0) {
        close(in_fd);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    sodium_memzero(&s->st, sizeof(s->st));
    return e;
}

typedef struct fd_src {
    int fd;
} fd_src;

static dm_status fd_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    fd_src *s = ctx;
    ssize_t n;

    do {
        n = read(s->fd, buf, cap);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        *got = 0;
        return DM_ERR_TEMPORARY;
    }
    *got = (size_t)n;
    return DM_OK;
}

static const char *rfc3339(apr_pool_t *p, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char b[32];

    gmtime_r(&tt, &tm);
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return apr_pstrdup(p, b);
}

dm_err *dm_backup_create(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                         const char *db_path, int64_t now, dm_backup_info *out)
{
    unsigned char rnd[2], db_sha[32], obj_sha[32];
    char stamp[32];
    time_t tt = (time_t)now;
    struct tm tm;
    const char *id, *snap, *objf;
    json_t *m = json_object(), *tables = json_object();
    int64_t schema = 0, total = 0, db_bytes = 0, obj_bytes = 0;
    char *text = NULL;
    dm_message msg = {{0}};
    dm_status st;
    fd_src src = {-1};
    int put_obj = 0, pg = dm_db_is_postgres(db_path);
    dm_err *e;

    gmtime_r(&tt, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    randombytes_buf(rnd, sizeof(rnd));
    id = apr_pstrcat(p, stamp, "-", hex(p, rnd, sizeof(rnd)), NULL);
    /* PostgreSQL: pg_dump's file in the temporary directory; SQLite: the
     * copy beside the database */
    snap = pg ? apr_pstrcat(p, scratch_dir(p), "/dm-backup-", id, ".dump", NULL)
              : apr_pstrcat(p, db_path, ".backup-", id, NULL);
    objf = apr_pstrcat(p, snap, ".dmb", NULL);

    if (pg) {
        e = pg_dump_counted(p, db_path, snap, tables, &schema, &total);
    } else {
        e = dm_db_snapshot(p, db_path, snap, 256, 2);
        if (!e) {
            e = count_rows(p, snap, tables, &schema, &total);
        }
    }
    if (!e) {
        e = pack(p, k, snap, objf, db_sha, &db_bytes, obj_sha, &obj_bytes);
    }
    if (!e) {
        src.fd = open(objf, O_RDONLY | O_CLOEXEC);
        st = src.fd < 0
                 ? DM_ERR_INTERNAL
                 : dm_storage_put(s->host, s->pl, p, obj_key(p, id), "application/octet-stream",
                                  obj_bytes, fd_read, &src, &msg);
        if (st != DM_OK) {
            e = storage_err(p, st, apr_pstrcat(p, "storing ", obj_key(p, id), NULL), &msg);
        }
        put_obj = st == DM_OK;
    }
    if (!e) {
        json_object_set_new(m, "format", json_integer(DM_BACKUP_FORMAT));
        json_object_set_new(m, "id", json_string(id));
        json_object_set_new(m, "created", json_string(rfc3339(p, now)));
        json_object_set_new(m, "created_unix", json_integer(now));
        json_object_set_new(m, "engine", json_string(pg ? "postgresql" : "sqlite"));
        json_object_set_new(m, "schema_version", json_integer(schema));
        json_object_set_new(m, "tables", tables);
        tables = NULL;
        json_object_set_new(m, "rows", json_integer(total));
        json_object_set_new(m, "sha256", json_string(hex(p, db_sha, 32)));
        json_object_set_new(m, "db_bytes", json_integer(db_bytes));
        json_object_set_new(m, "object", json_string(obj_key(p, id)));
        json_object_set_new(m, "object_sha256", json_string(hex(p, obj_sha, 32)));
        json_object_set_new(m, "object_bytes", json_integer(obj_bytes));
        json_object_set_new(m, "compression", json_string("zstd"));
        json_object_set_new(m, "encryption", json_string("xchacha20poly1305-secretstream"));
        json_object_set_new(m, "key_id", json_string(k->key_id));
        json_object_set_new(m, "hmac", json_string(manifest_mac(p, k, m)));
        text = json_dumps(m, JSON_SORT_KEYS | JSON_INDENT(2));
        st = text ? dm_storage_put_buffer(s->host, s->pl, p, man_key(p, id), "application/json",
                                          text, strlen(text), &msg)
                  : DM_ERR_INTERNAL;
        if (st != DM_OK) {
            e = storage_err(p, st, apr_pstrcat(p, "storing ", man_key(p, id), NULL), &msg);
        }
    }
    if (e && put_obj) {
        dm_message m2 = {{0}};
        dm_storage_remove(s->host, s->pl, p, obj_key(p, id), &m2);
    }
    if (!e && out) {
        memset(out, 0, sizeof(*out));
        out->id = id;
        out->created = now;
        out->schema_version = schema;
        out->db_bytes = db_bytes;
        out->object_bytes = obj_bytes;
        out->total_rows = total;
        out->sha256 = hex(p, db_sha, 32);
        out->manifest_json = apr_pstrdup(p, text);
    }
    if (src.fd >= 0) {
        close(src.fd);
    }
    free(text);
    json_decref(m);
    json_decref(tables);
    remove_gently(snap);
    unlink(apr_pstrcat(p, snap, "-wal", NULL));
    unlink(apr_pstrcat(p, snap, "-shm", NULL));
    remove_gently(objf);
    return e;
}

/* ---- manifests ---- */

/* Reads and checks one manifest; DM_E_INVALID with the reason. */
static dm_err *read_manifest(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                             const char *id, json_t **out, dm_backup_info *info)
{
    void *buf = NULL;
    size_t len = 0;
    dm_message msg = {{0}};
    dm_status st =
        dm_storage_get_buffer(s->host, s->pl, p, man_key(p, id), MANIFEST_MAX, &buf, &len, &msg);
    json_t *m, *v;
    const char *mac, *kid, *want;

    *out = NULL;
    if (st == DM_ERR_NOT_FOUND) {
        return dm_err_make(p, DM_E_NOT_FOUND, NULL, "there is no backup %s", id);
    }
    if (st != DM_OK) {
        return storage_err(p, st, apr_pstrcat(p, "reading ", man_key(p, id), NULL), &msg);
    }
    m = json_loadb(buf, len, 0, NULL);
    if (!json_is_object(m)) {
        json_decref(m);
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "backup %s is refused: its manifest is not a JSON object", id);
    }
    v = json_object_get(m, "format");
    if (!json_is_integer(v) || json_integer_value(v) != DM_BACKUP_FORMAT) {
        json_decref(m);
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "backup %s is refused: its manifest is not of format %d", id,
                           DM_BACKUP_FORMAT);
    }
    kid = json_string_value(json_object_get(m, "key_id"));
    if (!kid || strcmp(kid, k->key_id) != 0) {
        dm_err *e = dm_err_make(p, DM_E_INVALID, NULL,
                                "backup %s is refused: it was made under another secret key (key "
                                "id %s, this server's is %s)",
                                id, kid ? kid : "missing", k->key_id);
        json_decref(m);
        return e;
    }
    mac = json_string_value(json_object_get(m, "hmac"));
    want = manifest_mac(p, k, m);
    if (!mac || strlen(mac) != strlen(want) || sodium_memcmp(mac, want, strlen(want)) != 0) {
        json_decref(m);
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "backup %s is refused: its manifest does not match its HMAC (edited, "
                           "or not made by this server's secret key)",
                           id);
    }
    v = json_object_get(m, "id");
    if (!json_is_string(v) || strcmp(json_string_value(v), id) != 0) {
        json_decref(m);
        return dm_err_make(p, DM_E_INVALID, NULL,
                           "backup %s is refused: its manifest names another backup", id);
    }
    memset(info, 0, sizeof(*info));
    info->id = apr_pstrdup(p, id);
    info->created = json_integer_value(json_object_get(m, "created_unix"));
    info->schema_version = json_integer_value(json_object_get(m, "schema_version"));
    info->db_bytes = json_integer_value(json_object_get(m, "db_bytes"));
    info->object_bytes = json_integer_value(json_object_get(m, "object_bytes"));
    info->total_rows = json_integer_value(json_object_get(m, "rows"));
    info->sha256 = apr_pstrdup(p, json_string_value(json_object_get(m, "sha256")) ?: "");
    info->manifest_json = apr_pstrndup(p, buf, len);
    *out = m;
    return NULL;
}

typedef struct lister {
    apr_pool_t *p;
    apr_array_header_t *ids;
} lister;

static dm_status list_each(void *ctx, const char *key, int64_t size, int64_t mtime)
{
    lister *l = ctx;
    size_t n = strlen(key), pl = strlen(DM_BACKUP_PREFIX);
    (void)size;
    (void)mtime;
    if (n > pl + 5 && strcmp(key + n - 5, ".json") == 0 && !strchr(key + pl, '/')) {
        APR_ARRAY_PUSH(l->ids, const char *) = apr_pstrndup(l->p, key + pl, n - pl - 5);
    }
    return DM_OK;
}

static dm_err *list_ids(apr_pool_t *p, const dm_backup_store *s, apr_array_header_t **ids)
{
    lister l = {p, apr_array_make(p, 16, sizeof(const char *))};
    dm_message msg = {{0}};
    dm_status st = dm_storage_list(s->host, s->pl, p, DM_BACKUP_PREFIX, list_each, &l, &msg);

    *ids = l.ids;
    return st == DM_OK ? NULL : storage_err(p, st, "listing " DM_BACKUP_PREFIX, &msg);
}

dm_err *dm_backup_list(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                       apr_array_header_t **out)
{
    apr_array_header_t *ids;
    dm_err *e = list_ids(p, s, &ids);

    *out = apr_array_make(p, 16, sizeof(dm_backup_info));
    for (int i = 0; !e && i < ids->nelts; i++) {
        const char *id = APR_ARRAY_IDX(ids, i, const char *);
        dm_backup_info info;
        json_t *m = NULL;
        dm_err *me = read_manifest(p, s, k, id, &m, &info);
        if (me && (me->code == DM_E_INVALID || me->code == DM_E_NOT_FOUND)) {
            memset(&info, 0, sizeof(info));
            info.id = id;
            info.manifest_json = me->message;
        } else if (me) {
            e = me;
            break;
        }
        json_decref(m);
        APR_ARRAY_PUSH(*out, dm_backup_info) = info;
    }
    return e;
}

/* ---- fetch ---- */

typedef struct opener {
    int fd;
    crypto_secretstream_xchacha20poly1305_state st;
    unsigned char hdr[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
    size_t hdr_used;
    int started, final, bad;
    const char *why;
    unsigned char in[SEALED_CHUNK];
    size_t in_used;
    unsigned char plain[DM_BACKUP_CHUNK];
    unsigned char *zout;
    size_t zout_cap;
    ZSTD_DCtx *z;
    size_t zleft; /* what the decompressor still expects (0: a frame ended) */
    crypto_hash_sha256_state obj_hash, db_hash;
    int64_t obj_bytes, db_bytes, flushed;
    const unsigned char *key;
} opener;

static int open_chunk(opener *o, size_t n)
{
    unsigned long long plen = 0;
    unsigned char tag = 0;

    if (o->final) {
        o->why = "it carries data after its final chunk";
        return -1;
    }
    if (crypto_secretstream_xchacha20poly1305_pull(&o->st, o->plain, &plen, &tag, o->in, n, NULL,
                                                   0) != 0) {
        o->why = "a chunk fails its authentication (altered, truncated or under another key)";
        return -1;
    }
    o->final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
    {
        ZSTD_inBuffer ib = {o->plain, (size_t)plen, 0};
        while (ib.pos < ib.size) {
            ZSTD_outBuffer ob = {o->zout, o->zout_cap, 0};
            size_t r = ZSTD_decompressStream(o->z, &ob, &ib);
            if (ZSTD_isError(r)) {
                o->why = "its compressed data is damaged";
                return -1;
            }
            o->zleft = r;
            crypto_hash_sha256_update(&o->db_hash, o->zout, ob.pos);
            o->db_bytes += (int64_t)ob.pos;
            if (write_all(o->fd, o->zout, ob.pos) < 0) {
                o->why = "the database file could not be written";
                return -1;
            }
            write_behind(o->fd, &o->flushed, o->db_bytes);
        }
    }
    return 0;
}

static dm_status open_write(void *ctx, const void *buf, size_t len)
{
    opener *o = ctx;
    const unsigned char *b = buf;

    if (o->bad) {
        return DM_ERR_INVALID;
    }
    crypto_hash_sha256_update(&o->obj_hash, b, len);
    o->obj_bytes += (int64_t)len;
    while (len) {
        if (!o->started) {
            size_t take = sizeof(o->hdr) - o->hdr_used;
            take = take > len ? len : take;
            memcpy(o->hdr + o->hdr_used, b, take);
            o->hdr_used += take;
            b += take;
            len -= take;
            if (o->hdr_used == sizeof(o->hdr)) {
                if (crypto_secretstream_xchacha20poly1305_init_pull(&o->st, o->hdr, o->key) != 0) {
                    o->why = "its header is invalid";
                    o->bad = 1;
                    return DM_ERR_INVALID;
                }
                o->started = 1;
            }
            continue;
        }
        {
            size_t take = SEALED_CHUNK - o->in_used;
            take = take > len ? len : take;
            memcpy(o->in + o->in_used, b, take);
            o->in_used += take;
            b += take;
            len -= take;
            if (o->in_used == SEALED_CHUNK) {
                if (open_chunk(o, o->in_used) < 0) {
                    o->bad = 1;
                    return DM_ERR_INVALID;
                }
                o->in_used = 0;
            }
        }
    }
    return DM_OK;
}

static dm_err *refuse(apr_pool_t *p, const char *id, const char *why)
{
    return dm_err_make(p, DM_E_INVALID, NULL, "backup %s is refused: %s", id, why);
}

/* The checks of a restored file: integrity, ledger, row counts. */
static dm_err *check_db(apr_pool_t *p, const char *id, const char *path, json_t *m)
{
    json_t *tables = json_object(), *want = json_object_get(m, "tables");
    int64_t schema = 0, total = 0;
    dm_db_options o = {0};
    dm_ledger_report rep;
    apr_pool_t *sp;
    dm_db *db = NULL;
    const char *ic = NULL;
    dm_err *e;

    apr_pool_create(&sp, p);
    e = dm_db_open(sp, path, &o, &db);
    if (!e) {
        e = dm_db_query_text(db, p, "PRAGMA integrity_check", &ic);
    }
    if (!e && (!ic || strcmp(ic, "ok") != 0)) {
        e = refuse(p, id,
                   apr_pstrcat(p, "PRAGMA integrity_check says: ", ic ? ic : "nothing", NULL));
    }
    if (!e) {
        e = dm_ledger_verify(db, sp, &rep);
        if (!e && !rep.ok) {
            e = refuse(p, id,
                       apr_psprintf(p, "ledger verify fails on it: %s%s%s", rep.problem,
                                    rep.account_name ? " at account " : "",
                                    rep.account_name ? rep.account_name : ""));
        }
    }
    apr_pool_destroy(sp);
    if (!e) {
        e = count_rows(p, path, tables, &schema, &total);
    }
    if (!e && !json_equal(tables, want)) {
        e = refuse(p, id, "its row counts are not those of its manifest");
    }
    json_decref(tables);
    return e;
}

/* Fetches backup id (NULL: the newest) into dest_path and checks its
 * manifest and hashes; *mo gets the manifest (the caller's to decref)
 * when it succeeds, dest_path is removed when it fails. */
static dm_err *fetch_raw(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                         const char *id, const char *dest_path, json_t **mo, dm_backup_info *out)
{
    dm_backup_info info;
    json_t *m = NULL;
    opener *o = apr_pcalloc(p, sizeof(*o));
    unsigned char h[32];
    dm_message msg = {{0}};
    dm_status st;
    int64_t size = 0;
    dm_err *e = NULL;

    if (!id) {
        apr_array_header_t *all;
        e = dm_backup_list(p, s, k, &all);
        for (int i = all ? all->nelts - 1 : -1; !e && i >= 0 && !id; i--) {
            if (APR_ARRAY_IDX(all, i, dm_backup_info).created) {
                id = APR_ARRAY_IDX(all, i, dm_backup_info).id;
            }
        }
        if (!e && !id) {
            e = dm_err_make(p, DM_E_NOT_FOUND, NULL, "there is no backup to use");
        }
        if (e) {
            return e;
        }
    }
    e = read_manifest(p, s, k, id, &m, &info);
    if (e) {
        return e;
    }
    o->fd = open(dest_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (o->fd < 0) {
        json_decref(m);
        return dm_err_make(p, DM_E_INTERNAL, NULL, "cannot create %s: %s", dest_path,
                           strerror(errno));
    }
    o->key = k->enc;
    o->z = ZSTD_createDCtx();
    o->zout_cap = ZSTD_DStreamOutSize();
    o->zout = apr_palloc(p, o->zout_cap);
    o->zleft = 1;
    crypto_hash_sha256_init(&o->obj_hash);
    crypto_hash_sha256_init(&o->db_hash);
    st = dm_storage_get(s->host, s->pl, p, obj_key(p, id), open_write, o, &size, &msg);
    if (o->bad) {
        e = refuse(p, id, o->why);
    } else if (st == DM_ERR_NOT_FOUND) {
        e = refuse(p, id, "its data object is missing");
    } else if (st != DM_OK) {
        e = storage_err(p, st, apr_pstrcat(p, "reading ", obj_key(p, id), NULL), &msg);
    } else if (!o->started || (o->in_used && open_chunk(o, o->in_used) < 0)) {
        e = refuse(p, id, o->why ? o->why : "its data object is truncated");
    } else if (!o->final) {
        e = refuse(p, id, "its data object is truncated (no final chunk)");
    } else if (o->zleft != 0) {
        e = refuse(p, id, "its compressed data ends early");
    }
    if (!e) {
        crypto_hash_sha256_final(&o->obj_hash, h);
        if (o->obj_bytes != info.object_bytes ||
            strcmp(hex(p, h, 32), json_string_value(json_object_get(m, "object_sha256")) ?: "") !=
                0) {
            e = refuse(p, id, "its data object is not the one its manifest describes");
        }
    }
    if (!e) {
        crypto_hash_sha256_final(&o->db_hash, h);
        if (o->db_bytes != info.db_bytes || strcmp(hex(p, h, 32), info.sha256) != 0) {
            e = refuse(p, id, "the database it holds does not match its SHA-256");
        }
    }
    if (!e && fsync(o->fd) < 0) {
        e = dm_err_make(p, DM_E_UNAVAILABLE, NULL, "writing %s: %s", dest_path, strerror(errno));
    }
    close(o->fd);
    ZSTD_freeDCtx(o->z);
    sodium_memzero(&o->st, sizeof(o->st));
    if (e) {
        json_decref(m);
        unlink(dest_path);
        return e;
    }
    *mo = m;
    *out = info;
    return NULL;
}

/* The engine a backup holds ("sqlite" for manifests from before the
 * field), and the refusal of one restored to the other engine. */
static dm_err *check_engine(apr_pool_t *p, const char *id, json_t *m, int want_pg)
{
    const char *eng = json_string_value(json_object_get(m, "engine"));
    int is_pg = eng && strcmp(eng, "postgresql") == 0;

    if (is_pg && !want_pg) {
        return refuse(p, id,
                      "it holds a PostgreSQL database (pg_dump); it restores only into "
                      "PostgreSQL (deepminectl backup restore --to URL), never into a SQLite "
                      "file");
    }
    if (!is_pg && want_pg) {
        return refuse(p, id,
                      "it holds a SQLite database; it restores only into a SQLite "
                      "DeepMineDatabase (to move SQLite to PostgreSQL, restore it to a file and "
                      "run deepminectl migrate-to-postgres)");
    }
    return NULL;
}

dm_err *dm_backup_fetch(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                        const char *id, const char *dest_path, dm_backup_info *out)
{
    dm_backup_info info = {0};
    json_t *m = NULL;
    dm_err *e = fetch_raw(p, s, k, id, dest_path, &m, &info);

    if (e) {
        return e;
    }
    e = check_engine(p, info.id, m, 0);
    if (!e) {
        e = check_db(p, info.id, dest_path, m);
    }
    json_decref(m);
    if (e) {
        unlink(dest_path);
        unlink(apr_pstrcat(p, dest_path, "-wal", NULL));
        unlink(apr_pstrcat(p, dest_path, "-shm", NULL));
    } else if (out) {
        *out = info;
    }
    return e;
}

/* ---- PostgreSQL: verify and restore ---- */

/* The checks of a restored PostgreSQL database: ledger verify, row counts. */
static dm_err *check_pg(apr_pool_t *p, const char *id, const char *conninfo, json_t *m)
{
    json_t *tables = json_object(), *want = json_object_get(m, "tables");
    int64_t schema = 0, total = 0;
    dm_ledger_report rep;
    apr_pool_t *sp;
    dm_db *db = NULL;
    dm_err *e;

    apr_pool_create(&sp, p);
    e = dm_db_open(sp, conninfo, NULL, &db);
    if (!e) {
        e = dm_ledger_verify(db, sp, &rep);
        if (!e && !rep.ok) {
            e = refuse(p, id,
                       apr_psprintf(p, "ledger verify fails on it: %s%s%s", rep.problem,
                                    rep.account_name ? " at account " : "",
                                    rep.account_name ? rep.account_name : ""));
        }
    }
    if (!e) {
        e = count_rows_db(p, sp, db, tables, &schema, &total);
    }
    if (!e && !json_equal(tables, want)) {
        e = refuse(p, id, "its row counts are not those of its manifest");
    }
    if (e) {
        e = dm_err_make(p, e->code, e->field, "%s", e->message);
    }
    json_decref(tables);
    apr_pool_destroy(sp);
    return e;
}

/* pg_restore of the dump at dump_path into the database conninfo. */
static dm_err *pg_restore_into(apr_pool_t *p, const char *conninfo, const char *dump_path)
{
    const char *ci = NULL, *pw = NULL;
    dm_err *e = dm_db_pg_conninfo(p, conninfo, NULL, 1, &ci, &pw);

    if (!e) {
        const char *argv[] = {"pg_restore",
                              "--no-owner",
                              "--no-privileges",
                              "--exit-on-error",
                              "--single-transaction",
                              "--no-password",
                              apr_pstrcat(p, "--dbname=", ci, NULL),
                              dump_path,
                              NULL};
        e = run_tool(p, argv, pw, apr_pstrcat(p, dump_path, ".err", NULL));
    }
    return e;
}

/* fetch_raw of a PostgreSQL backup into a scratch file (*dump). */
static dm_err *fetch_pg(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                        const char *id, json_t **m, dm_backup_info *info, const char **dump)
{
    unsigned char r[4];
    dm_err *e;

    randombytes_buf(r, sizeof(r));
    *dump = apr_pstrcat(p, scratch_dir(p), "/dm-restore-", hex(p, r, sizeof(r)), ".dump", NULL);
    e = fetch_raw(p, s, k, id, *dump, m, info);
    if (!e) {
        e = check_engine(p, info->id, *m, 1);
        if (e) {
            json_decref(*m);
            *m = NULL;
            remove_gently(*dump);
        }
    }
    return e;
}

dm_err *dm_backup_restore_pg(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                             const char *id, const char *target, dm_backup_info *out)
{
    dm_backup_info info = {0};
    json_t *m = NULL;
    const char *dump = NULL;
    apr_pool_t *sp;
    dm_db *db = NULL;
    int empty = 0;
    dm_err *e;

    apr_pool_create(&sp, p);
    e = dm_db_open(sp, target, NULL, &db);
    if (!e) {
        e = dm_db_pg_is_empty(db, sp, &empty);
    }
    if (e) {
        e = dm_err_make(p, e->code, e->field, "%s", e->message);
    }
    apr_pool_destroy(sp);
    if (!e && !empty) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "the PostgreSQL database %s is not empty: a backup is restored only "
                           "into a new, empty database (CREATE DATABASE …), never over one",
                           dm_db_display_name(p, target));
    }
    if (!e) {
        e = fetch_pg(p, s, k, id, &m, &info, &dump);
    }
    if (!e) {
        e = pg_restore_into(p, target, dump);
        remove_gently(dump);
        if (!e) {
            e = check_pg(p, info.id, target, m);
        }
        if (e) {
            e = dm_err_make(p, e->code, e->field,
                            "%s (the database %s may hold part of it: drop it and create it "
                            "again before another try)",
                            e->message, dm_db_display_name(p, target));
        }
    }
    json_decref(m);
    if (!e) {
        dm_log(DM_L_NOTICE,
               "DM01870: PostgreSQL database %s restored from verified backup %s: point the "
               "nodes at it",
               dm_db_display_name(p, target), info.id);
        if (out) {
            *out = info;
        }
    }
    return e;
}

/* Verify on PostgreSQL: the backup restored into a temporary database
 * dm_verify_<random> on the server of `server`, checked, dropped. */
static dm_err *verify_pg(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                         const char *id, const char *server, dm_backup_info *out)
{
    dm_backup_info info = {0};
    json_t *m = NULL;
    const char *dump = NULL, *name, *tmpdb = NULL, *pw = NULL;
    unsigned char r[6];
    apr_pool_t *sp;
    dm_db *db = NULL;
    int created = 0;
    dm_err *e;

    e = fetch_pg(p, s, k, id, &m, &info, &dump);
    if (e) {
        return e;
    }
    randombytes_buf(r, sizeof(r));
    name = apr_pstrcat(p, "dm_verify_", hex(p, r, sizeof(r)), NULL);
    apr_pool_create(&sp, p);
    e = dm_db_open(sp, server, NULL, &db);
    if (!e) {
        e = dm_db_exec(db, sp, apr_pstrcat(sp, "CREATE DATABASE ", name, NULL));
        created = !e;
    }
    if (e) {
        e = dm_err_make(p, e->code, e->field,
                        "backup: cannot create the verify database (verify restores into a "
                        "temporary database: the role needs CREATEDB): %s",
                        e->message);
    }
    if (!e) {
        e = dm_db_pg_conninfo(p, server, name, 0, &tmpdb, &pw);
    }
    if (!e) {
        e = pg_restore_into(p, tmpdb, dump);
    }
    remove_gently(dump);
    if (!e) {
        e = check_pg(p, info.id, tmpdb, m);
    }
    if (created) {
        dm_err *de = dm_db_exec(
            db, sp, apr_pstrcat(sp, "DROP DATABASE IF EXISTS ", name, " WITH (FORCE)", NULL));
        if (de) {
            dm_log(DM_L_WARN, "DM01871: could not drop the verify database %s: %s", name,
                   de->message);
        }
    }
    apr_pool_destroy(sp);
    json_decref(m);
    if (!e && out) {
        *out = info;
    }
    return e;
}

dm_err *dm_backup_verify(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                         const char *id, const char *tmp_near, dm_backup_info *out)
{
    if (dm_db_is_postgres(tmp_near)) {
        return verify_pg(p, s, k, id, tmp_near, out);
    }
    unsigned char r[4];
    const char *tmp;
    dm_err *e;

    randombytes_buf(r, sizeof(r));
    tmp = apr_pstrcat(p, tmp_near, ".verify-", hex(p, r, sizeof(r)), NULL);
    e = dm_backup_fetch(p, s, k, id, tmp, out);
    remove_gently(tmp);
    unlink(apr_pstrcat(p, tmp, "-wal", NULL));
    unlink(apr_pstrcat(p, tmp, "-shm", NULL));
    return e;
}

dm_err *dm_backup_remove(apr_pool_t *p, const dm_backup_store *s, const char *id)
{
    dm_message msg = {{0}};
    dm_status st = dm_storage_remove(s->host, s->pl, p, man_key(p, id), &msg);

    if (st == DM_OK) {
        st = dm_storage_remove(s->host, s->pl, p, obj_key(p, id), &msg);
    }
    return st == DM_OK ? NULL : storage_err(p, st, apr_pstrcat(p, "removing ", id, NULL), &msg);
}

/* ---- retention ---- */

static int64_t bucket(int64_t t, int kind)
{
    if (kind == 0) {
        return t / 3600;
    }
    if (kind == 1) {
        return t / 86400;
    }
    /* ISO weeks start on Monday; 1970-01-01 was a Thursday */
    return (t / 86400 + 3) / 7;
}

dm_err *dm_backup_prune(apr_pool_t *p, const dm_backup_store *s, const dm_backup_keys *k,
                        int hourly, int daily, int weekly, int64_t *deleted)
{
    apr_array_header_t *all;
    dm_err *e = dm_backup_list(p, s, k, &all);
    int keepn[3] = {hourly, daily, weekly};
    char *keep;

    *deleted = 0;
    if (e) {
        return e;
    }
    keep = apr_pcalloc(p, (apr_size_t)all->nelts + 1);
    for (int kind = 0; kind < 3; kind++) {
        int64_t last = -1;
        int n = 0;
        /* newest first: the newest backup of each bucket, for the newest n buckets */
        for (int i = all->nelts - 1; i >= 0 && n < keepn[kind]; i--) {
            const dm_backup_info *b = &APR_ARRAY_IDX(all, i, dm_backup_info);
            int64_t bk;
            if (!b->created) {
                continue;
            }
            bk = bucket(b->created, kind);
            if (bk != last) {
                keep[i] = 1;
                last = bk;
                n++;
            }
        }
    }
    for (int i = 0; !e && i < all->nelts; i++) {
        const dm_backup_info *b = &APR_ARRAY_IDX(all, i, dm_backup_info);
        /* a manifest this server cannot read is not ours to delete */
        if (!keep[i] && b->created) {
            e = dm_backup_remove(p, s, b->id);
            if (!e) {
                ++*deleted;
            }
        }
    }
    return e;
}

/* ---- swap in ---- */

dm_err *dm_backup_swap_in(apr_pool_t *p, const char *new_path, const char *db_path, int force)
{
    const char *old = apr_pstrcat(p, db_path, ".pre-restore", NULL);
    int held = 0, exists = access(db_path, F_OK) == 0;
    dm_err *e = dm_db_held_elsewhere(p, db_path, &held);

    if (e) {
        return e;
    }
    if (held) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "the database %s is open in another process (a running server): stop "
                           "Apache first, then restore",
                           db_path);
    }
    if (exists && !force) {
        return dm_err_make(p, DM_E_CONFLICT, NULL,
                           "the database %s exists: restore replaces it only with --force (the "
                           "server stopped; the old file is kept as %s)",
                           db_path, old);
    }
    if (exists && rename(db_path, old) != 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "cannot move %s aside: %s", db_path,
                           strerror(errno));
    }
    unlink(apr_pstrcat(p, old, "-wal", NULL));
    unlink(apr_pstrcat(p, old, "-shm", NULL));
    if (exists) {
        rename(apr_pstrcat(p, db_path, "-wal", NULL), apr_pstrcat(p, old, "-wal", NULL));
    }
    unlink(apr_pstrcat(p, db_path, "-wal", NULL));
    unlink(apr_pstrcat(p, db_path, "-shm", NULL));
    if (rename(new_path, db_path) != 0) {
        return dm_err_make(p, DM_E_INTERNAL, NULL, "cannot move %s to %s: %s", new_path, db_path,
                           strerror(errno));
    }
    dm_log(DM_L_NOTICE, "DM01650: database %s restored from a verified backup%s%s", db_path,
           exists ? "; the old file is kept as " : "", exists ? old : "");
    return NULL;
}
