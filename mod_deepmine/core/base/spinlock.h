/*
 * spinlock.h — a lock word in shared memory that every process and thread
 * of the server can take: 0 free, else the pid of the holder, so a lock
 * whose holder process died is taken over instead of hanging the server.
 * For the short critical sections of the shared tables (rate limits, the
 * error-report queue); an APR global mutex would need a file or a SysV
 * semaphore per table and a child_init reattach.
 */
#ifndef DM_SPINLOCK_H
#define DM_SPINLOCK_H

#include <stdint.h>

void dm_spin_lock(uint32_t *word);
void dm_spin_unlock(uint32_t *word);

#endif
