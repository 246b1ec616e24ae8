/*
 * libcrypto.c — see libcrypto.h. The soname is the one of the headers the
 * server was built with (OPENSSL_SHLIB_VERSION), so the functions' types
 * are those of the library loaded.
 */
#include "base/libcrypto.h"

#include <pthread.h>

#include "base/dynlib.h"
#include "base/log.h"

#define DM_STR_(x) #x
#define DM_STR(x) DM_STR_(x)
#define DM_LIBCRYPTO_SONAME "libcrypto.so." DM_STR(OPENSSL_SHLIB_VERSION)

static dm_libcrypto table;
static const dm_libcrypto *ready; /* &table once every function is found */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static const char *const names[] = {DM_LIBCRYPTO_FUNCTIONS(DM_DYNLIB_NAME)};

static void load(void)
{
    void *slot[DM_DYNLIB_COUNT(names)];
    char error[256];
    size_t i = 0;

    if (!dm_dynlib_load(DM_LIBCRYPTO_SONAME, names, slot, DM_DYNLIB_COUNT(names), error,
                        sizeof(error))) {
        dm_log(DM_L_ERR, "DM01902: %s: no RSA signature nor TOTP code can be checked", error);
        return;
    }
/* NOLINTNEXTLINE(bugprone-macro-parentheses): f names a member */
#define DM_LIBCRYPTO_SET(f) table.f = (__typeof__(table.f))slot[i++];
    DM_LIBCRYPTO_FUNCTIONS(DM_LIBCRYPTO_SET)
#undef DM_LIBCRYPTO_SET
    ready = &table;
}

const dm_libcrypto *dm_libcrypto_get(void)
{
    pthread_once(&once, load);
    return ready;
}
