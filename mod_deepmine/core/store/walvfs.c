/*
 * walvfs.c — see walvfs.h. A file opened through this VFS is the default
 * VFS's file followed by a little state of ours; every method passes to
 * the default VFS's own, WAL writes gathered as the header says.
 */
#include "store/walvfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define VFS_NAME "dm-walvfs"
#define FRAME_HEADER 24

typedef struct wfile {
    sqlite3_file base; /* our methods */
    sqlite3_file *real;
    int wal;
    unsigned char *buf; /* WAL only: pending bytes, from off */
    int len;
    sqlite3_int64 off;
    int commit_tail;        /* the buffer ends with a commit's frame header */
    sqlite3_int64 read_off; /* offset of the last read (-1: none since) */
    int read_len;
} wfile;

static sqlite3_vfs vfs;
static sqlite3_io_methods methods;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered;

static sqlite3_vfs *real_vfs(void)
{
    return (sqlite3_vfs *)vfs.pAppData;
}

/* Writes the pending bytes out (one call). */
static int flush(wfile *f)
{
    int rc;

    if (!f->len) {
        return SQLITE_OK;
    }
    rc = f->real->pMethods->xWrite(f->real, f->buf, f->len, f->off);
    f->len = 0;
    return rc;
}

static int x_close(sqlite3_file *file)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);
    int rc2 = f->real->pMethods->xClose(f->real);

    free(f->buf);
    f->buf = NULL;
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *file, void *out, int amt, sqlite3_int64 ofst)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    f->read_off = ofst;
    f->read_len = amt;
    return f->real->pMethods->xRead(f->real, out, amt, ofst);
}

static int direct_write(wfile *f, const void *z, int amt, sqlite3_int64 ofst)
{
    int rc = flush(f);

    if (rc != SQLITE_OK) {
        return rc;
    }
    return f->real->pMethods->xWrite(f->real, z, amt, ofst);
}

static int x_write(sqlite3_file *file, const void *z, int amt, sqlite3_int64 ofst)
{
    wfile *f = (wfile *)file;
    const unsigned char *h = z;
    int reread, tail, rc;

    if (!f->wal) {
        return f->real->pMethods->xWrite(f->real, z, amt, ofst);
    }
    /* A header re-written just after its frame was read back: the
     * checksums re-done at commit; the last one may be the commit's. */
    reread = amt == FRAME_HEADER && f->read_off == ofst && f->read_len > FRAME_HEADER;
    f->read_off = -1;
    if (reread || amt > DM_WALVFS_BUFFER) {
        f->commit_tail = 0;
        return direct_write(f, z, amt, ofst);
    }
    /* Kept through a flush for room: the page after a commit's header is
     * written out whatever came between. */
    tail = f->commit_tail;
    if (f->len && (ofst != f->off + f->len || f->len + amt > DM_WALVFS_BUFFER)) {
        rc = flush(f);
        if (rc != SQLITE_OK) {
            return rc;
        }
    }
    if (!f->buf && !(f->buf = malloc(DM_WALVFS_BUFFER))) {
        f->commit_tail = 0;
        return direct_write(f, z, amt, ofst);
    }
    if (!f->len) {
        f->off = ofst;
    }
    memcpy(f->buf + f->len, z, (size_t)amt);
    f->len += amt;
    if (tail) {
        /* the commit's last page: written when this returns, as before */
        f->commit_tail = 0;
        return flush(f);
    }
    /* a frame header with the database's size: a commit's last frame */
    f->commit_tail = amt == FRAME_HEADER && (h[4] | h[5] | h[6] | h[7]) != 0;
    return SQLITE_OK;
}

static int x_truncate(sqlite3_file *file, sqlite3_int64 size)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *file, int flags)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int x_lock(sqlite3_file *file, int lock)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xLock(f->real, lock);
}

static int x_unlock(sqlite3_file *file, int lock)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xUnlock(f->real, lock);
}

static int x_check_reserved(sqlite3_file *file, int *out)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int x_file_control(sqlite3_file *file, int op, void *arg)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int x_sector_size(sqlite3_file *file)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xSectorSize(f->real);
}

static int x_device_characteristics(sqlite3_file *file)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int x_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **out)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, out);
}

static int x_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *file)
{
    wfile *f = (wfile *)file;

    f->real->pMethods->xShmBarrier(f->real);
}

static int x_shm_unmap(sqlite3_file *file, int delete_flag)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int x_fetch(sqlite3_file *file, sqlite3_int64 ofst, int amt, void **pp)
{
    wfile *f = (wfile *)file;
    int rc = flush(f);

    if (rc != SQLITE_OK) {
        *pp = NULL;
        return rc;
    }
    return f->real->pMethods->xFetch(f->real, ofst, amt, pp);
}

static int x_unfetch(sqlite3_file *file, sqlite3_int64 ofst, void *p)
{
    wfile *f = (wfile *)file;

    return f->real->pMethods->xUnfetch(f->real, ofst, p);
}

static int x_open(sqlite3_vfs *v, const char *name, sqlite3_file *file, int flags, int *out_flags)
{
    wfile *f = (wfile *)file;
    int rc;

    (void)v;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    f->read_off = -1;
    rc = real_vfs()->xOpen(real_vfs(), name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods) {
        /* SQLite calls xClose only when pMethods is set: ours stays unset,
         * and a file the default VFS left open on failure is closed here. */
        if (f->real->pMethods) {
            f->real->pMethods->xClose(f->real);
        }
        f->base.pMethods = NULL;
        return rc;
    }
    f->wal = (flags & SQLITE_OPEN_WAL) != 0;
    f->base.pMethods = &methods;
    return rc;
}

static int x_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return real_vfs()->xDelete(real_vfs(), name, sync_dir);
}

static int x_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int x_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *x_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return real_vfs()->xDlOpen(real_vfs(), name);
}

static void x_dl_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*x_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return real_vfs()->xDlSym(real_vfs(), h, sym);
}

static void x_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    real_vfs()->xDlClose(real_vfs(), h);
}

static int x_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int x_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return real_vfs()->xSleep(real_vfs(), us);
}

static int x_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int x_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return real_vfs()->xGetLastError(real_vfs(), n, out);
}

static int x_current_time64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static int x_set_syscall(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr fn)
{
    (void)v;
    return real_vfs()->xSetSystemCall(real_vfs(), name, fn);
}

static sqlite3_syscall_ptr x_get_syscall(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return real_vfs()->xGetSystemCall(real_vfs(), name);
}

static const char *x_next_syscall(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return real_vfs()->xNextSystemCall(real_vfs(), name);
}

static void register_once(void)
{
    sqlite3_vfs *real;

    if (sqlite3_initialize() != SQLITE_OK || !(real = sqlite3_vfs_find(NULL)) ||
        real->iVersion < 3) {
        return;
    }
    methods.iVersion = 3;
    methods.xClose = x_close;
    methods.xRead = x_read;
    methods.xWrite = x_write;
    methods.xTruncate = x_truncate;
    methods.xSync = x_sync;
    methods.xFileSize = x_file_size;
    methods.xLock = x_lock;
    methods.xUnlock = x_unlock;
    methods.xCheckReservedLock = x_check_reserved;
    methods.xFileControl = x_file_control;
    methods.xSectorSize = x_sector_size;
    methods.xDeviceCharacteristics = x_device_characteristics;
    methods.xShmMap = x_shm_map;
    methods.xShmLock = x_shm_lock;
    methods.xShmBarrier = x_shm_barrier;
    methods.xShmUnmap = x_shm_unmap;
    methods.xFetch = x_fetch;
    methods.xUnfetch = x_unfetch;

    vfs.iVersion = 3;
    vfs.szOsFile = (int)sizeof(wfile) + real->szOsFile;
    vfs.mxPathname = real->mxPathname;
    vfs.zName = VFS_NAME;
    vfs.pAppData = real;
    vfs.xOpen = x_open;
    vfs.xDelete = x_delete;
    vfs.xAccess = x_access;
    vfs.xFullPathname = x_full_pathname;
    vfs.xDlOpen = x_dl_open;
    vfs.xDlError = x_dl_error;
    vfs.xDlSym = x_dl_sym;
    vfs.xDlClose = x_dl_close;
    vfs.xRandomness = x_randomness;
    vfs.xSleep = x_sleep;
    vfs.xCurrentTime = x_current_time;
    vfs.xGetLastError = x_last_error;
    vfs.xCurrentTimeInt64 = x_current_time64;
    vfs.xSetSystemCall = x_set_syscall;
    vfs.xGetSystemCall = x_get_syscall;
    vfs.xNextSystemCall = x_next_syscall;
    registered = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
}

const char *dm_walvfs_name(void)
{
    pthread_once(&once, register_once);
    return registered ? VFS_NAME : NULL;
}
