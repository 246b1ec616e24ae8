#!/usr/bin/env python3
"""The writer of `BENCH_ONLY=backup` (scripts/bench.sh): commits one small
row at a time into a scratch table of the database until the stop file
exists, and prints the longest commit it saw (ms) and how many it made —
the longest write stall a writer meets while a backup runs.
Usage: bench_backup_writer.py DB STOPFILE"""
import os
import sqlite3
import sys
import time

db, stop = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db, timeout=30, isolation_level=None)
con.execute("PRAGMA busy_timeout = 30000")
con.execute("CREATE TABLE IF NOT EXISTS bench_backup_writer (id INTEGER PRIMARY KEY, t REAL)")
longest, n = 0.0, 0
while not os.path.exists(stop):
    t = time.monotonic()
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT INTO bench_backup_writer (t) VALUES (?)", (t,))
    con.execute("COMMIT")
    longest = max(longest, time.monotonic() - t)
    n += 1
    time.sleep(0.002)
con.execute("DROP TABLE bench_backup_writer")
con.close()
print("%.1f %d" % (longest * 1000, n))
