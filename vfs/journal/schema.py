"""The journal's SQLite schema: creating, checking and migrating it; the queries of the limits."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from pathlib import Path
from typing import Iterator

from .records import JournalError, _entry_blobs

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 4  # 1: before the refs table, 2: before summaries, 3: before deltas (all migrated on open)
# 'vfs1': lets `file(1)` and this module tell a journal from other SQLite files.
_APPLICATION_ID = 0x76667331

_SCHEMA = f"""
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE entries(
    seq INTEGER PRIMARY KEY, time REAL NOT NULL, agent TEXT NOT NULL,
    op TEXT NOT NULL, path TEXT NOT NULL, path2 TEXT, before TEXT, after TEXT,
    mode INTEGER, txn INTEGER NOT NULL, info TEXT);
CREATE INDEX entries_agent ON entries(agent);
CREATE INDEX entries_path ON entries(path);
CREATE INDEX entries_path2 ON entries(path2) WHERE path2 IS NOT NULL;
-- Invariant: one row per (blob, seq) the entry seq names (see _entry_blobs).
CREATE TABLE refs(blob TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(blob, seq))
    WITHOUT ROWID;
CREATE INDEX refs_seq ON refs(seq);
-- A blob with a base stores a delta against the base's content (vfs.journal.delta), `depth`
-- deltas deep, and `size` counts what is stored.  Invariant: a base exists while a blob names it.
CREATE TABLE blobs(id TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL,
                   base TEXT, depth INTEGER NOT NULL DEFAULT 0);
CREATE INDEX blobs_base ON blobs(base) WHERE base IS NOT NULL;
CREATE TABLE state(path TEXT PRIMARY KEY, record TEXT NOT NULL, blob TEXT);
CREATE INDEX state_blob ON state(blob) WHERE blob IS NOT NULL;
CREATE TABLE pins(blob TEXT PRIMARY KEY) WITHOUT ROWID;
-- The times (ns) and owner the tree showed for a path when it last changed them, and when (`at`):
-- a remount puts them back (they are not part of a path's state: no change to sync or diff).
CREATE TABLE attrs(path TEXT PRIMARY KEY, atime INTEGER NOT NULL, mtime INTEGER NOT NULL,
                   uid INTEGER NOT NULL, gid INTEGER NOT NULL, at INTEGER NOT NULL) WITHOUT ROWID;
-- Paths that were hard links of one file share a `file` number (the daemon's inode at the time):
-- a remount links them again.
CREATE TABLE links(path TEXT PRIMARY KEY, file INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE summaries(key TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE checkpoints(
    ord INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, seq INTEGER NOT NULL,
    time REAL NOT NULL, info TEXT);
-- Invariant: counters 'blobs'/'blob_bytes' equal COUNT(*)/SUM(size) of blobs.
CREATE TRIGGER blobs_added AFTER INSERT ON blobs BEGIN
    UPDATE counters SET value = value + 1 WHERE name = 'blobs';
    UPDATE counters SET value = value + NEW.size WHERE name = 'blob_bytes';
END;
CREATE TRIGGER blobs_removed AFTER DELETE ON blobs BEGIN
    UPDATE counters SET value = value - 1 WHERE name = 'blobs';
    UPDATE counters SET value = value - OLD.size WHERE name = 'blob_bytes';
END;
INSERT INTO counters VALUES ('head', 0), ('blobs', 0), ('blob_bytes', 0);
INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');
PRAGMA application_id = {_APPLICATION_ID};
"""

# Is blob ?1 named by an entry after seq ?2, by a state record, by a pin, or the base of a delta?
_REFERENCED = """SELECT EXISTS(SELECT 1 FROM refs WHERE blob = ?1 AND seq > ?2)
    OR EXISTS(SELECT 1 FROM state WHERE blob = ?1)
    OR EXISTS(SELECT 1 FROM pins WHERE blob = ?1)
    OR EXISTS(SELECT 1 FROM blobs WHERE base = ?1)"""

# For each seq, the bytes that trimming through it frees: the blobs whose
# last reference it is and that neither state nor a pin keeps.
_FREED_AT = """WITH last(blob, seq) AS (SELECT blob, MAX(seq) FROM refs GROUP BY blob)
    SELECT last.seq, SUM(blobs.size) FROM last JOIN blobs ON blobs.id = last.blob
    WHERE NOT EXISTS(SELECT 1 FROM state WHERE state.blob = last.blob)
      AND NOT EXISTS(SELECT 1 FROM pins WHERE pins.blob = last.blob)
      AND NOT EXISTS(SELECT 1 FROM blobs AS d WHERE d.base = last.blob)
    GROUP BY last.seq ORDER BY last.seq"""


def connect(path: Path, durable: bool) -> sqlite3.Connection:
    """Open (creating it 0600, in a 0700 directory) the database in WAL mode."""
    parent = path.parent
    if not parent.exists():
        parent.mkdir(mode=0o700, parents=True)
        os.chmod(parent, 0o700)  # mkdir's mode is filtered through the umask
    # Create the file ourselves rather than flip the process-wide umask (racy
    # with other threads): SQLite gives -wal and -shm the database file's mode.
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, 0o600)
        os.close(fd)
    try:
        conn = sqlite3.connect(path, isolation_level=None,
                               check_same_thread=False, timeout=10.0)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open journal {path}: {exc}") from exc
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise JournalError(f"cannot open journal {path}: WAL mode refused ({mode})")
        conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        conn.execute("PRAGMA journal_size_limit=67108864")
    except sqlite3.Error as exc:
        conn.close()
        raise JournalError(f"cannot open journal {path}: corrupt or not a "
                           f"vfs journal ({exc})") from exc
    except BaseException:
        conn.close()
        raise
    return conn

def open_schema(conn: sqlite3.Connection, path: Path) -> None:
    """Create the schema in an empty database; check (and migrate) an existing one."""
    tables = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        conn.executescript("BEGIN IMMEDIATE;" + _SCHEMA + "COMMIT;")
        return
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id != _APPLICATION_ID or "meta" not in tables:
        raise JournalError(f"cannot open journal {path}: a SQLite database, "
                           f"but not a vfs journal")
    row = conn.execute(
        "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None and row[0] == "1":
        _migrate_from_1(conn, path)
        row = ("2",)
    if row is not None and row[0] == "2":
        _migrate_from_2(conn, path)
        row = ("3",)
    if row is not None and row[0] == "3":
        _migrate_from_3(conn, path)
    elif row is None or row[0] != str(SCHEMA_VERSION):
        found = "none" if row is None else row[0]
        raise JournalError(f"cannot open journal {path}: schema version {found}, "
                           f"this vfs reads version {SCHEMA_VERSION}")

@contextlib.contextmanager
def _migration(conn: sqlite3.Connection, path: Path, old: int) -> Iterator[None]:
    """One step from schema `old` to `old + 1`: all of it or nothing."""
    logger.info("journal %s: migrating schema %d -> %d", path, old, old + 1)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(old + 1),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

def _migrate_from_1(conn: sqlite3.Connection, path: Path) -> None:
    """Version 1 found blob references through indexes on before/after only;
    version 2 keeps every reference (info included) in the refs table."""
    with _migration(conn, path, 1):
        refs_ddl = _SCHEMA[_SCHEMA.index("CREATE TABLE refs"):_SCHEMA.index("CREATE TABLE blobs")]
        for statement in refs_ddl.split(";")[:-1]:  # executescript would COMMIT first
            conn.execute(statement)
        rows = conn.execute("SELECT seq, before, after, info FROM entries").fetchall()
        conn.executemany("INSERT INTO refs(blob, seq) VALUES (?, ?)", [
            (blob, seq) for seq, before, after, info in rows
            for blob in _entry_blobs(before, after, json.loads(info) if info else {})])
        conn.execute("DROP INDEX IF EXISTS entries_before")
        conn.execute("DROP INDEX IF EXISTS entries_after")

def _migrate_from_2(conn: sqlite3.Connection, path: Path) -> None:
    """Version 3 adds the summaries table (empty: what was trimmed before is
    not summarised)."""
    with _migration(conn, path, 2):
        ddl = _SCHEMA[_SCHEMA.index("CREATE TABLE summaries"):]
        conn.execute(ddl[:ddl.index(";")])

def _migrate_from_3(conn: sqlite3.Connection, path: Path) -> None:
    """Version 4 lets a blob be a delta against a base (every existing blob is whole) and keeps
    file times, owners and hard-link groups (none known yet)."""
    with _migration(conn, path, 3):
        conn.execute("ALTER TABLE blobs ADD COLUMN base TEXT")
        conn.execute("ALTER TABLE blobs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0")
        conn.execute("CREATE INDEX blobs_base ON blobs(base) WHERE base IS NOT NULL")
        for table in ("attrs", "links"):
            ddl = _SCHEMA[_SCHEMA.index(f"CREATE TABLE {table}"):]
            conn.execute(ddl[:ddl.index(";")])
