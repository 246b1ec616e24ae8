/*
 * wlock.c — see wlock.h. A futex lock in the manner of Drepper's "Futexes
 * are tricky" (mutex 2), with the holder's pid as the locked value: a
 * releaser wakes one sleeper only when the waiters bit says there is one,
 * and a woken sleeper takes the lock with the bit set (others may still
 * sleep). Sleepers wake every 100 ms to see whether the holder still lives.
 *
 * The word is 64 bits: the low half (the futex) is the pid plus the
 * waiters bit, the high half the low 32 bits of the holder's start time
 * (clock ticks after boot, field 22 of /proc/<pid>/stat). The file
 * outlives its processes (a reboot, a container restarted on the same
 * volume), and a pid is soon reused: a word naming a live process whose
 * start time differs was left by a dead one. 0 in the high half means
 * "start unknown" and the pid alone decides, as before.
 */
#include "store/wlock.h"

#include <apr_strings.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#define WAITERS 0x80000000u
#define MAP_BYTES 4096

struct dm_wlock {
    uint64_t *word;  /* the first 8 bytes of the shared page */
    uint32_t *futex; /* the low half of *word: pid | WAITERS */
};

#ifdef __linux__

/* Processes share the word: its atomics must not fall back on a lock
 * inside one process (libatomic). */
_Static_assert(__atomic_always_lock_free(sizeof(uint64_t), 0), "no lock-free 64-bit atomics");

dm_wlock *dm_wlock_open(apr_pool_t *p, const char *db_path, const char **why)
{
    const char *path;
    struct stat st;
    dm_wlock *wl;
    void *m;
    int fd;

    *why = NULL;
    if (!db_path || !*db_path || *db_path == ':' || strncmp(db_path, "file:", 5) == 0) {
        return NULL;
    }
    path = apr_pstrcat(p, db_path, "-wlock", NULL);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        *why = "cannot open the lock file";
        return NULL;
    }
    /* A fresh file is all zeros once it has its size: a free lock. Two
     * processes racing here both set the same size; nothing else to set. */
    if (fstat(fd, &st) != 0 || (st.st_size < MAP_BYTES && ftruncate(fd, MAP_BYTES) != 0)) {
        close(fd);
        *why = "cannot size the lock file";
        return NULL;
    }
    /* As SQLite does for its -wal and -shm: a file root creates belongs to
     * the database's owner, so the server's user can still open it. */
    if (geteuid() == 0 && st.st_uid == 0) {
        struct stat dbst;
        if (stat(db_path, &dbst) == 0 && dbst.st_uid != 0 &&
            fchown(fd, dbst.st_uid, dbst.st_gid) != 0) {
            close(fd);
            *why = "cannot give the lock file to the database's owner";
            return NULL;
        }
    }
    m = mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        *why = "cannot map the lock file";
        return NULL;
    }
    wl = apr_pcalloc(p, sizeof(*wl));
    wl->word = m;
    wl->futex = (uint32_t *)m + (__BYTE_ORDER__ == __ORDER_BIG_ENDIAN__);
    return wl;
}

void dm_wlock_close(dm_wlock *wl)
{
    if (wl && wl->word) {
        munmap(wl->word, MAP_BYTES);
        wl->word = NULL;
        wl->futex = NULL;
    }
}

/* Sleeps while *word == val, at most ms; shared (not private) futex: the
 * page is mapped by other processes. */
static void futex_wait(uint32_t *word, uint32_t val, int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    syscall(SYS_futex, word, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void futex_wake_one(uint32_t *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* From /proc/<pid>/stat: the state letter and the low 32 bits of the start
 * time. 0 when the file cannot be read (no /proc, or the pid is gone). */
static int proc_stat(uint32_t pid, char *state, uint32_t *start)
{
    char path[32], buf[1024], *s;
    unsigned long long ticks = 0;
    FILE *f;
    size_t n;
    int field;

    snprintf(path, sizeof(path), "/proc/%u/stat", (unsigned)pid);
    f = fopen(path, "re");
    if (!f) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* the name (field 2) is in parentheses and may hold anything */
    s = strrchr(buf, ')');
    if (!s || s[1] != ' ' || !s[2]) {
        return 0;
    }
    *state = s[2];
    for (field = 3, s += 2; field < 22 && (s = strchr(s, ' ')) != NULL; field++) {
        s++;
    }
    if (!s) {
        return 0;
    }
    ticks = strtoull(s, NULL, 10);
    *start = (uint32_t)ticks;
    return 1;
}

/* This process's lock value: start << 32 | pid. Cached, and recomputed
 * after a fork (the pid differs). */
static uint64_t self_value(void)
{
    static uint64_t cached;
    uint32_t pid = (uint32_t)getpid();
    uint64_t v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    char state;
    uint32_t start = 0;

    if (v && (uint32_t)v == pid) {
        return v;
    }
    if (!proc_stat(pid, &state, &start)) {
        start = 0;
    }
    v = (uint64_t)start << 32 | pid;
    __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    return v;
}

/* 1 when the holder named by word c can hold nothing: its pid is gone, is
 * a zombie (dead, not yet reaped), or now belongs to a process that started
 * at another time. Called only after a wait saw the word unchanged. */
static int holder_gone(uint64_t c, uint64_t me)
{
    uint32_t pid = (uint32_t)c & ~WAITERS, hs = (uint32_t)(c >> 32), start = 0;
    char state = 0;

    if ((c & ~(uint64_t)WAITERS) == me) {
        return 0; /* another thread of this process */
    }
    if (kill((pid_t)pid, 0) == -1 && errno == ESRCH) {
        return 1;
    }
    if (!proc_stat(pid, &state, &start)) {
        return 0; /* cannot tell: alive */
    }
    return state == 'Z' || state == 'X' || (hs != 0 && start != 0 && start != hs);
}

int dm_wlock_acquire(dm_wlock *wl, int timeout_ms, unsigned *holder)
{
    uint64_t me = self_value();
    uint64_t c = 0;
    int64_t deadline;

    if (__atomic_compare_exchange_n(wl->word, &c, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
        return 1;
    }
    deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        int64_t left;
        if (c == 0) {
            /* taken with the bit set: others may still sleep on the word */
            if (__atomic_compare_exchange_n(wl->word, &c, me | WAITERS, 0, __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED)) {
                return 1;
            }
            continue;
        }
        if (!(c & WAITERS)) {
            if (!__atomic_compare_exchange_n(wl->word, &c, c | WAITERS, 0, __ATOMIC_RELAXED,
                                             __ATOMIC_RELAXED)) {
                continue;
            }
            c |= WAITERS;
        }
        left = deadline - now_ms();
        if (left <= 0) {
            *holder = (uint32_t)c & ~WAITERS;
            /* a wake meant for us must not be lost: pass it on */
            futex_wake_one(wl->futex);
            return 0;
        }
        futex_wait(wl->futex, (uint32_t)c, left < 100 ? (int)left : 100);
        /* the holder died with the lock: take it over */
        if (__atomic_load_n(wl->word, __ATOMIC_RELAXED) == c && holder_gone(c, me) &&
            __atomic_compare_exchange_n(wl->word, &c, me | WAITERS, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            return 1;
        }
        c = __atomic_load_n(wl->word, __ATOMIC_RELAXED);
    }
}

void dm_wlock_release(dm_wlock *wl)
{
    if (__atomic_exchange_n(wl->word, 0, __ATOMIC_RELEASE) & WAITERS) {
        futex_wake_one(wl->futex);
    }
}

#else /* no futex: no queue, the busy handler alone */

dm_wlock *dm_wlock_open(apr_pool_t *p, const char *db_path, const char **why)
{
    (void)p;
    (void)db_path;
    *why = "no futex on this system";
    return NULL;
}

void dm_wlock_close(dm_wlock *wl)
{
    (void)wl;
}

int dm_wlock_acquire(dm_wlock *wl, int timeout_ms, unsigned *holder)
{
    (void)wl;
    (void)timeout_ms;
    *holder = 0;
    return 0;
}

void dm_wlock_release(dm_wlock *wl)
{
    (void)wl;
}

#endif
