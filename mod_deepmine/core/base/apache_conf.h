/*
 * apache_conf.h — one directive's value out of an Apache configuration,
 * for programs that run beside the server: deepminectl --config finds the
 * DeepMineDatabase the server uses this way.
 *
 * It reads the files as Apache does, short of evaluating anything:
 * - a line ending in a backslash continues on the next; '#' starts a
 *   comment line; directive names are case-insensitive; an argument may
 *   be quoted ("…" or '…', a backslash escaping the quote);
 * - ${NAME} is replaced by a `Define`d value, else the environment's;
 * - `Include` and `IncludeOptional` are followed where they stand (a
 *   wildcard in the last part of the path, a directory meaning every file
 *   under it, sorted; a relative path is under ServerRoot); a missing file
 *   or a wildcard matching nothing is an error for Include and is skipped
 *   for IncludeOptional; at most 32 levels deep;
 * - sections (<IfModule>, <IfDefine>, <VirtualHost>, …) are not
 *   evaluated: a directive counts wherever it stands;
 * - the last occurrence wins; a relative value (when asked for) is under
 *   the last ServerRoot, as Apache resolves it after reading everything;
 *   with no ServerRoot, under the directory of the top file (where Debian
 *   keeps apache2.conf, its compiled-in ServerRoot).
 */
#ifndef DM_APACHE_CONF_H
#define DM_APACHE_CONF_H

#include <apr_pools.h>
#include <apr_tables.h>

#include "base/err.h"

typedef struct dm_apache_directive {
    const char *value; /* the first argument; a path when asked, absolute */
    const char *file;  /* where the winning occurrence stands */
    int line;
} dm_apache_directive;

/* Finds `name` in the configuration `conf` and the files it includes.
 * *found 0 when it appears nowhere. path: resolve the value as a path
 * under ServerRoot. An unreadable file is DM_E_UNAVAILABLE naming it. */
dm_err *dm_apache_conf_find(apr_pool_t *p, const char *conf, const char *name, int path,
                            dm_apache_directive *out, int *found);

/* Every occurrence of `name`, with all its arguments. */
typedef struct dm_apache_args {
    const char *file;
    int line;
    int argc;
    const char **argv;
} dm_apache_args;

/* Every occurrence of `name` in order (an array of dm_apache_args, maybe
 * empty), and the ServerRoot relative paths are under (see above). For
 * directives that repeat: deepminectl storage reads DeepMinePlugin and
 * DeepMinePluginSet so. */
dm_err *dm_apache_conf_find_all(apr_pool_t *p, const char *conf, const char *name,
                                apr_array_header_t **out, const char **server_root);

#endif
