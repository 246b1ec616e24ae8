/*
 * template.c — see template.h. A template is parsed once into a flat list
 * of nodes (text, variable, if, else, end if); an `if` knows where its
 * false branch starts and an `else` where its `if` ends, so rendering is a
 * single walk with jumps and no recursion.
 */
#include "base/template.h"

#include <apr_strings.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/validate.h"

typedef enum node_type { N_TEXT, N_VAR, N_IF, N_ELSE, N_END } node_type;

typedef struct node {
    node_type type;
    const char *s; /* N_TEXT: the text; N_VAR, N_IF: the name (NUL-terminated) */
    size_t len;
    size_t pos; /* byte offset of the tag (or text) in the source */
    int jump;   /* N_IF: first node of the false branch; N_ELSE: its N_END */
} node;

struct dm_tmpl {
    const char *field;
    const char *src;
    size_t len;
    dm_tmpl_mode mode;
    apr_array_header_t *nodes; /* node */
};

/* "line L, column C (byte B)" of offset `pos`, 1-based, columns in bytes. */
static const char *where(apr_pool_t *p, const char *src, size_t pos)
{
    size_t line = 1, col = 1;

    for (size_t i = 0; i < pos; i++) {
        if (src[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    return apr_psprintf(
        p, "line %" APR_SIZE_T_FMT ", column %" APR_SIZE_T_FMT " (byte %" APR_SIZE_T_FMT ")",
        (apr_size_t)line, (apr_size_t)col, (apr_size_t)pos);
}

static dm_err *syntax(apr_pool_t *p, const char *field, const char *src, size_t pos,
                      const char *what)
{
    return dm_err_make(p, DM_E_INVALID, field, "%s: %s at %s", field, what, where(p, src, pos));
}

static int is_name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int is_name_char(char c)
{
    return is_name_start(c) || (c >= '0' && c <= '9');
}

static int is_name(const char *s, size_t n)
{
    if (n == 0 || n > 64 || !is_name_start(s[0])) {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if (!is_name_char(s[i])) {
            return 0;
        }
    }
    return 1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* Finds needle (2 bytes) in s[from, len); len when absent. */
static size_t find2(const char *s, size_t len, size_t from, char a, char b)
{
    for (size_t i = from; i + 1 < len; i++) {
        if (s[i] == a && s[i + 1] == b) {
            return i;
        }
    }
    return len;
}

static node *push(dm_tmpl *t, node_type type, const char *s, size_t len, size_t pos)
{
    node *n = apr_array_push(t->nodes);

    n->type = type;
    n->s = s;
    n->len = len;
    n->pos = pos;
    n->jump = -1;
    return n;
}

dm_err *dm_tmpl_parse(apr_pool_t *p, const char *field, const char *src, size_t len,
                      dm_tmpl_mode mode, dm_tmpl **out)
{
    size_t max = mode == DM_TMPL_HEADER ? DM_TMPL_SUBJECT_MAX : DM_TMPL_MAX_BYTES;
    int open[DM_TMPL_MAX_DEPTH];    /* indices of the open N_IF nodes */
    int else_at[DM_TMPL_MAX_DEPTH]; /* index of their N_ELSE, -1 when none yet */
    int depth = 0;
    size_t i = 0;
    dm_tmpl *t;

    *out = NULL;
    if (!src) {
        src = "";
        len = 0;
    }
    if (len > max) {
        return dm_err_make(p, DM_E_INVALID, field, "%s: longer than %" APR_SIZE_T_FMT " bytes",
                           field, (apr_size_t)max);
    }
    if (memchr(src, '\0', len)) {
        return syntax(p, field, src, (size_t)((const char *)memchr(src, '\0', len) - src),
                      "a NUL byte");
    }
    t = apr_pcalloc(p, sizeof(*t));
    t->field = field;
    t->src = apr_pstrmemdup(p, src, len);
    t->len = len;
    t->mode = mode;
    t->nodes = apr_array_make(p, 16, sizeof(node));
    src = t->src;

    while (i < len) {
        size_t open_at = find2(src, len, i, '{', '{'), close_at, a, b;

        if (open_at > i) {
            if (mode == DM_TMPL_HEADER && dm_has_control_bytes(src + i, open_at - i)) {
                size_t k = i;
                while (!dm_has_control_bytes(src + k, 1)) {
                    k++;
                }
                return syntax(p, field, src, k, "a control character (a line break?)");
            }
            push(t, N_TEXT, src + i, open_at - i, i);
        }
        if (open_at >= len) {
            break;
        }
        close_at = find2(src, len, open_at + 2, '}', '}');
        if (close_at >= len) {
            return syntax(p, field, src, open_at, "a \"{{\" without its \"}}\"");
        }
        /* the tag's inside, spaces trimmed */
        a = open_at + 2;
        b = close_at;
        while (a < b && is_space(src[a])) {
            a++;
        }
        while (b > a && is_space(src[b - 1])) {
            b--;
        }
        if (b - a >= 3 && strncmp(src + a, "#if", 3) == 0) {
            size_t n = a + 3;
            if (n >= b || !is_space(src[n])) {
                return syntax(p, field, src, open_at, "{{#if}} needs a variable name");
            }
            while (n < b && is_space(src[n])) {
                n++;
            }
            if (!is_name(src + n, b - n)) {
                return syntax(
                    p, field, src, open_at,
                    apr_psprintf(p, "\"%.*s\" is not a variable name", (int)(b - n), src + n));
            }
            if (depth == DM_TMPL_MAX_DEPTH) {
                return syntax(p, field, src, open_at,
                              apr_psprintf(p, "{{#if}} nested deeper than %d", DM_TMPL_MAX_DEPTH));
            }
            push(t, N_IF, apr_pstrmemdup(p, src + n, b - n), b - n, open_at);
            open[depth] = t->nodes->nelts - 1;
            else_at[depth] = -1;
            depth++;
        } else if (b - a == 4 && strncmp(src + a, "else", 4) == 0) {
            if (depth == 0) {
                return syntax(p, field, src, open_at, "{{else}} outside {{#if}}");
            }
            if (else_at[depth - 1] >= 0) {
                return syntax(p, field, src, open_at, "a second {{else}} in one {{#if}}");
            }
            push(t, N_ELSE, NULL, 0, open_at);
            else_at[depth - 1] = t->nodes->nelts - 1;
            /* the false branch starts after the else */
            APR_ARRAY_IDX(t->nodes, open[depth - 1], node).jump = t->nodes->nelts;
        } else if (b - a == 3 && strncmp(src + a, "/if", 3) == 0) {
            int end;
            if (depth == 0) {
                return syntax(p, field, src, open_at, "{{/if}} without its {{#if}}");
            }
            depth--;
            push(t, N_END, NULL, 0, open_at);
            end = t->nodes->nelts - 1;
            if (else_at[depth] >= 0) {
                /* the end of the true branch jumps over the false one */
                APR_ARRAY_IDX(t->nodes, else_at[depth], node).jump = end;
            } else {
                APR_ARRAY_IDX(t->nodes, open[depth], node).jump = end;
            }
        } else if (is_name(src + a, b - a)) {
            push(t, N_VAR, apr_pstrmemdup(p, src + a, b - a), b - a, open_at);
        } else {
            size_t shown = b - a > 40 ? 40 : b - a;
            return syntax(p, field, src, open_at,
                          apr_psprintf(p, "\"{{%.*s}}\" is not a tag this language knows",
                                       (int)shown, src + a));
        }
        i = close_at + 2;
    }
    if (depth > 0) {
        return syntax(p, field, src, APR_ARRAY_IDX(t->nodes, open[depth - 1], node).pos,
                      "{{#if}} is never closed with {{/if}}");
    }
    *out = t;
    return NULL;
}

apr_array_header_t *dm_tmpl_vars(apr_pool_t *p, const dm_tmpl *t)
{
    apr_array_header_t *names = apr_array_make(p, 8, sizeof(const char *));

    for (int i = 0; i < t->nodes->nelts; i++) {
        const node *n = &APR_ARRAY_IDX(t->nodes, i, node);
        int seen = 0;
        if (n->type != N_VAR && n->type != N_IF) {
            continue;
        }
        for (int k = 0; k < names->nelts && !seen; k++) {
            seen = strcmp(APR_ARRAY_IDX(names, k, const char *), n->s) == 0;
        }
        if (!seen) {
            APR_ARRAY_PUSH(names, const char *) = n->s;
        }
    }
    return names;
}

static int declared_has(const apr_array_header_t *declared, const char *name)
{
    for (int k = 0; declared && k < declared->nelts; k++) {
        if (strcmp(APR_ARRAY_IDX(declared, k, const char *), name) == 0) {
            return 1;
        }
    }
    return 0;
}

dm_err *dm_tmpl_check_vars(apr_pool_t *p, const dm_tmpl *t, const apr_array_header_t *declared)
{
    for (int i = 0; i < t->nodes->nelts; i++) {
        const node *n = &APR_ARRAY_IDX(t->nodes, i, node);
        if ((n->type == N_VAR || n->type == N_IF) && !declared_has(declared, n->s)) {
            return syntax(p, t->field, t->src, n->pos,
                          apr_psprintf(p, "unknown variable \"%s\"", n->s));
        }
    }
    return NULL;
}

dm_err *dm_tmpl_check(apr_pool_t *p, const char *field, const char *src, size_t len,
                      dm_tmpl_mode mode, const apr_array_header_t *declared)
{
    dm_tmpl *t;
    dm_err *e = dm_tmpl_parse(p, field, src, len, mode, &t);

    return e ? e : dm_tmpl_check_vars(p, t, declared);
}

/* ---- helpers ---- */

const char *dm_tmpl_money(apr_pool_t *p, int64_t micros, const char *currency)
{
    /* unsigned, so INT64_MIN has a magnitude too */
    uint64_t mag = micros < 0 ? (uint64_t)0 - (uint64_t)micros : (uint64_t)micros;
    char frac[8];
    int n = 6;

    snprintf(frac, sizeof(frac), "%06u", (unsigned)(mag % 1000000u));
    while (n > 2 && frac[n - 1] == '0') {
        n--;
    }
    frac[n] = '\0';
    return apr_psprintf(p, "%s%" APR_UINT64_T_FMT ".%s %s", micros < 0 ? "-" : "",
                        (apr_uint64_t)(mag / 1000000u), frac,
                        currency && *currency ? currency : DM_TMPL_DEFAULT_CURRENCY);
}

const char *dm_tmpl_time(apr_pool_t *p, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[48];

    if (!gmtime_r(&tt, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm) == 0) {
        return apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)t);
    }
    return apr_pstrdup(p, buf);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n > k && strcmp(s + n - k, suffix) == 0;
}

/* The text of variable `name` before escaping. */
static const char *value_text(apr_pool_t *p, const char *name, const json_t *vars, size_t *len)
{
    const json_t *v = vars ? json_object_get(vars, name) : NULL;
    const char *s = "";

    if (!v || json_is_null(v)) {
        s = "";
    } else if (json_is_string(v)) {
        int64_t t = 0;
        s = json_string_value(v);
        if (ends_with(name, "_at") && !dm_json_parse_time(p, name, s, &t)) {
            s = dm_tmpl_time(p, t);
        } else {
            *len = json_string_length(v);
            return s;
        }
    } else if (json_is_integer(v)) {
        int64_t i = (int64_t)json_integer_value(v);
        if (ends_with(name, "_micros")) {
            s = dm_tmpl_money(p, i, json_string_value(json_object_get(vars, "currency")));
        } else if (ends_with(name, "_at")) {
            s = dm_tmpl_time(p, i);
        } else {
            s = apr_psprintf(p, "%" APR_INT64_T_FMT, (apr_int64_t)i);
        }
    } else if (json_is_real(v)) {
        s = apr_psprintf(p, "%.15g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        s = json_is_true(v) ? "yes" : "no";
    } else {
        size_t n = 0;
        s = dm_json_dump(p, v, &n);
        *len = n;
        return s;
    }
    *len = strlen(s);
    return s;
}

static int truthy(const json_t *vars, const char *name)
{
    const json_t *v = vars ? json_object_get(vars, name) : NULL;

    if (!v || json_is_null(v) || json_is_false(v)) {
        return 0;
    }
    if (json_is_string(v)) {
        return json_string_length(v) > 0;
    }
    if (json_is_integer(v)) {
        return json_integer_value(v) != 0;
    }
    if (json_is_real(v)) {
        return json_real_value(v) != 0.0;
    }
    if (json_is_array(v)) {
        return json_array_size(v) > 0;
    }
    if (json_is_object(v)) {
        return json_object_size(v) > 0;
    }
    return 1;
}

typedef struct sbuf {
    apr_pool_t *p;
    char *b;
    size_t len, cap;
    int over;
} sbuf;

static void put(sbuf *s, const char *x, size_t n)
{
    if (s->over || n == 0) {
        return;
    }
    if (s->len + n > DM_TMPL_RENDER_MAX) {
        s->over = 1;
        return;
    }
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        char *nb;
        while (cap < s->len + n + 1) {
            cap *= 2;
        }
        nb = apr_palloc(s->p, cap);
        if (s->len) {
            memcpy(nb, s->b, s->len);
        }
        s->b = nb;
        s->cap = cap;
    }
    memcpy(s->b + s->len, x, n);
    s->len += n;
    s->b[s->len] = '\0';
}

static void put_value(sbuf *s, dm_tmpl_mode mode, const char *v, size_t n)
{
    size_t run = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        const char *rep = NULL;
        if (mode == DM_TMPL_HTML) {
            switch (c) {
            case '&':
                rep = "&amp;";
                break;
            case '<':
                rep = "&lt;";
                break;
            case '>':
                rep = "&gt;";
                break;
            case '"':
                rep = "&quot;";
                break;
            case '\'':
                rep = "&#39;";
                break;
            default:
                break;
            }
        } else if (mode == DM_TMPL_HEADER && (c < 0x20 || c == 0x7f)) {
            rep = " ";
        }
        if (rep) {
            put(s, v + i - run, run);
            put(s, rep, strlen(rep));
            run = 0;
        } else {
            run++;
        }
    }
    put(s, v + n - run, run);
}

dm_err *dm_tmpl_render(apr_pool_t *p, const dm_tmpl *t, const json_t *vars, const char **out,
                       size_t *out_len)
{
    sbuf s = {p, NULL, 0, 0, 0};
    int i = 0;

    put(&s, "", 0);
    while (i < t->nodes->nelts) {
        const node *n = &APR_ARRAY_IDX(t->nodes, i, node);
        switch (n->type) {
        case N_TEXT:
            put(&s, n->s, n->len);
            i++;
            break;
        case N_VAR: {
            size_t len = 0;
            const char *v = value_text(p, n->s, vars, &len);
            put_value(&s, t->mode, v, len);
            i++;
            break;
        }
        case N_IF:
            i = truthy(vars, n->s) ? i + 1 : n->jump;
            break;
        case N_ELSE:
            i = n->jump; /* the end of a true branch: skip the false one */
            break;
        case N_END:
            i++;
            break;
        }
    }
    if (s.over) {
        return dm_err_make(p, DM_E_INVALID, t->field,
                           "%s: the rendered text is longer than %d bytes", t->field,
                           DM_TMPL_RENDER_MAX);
    }
    *out = s.b ? s.b : "";
    if (out_len) {
        *out_len = s.len;
    }
    return NULL;
}
