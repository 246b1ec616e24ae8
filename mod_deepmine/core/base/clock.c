/*
 * clock.c — see clock.h. The file is re-read on every call (tests only):
 * a few microseconds, and no cache to go stale between processes.
 */
#include "base/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <apr_pools.h>

#include "base/json.h"

static char clock_path[4096];
static int clock_on;

int dm_clock_use_file(const char *path)
{
    if (!path) {
        clock_on = 0;
        clock_path[0] = '\0';
        return 0;
    }
    if (strlen(path) >= sizeof(clock_path)) {
        return -1;
    }
    strcpy(clock_path, path);
    clock_on = 1;
    return 0;
}

static int read_clock_file(int64_t *out)
{
    char buf[128];
    ssize_t n;
    int fd = open(clock_path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) {
        n--;
    }
    buf[n] = '\0';
    {
        apr_pool_t *p = NULL;
        int rc = -1;
        if (apr_pool_create_unmanaged_ex(&p, NULL, NULL) == APR_SUCCESS) {
            rc = dm_json_parse_time(p, "clock", buf, out) ? -1 : 0;
            apr_pool_destroy(p);
        }
        return rc;
    }
}

int64_t dm_now(void)
{
    if (clock_on) {
        int64_t t;
        if (read_clock_file(&t) == 0) {
            return t;
        }
    }
    return (int64_t)time(NULL);
}

int64_t dm_hour_floor(int64_t t)
{
    int64_t r = t % 3600;
    return r < 0 ? t - r - 3600 : t - r;
}

int64_t dm_day_floor(int64_t t)
{
    int64_t r = t % 86400;
    return r < 0 ? t - r - 86400 : t - r;
}
