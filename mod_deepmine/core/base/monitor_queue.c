/*
 * monitor_queue.c — see monitor_queue.h. A ring of fixed-size slots after
 * a header; head is the oldest report, count how many wait.
 */
#include "base/monitor_queue.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "base/spinlock.h"

#define MQ_MAGIC 0x444d4d51u /* "DMMQ" */

typedef struct mq_header {
    uint32_t magic;
    uint32_t lock;
    uint32_t slots;
    uint32_t head;
    uint32_t count;
    uint32_t pad;
    uint64_t pushed;
    uint64_t dropped;
    uint64_t sent;
    uint64_t failed;
} mq_header;

static dm_mq_event *slot(mq_header *h, uint32_t i)
{
    return (dm_mq_event *)(void *)((char *)h + sizeof(*h)) + (i % h->slots);
}

size_t dm_mq_size(unsigned slots)
{
    return sizeof(mq_header) + (size_t)slots * sizeof(dm_mq_event);
}

void dm_mq_init(void *mem, unsigned slots)
{
    mq_header *h = mem;

    memset(h, 0, sizeof(*h));
    h->slots = slots ? slots : 1;
    h->magic = MQ_MAGIC;
}

int dm_mq_push(void *mem, const dm_mq_event *ev)
{
    mq_header *h = mem;
    int ok = 0;

    dm_spin_lock(&h->lock);
    if (h->count < h->slots) {
        *slot(h, h->head + h->count) = *ev;
        h->count++;
        h->pushed++;
        ok = 1;
    } else {
        h->dropped++;
    }
    dm_spin_unlock(&h->lock);
    return ok;
}

int dm_mq_pop(void *mem, dm_mq_event *out)
{
    mq_header *h = mem;
    int ok = 0;

    dm_spin_lock(&h->lock);
    if (h->count > 0) {
        *out = *slot(h, h->head);
        h->head = (h->head + 1) % h->slots;
        h->count--;
        ok = 1;
    }
    dm_spin_unlock(&h->lock);
    return ok;
}

int dm_mq_unpop(void *mem, const dm_mq_event *ev)
{
    mq_header *h = mem;
    int ok = 0;

    dm_spin_lock(&h->lock);
    if (h->count < h->slots) {
        h->head = (h->head + h->slots - 1) % h->slots;
        *slot(h, h->head) = *ev;
        h->count++;
        ok = 1;
    } else {
        h->dropped++;
    }
    dm_spin_unlock(&h->lock);
    return ok;
}

void dm_mq_count_sent(void *mem)
{
    __atomic_add_fetch(&((mq_header *)mem)->sent, 1, __ATOMIC_RELAXED);
}

void dm_mq_count_failed(void *mem)
{
    __atomic_add_fetch(&((mq_header *)mem)->failed, 1, __ATOMIC_RELAXED);
}

void dm_mq_stats_get(void *mem, dm_mq_stats *out)
{
    mq_header *h = mem;

    dm_spin_lock(&h->lock);
    out->queued = h->count;
    out->pushed = h->pushed;
    out->dropped = h->dropped;
    dm_spin_unlock(&h->lock);
    out->sent = __atomic_load_n(&h->sent, __ATOMIC_RELAXED);
    out->failed = __atomic_load_n(&h->failed, __ATOMIC_RELAXED);
}

void dm_mq_set_message(dm_mq_event *ev, const char *line)
{
    const char *s = line ? line : "";

    ev->dm_number[0] = '\0';
    if (s[0] == 'D' && s[1] == 'M') {
        int digits = 0;
        while (digits < 5 && isdigit((unsigned char)s[2 + digits])) {
            digits++;
        }
        if (digits == 5 && s[7] == ':') {
            memcpy(ev->dm_number, s, 7);
            ev->dm_number[7] = '\0';
            s += 8;
            while (*s == ' ') {
                s++;
            }
        }
    }
    snprintf(ev->message, sizeof(ev->message), "%s", s);
    dm_mq_scrub(ev->message);
}

static int word_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '-' || c == '.' || c == '+' || c == '/' || c == '=' ||
           c == '@' || c == '%';
}

/* Writes the word s[from, to) at w, or `tag` instead when given (never
 * longer than the word: callers check); returns the new write index. The
 * write index never passes the read index, so the scrub works in place. */
static size_t emit(char *s, size_t w, size_t from, size_t to, const char *tag)
{
    if (tag) {
        for (const char *t = tag; *t; t++) {
            s[w++] = *t;
        }
        return w;
    }
    for (size_t k = from; k < to; k++) {
        s[w++] = s[k];
    }
    return w;
}

void dm_mq_scrub(char *s)
{
    size_t i = 0, w = 0;

    while (s[i]) {
        size_t start, end;
        int at = 0, alpha = 0, digit = 0;
        const char *tag = NULL;

        if (!word_char((unsigned char)s[i])) {
            s[w++] = s[i++];
            continue;
        }
        start = i;
        while (s[i] && word_char((unsigned char)s[i])) {
            unsigned char c = (unsigned char)s[i];
            at += c == '@';
            alpha += isalpha(c) != 0;
            digit += isdigit(c) != 0;
            i++;
        }
        end = i;
        if (at && end - start >= 5) {
            /* an address: something@something.tld */
            const char *a = memchr(s + start, '@', end - start);
            if (a > s + start && a + 1 < s + end && memchr(a, '.', (size_t)(s + end - a))) {
                tag = end - start >= 7 ? "[email]" : "[e]";
            }
        }
        if (!tag && end - start >= 24 && alpha && digit) {
            tag = "[redacted]";
        }
        w = emit(s, w, start, end, tag);
    }
    s[w] = '\0';
}
