/*
 * dynlib.c — see dynlib.h.
 */
#include "base/dynlib.h"

#include <dlfcn.h>
#include <stdio.h>

int dm_dynlib_load(const char *soname, const char *const *names, void **slots, size_t n, char *err,
                   size_t errlen)
{
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    size_t i;

    if (!h) {
        snprintf(err, errlen, "cannot load %s: %s", soname, dlerror());
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!(slots[i] = dlsym(h, names[i]))) {
            snprintf(err, errlen, "%s has no %s", soname, names[i]);
            dlclose(h);
            return 0;
        }
    }
    if (errlen) {
        err[0] = '\0';
    }
    return 1;
}
