/*
 * apache_conf.c — see apache_conf.h. Files are read whole (a configuration
 * is small) and scanned line by line; nothing is kept but the Defines, the
 * ServerRoot and the latest occurrence of the directive wanted.
 */
#include "base/apache_conf.h"

#include <apr_file_info.h>
#include <apr_file_io.h>
#include <apr_fnmatch.h>
#include <apr_lib.h>
#include <apr_strings.h>
#include <apr_tables.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_FILE_BYTES (16 * 1024 * 1024)

typedef struct reader {
    apr_pool_t *p;
    const char *name;        /* the directive wanted */
    apr_table_t *defines;    /* Define NAME VALUE */
    const char *server_root; /* the latest ServerRoot */
    dm_apache_directive hit;
    int found;
    apr_array_header_t *all; /* find_all: every occurrence (dm_apache_args) */
} reader;

static dm_err *read_conf(reader *r, const char *path, int depth);

static const char *under_root(reader *r, const char *path)
{
    size_t n = strlen(r->server_root);

    if (path[0] == '/') {
        return path;
    }
    return apr_pstrcat(r->p, r->server_root, n && r->server_root[n - 1] == '/' ? "" : "/", path,
                       NULL);
}

/* ${NAME} replaced by its Define, else the environment's value; an
 * unknown name stays as written (Apache warns and does the same). */
static const char *substitute(reader *r, const char *line)
{
    const char *s = line, *open, *out = "";

    while ((open = strstr(s, "${")) != NULL) {
        const char *close = strchr(open + 2, '}');
        const char *var, *val;
        if (!close) {
            break;
        }
        var = apr_pstrndup(r->p, open + 2, (apr_size_t)(close - open - 2));
        val = apr_table_get(r->defines, var);
        if (!val) {
            val = getenv(var);
        }
        out =
            apr_pstrcat(r->p, out, apr_pstrndup(r->p, s, (apr_size_t)(open - s)),
                        val ? val : apr_pstrndup(r->p, open, (apr_size_t)(close - open + 1)), NULL);
        s = close + 1;
    }
    return *out ? apr_pstrcat(r->p, out, s, NULL) : s;
}

/* The next word of a directive's arguments, as ap_getword_conf reads it:
 * quoted with " or ' (a backslash before the quote keeps it), else up to
 * the next white space. NULL when there is none. */
static const char *next_word(apr_pool_t *p, const char **line)
{
    const char *s = *line;
    char *w, *o;

    while (apr_isspace(*s)) {
        s++;
    }
    if (!*s) {
        *line = s;
        return NULL;
    }
    if (*s == '"' || *s == '\'') {
        char q = *s++;
        w = o = apr_palloc(p, strlen(s) + 1);
        while (*s && *s != q) {
            if (*s == '\\' && s[1] == q) {
                s++;
            }
            *o++ = *s++;
        }
        *o = '\0';
        *line = *s ? s + 1 : s;
        return w;
    }
    *line = s;
    while (**line && !apr_isspace(**line)) {
        (*line)++;
    }
    return apr_pstrndup(p, s, (apr_size_t)(*line - s));
}

static int has_wildcard(const char *s)
{
    return strpbrk(s, "*?[") != NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static dm_err *include_path(reader *r, const char *path, int optional, int depth,
                            const char *where);

/* Every entry of a directory but . and .., sorted, followed. */
static dm_err *include_dir(reader *r, const char *dir, int depth, const char *where)
{
    apr_array_header_t *names = apr_array_make(r->p, 16, sizeof(const char *));
    apr_dir_t *d;
    apr_finfo_t fi;
    dm_err *e = NULL;

    if (apr_dir_open(&d, dir, r->p) != APR_SUCCESS) {
        return dm_err_make(r->p, DM_E_UNAVAILABLE, NULL, "cannot read the directory %s (%s)", dir,
                           where);
    }
    while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS) {
        if (strcmp(fi.name, ".") != 0 && strcmp(fi.name, "..") != 0) {
            APR_ARRAY_PUSH(names, const char *) = apr_pstrdup(r->p, fi.name);
        }
    }
    apr_dir_close(d);
    qsort(names->elts, (size_t)names->nelts, sizeof(const char *), by_name);
    for (int i = 0; !e && i < names->nelts; i++) {
        e = include_path(r,
                         apr_pstrcat(r->p, dir, "/", APR_ARRAY_IDX(names, i, const char *), NULL),
                         0, depth, where);
    }
    return e;
}

static dm_err *include_path(reader *r, const char *path, int optional, int depth, const char *where)
{
    apr_finfo_t fi;

    if (apr_stat(&fi, path, APR_FINFO_TYPE, r->p) != APR_SUCCESS) {
        return optional
                   ? NULL
                   : dm_err_make(r->p, DM_E_UNAVAILABLE, NULL, "cannot read %s (%s)", path, where);
    }
    return fi.filetype == APR_DIR ? include_dir(r, path, depth, where)
                                  : read_conf(r, path, depth + 1);
}

/* Include / IncludeOptional <pattern>, from `where` (file:line). */
static dm_err *include(reader *r, const char *arg, int optional, int depth, const char *where)
{
    const char *path = under_root(r, arg), *slash = strrchr(path, '/');
    apr_array_header_t *names = NULL;
    const char *dir;
    dm_err *e = NULL;

    if (!has_wildcard(slash ? slash + 1 : path)) {
        return include_path(r, path, optional, depth, where);
    }
    dir = slash ? apr_pstrndup(r->p, path, (apr_size_t)(slash - path)) : ".";
    if (apr_match_glob(path, &names, r->p) != APR_SUCCESS || names->nelts == 0) {
        return optional ? NULL
                        : dm_err_make(r->p, DM_E_UNAVAILABLE, NULL, "no file matches %s (%s)", path,
                                      where);
    }
    qsort(names->elts, (size_t)names->nelts, sizeof(const char *), by_name);
    for (int i = 0; !e && i < names->nelts; i++) {
        e = include_path(r,
                         apr_pstrcat(r->p, dir, "/", APR_ARRAY_IDX(names, i, const char *), NULL),
                         optional, depth, where);
    }
    return e;
}

/* One logical line (continuations joined) that starts at `lineno`. */
static dm_err *directive(reader *r, const char *file, int lineno, const char *text, int depth)
{
    const char *s = substitute(r, text);
    const char *name = next_word(r->p, &s), *arg;
    const char *where = apr_psprintf(r->p, "%s:%d", file, lineno);

    if (!name || name[0] == '#' || name[0] == '<') {
        return NULL; /* blank, comment, or a section's opening or closing */
    }
    if (r->all && strcasecmp(name, r->name) == 0) {
        dm_apache_args *a = apr_array_push(r->all);
        apr_array_header_t *words = apr_array_make(r->p, 4, sizeof(const char *));
        const char *w;
        while ((w = next_word(r->p, &s)) != NULL) {
            APR_ARRAY_PUSH(words, const char *) = w;
        }
        a->file = file;
        a->line = lineno;
        a->argc = words->nelts;
        a->argv = (const char **)words->elts;
        return NULL;
    }
    arg = next_word(r->p, &s);
    if (strcasecmp(name, r->name) == 0 && arg) {
        r->hit.value = arg;
        r->hit.file = file;
        r->hit.line = lineno;
        r->found = 1;
    } else if (strcasecmp(name, "ServerRoot") == 0 && arg) {
        r->server_root = arg;
    } else if (strcasecmp(name, "Define") == 0 && arg) {
        const char *val = next_word(r->p, &s);
        apr_table_set(r->defines, arg, val ? val : "");
    } else if (strcasecmp(name, "UnDefine") == 0 && arg) {
        apr_table_unset(r->defines, arg);
    } else if ((strcasecmp(name, "Include") == 0 || strcasecmp(name, "IncludeOptional") == 0) &&
               arg) {
        return include(r, arg, strcasecmp(name, "IncludeOptional") == 0, depth, where);
    }
    return NULL;
}

static dm_err *read_conf(reader *r, const char *path, int depth)
{
    apr_file_t *f;
    apr_finfo_t fi;
    apr_size_t n = 0;
    char *buf, *line, *end;
    int lineno = 0;
    dm_err *e = NULL;

    if (depth > MAX_DEPTH) {
        return dm_err_make(r->p, DM_E_INVALID, NULL,
                           "%s: includes nested more than %d deep (an Include loop?)", path,
                           MAX_DEPTH);
    }
    if (apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0, r->p) != APR_SUCCESS) {
        return dm_err_make(r->p, DM_E_UNAVAILABLE, NULL, "cannot read the configuration %s", path);
    }
    if (apr_file_info_get(&fi, APR_FINFO_SIZE, f) != APR_SUCCESS || fi.size < 0 ||
        fi.size > MAX_FILE_BYTES) {
        apr_file_close(f);
        return dm_err_make(r->p, DM_E_UNAVAILABLE, NULL, "cannot read the configuration %s", path);
    }
    buf = apr_palloc(r->p, (apr_size_t)fi.size + 1);
    if (fi.size > 0 && apr_file_read_full(f, buf, (apr_size_t)fi.size, &n) != APR_SUCCESS) {
        apr_file_close(f);
        return dm_err_make(r->p, DM_E_UNAVAILABLE, NULL, "cannot read the configuration %s", path);
    }
    apr_file_close(f);
    buf[n] = '\0';

    for (line = buf; !e && *line; line = end) {
        const char *joined = "";
        int first = lineno + 1;
        /* a logical line: physical lines joined while one ends in '\' */
        for (;;) {
            char *nl = strchr(line, '\n'), *t;
            end = nl ? nl + 1 : line + strlen(line);
            t = nl ? nl : end;
            lineno++;
            while (t > line && apr_isspace(t[-1])) {
                t--;
            }
            if (t > line && t[-1] == '\\' && *end) {
                joined = apr_pstrcat(r->p, joined,
                                     apr_pstrndup(r->p, line, (apr_size_t)(t - line - 1)), NULL);
                line = end;
                continue;
            }
            joined =
                apr_pstrcat(r->p, joined, apr_pstrndup(r->p, line, (apr_size_t)(t - line)), NULL);
            break;
        }
        e = directive(r, path, first, joined, depth);
    }
    return e;
}

dm_err *dm_apache_conf_find(apr_pool_t *p, const char *conf, const char *name, int path,
                            dm_apache_directive *out, int *found)
{
    reader r;
    const char *slash = strrchr(conf, '/');
    dm_err *e;

    memset(&r, 0, sizeof(r));
    r.p = p;
    r.name = name;
    r.defines = apr_table_make(p, 8);
    r.server_root =
        slash ? (slash == conf ? "/" : apr_pstrndup(p, conf, (apr_size_t)(slash - conf))) : ".";
    *found = 0;
    e = read_conf(&r, conf, 0);
    if (e || !r.found) {
        return e;
    }
    *out = r.hit;
    if (path) {
        out->value = under_root(&r, r.hit.value);
    }
    *found = 1;
    return NULL;
}

dm_err *dm_apache_conf_find_all(apr_pool_t *p, const char *conf, const char *name,
                                apr_array_header_t **out, const char **server_root)
{
    reader r;
    const char *slash = strrchr(conf, '/');
    dm_err *e;

    memset(&r, 0, sizeof(r));
    r.p = p;
    r.name = name;
    r.defines = apr_table_make(p, 8);
    r.all = apr_array_make(p, 4, sizeof(dm_apache_args));
    r.server_root =
        slash ? (slash == conf ? "/" : apr_pstrndup(p, conf, (apr_size_t)(slash - conf))) : ".";
    *out = NULL;
    e = read_conf(&r, conf, 0);
    if (e) {
        return e;
    }
    *out = r.all;
    if (server_root) {
        *server_root = r.server_root;
    }
    return NULL;
}
