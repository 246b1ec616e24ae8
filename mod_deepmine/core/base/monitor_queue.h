/*
 * monitor_queue.h — the bounded queue of error reports between the code
 * that logs (every child, every thread, the cron daemon) and the cron
 * daemon that hands them to the monitor plugins (docs/operations.md,
 * "Error reporting"). It lives in memory the caller provides (anonymous
 * shared memory made by the Apache parent), with its own lock word
 * (spinlock.h). Pushing never blocks for longer than a copy and never
 * allocates: when the queue is full the report is counted and dropped.
 *
 * Reports carry no request body, token, password or e-mail address: the
 * text is a log line, and dm_mq_scrub blanks what looks like an address or
 * a secret before it is queued.
 */
#ifndef DM_MONITOR_QUEUE_H
#define DM_MONITOR_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef struct dm_mq_event {
    int level;           /* Apache's: 0 emerg … 3 error, 4 warning, 5 notice */
    int64_t time_ms;     /* Unix milliseconds */
    char event_id[33];   /* 32 lower-case hex digits */
    char dm_number[8];   /* "DM00650", or "" */
    char route[96];      /* "POST /api/orders" (the route's pattern) */
    char plugin[48];     /* the plugin being called, or "" */
    char job[48];        /* the job running, or "" */
    char request_id[48]; /* the request's log id, or "" */
    char message[512];   /* the log text without its number, scrubbed */
    uint32_t done_mask;  /* the drain's: monitors (by index) that took it */
} dm_mq_event;

typedef struct dm_mq_stats {
    uint64_t queued;  /* waiting now */
    uint64_t pushed;  /* ever accepted */
    uint64_t dropped; /* ever refused because the queue was full */
    uint64_t sent;    /* ever handed to every monitor (dm_mq_count_sent) */
    uint64_t failed;  /* ever given up on (dm_mq_count_failed) */
} dm_mq_stats;

/* Bytes a queue of `slots` reports needs. */
size_t dm_mq_size(unsigned slots);
/* Makes an empty queue in mem (dm_mq_size(slots) bytes, zeroed or not). */
void dm_mq_init(void *mem, unsigned slots);

/* Queues a copy of ev: 1, or 0 when the queue is full (counted as dropped). */
int dm_mq_push(void *mem, const dm_mq_event *ev);
/* Takes the oldest report into *out: 1, or 0 when there is none. */
int dm_mq_pop(void *mem, dm_mq_event *out);
/* Puts a report taken by dm_mq_pop back at the front (it could not be sent
 * yet): 1, or 0 when the queue filled up meanwhile (counted as dropped). */
int dm_mq_unpop(void *mem, const dm_mq_event *ev);
void dm_mq_count_sent(void *mem);
void dm_mq_count_failed(void *mem);
void dm_mq_stats_get(void *mem, dm_mq_stats *out);

/* Fills ev from one log line: the "DMnnnnn: " at its start becomes
 * dm_number and is cut from the message; the message is scrubbed and cut
 * to fit. Other fields are left as they are. */
void dm_mq_set_message(dm_mq_event *ev, const char *line);

/* Blanks in s, in place, what must never leave the server: a word with an
 * '@' between letters (an e-mail address) becomes "[email]", a run of 24 or
 * more letters, digits, '_', '-', '.', '+', '/' or '=' that mixes letters
 * and digits (a token, key or hash) becomes "[redacted]". */
void dm_mq_scrub(char *s);

#endif
