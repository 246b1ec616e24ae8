/*
 * dynlib.h — a shared library loaded on first use (dlopen) instead of
 * linked, so that a process that never calls it never maps it, nor what it
 * pulls in (docs/decisions.md "Memory, fifth round"). One loader for every
 * such library: libpq (store/db_pg.c), libcurl (plugins/http_client.c) and
 * libcrypto (base/libcrypto.c). Each caller keeps its own X-macro list of
 * function names, a typed table filled from the slots, and its own
 * after-load step and log line.
 *
 * A caller's list X(f) gives both the names and the typed table:
 *
 *     static const char *const names[] = {LIST(DM_DYNLIB_NAME)};
 *     void *slot[DM_DYNLIB_COUNT(names)];
 *     size_t i = 0;
 *
 *     if (dm_dynlib_load(SONAME, names, slot, DM_DYNLIB_COUNT(names), err, sizeof(err))) {
 *     #define SET(f) table.f = (__typeof__(table.f))slot[i++];
 *         LIST(SET)
 *     }
 */
#ifndef DM_DYNLIB_H
#define DM_DYNLIB_H

#include <stddef.h>

/* An X-macro step giving the function's name as a string. */
#define DM_DYNLIB_NAME(f) #f,

/* The number of names of a list made with DM_DYNLIB_NAME. */
#define DM_DYNLIB_COUNT(names) (sizeof(names) / sizeof((names)[0]))

/* Opens soname (RTLD_NOW | RTLD_LOCAL; the handle is kept for the life of
 * the process) and puts the address of names[i] into slots[i] for every
 * i < n. Returns 1 when every name was found; otherwise 0, with the reason
 * ("cannot load <soname>: <dlerror>" or "<soname> has no <name>") in err,
 * and the library closed again. Not thread-safe by itself: callers run it
 * under pthread_once. */
int dm_dynlib_load(const char *soname, const char *const *names, void **slots, size_t n, char *err,
                   size_t errlen);

#endif
