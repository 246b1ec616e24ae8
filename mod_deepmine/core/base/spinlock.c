/*
 * spinlock.c — see spinlock.h.
 */
#include "base/spinlock.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

/* This process's id, read once (getpid() is a system call: one per
 * member request in the rate limit) and read again in a forked child. */
static uint32_t my_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void pid_forget(void)
{
    __atomic_store_n(&my_pid, 0, __ATOMIC_RELAXED);
}

static void pid_watch(void)
{
    (void)pthread_atfork(NULL, NULL, pid_forget);
}

static uint32_t me_now(void)
{
    uint32_t me = __atomic_load_n(&my_pid, __ATOMIC_RELAXED);

    if (!me) {
        pthread_once(&pid_once, pid_watch);
        me = (uint32_t)getpid();
        __atomic_store_n(&my_pid, me, __ATOMIC_RELAXED);
    }
    return me;
}

void dm_spin_lock(uint32_t *word)
{
    uint32_t me = me_now();
    unsigned spins = 0;

    for (;;) {
        uint32_t holder = 0;
        if (__atomic_compare_exchange_n(word, &holder, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            return;
        }
        if (++spins < 100) {
            continue;
        }
        spins = 0;
        if (holder != me && kill((pid_t)holder, 0) == -1 && errno == ESRCH &&
            __atomic_compare_exchange_n(word, &holder, me, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
            return;
        }
        sched_yield();
    }
}

void dm_spin_unlock(uint32_t *word)
{
    __atomic_store_n(word, 0, __ATOMIC_RELEASE);
}
