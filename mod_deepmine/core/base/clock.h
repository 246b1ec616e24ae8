/*
 * clock.h — the one clock every piece of business logic asks for the time.
 *
 * Normally the system clock. Under test (DeepMineTestMode on +
 * DeepMineClockFile <path>, or `deepminectl --clock-file <path>`) it reads
 * an RFC 3339 UTC time from a file on every call, so tests can move the
 * platform through hours and days. A file that is missing or unreadable
 * falls back to the system clock (and the caller cannot tell: tests write
 * the file before starting anything).
 *
 * What does NOT use it: pacing that measures real elapsed time (the rate
 * limiter's buckets, the catalogue's once-a-second revalidation, the cron
 * daemon's sleep between ticks, lease renewal intervals). Those are about
 * how fast things happen, not about what time it is on the platform.
 */
#ifndef DM_CLOCK_H
#define DM_CLOCK_H

#include <stdint.h>

/* Unix seconds, UTC. */
int64_t dm_now(void);

/* Points the clock at a file (NULL: back to the system clock). Call before
 * any thread starts; the path is copied. Returns 0, or -1 when the path is
 * too long. */
int dm_clock_use_file(const char *path);

/* Start of the UTC hour / day holding t. */
int64_t dm_hour_floor(int64_t t);
int64_t dm_day_floor(int64_t t);

#endif
