#!/usr/bin/env python3
"""Writes the PostgreSQL text of a schema from a SQLite database migrated
to the latest version (used once to write sql/pg/001_init.sql; kept so the
translation can be read and repeated). Usage:
  pg-schema-from-sqlite.py migrated.db > sql/pg/001_init.sql
Rules: INTEGER -> BIGINT (SQLite integers are 64-bit), an id INTEGER PRIMARY
KEY gets SQLite's rowid rule (MAX(id) + 1 when none is given) from a
trigger, WITHOUT ROWID dropped, each trigger -> a PL/pgSQL function + trigger, FTS5 -> the view
and function of sql/pg (written by hand below), seed rows copied."""
import re
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1])
rows = db.execute(
    "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL "
    "AND name NOT LIKE 'users_fts%' AND name NOT LIKE 'sqlite_%' "
    "AND name <> 'schema_migrations' ORDER BY rowid").fetchall()
tables = {n: s for t, n, _, s in rows if t == 'table'}
out = []


def strip_comments(s):
    return re.sub(r'--[^\n]*', '', s)


def table_sql(name, s):
    s = strip_comments(s)
    s = re.sub(r'CREATE TABLE IF NOT EXISTS "?(\w+)"?', r'CREATE TABLE \1', s)
    s = re.sub(r'\)\s*WITHOUT ROWID', ')', s)
    s = re.sub(r'\bINTEGER\b', 'BIGINT', s)
    s = re.sub(r'\n\s*\n', '\n', s)
    return s.rstrip() + ';'


# tables in an order where each one's references exist first
done, order = set(), []


def visit(n):
    if n in done:
        return
    done.add(n)
    for ref in re.findall(r'REFERENCES\s+"?(\w+)"?', tables[n]):
        if ref != n and ref in tables:
            visit(ref)
    order.append(n)


for n in tables:
    visit(n)
for n in order:
    out.append(table_sql(n, tables[n]))
# SQLite's rowid: an INTEGER PRIMARY KEY given NULL (or left out) is
# MAX(id) + 1, and one given a value keeps it. The same here, before each
# insert that has no id (writers are serialised: db_pg.c).
for n in order:
    if re.search(r'\bid INTEGER PRIMARY KEY\b', tables[n]):
        out.append('CREATE FUNCTION %s_rowid() RETURNS trigger LANGUAGE plpgsql AS $fn$\nBEGIN\n'
                   '    NEW.id := (SELECT COALESCE(MAX(id), 0) + 1 FROM %s);\n'
                   '    RETURN NEW;\nEND\n$fn$;' % (n, n))
        out.append('CREATE TRIGGER %s_rowid BEFORE INSERT ON %s FOR EACH ROW '
                   'WHEN (NEW.id IS NULL) EXECUTE FUNCTION %s_rowid();' % (n, n, n))
for t, n, _, s in rows:
    if t == 'index':
        out.append(strip_comments(s).strip() + ';')

KEYWORDS = {'case', 'when', 'then', 'else', 'end', 'and', 'or', 'not', 'null', 'is', 'in',
            'where', 'excluded', 'like', 'between', 'coalesce', 'new', 'old'}


def qualify_upserts(body):
    """PostgreSQL finds a bare column in ON CONFLICT DO UPDATE SET
    ambiguous (the table's or excluded's): name the table's."""
    def fix(stmt):
        m = re.match(r'\s*INSERT INTO (\w+)', stmt)
        if not m or not re.search(r'DO UPDATE\s+SET', stmt):
            return stmt
        table = m.group(1)
        head, sets = re.split(r'DO UPDATE\s+SET', stmt, maxsplit=1)
        parts = []
        for a in re.split(r',(?![^()]*\))', sets):
            lhs, rhs = a.split('=', 1)
            rhs = re.sub(r'(?<![.\w])([a-z_]+)\b(?![.(])',
                         lambda x: x.group(1) if x.group(1).lower() in KEYWORDS
                         else table + '.' + x.group(1), rhs)
            parts.append(lhs + '=' + rhs)
        return head + 'DO UPDATE SET' + ','.join(parts)
    return ';'.join(fix(x) for x in body.split(';'))


trig_re = re.compile(
    r'CREATE TRIGGER (\w+)\s+(AFTER|BEFORE)\s+(INSERT|UPDATE|DELETE)(\s+OF\s+[\w, ]+?)?\s+ON\s+(\w+)'
    r'\s*(?:WHEN\s+(.*?))?\s*BEGIN\s*(.*)END$', re.S)
for t, n, _, s in rows:
    if t != 'trigger':
        continue
    m = trig_re.match(strip_comments(s).strip())
    if not m:
        sys.exit('cannot translate trigger ' + n)
    name, when, event, of, table, cond, body = m.groups()
    body = qualify_upserts(body.strip())
    out.append('CREATE FUNCTION %s_fn() RETURNS trigger LANGUAGE plpgsql AS $fn$\nBEGIN\n    %s\n'
               '    RETURN NULL;\nEND\n$fn$;' % (name, body))
    # A body that reads no NEW/OLD (the catalogue's generation bump) runs
    # once per statement: PostgreSQL keeps every version of a row updated
    # again in one transaction, so a bump per row of a bulk insert would
    # cost quadratic time; one bump per statement moves the counter all the
    # same.
    per = 'ROW' if cond or re.search(r'\b(NEW|OLD|new|old)\.', body) else 'STATEMENT'
    out.append('CREATE TRIGGER %s %s %s%s ON %s FOR EACH %s%s EXECUTE FUNCTION %s_fn();' %
               (name, when, event, of or '', table, per,
                (' WHEN (' + ' '.join(cond.split()) + ')') if cond else '', name))

for n in order:
    cols = [r[1] for r in db.execute('PRAGMA table_info("%s")' % n)]
    for r in db.execute('SELECT * FROM "%s" ORDER BY 1, 2' % n if 'WITHOUT ROWID' in tables[n] else 'SELECT * FROM "%s" ORDER BY rowid' % n):
        vals = []
        for v in r:
            if v is None:
                vals.append('NULL')
            elif isinstance(v, int):
                vals.append(str(v))
            else:
                vals.append("'" + str(v).replace("'", "''") + "'")
        out.append('INSERT INTO %s (%s) VALUES (%s);' % (n, ', '.join(cols), ', '.join(vals)))
print('\n'.join(out))
