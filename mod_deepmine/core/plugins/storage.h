/*
 * storage.h — calling storage plugins, typed, in the shape of payment.h and
 * mailer.h: the only way the rest of the server (KYC documents, backups)
 * reaches a storage plugin's put, get, remove and list.
 *
 * The host checks every key before a plugin sees it (dm_storage_key_ok),
 * counts the bytes crossing each callback (a put whose source gives more
 * or fewer bytes than announced is aborted, so the plugin leaves nothing;
 * a get that delivers another size than it announced is an error), and
 * checks what a list hands back (valid keys, under the prefix, in strictly
 * increasing order). msg is always NUL-terminated and says why on every
 * failure; a status a plugin made up becomes DM_ERR_INTERNAL.
 */
#ifndef DM_PLUGINS_STORAGE_H
#define DM_PLUGINS_STORAGE_H

#include <apr_pools.h>
#include <stddef.h>
#include <stdint.h>

#include "deepmine/plugin.h"
#include "plugins/plugin_host.h"

/* The longest key (and list prefix) the host accepts, in bytes. */
#define DM_STORAGE_KEY_MAX 512

/* 1 when key is one the host hands to a storage plugin: 1 to
 * DM_STORAGE_KEY_MAX bytes of letters, digits and "/._-"; no "..", no
 * leading or trailing "/", no empty ("//") or "." segment. */
int dm_storage_key_ok(const char *key);

/* 1 when prefix may start a list: "" or the start of a valid key (the
 * same rules, except that it may end with "/"). */
int dm_storage_prefix_ok(const char *prefix);

/* The storage plugin that holds documents and backups: the initialised
 * storage plugin configured as `name` (DeepMineStorage), or, when name is
 * NULL or empty, the only storage plugin loaded. NULL with *why (a
 * sentence for the log or an error) when there is none. */
const dm_loaded_plugin *dm_storage_plugin(const dm_plugin_host *h, const char *name,
                                          const char **why);

/* Stores `length` bytes read from `read(ctx, …)` under key, all or nothing.
 * DM_ERR_INVALID for a bad key, a negative length, or a source that gives
 * more or fewer bytes than length (the plugin is told to abort and leaves
 * no object); a status the source returned is passed on. */
dm_status dm_storage_put(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                         const char *key, const char *content_type, int64_t length,
                         dm_storage_read_fn read, void *ctx, dm_message *msg);

/* dm_storage_put from memory. */
dm_status dm_storage_put_buffer(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                                const char *key, const char *content_type, const void *buf,
                                size_t len, dm_message *msg);

/* Streams the object under key to write(ctx, …) in chunks. DM_ERR_NOT_FOUND
 * when there is none; *size (may be NULL) gets its size (the plugin's word
 * before the first chunk, else the bytes delivered). DM_ERR_INTERNAL when
 * the plugin delivers another number of bytes than it announced. A status
 * write returned stops the get and is passed on. */
dm_status dm_storage_get(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                         const char *key, dm_storage_write_fn write, void *ctx, int64_t *size,
                         dm_message *msg);

/* dm_storage_get into memory (p): at most max bytes, else DM_ERR_INVALID
 * ("larger than …"). *buf is NUL-terminated (one byte past *len). */
dm_status dm_storage_get_buffer(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                                const char *key, size_t max, void **buf, size_t *len,
                                dm_message *msg);

/* Removes the object under key; DM_OK also when there was none. */
dm_status dm_storage_remove(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                            const char *key, dm_message *msg);

/* Calls each(ctx, key, size, mtime) for every object whose key starts with
 * prefix ("" or NULL: all), in key order. A status each returned stops the
 * list and is passed on. */
dm_status dm_storage_list(const dm_plugin_host *h, const dm_loaded_plugin *pl, apr_pool_t *p,
                          const char *prefix, dm_storage_each_fn each, void *ctx, dm_message *msg);

#endif
