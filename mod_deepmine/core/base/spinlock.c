/*
 * spinlock.c — see spinlock.h.
 */
#include "base/spinlock.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

void dm_spin_lock(uint32_t *word)
{
    uint32_t me = (uint32_t)getpid();
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
