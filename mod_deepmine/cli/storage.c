/*
 * storage.c — deepminectl storage put|get|ls|rm: the objects of the storage
 * plugin the server's configuration chooses (DeepMineStorage, else its only
 * storage plugin), reached as the server reaches them: the configuration's
 * `DeepMinePlugin storage …` and their `DeepMinePluginSet` lines go
 * through the plugin host (declare, set, init: env:/file: resolved, the
 * plugin's own checks), then the typed calls of plugins/storage.h, with
 * the host's key rules. Other plugins are not loaded. No database.
 *
 * get writes to FILE.part and renames it into place only when the object
 * arrived whole: a failed get leaves no FILE.
 */
#include <apr_file_info.h>
#include <apr_hash.h>
#include <apr_strings.h>
#include <apr_time.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/apache_conf.h"
#include "commands.h"
#include "plugins/plugin_host.h"
#include "plugins/storage.h"

typedef dm_cli_storage loaded;

/* Loads the configuration's storage plugins and picks one (commands.h). */
int dm_cli_storage_load(dm_cli *c, dm_cli_storage *out)
{
    apr_array_header_t *plugins = NULL, *sets = NULL;
    apr_hash_t *names = apr_hash_make(c->pool);
    const char *root = NULL, *why = NULL, *name = dm_cli_opt(c, "plugin");
    dm_apache_directive chosen;
    int found = 0;
    dm_err *e;

    memset(out, 0, sizeof(*out));
    if (!c->config) {
        fprintf(stderr,
                "%s: storage needs the server's configuration: --config FILE or "
                "$DEEPMINE_CONFIG\n",
                c->tool->name);
        return DM_CLI_USAGE;
    }
    e = dm_apache_conf_find_all(c->pool, c->config, "DeepMinePlugin", &plugins, &root);
    if (!e) {
        e = dm_apache_conf_find_all(c->pool, c->config, "DeepMinePluginSet", &sets, NULL);
    }
    if (!e && !name) {
        e = dm_apache_conf_find(c->pool, c->config, "DeepMineStorage", 0, &chosen, &found);
        if (!e && found) {
            name = chosen.value;
        }
    }
    if (!e) {
        e = dm_plugins_create(c->pool, &out->host);
    }
    for (int i = 0; !e && i < plugins->nelts; i++) {
        const dm_apache_args *a = &APR_ARRAY_IDX(plugins, i, dm_apache_args);
        const char *path;
        if (a->argc < 3 || strcasecmp(a->argv[0], "storage") != 0) {
            continue;
        }
        path =
            a->argv[2][0] == '/' ? a->argv[2] : apr_pstrcat(c->pool, root, "/", a->argv[2], NULL);
        e = dm_plugins_declare(out->host, "storage", a->argv[1], path);
        if (e) {
            e = dm_err_make(c->pool, e->code, NULL, "%s:%d: %s", a->file, a->line, e->message);
        }
        apr_hash_set(names, a->argv[1], APR_HASH_KEY_STRING, "1");
    }
    for (int i = 0; !e && i < sets->nelts; i++) {
        const dm_apache_args *a = &APR_ARRAY_IDX(sets, i, dm_apache_args);
        if (a->argc >= 3 && apr_hash_get(names, a->argv[0], APR_HASH_KEY_STRING)) {
            e = dm_plugins_set(out->host, a->argv[0], a->argv[1], a->argv[2]);
        }
    }
    if (!e) {
        e = dm_plugins_init_all(out->host);
    }
    if (e) {
        return dm_cli_fail(c, e);
    }
    out->pl = dm_storage_plugin(out->host, name, &why);
    if (!out->pl) {
        fprintf(stderr, "%s: %s (in %s)\n", c->tool->name, why, c->config);
        return DM_CLI_FAIL;
    }
    return DM_CLI_OK;
}

static int failed(dm_cli *c, const char *what, const char *key, const dm_message *msg)
{
    fprintf(stderr, "%s: storage %s %s: %s\n", c->tool->name, what, key, msg->text);
    return DM_CLI_FAIL;
}

/* ---- put ---- */

typedef struct fd_source {
    int fd;
} fd_source;

static dm_status fd_read(void *ctx, void *buf, size_t cap, size_t *got)
{
    fd_source *s = ctx;
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

int dm_cmd_storage_put(dm_cli *c)
{
    const char *key = c->argv[0], *file = c->argc > 1 ? c->argv[1] : NULL;
    const char *type = dm_cli_opt(c, "type");
    loaded l;
    dm_message msg;
    dm_status st;
    int rc;

    if (!file == !dm_cli_flag(c, "stdin")) {
        return dm_cli_usage(c);
    }
    rc = dm_cli_storage_load(c, &l);
    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (!file) {
        /* stdin: read whole first, since a put announces its length */
        size_t len = 0, cap = 65536;
        char *buf = apr_palloc(c->pool, cap);
        for (;;) {
            ssize_t n;
            if (len == cap) {
                char *nb = apr_palloc(c->pool, cap * 2);
                memcpy(nb, buf, len);
                buf = nb;
                cap *= 2;
            }
            n = read(0, buf + len, cap - len);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                fprintf(stderr, "%s: cannot read stdin: %s\n", c->tool->name, strerror(errno));
                return DM_CLI_FAIL;
            }
            if (n == 0) {
                break;
            }
            len += (size_t)n;
        }
        st = dm_storage_put_buffer(l.host, l.pl, c->pool, key, type, buf, len, &msg);
        if (st != DM_OK) {
            return failed(c, "put", key, &msg);
        }
        printf("stored %s (%" APR_SIZE_T_FMT " bytes) in %s\n", key, len, l.pl->name);
        return DM_CLI_OK;
    } else {
        struct stat sb;
        fd_source src;
        src.fd = open(file, O_RDONLY | O_CLOEXEC);
        if (src.fd < 0 || fstat(src.fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            fprintf(stderr, "%s: cannot read %s: %s\n", c->tool->name, file,
                    src.fd < 0 ? strerror(errno) : "not a regular file");
            if (src.fd >= 0) {
                close(src.fd);
            }
            return DM_CLI_FAIL;
        }
        st = dm_storage_put(l.host, l.pl, c->pool, key, type, (int64_t)sb.st_size, fd_read, &src,
                            &msg);
        close(src.fd);
        if (st != DM_OK) {
            return failed(c, "put", key, &msg);
        }
        printf("stored %s (%" APR_INT64_T_FMT " bytes) in %s\n", key, (apr_int64_t)sb.st_size,
               l.pl->name);
        return DM_CLI_OK;
    }
}

/* ---- get ---- */

static dm_status fd_write(void *ctx, const void *buf, size_t len)
{
    const int *fd = ctx;
    const char *b = buf;

    while (len > 0) {
        ssize_t n = write(*fd, b, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return DM_ERR_TEMPORARY;
        }
        b += n;
        len -= (size_t)n;
    }
    return DM_OK;
}

int dm_cmd_storage_get(dm_cli *c)
{
    const char *key = c->argv[0];
    const char *file = c->argc > 1 ? c->argv[1] : NULL;
    const char *part = NULL;
    loaded l;
    dm_message msg;
    dm_status st;
    int64_t size = 0;
    int fd = 1, rc = dm_cli_storage_load(c, &l);

    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (file) {
        part = apr_pstrcat(c->pool, file, ".part", NULL);
        fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) {
            fprintf(stderr, "%s: cannot create %s: %s\n", c->tool->name, part, strerror(errno));
            return DM_CLI_FAIL;
        }
    }
    st = dm_storage_get(l.host, l.pl, c->pool, key, fd_write, &fd, &size, &msg);
    if (part) {
        if (st == DM_OK && (fsync(fd) != 0 || close(fd) != 0)) {
            st = DM_ERR_TEMPORARY;
            snprintf(msg.text, sizeof(msg.text), "cannot write %s: %s", part, strerror(errno));
        } else if (st != DM_OK) {
            close(fd);
        }
        if (st == DM_OK && rename(part, file) != 0) {
            st = DM_ERR_TEMPORARY;
            snprintf(msg.text, sizeof(msg.text), "cannot rename %s: %s", part, strerror(errno));
        }
        if (st != DM_OK) {
            unlink(part);
        }
    }
    if (st != DM_OK) {
        return failed(c, "get", key, &msg);
    }
    if (part) {
        printf("wrote %s (%" APR_INT64_T_FMT " bytes) to %s\n", key, (apr_int64_t)size, file);
    }
    return DM_CLI_OK;
}

/* ---- ls, rm ---- */

static dm_status print_one(void *ctx, const char *key, int64_t size, int64_t mtime)
{
    apr_pool_t *p = ctx;
    char when[APR_RFC822_DATE_LEN + 8];
    apr_time_exp_t t;
    apr_size_t n = 0;

    apr_time_exp_gmt(&t, apr_time_from_sec(mtime));
    apr_strftime(when, &n, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &t);
    (void)p;
    printf("%" APR_INT64_T_FMT "\t%s\t%s\n", (apr_int64_t)size, when, key);
    return DM_OK;
}

int dm_cmd_storage_ls(dm_cli *c)
{
    const char *prefix = c->argc > 0 ? c->argv[0] : "";
    loaded l;
    dm_message msg;
    int rc = dm_cli_storage_load(c, &l);

    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (dm_storage_list(l.host, l.pl, c->pool, prefix, print_one, c->pool, &msg) != DM_OK) {
        return failed(c, "ls", prefix, &msg);
    }
    return DM_CLI_OK;
}

int dm_cmd_storage_rm(dm_cli *c)
{
    const char *key = c->argv[0];
    loaded l;
    dm_message msg;
    int rc = dm_cli_storage_load(c, &l);

    if (rc != DM_CLI_OK) {
        return rc;
    }
    if (dm_storage_remove(l.host, l.pl, c->pool, key, &msg) != DM_OK) {
        return failed(c, "rm", key, &msg);
    }
    printf("removed %s\n", key);
    return DM_CLI_OK;
}
