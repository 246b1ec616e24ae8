/*
 * walvfs.h — a SQLite VFS over the default one ("unix") that joins the
 * writes SQLite makes to a WAL file, private to store/ (db.c opens every
 * file database through it).
 *
 * SQLite appends each WAL frame with two writes, the 24-byte frame header
 * and then the page: two pwrite() calls per page, some 90 per paid-order
 * webhook, all of them made by the writer while it holds the write lock.
 * Here the writes that follow each other in the file are gathered in a
 * buffer of the connection's (up to DM_WALVFS_BUFFER bytes, allocated on a
 * connection's first WAL write) and written with one call:
 *
 *  - a commit is on disk when the write of its last page returns, as
 *    before: the frame header that carries the commit's database size
 *    (bytes 4-7 non-zero) makes the write of the page after it flush the
 *    buffer, and its error is that write's error;
 *  - every other call on the WAL file (read, sync, size, truncate, lock,
 *    close, file control) and every write that does not follow the buffer
 *    flushes it first, so whatever reads the file sees what was written;
 *  - a frame header written just after SQLite read that frame back (its
 *    checksums re-done at commit, when a transaction wrote a page twice)
 *    is written at once.
 * Another connection only reads frames a commit made visible in the
 * WAL index, which SQLite updates after the commit's writes returned, so
 * it never sees a frame still in a buffer. Nothing about durability
 * changes: the bytes and their order in the file are the same, and a sync
 * writes the buffer out before it syncs. The database file and every
 * other file are passed through untouched.
 */
#ifndef DM_STORE_WALVFS_H
#define DM_STORE_WALVFS_H

/* The buffer of one connection's WAL writes (16 frames of 4 KiB pages). */
#define DM_WALVFS_BUFFER (64 * 1024)

/* Registers the VFS (once per process; not the default one) and answers
 * its name for sqlite3_open_v2, or NULL when it could not be registered
 * (then the default VFS is used, as before). */
const char *dm_walvfs_name(void);

#endif
