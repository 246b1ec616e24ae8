/*
 * mailer-spool — a mailer plugin that delivers nothing: it writes each
 * message as an RFC 5322 .eml file into a directory (the setting `dir`), for
 * development, for tests, and for sites that hand the spool to their own MTA.
 *
 * Invariants:
 * - A file appears whole or not at all: it is written under a temporary
 *   name in the same directory, fsync'ed, then renamed into place.
 * - The file name and the Message-ID are derived from the idempotency key,
 *   so sending the same key again replaces the file instead of adding one.
 * - Per-instance state lives in the settings (read through host->setting on
 *   every call), never in statics: the same .so may be declared twice under
 *   two names with two directories. The only static is the host table.
 * - Memory: the message is built in a malloc'd buffer this plugin frees
 *   before send() returns; what goes back to the host (the message id) is
 *   allocated with host->alloc.
 */
#include <deepmine/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_VERSION "1.0.0"
/* RFC 2047: a line holding encoded-words is at most 76 characters; each
 * word spends 12 on "=?UTF-8?B?" and "?=", the rest on base64. */
#define LINE_MAX_WORDS 76
/* RFC 5322 2.1.1: lines SHOULD stay within 78 characters. */
#define LINE_SOFT_MAX 78
/* Longest unencoded header value we write on one line (RFC 5322: 998). */
#define HEADER_VALUE_MAX 900

static const dm_host *host;

/* ---- a growable buffer, owned by this plugin ---- */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void buf_add(buf *b, const char *s, size_t n)
{
    if (b->oom || n == 0) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static void buf_fmt(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void buf_fmt(buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        b->oom = 1; /* only used for short, bounded lines */
        return;
    }
    buf_add(b, tmp, (size_t)n);
}

static void set_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

/* ---- header encoding ---- */

static int has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t') {
            return 1;
        }
        if (c == 0x7f) {
            return 1;
        }
    }
    return 0;
}

static int is_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] >= 0x80) {
            return 0;
        }
    }
    return 1;
}

/* Unstructured text as RFC 2047 encoded-words ("=?UTF-8?B?...?="), one word
 * per line, never splitting a UTF-8 sequence. RFC 2047 caps each line that
 * holds an encoded-word at 76 characters; *col is the current column. */
static int encode_words(dm_call *call, buf *b, const char *s, size_t n, size_t *col)
{
    size_t at = 0;

    while (at < n) {
        size_t room = *col < LINE_MAX_WORDS ? LINE_MAX_WORDS - *col : 0, take, most;
        char *b64;

        if (room < 12 + 4) {
            /* Not even one group fits after the header's name: fold first. */
            buf_str(b, "\r\n ");
            *col = 1;
            room = LINE_MAX_WORDS - 1;
        }
        most = (room - 12) / 4 * 3;
        take = n - at < most ? n - at : most;
        if (at + take < n) {
            size_t cut = take;
            /* Back off to the start of a character (not a continuation byte). */
            while (cut > 0 && ((unsigned char)s[at + cut] & 0xC0) == 0x80) {
                cut--;
            }
            if (cut > 0) {
                take = cut;
            }
        }
        b64 = host->base64_encode(call, s + at, take);
        if (!b64) {
            return 0;
        }
        buf_str(b, "=?UTF-8?B?");
        buf_str(b, b64);
        buf_str(b, "?=");
        *col += 12 + strlen(b64);
        at += take;
        if (at < n) {
            buf_str(b, "\r\n ");
            *col = 1;
        }
    }
    return 1;
}

/* ASCII text folded at spaces to keep lines within 78 characters where the
 * words allow (RFC 5322 2.2.3: the fold goes before the space). */
static void fold_ascii(buf *b, const char *s, size_t n, size_t *col)
{
    size_t i = 0;

    while (i < n) {
        size_t j = i + 1;
        while (j < n && s[j] != ' ') {
            j++;
        }
        if (s[i] == ' ' && *col + (j - i) > LINE_SOFT_MAX && *col > 1) {
            buf_str(b, "\r\n");
            *col = 0;
        }
        buf_add(b, s + i, j - i);
        *col += j - i;
        i = j;
    }
}

/* An unstructured header value (Subject, extra headers) after "Name: ":
 * folded ASCII when it is ASCII and not huge, else encoded-words. */
static int put_text(dm_call *call, buf *b, const char *name, const char *s, size_t n)
{
    size_t col = strlen(name) + 2;

    buf_str(b, name);
    buf_str(b, ": ");
    if (is_ascii(s, n) && n <= HEADER_VALUE_MAX) {
        fold_ascii(b, s, n, &col);
    } else if (!encode_words(call, b, s, n, &col)) {
        return 0;
    }
    buf_str(b, "\r\n");
    return 1;
}

/* Finds the addr-spec in "addr" or "Display Name <addr>". */
static void split_address(dm_str a, dm_str *name, dm_str *addr)
{
    const char *lt = memchr(a.ptr, '<', a.len);
    const char *gt = lt ? memchr(lt, '>', a.len - (size_t)(lt - a.ptr)) : NULL;

    name->ptr = a.ptr;
    name->len = 0;
    *addr = a;
    if (lt && gt) {
        addr->ptr = lt + 1;
        addr->len = (size_t)(gt - lt - 1);
        name->len = (size_t)(lt - a.ptr);
        while (name->len && (name->ptr[name->len - 1] == ' ' || name->ptr[name->len - 1] == '\t')) {
            name->len--;
        }
        while (name->len && (name->ptr[0] == ' ' || name->ptr[0] == '\t')) {
            name->ptr++;
            name->len--;
        }
        if (name->len >= 2 && name->ptr[0] == '"' && name->ptr[name->len - 1] == '"') {
            name->ptr++;
            name->len -= 2;
        }
    }
}

/* An address header (From, To). A non-ASCII display name is encoded; a
 * non-ASCII address (SMTPUTF8) is refused. Returns 0 on refusal. */
static int put_address(dm_call *call, buf *b, const char *header, dm_str a)
{
    dm_str name, addr;
    size_t col = strlen(header) + 2;

    buf_str(b, header);
    buf_str(b, ": ");
    if (is_ascii(a.ptr, a.len)) {
        fold_ascii(b, a.ptr, a.len, &col);
        buf_str(b, "\r\n");
        return 1;
    }
    split_address(a, &name, &addr);
    if (addr.ptr == a.ptr || !is_ascii(addr.ptr, addr.len)) {
        return 0;
    }
    if (!encode_words(call, b, name.ptr, name.len, &col)) {
        return 0;
    }
    if (col + addr.len + 3 > LINE_SOFT_MAX) {
        buf_str(b, "\r\n");
    }
    buf_str(b, " <");
    buf_add(b, addr.ptr, addr.len);
    buf_str(b, ">\r\n");
    return 1;
}

/* The domain for the Message-ID: the sender's, when it is a plain one. */
static void message_id_domain(dm_str from, char *out, size_t outsz)
{
    dm_str name, addr;
    const char *at;
    size_t n;

    split_address(from, &name, &addr);
    at = addr.len ? memchr(addr.ptr, '@', addr.len) : NULL;
    if (at) {
        /* The last '@' wins: local parts may be quoted and contain one. */
        const char *p;
        while ((p = memchr(at + 1, '@', addr.len - (size_t)(at + 1 - addr.ptr))) != NULL) {
            at = p;
        }
        n = addr.len - (size_t)(at + 1 - addr.ptr);
        if (n > 0 && n < outsz) {
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                char c = at[1 + i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-')) {
                    ok = 0;
                }
            }
            if (ok) {
                memcpy(out, at + 1, n);
                out[n] = '\0';
                return;
            }
        }
    }
    snprintf(out, outsz, "mailer-spool.invalid");
}

/* RFC 5322 date, in UTC, independent of the locale. */
static void rfc5322_date(char *out, size_t outsz)
{
    static const char *days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    snprintf(out, outsz, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- body encoding ---- */

/* Quoted-printable (RFC 2045 6.7): line breaks ("\n" or "\r\n") become CRLF,
 * lines are kept to 76 characters with soft breaks. Adds no final break. */
static void put_qp(buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[3];
        size_t w;
        int at_eol;

        if (c == '\r' && i + 1 < n && s[i + 1] == '\n') {
            continue;
        }
        if (c == '\n') {
            buf_str(b, "\r\n");
            col = 0;
            continue;
        }
        at_eol =
            i + 1 == n || s[i + 1] == '\n' || (s[i + 1] == '\r' && i + 2 < n && s[i + 2] == '\n');
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
            enc[0] = (char)c;
            w = 1;
        } else {
            enc[0] = '=';
            enc[1] = hex[c >> 4];
            enc[2] = hex[c & 15];
            w = 3;
        }
        if (col + w > 75) {
            buf_str(b, "=\r\n");
            col = 0;
        }
        buf_add(b, enc, w);
        col += w;
    }
}

/* A body of one part: it ends with a line break. */
static void put_single_body(buf *b, const char *s, size_t n)
{
    put_qp(b, s, n);
    if (n == 0 || s[n - 1] != '\n') {
        buf_str(b, "\r\n");
    }
}

static void put_part_headers(buf *b, const char *type)
{
    buf_fmt(b, "Content-Type: %s; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
            type);
}

/* ---- the files ---- */

static dm_status check_dir(const char *dir, dm_message *msg)
{
    struct stat st;

    if (!dir || !*dir) {
        set_msg(msg, "the setting dir is not set");
        return DM_ERR_CONFIG;
    }
    if (strlen(dir) > PATH_MAX - 128) {
        set_msg(msg, "dir is longer than %d bytes", PATH_MAX - 128);
        return DM_ERR_CONFIG;
    }
    if (stat(dir, &st) != 0) {
        set_msg(msg, "dir %s: %s", dir, strerror(errno));
        return DM_ERR_CONFIG;
    }
    if (!S_ISDIR(st.st_mode)) {
        set_msg(msg, "dir %s is not a directory", dir);
        return DM_ERR_CONFIG;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        set_msg(msg, "dir %s is not writable: %s", dir, strerror(errno));
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* Writes data to dir/name through a temporary file, fsync and rename. */
static dm_status write_atomic(const char *dir, const char *name, const char *tmpname,
                              const char *data, size_t len, dm_message *msg)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int fd = -1, dfd;
    size_t done = 0;
    dm_status ret = DM_ERR_TEMPORARY;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(tmp, sizeof(tmp), "%s/%s", dir, tmpname);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        set_msg(msg, "cannot create %s: %s", tmp, strerror(errno));
        return DM_ERR_TEMPORARY;
    }
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            set_msg(msg, "cannot write %s: %s", tmp, n < 0 ? strerror(errno) : "no progress");
            goto cleanup;
        }
        done += (size_t)n;
    }
    if (fsync(fd) != 0) {
        set_msg(msg, "cannot fsync %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (close(fd) != 0) {
        fd = -1;
        set_msg(msg, "cannot close %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        set_msg(msg, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto cleanup;
    }
    /* Make the rename itself durable; a failure here loses nothing already
     * visible, so it does not fail the send. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return DM_OK;

cleanup:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return ret;
}

/* ---- the plugin's functions ---- */

static const char *const mailer_set_headers[] = {
    "Date",       "From",         "To",           "Subject",
    "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
    NULL,
};

static int valid_header_name(dm_str n)
{
    if (n.len == 0 || n.len > 76) {
        return 0;
    }
    for (size_t i = 0; i < n.len; i++) {
        unsigned char c = (unsigned char)n.ptr[i];
        if (c < 33 || c > 126 || c == ':') {
            return 0;
        }
    }
    return 1;
}

static dm_status spool_send(dm_call *call, const dm_mail *mail_in, dm_str *message_id,
                            dm_message *msg)
{
    const char *dir = host->setting(call, "dir");
    const char *default_from = host->setting(call, "from");
    dm_mail m;
    dm_str from;
    unsigned char digest[32], key_rnd[16], rnd[12];
    char *key_hex, *rnd_hex, *mid;
    char key_buf[16], date[64], domain[256], name[80], tmpname[120], boundary[48];
    buf b = {0};
    int has_text, has_html;
    dm_status ret = DM_ERR_INVALID;

    /* Read only the fields the host's dm_mail has (it may be older). */
    memset(&m, 0, sizeof(m));
    memcpy(&m, mail_in, mail_in->size < sizeof(m) ? mail_in->size : sizeof(m));
    if (!m.headers) {
        m.n_headers = 0;
    }

    if (check_dir(dir, msg) != DM_OK) {
        return DM_ERR_CONFIG;
    }
    from = m.from;
    if (from.len == 0 && default_from) {
        from.ptr = default_from;
        from.len = strlen(default_from);
    }
    if (from.len == 0) {
        set_msg(msg, "the mail has no sender and the setting from is not set");
        return DM_ERR_CONFIG;
    }
    if (m.to.len == 0) {
        set_msg(msg, "the mail has no recipient");
        return DM_ERR_INVALID;
    }
    if (has_ctl(from.ptr, from.len) || has_ctl(m.to.ptr, m.to.len) ||
        has_ctl(m.subject.ptr, m.subject.len)) {
        set_msg(msg, "from, to or subject contains a control character");
        return DM_ERR_INVALID;
    }
    for (size_t i = 0; i < m.n_headers; i++) {
        const dm_header *h = &m.headers[i];
        if (!valid_header_name(h->name) || has_ctl(h->value.ptr, h->value.len)) {
            set_msg(msg, "extra header %zu has a malformed name or a control character", i);
            return DM_ERR_INVALID;
        }
        for (const char *const *s = mailer_set_headers; *s; s++) {
            if (strlen(*s) == h->name.len && !strncasecmp(*s, h->name.ptr, h->name.len)) {
                set_msg(msg, "extra header %s is one the mailer sets itself", *s);
                return DM_ERR_INVALID;
            }
        }
    }

    /* Names from the idempotency key; without one, every send is new. */
    if (m.idempotency_key.len == 0) {
        host->random_bytes(key_rnd, sizeof(key_rnd));
        memcpy(key_buf, key_rnd, sizeof(key_rnd));
        m.idempotency_key.ptr = key_buf;
        m.idempotency_key.len = sizeof(key_rnd);
    }
    host->sha256(m.idempotency_key.ptr, m.idempotency_key.len, digest);
    key_hex = host->hex_encode(call, digest, sizeof(digest));
    host->random_bytes(rnd, sizeof(rnd));
    rnd_hex = host->hex_encode(call, rnd, sizeof(rnd));
    if (!key_hex || !rnd_hex) {
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    snprintf(name, sizeof(name), "%s.eml", key_hex);
    snprintf(tmpname, sizeof(tmpname), ".%s.%s.tmp", key_hex, rnd_hex);
    snprintf(boundary, sizeof(boundary), "=_dm_%s", rnd_hex);
    message_id_domain(from, domain, sizeof(domain));
    rfc5322_date(date, sizeof(date));

    buf_fmt(&b, "Date: %s\r\n", date);
    if (!put_address(call, &b, "From", from)) {
        set_msg(msg, "the sender's address is not ASCII");
        goto cleanup;
    }
    if (!put_address(call, &b, "To", m.to)) {
        set_msg(msg, "the recipient's address is not ASCII");
        goto cleanup;
    }
    if (!put_text(call, &b, "Subject", m.subject.ptr, m.subject.len)) {
        set_msg(msg, "the subject cannot be encoded");
        goto cleanup;
    }
    /* 32 hex digits of SHA-256(key): stable per key, and reveals nothing of it. */
    buf_fmt(&b, "Message-ID: <%.32s@%s>\r\nMIME-Version: 1.0\r\n", key_hex, domain);
    for (size_t i = 0; i < m.n_headers; i++) {
        const dm_header *h = &m.headers[i];
        char hname[80];
        snprintf(hname, sizeof(hname), "%.*s", (int)h->name.len, h->name.ptr);
        if (!put_text(call, &b, hname, h->value.ptr, h->value.len)) {
            set_msg(msg, "extra header %zu cannot be encoded", i);
            goto cleanup;
        }
    }

    has_text = m.text.len > 0;
    has_html = m.html.len > 0;
    if (has_text && has_html) {
        buf_fmt(&b, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n", boundary);
        buf_str(&b, "This is a multi-part message in MIME format.\r\n");
        /* The CRLF before each "--boundary" belongs to the delimiter
         * (RFC 2046 5.1.1), not to the part. */
        buf_fmt(&b, "--%s\r\n", boundary);
        put_part_headers(&b, "text/plain");
        buf_str(&b, "\r\n");
        put_qp(&b, m.text.ptr, m.text.len);
        buf_fmt(&b, "\r\n--%s\r\n", boundary);
        put_part_headers(&b, "text/html");
        buf_str(&b, "\r\n");
        put_qp(&b, m.html.ptr, m.html.len);
        buf_fmt(&b, "\r\n--%s--\r\n", boundary);
    } else if (has_html) {
        put_part_headers(&b, "text/html");
        buf_str(&b, "\r\n");
        put_single_body(&b, m.html.ptr, m.html.len);
    } else {
        put_part_headers(&b, "text/plain");
        buf_str(&b, "\r\n");
        put_single_body(&b, m.text.ptr, m.text.len);
    }
    if (b.oom) {
        set_msg(msg, "out of memory");
        ret = DM_ERR_TEMPORARY;
        goto cleanup;
    }

    ret = write_atomic(dir, name, tmpname, b.p, b.len, msg);
    if (ret != DM_OK) {
        goto cleanup;
    }
    mid = host->alloc(call, 32 + strlen(domain) + 4);
    if (!mid) {
        set_msg(msg, "out of memory");
        ret = DM_ERR_INTERNAL;
        goto cleanup;
    }
    message_id->len = (size_t)sprintf(mid, "<%.32s@%s>", key_hex, domain);
    message_id->ptr = mid;

cleanup:
    free(b.p);
    return ret;
}

static const char *const required[] = {"dir", NULL};

static dm_status spool_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    const char *from;
    dm_status st;

    host = h;
    st = check_dir(h->setting(call, "dir"), msg);
    if (st != DM_OK) {
        return st;
    }
    from = h->setting(call, "from");
    if (from && has_ctl(from, strlen(from))) {
        set_msg(msg, "from contains a control character");
        return DM_ERR_CONFIG;
    }
    h->log(call, DM_LOG_INFO, "spooling mail as .eml files");
    return DM_OK;
}

static dm_status spool_health(dm_call *call, dm_message *msg)
{
    return check_dir(host->setting(call, "dir"), msg);
}

static const dm_mailer_ops ops = {
    .size = sizeof(dm_mailer_ops),
    .send = spool_send,
    .parse_webhook = NULL, /* a spool gets no delivery reports */
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_MAILER,
    .name = "mailer-spool",
    .version = SPOOL_VERSION,
    .required_settings = required,
    .init = spool_init,
    .fini = NULL,
    .ops = &ops,
    .health = spool_health,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    /* Everything this plugin uses of the host table is in ABI 1.0; refuse a
     * host whose table would not cover it. */
    if (!DM_HAS_FIELD(h, dm_host, base64_encode)) {
        return NULL;
    }
    return &desc;
}
