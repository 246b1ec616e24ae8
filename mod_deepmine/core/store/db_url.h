/*
 * db_url.h — which engine a DeepMineDatabase value names, read from its
 * text alone (no connection): a PostgreSQL URL or libpq key/value string,
 * else a SQLite file path. The start-up checks that differ by engine use
 * it (e.g. storage-local on PostgreSQL, http/mod_deepmine.c).
 */
#ifndef DM_DB_URL_H
#define DM_DB_URL_H

/* 1 when `value` is a PostgreSQL connection string: it starts with
 * postgresql:// or postgres:// (any case), or it is a libpq key/value
 * string with a host= or dbname= keyword (at the start or after a space).
 * 0 for anything else, a file path in particular, and for NULL. */
int dm_db_url_is_postgres(const char *value);

#endif
