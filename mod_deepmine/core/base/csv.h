/*
 * csv.h — cells of the staff's CSV exports (RFC 4180), safe to open in a
 * spreadsheet.
 */
#ifndef DM_CSV_H
#define DM_CSV_H

#include <apr_pools.h>

/* One text cell as written between separators: a value starting with
 * '=', '+', '-', '@', TAB or CR gets a leading '\'' (a spreadsheet then
 * shows it as text, never runs it as a formula); a value holding ',', '"',
 * CR or LF (after that) is quoted, its '"' doubled. NULL is the empty
 * cell. */
const char *dm_csv_text(apr_pool_t *p, const char *s);

#endif
