/*
 * storage-local — a storage plugin that keeps objects as files under one
 * directory (the setting `dir`): the default in `make run`, and the choice
 * of a single-server site whose backups copy that directory.
 *
 * Invariants:
 * - An object appears whole or not at all: it is written under a temporary
 *   name in its final directory (a name no key can have: it holds a "~"),
 *   fsync'ed, renamed over the key's name, and the directory fsync'ed. A
 *   failed or aborted put unlinks the temporary file and leaves an object
 *   already under the key as it was.
 * - A key "a/b/c" is the file dir/a/b/c; directories are made on demand
 *   with mode 0700, files with 0600 (documents are secrets even when
 *   encrypted). Every step below dir is taken with openat(O_NOFOLLOW): a
 *   symbolic link planted inside dir is refused, never followed.
 * - list walks only the part of the tree the prefix names, skips anything
 *   that is not a regular file with a valid key name (temporary files
 *   among them), and hands keys back sorted byte-wise, as the host wants.
 * - Per-instance state lives in the settings; the only static is the host
 *   table. Memory is call memory (host->alloc).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sync_file_range */
#endif
#include <deepmine/plugin.h>
#include <dirent.h>
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

#define LOCAL_VERSION "1.0.0"
#define CHUNK (64 * 1024)
/* A put of a large object starts the write-back of every FLUSH_STEP bytes as
 * they are written and waits for the step before: the final fsync then finds
 * almost nothing left to flush. One flush of a whole backup object (hundreds
 * of MB) at the end would occupy the disk for as long, and every database
 * commit's fsync on that disk with it. */
#define FLUSH_STEP (8 * 1024 * 1024)
#define KEY_MAX 512

static const dm_host *host;

static void set_msg(dm_message *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_msg(dm_message *msg, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
    va_end(ap);
}

static dm_status check_dir(const char *dir, dm_message *msg)
{
    struct stat st;

    if (!dir || !*dir) {
        set_msg(msg, "the setting dir is not set");
        return DM_ERR_CONFIG;
    }
    if (dir[0] != '/') {
        set_msg(msg, "dir must be an absolute path");
        return DM_ERR_CONFIG;
    }
    if (strlen(dir) > PATH_MAX - KEY_MAX - 64) {
        set_msg(msg, "dir is longer than %d bytes", PATH_MAX - KEY_MAX - 64);
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
    if (access(dir, R_OK | W_OK | X_OK) != 0) {
        set_msg(msg, "dir %s is not writable: %s", dir, strerror(errno));
        return DM_ERR_CONFIG;
    }
    return DM_OK;
}

/* A name a key segment may have (the host checked the whole key; this
 * tells the plugin's own temporary files from objects in list). */
static int segment_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || !strcmp(s, ".") || strstr(s, "..")) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-')) {
            return 0;
        }
    }
    return 1;
}

/* Opens the directory that holds `key`'s file (made, 0700, when create),
 * and points *base at the key's last segment. DM_ERR_NOT_FOUND when a
 * directory is missing and create is 0. */
static dm_status open_parent(const char *dir, const char *key, int create, int *dfd_out,
                             const char **base, dm_message *msg)
{
    char seg[KEY_MAX + 1];
    const char *s = key, *slash;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    *dfd_out = -1;
    if (dfd < 0) {
        set_msg(msg, "cannot open dir %s: %s", dir, strerror(errno));
        return DM_ERR_TEMPORARY;
    }
    while ((slash = strchr(s, '/')) != NULL) {
        size_t n = (size_t)(slash - s);
        int next;

        if (n == 0 || n > KEY_MAX) {
            close(dfd);
            set_msg(msg, "key %s is not valid", key);
            return DM_ERR_INVALID;
        }
        memcpy(seg, s, n);
        seg[n] = '\0';
        next = openat(dfd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(dfd, seg, 0700) != 0 && errno != EEXIST) {
                set_msg(msg, "cannot make directory %s for %s: %s", seg, key, strerror(errno));
                close(dfd);
                return DM_ERR_TEMPORARY;
            }
            (void)fsync(dfd);
            next = openat(dfd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            int err = errno;
            close(dfd);
            if (err == ENOENT) {
                set_msg(msg, "no object %s", key);
                return DM_ERR_NOT_FOUND;
            }
            if (err == ENOTDIR || err == ELOOP) {
                set_msg(msg, "key %s: %s is a file or a link, not a directory", key, seg);
                return create ? DM_ERR_PERMANENT : DM_ERR_NOT_FOUND;
            }
            set_msg(msg, "cannot open directory %s of %s: %s", seg, key, strerror(err));
            return DM_ERR_TEMPORARY;
        }
        close(dfd);
        dfd = next;
        s = slash + 1;
    }
    *dfd_out = dfd;
    *base = s;
    return DM_OK;
}

/* ---- put ---- */

/* Starts the write-back of [off, off+len) and waits for the FLUSH_STEP
 * before it (written back already, mostly). Only a pacing hint: errors are
 * left to the fsync that ends every put, which alone makes the file durable
 * (and covers file systems without sync_file_range). */
static void write_behind(int fd, int64_t off, int64_t len)
{
#ifdef SYNC_FILE_RANGE_WRITE
    (void)sync_file_range(fd, off, len, SYNC_FILE_RANGE_WRITE);
    if (off >= FLUSH_STEP) {
        (void)sync_file_range(fd, off - FLUSH_STEP, FLUSH_STEP,
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    }
#else
    (void)fd;
    (void)off;
    (void)len;
#endif
}

static dm_status local_put(dm_call *call, const char *key, const char *content_type, int64_t length,
                           dm_storage_read_fn read, void *ctx, dm_message *msg)
{
    const char *dir = host->setting(call, "dir");
    const char *base = NULL;
    unsigned char rnd[8];
    char *rnd_hex, tmp[64] = "";
    unsigned char *buf = host->alloc(call, CHUNK);
    int dfd = -1, fd = -1;
    int64_t written = 0, started = 0;
    dm_status st;

    (void)content_type; /* a file has no type; the caller knows its own */
    st = check_dir(dir, msg);
    if (st != DM_OK) {
        return st;
    }
    st = open_parent(dir, key, 1, &dfd, &base, msg);
    if (st != DM_OK) {
        return st;
    }
    host->random_bytes(rnd, sizeof(rnd));
    rnd_hex = host->hex_encode(call, rnd, sizeof(rnd));
    if (!buf || !rnd_hex) {
        set_msg(msg, "out of memory");
        st = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    snprintf(tmp, sizeof(tmp), ".put~%s", rnd_hex);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        set_msg(msg, "cannot create a temporary file for %s: %s", key, strerror(errno));
        st = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    for (;;) {
        size_t got = 0, done = 0;

        st = read(ctx, buf, CHUNK, &got);
        if (st != DM_OK) {
            set_msg(msg, "put of %s aborted by its source", key);
            goto cleanup;
        }
        if (got == 0) {
            break;
        }
        while (done < got) {
            ssize_t n = write(fd, buf + done, got - done);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                set_msg(msg, "cannot write %s: %s", key, n < 0 ? strerror(errno) : "no progress");
                st = DM_ERR_TEMPORARY;
                goto cleanup;
            }
            done += (size_t)n;
        }
        written += (int64_t)got;
        if (written - started >= FLUSH_STEP) {
            write_behind(fd, started, written - started);
            started = written;
        }
    }
    if (written != length) {
        set_msg(msg, "put of %s: %lld bytes given, %lld announced", key, (long long)written,
                (long long)length);
        st = DM_ERR_INVALID;
        goto cleanup;
    }
    if (fsync(fd) != 0) {
        set_msg(msg, "cannot fsync %s: %s", key, strerror(errno));
        st = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    if (close(fd) != 0) {
        fd = -1;
        set_msg(msg, "cannot close %s: %s", key, strerror(errno));
        st = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    fd = -1;
    if (renameat(dfd, tmp, dfd, base) != 0) {
        set_msg(msg, "cannot rename into %s: %s", key, strerror(errno));
        st = errno == EISDIR ? DM_ERR_PERMANENT : DM_ERR_TEMPORARY;
        goto cleanup;
    }
    tmp[0] = '\0'; /* renamed: nothing to unlink */
    if (fsync(dfd) != 0) {
        set_msg(msg, "cannot fsync the directory of %s: %s", key, strerror(errno));
        st = DM_ERR_TEMPORARY;
        goto cleanup;
    }
    st = DM_OK;
cleanup:
    if (fd >= 0) {
        close(fd);
    }
    if (st != DM_OK && dfd >= 0 && tmp[0]) {
        (void)unlinkat(dfd, tmp, 0);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    return st;
}

/* ---- get ---- */

static dm_status local_get(dm_call *call, const char *key, dm_storage_write_fn write, void *ctx,
                           int64_t *size_out, dm_message *msg)
{
    const char *dir = host->setting(call, "dir");
    const char *base = NULL;
    unsigned char *buf = host->alloc(call, CHUNK);
    struct stat sb;
    int dfd = -1, fd = -1;
    int64_t left;
    dm_status st;

    st = check_dir(dir, msg);
    if (st != DM_OK) {
        return st;
    }
    if (!buf) {
        set_msg(msg, "out of memory");
        return DM_ERR_TEMPORARY;
    }
    st = open_parent(dir, key, 0, &dfd, &base, msg);
    if (st != DM_OK) {
        return st;
    }
    fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        st = errno == ENOENT || errno == ELOOP ? DM_ERR_NOT_FOUND : DM_ERR_TEMPORARY;
        set_msg(msg, st == DM_ERR_NOT_FOUND ? "no object %s" : "cannot open %s: %s", key,
                strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        set_msg(msg, "no object %s", key);
        st = DM_ERR_NOT_FOUND;
        goto cleanup;
    }
    if (size_out) {
        *size_out = (int64_t)sb.st_size;
    }
    left = (int64_t)sb.st_size;
    while (left > 0) {
        ssize_t n = read(fd, buf, left < CHUNK ? (size_t)left : CHUNK);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            set_msg(msg, "cannot read %s: %s", key, n < 0 ? strerror(errno) : "it shrank");
            st = DM_ERR_TEMPORARY;
            goto cleanup;
        }
        st = write(ctx, buf, (size_t)n);
        if (st != DM_OK) {
            set_msg(msg, "get of %s stopped by its reader", key);
            goto cleanup;
        }
        left -= n;
    }
    st = DM_OK;
cleanup:
    if (fd >= 0) {
        close(fd);
    }
    if (dfd >= 0) {
        close(dfd);
    }
    return st;
}

/* ---- remove ---- */

/* A large object leaves in two steps: renamed at once to a temporary name
 * (the key is gone, whole, as with a plain unlink), then shrunk by
 * FLUSH_STEP at a time, 2 ms apart, and unlinked, so the blocks it frees
 * (and their discards) are spread over many journal commits instead of
 * holding up one, and every database fsync on the disk behind it.
 * DM_ERR_NOT_FOUND when the rename could not be made (the caller unlinks). */
static dm_status remove_large(dm_call *call, int dfd, const char *base)
{
    unsigned char rnd[8];
    char *rnd_hex, tmp[64];
    struct stat sb;
    int fd;

    host->random_bytes(rnd, sizeof(rnd));
    rnd_hex = host->hex_encode(call, rnd, sizeof(rnd));
    if (!rnd_hex) {
        return DM_ERR_NOT_FOUND;
    }
    snprintf(tmp, sizeof(tmp), ".rm~%s", rnd_hex);
    if (renameat(dfd, base, dfd, tmp) != 0) {
        return DM_ERR_NOT_FOUND;
    }
    (void)fsync(dfd);
    fd = openat(dfd, tmp, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && fstat(fd, &sb) == 0) {
        struct timespec nap = {0, 2 * 1000 * 1000};
        for (off_t size = sb.st_size; size > 0;) {
            size = size > FLUSH_STEP ? size - FLUSH_STEP : 0;
            if (ftruncate(fd, size) != 0) {
                break;
            }
            if (size > 0) {
                nanosleep(&nap, NULL);
            }
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    /* the key is gone either way; a ".rm~" file left behind is never
     * listed nor read */
    (void)unlinkat(dfd, tmp, 0);
    (void)fsync(dfd);
    return DM_OK;
}

static dm_status local_remove(dm_call *call, const char *key, dm_message *msg)
{
    const char *dir = host->setting(call, "dir");
    const char *base = NULL;
    struct stat sb;
    int dfd = -1;
    dm_status st;

    st = check_dir(dir, msg);
    if (st != DM_OK) {
        return st;
    }
    st = open_parent(dir, key, 0, &dfd, &base, msg);
    if (st == DM_ERR_NOT_FOUND) {
        msg->text[0] = '\0';
        return DM_OK;
    }
    if (st != DM_OK) {
        return st;
    }
    if (fstatat(dfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(sb.st_mode)) {
        /* Missing, or a directory (a prefix of other keys, not an object). */
        close(dfd);
        return DM_OK;
    }
    if (sb.st_size > FLUSH_STEP) {
        st = remove_large(call, dfd, base);
        if (st != DM_ERR_NOT_FOUND) {
            close(dfd);
            return st;
        }
        /* not renamed: the plain unlink below */
    }
    if (unlinkat(dfd, base, 0) != 0 && errno != ENOENT) {
        set_msg(msg, "cannot remove %s: %s", key, strerror(errno));
        close(dfd);
        return DM_ERR_TEMPORARY;
    }
    (void)fsync(dfd);
    close(dfd);
    return DM_OK;
}

/* ---- list ---- */

typedef struct entry {
    char *key;
    int64_t size, mtime;
} entry;

typedef struct key_list {
    dm_call *call;
    entry *e;
    size_t n, cap;
    const char *prefix;
} key_list;

static int add_key(key_list *l, const char *key, int64_t size, int64_t mtime)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        entry *e = host->alloc(l->call, cap * sizeof(*e));
        if (!e) {
            return 0;
        }
        if (l->n) {
            memcpy(e, l->e, l->n * sizeof(*e));
        }
        l->e = e;
        l->cap = cap;
    }
    l->e[l->n].key = host->alloc(l->call, strlen(key) + 1);
    if (!l->e[l->n].key) {
        return 0;
    }
    strcpy(l->e[l->n].key, key);
    l->e[l->n].size = size;
    l->e[l->n].mtime = mtime;
    l->n++;
    return 1;
}

/* Adds every object under the directory dfd (whose keys start with
 * `path`, "" or ending with "/"); closes dfd. */
static dm_status walk(key_list *l, int dfd, const char *path, int depth, dm_message *msg)
{
    DIR *d = fdopendir(dfd);
    const struct dirent *e;
    size_t plen = strlen(path);
    dm_status st = DM_OK;

    if (!d) {
        close(dfd);
        set_msg(msg, "cannot read directory %s: %s", path, strerror(errno));
        return DM_ERR_TEMPORARY;
    }
    while (st == DM_OK && (e = readdir(d)) != NULL) {
        struct stat sb;
        char key[KEY_MAX + 2];
        size_t nlen = strlen(e->d_name);

        if (!segment_ok(e->d_name) || plen + nlen > KEY_MAX) {
            continue; /* ".", "..", temporary files, names no key has */
        }
        memcpy(key, path, plen);
        memcpy(key + plen, e->d_name, nlen + 1);
        /* Only what can hold keys starting with the prefix. */
        if (strncmp(key, l->prefix,
                    plen + nlen < strlen(l->prefix) ? plen + nlen : strlen(l->prefix)) != 0) {
            continue;
        }
        if (fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
            continue; /* gone meanwhile */
        }
        if (S_ISREG(sb.st_mode)) {
            if (strncmp(key, l->prefix, strlen(l->prefix)) == 0 &&
                !add_key(l, key, (int64_t)sb.st_size, (int64_t)sb.st_mtime)) {
                set_msg(msg, "out of memory");
                st = DM_ERR_TEMPORARY;
            }
        } else if (S_ISDIR(sb.st_mode) && depth < 64 && plen + nlen + 1 <= KEY_MAX) {
            int sub = openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                key[plen + nlen] = '/';
                key[plen + nlen + 1] = '\0';
                st = walk(l, sub, key, depth + 1, msg);
            }
        }
    }
    closedir(d);
    return st;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

static dm_status local_list(dm_call *call, const char *prefix, dm_storage_each_fn each, void *ctx,
                            dm_message *msg)
{
    const char *dir = host->setting(call, "dir");
    const char *slash = strrchr(prefix, '/');
    key_list l;
    char start[KEY_MAX + 3];
    int dfd;
    dm_status st;

    st = check_dir(dir, msg);
    if (st != DM_OK) {
        return st;
    }
    memset(&l, 0, sizeof(l));
    l.call = call;
    l.prefix = prefix;
    /* Start in the deepest directory the prefix names: "kyc/12/x" → kyc/12/. */
    start[0] = '\0';
    if (slash) {
        size_t n = (size_t)(slash - prefix) + 1;
        const char *base = NULL;
        char probe[KEY_MAX + 3];

        memcpy(start, prefix, n);
        start[n] = '\0';
        /* open_parent opens the directory that would hold "<start>x". */
        snprintf(probe, sizeof(probe), "%sx", start);
        st = open_parent(dir, probe, 0, &dfd, &base, msg);
        if (st == DM_ERR_NOT_FOUND) {
            msg->text[0] = '\0';
            return DM_OK; /* nothing under that prefix */
        }
        if (st != DM_OK) {
            return st;
        }
    } else {
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            set_msg(msg, "cannot open dir %s: %s", dir, strerror(errno));
            return DM_ERR_TEMPORARY;
        }
    }
    st = walk(&l, dfd, start, 0, msg);
    if (st != DM_OK) {
        return st;
    }
    if (l.n) {
        qsort(l.e, l.n, sizeof(*l.e), by_key);
    }
    for (size_t i = 0; i < l.n; i++) {
        st = each(ctx, l.e[i].key, l.e[i].size, l.e[i].mtime);
        if (st != DM_OK) {
            set_msg(msg, "list stopped by its caller");
            return st;
        }
    }
    return DM_OK;
}

/* ---- the plugin ---- */

static const char *const required[] = {"dir", NULL};

static dm_status local_init(const dm_host *h, dm_call *call, dm_message *msg)
{
    dm_status st;

    host = h;
    st = check_dir(h->setting(call, "dir"), msg);
    if (st != DM_OK) {
        return st;
    }
    h->log(call, DM_LOG_INFO, "storing objects as files");
    return DM_OK;
}

static dm_status local_health(dm_call *call, dm_message *msg)
{
    return check_dir(host->setting(call, "dir"), msg);
}

static const dm_storage_ops ops = {
    .size = sizeof(dm_storage_ops),
    .put = local_put,
    .get = local_get,
    .remove = local_remove,
    .list = local_list,
};

static const dm_plugin desc = {
    .size = sizeof(dm_plugin),
    .abi_major = DM_PLUGIN_ABI_MAJOR,
    .abi_minor = DM_PLUGIN_ABI_MINOR,
    .kind = DM_PLUGIN_STORAGE,
    .name = "storage-local",
    .version = LOCAL_VERSION,
    .required_settings = required,
    .init = local_init,
    .fini = NULL,
    .ops = &ops,
    .health = local_health,
    .handle_request = NULL,
};

DM_PLUGIN_EXPORT const dm_plugin *deepmine_plugin_entry(const dm_host *h)
{
    if (!DM_HAS_FIELD(h, dm_host, hex_encode)) {
        return NULL;
    }
    return &desc;
}
