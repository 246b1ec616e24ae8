/*
 * libcrypto.c — see libcrypto.h. The soname is the one of the headers the
 * server was built with (OPENSSL_SHLIB_VERSION), so the functions' types
 * are those of the library loaded.
 */
#include "base/libcrypto.h"

#include <dlfcn.h>
#include <pthread.h>

#include "base/log.h"

#define DM_STR_(x) #x
#define DM_STR(x) DM_STR_(x)
#define DM_LIBCRYPTO_SONAME "libcrypto.so." DM_STR(OPENSSL_SHLIB_VERSION)

static dm_libcrypto table;
static const dm_libcrypto *ready; /* &table once every function is found */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void)
{
    void *h = dlopen(DM_LIBCRYPTO_SONAME, RTLD_NOW | RTLD_LOCAL);

    if (!h) {
        dm_log(DM_L_ERR, "DM01902: cannot load " DM_LIBCRYPTO_SONAME ": %s", dlerror());
        return;
    }
#define DM_LIBCRYPTO_SYM(f)                                                                        \
    if (!(table.f = (__typeof__(table.f))dlsym(h, #f))) {                                          \
        dm_log(DM_L_ERR, "DM01903: " DM_LIBCRYPTO_SONAME " has no " #f);                           \
        return;                                                                                    \
    }
    DM_LIBCRYPTO_FUNCTIONS(DM_LIBCRYPTO_SYM)
#undef DM_LIBCRYPTO_SYM
    ready = &table;
}

const dm_libcrypto *dm_libcrypto_get(void)
{
    pthread_once(&once, load);
    return ready;
}
