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
 * - The message text is the host's (host->mime_message, ABI 1.3): the same
 *   bytes every mailer sends, with the same refusal of header injection.
 *   A host older than 1.3 is refused in init.
 * - Per-instance state lives in the settings (read through host->setting on
 *   every call), never in statics: the same .so may be declared twice under
 *   two names with two directories. The only static is the host table.
 * - Memory: everything is call memory (host->alloc and the host's encoders);
 *   nothing is malloc'd.
 */
#include <deepmine/plugin.h>
#include <deepmine/plugin_util.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SPOOL_VERSION "1.1.0"

static const dm_host *host;

static void set_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

/* The time for the Date header: the system clock. */
static int64_t now_sec(void)
{
    return (int64_t)time(NULL);
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

static dm_status spool_send(dm_call *call, const dm_mail *mail_in, dm_str *message_id,
                            dm_message *msg)
{
    const char *dir = host->setting(call, "dir");
    const char *default_from = host->setting(call, "from");
    dm_mail m;
    unsigned char digest[32], key_rnd[16], rnd[12];
    const char *mid;
    char *key_hex, *rnd_hex, *text, *out;
    char name[80], tmpname[120];
    size_t len = 0;
    dm_status st;

    /* Read only the fields the host's dm_mail has (it may be older). */
    memset(&m, 0, sizeof(m));
    memcpy(&m, mail_in, mail_in->size < sizeof(m) ? mail_in->size : sizeof(m));
    m.size = sizeof(m);

    st = check_dir(dir, msg);
    if (st != DM_OK) {
        return st;
    }
    if (m.from.len == 0 && default_from) {
        m.from.ptr = default_from;
        m.from.len = strlen(default_from);
    }
    if (m.from.len == 0) {
        set_msg(msg, "the mail has no sender and the setting from is not set");
        return DM_ERR_CONFIG;
    }
    if (m.to.len == 0) {
        set_msg(msg, "the mail has no recipient");
        return DM_ERR_INVALID;
    }

    /* Names from the idempotency key; without one, every send is new. */
    if (m.idempotency_key.len == 0) {
        host->random_bytes(key_rnd, sizeof(key_rnd));
        m.idempotency_key.ptr = (const char *)key_rnd;
        m.idempotency_key.len = sizeof(key_rnd);
    }
    host->sha256(m.idempotency_key.ptr, m.idempotency_key.len, digest);
    key_hex = host->hex_encode(call, digest, sizeof(digest));
    host->random_bytes(rnd, sizeof(rnd));
    rnd_hex = host->hex_encode(call, rnd, sizeof(rnd));
    /* The same first 32 hex digits as the file name: stable per key. */
    mid = host->message_id_for(call, m.idempotency_key, m.from);
    if (!key_hex || !rnd_hex || !mid) {
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    snprintf(name, sizeof(name), "%s.eml", key_hex);
    snprintf(tmpname, sizeof(tmpname), ".%s.%s.tmp", key_hex, rnd_hex);

    text = host->mime_message(call, &m, mid, now_sec(), &len);
    if (!text) {
        /* The host tells the caller which field it refused. */
        set_msg(msg, "the message cannot be built from these fields");
        return DM_ERR_INVALID;
    }
    st = write_atomic(dir, name, tmpname, text, len, msg);
    if (st != DM_OK) {
        return st;
    }
    /* The Message-ID header's value, brackets included. */
    out = host->alloc(call, strlen(mid) + 3);
    if (!out) {
        set_msg(msg, "out of memory");
        return DM_ERR_INTERNAL;
    }
    message_id->len = (size_t)sprintf(out, "<%s>", mid);
    message_id->ptr = out;
    return DM_OK;
}

static const char *const required[] = {"dir", NULL};

static dm_status spool_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    const char *from;
    dm_status st;

    if (!DM_HAS_FIELD(h, dm_host, message_id_for)) {
        set_msg(msg,
                "mailer-spool " SPOOL_VERSION " needs a server of plugin ABI 1.3 or later "
                "(mime_message, message_id_for); this one speaks %u.%u",
                /* h is never NULL: cppcheck reads DM_HAS_FIELD's NULL test as "may be". */
                // cppcheck-suppress nullPointerRedundantCheck
                (unsigned)h->abi_major, (unsigned)h->abi_minor);
        return DM_ERR_CONFIG;
    }
    host = h;
    st = check_dir(h->setting(call, "dir"), msg);
    if (st != DM_OK) {
        return st;
    }
    from = h->setting(call, "from");
    if (from && dm_has_ctl(from, strlen(from))) {
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
    /* A host older than 1.3 gets the descriptor all the same: init then
     * refuses with a sentence, which says more than a missing descriptor.
     * init needs only setting() of the 1.0 table to say it. */
    if (!DM_HAS_FIELD(h, dm_host, setting)) {
        return NULL;
    }
    return &desc;
}
