"""`Journal`, the store (see the package docstring for what it holds and guarantees)."""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import delta
from .records import (_BLOB_ID, _COLUMNS, _RESERVED_META, OPS, Entry, JournalError, _breaks_line, _entry_blobs,
                      _from_db, _to_db, blob_id)
from .limits import Limits, Summaries
from .schema import connect, open_schema

logger = logging.getLogger(__name__)

DELTA_MIN_BYTES = 64 << 10  # smaller contents are stored whole
MAX_DELTA_DEPTH = 64  # a content is rebuilt from at most this many deltas over a whole one
_RECENT_BYTES = 64 << 20  # contents kept for the next delta (the versions of files being edited)


@dataclass
class _Txn:
    """The open top-level transaction (only ever touched under the lock)."""

    id: int
    head: int  # Invariant: head == seq of the last entry appended so far
    first: int
    entries: list[Entry] = field(default_factory=list)
    # Blobs that lost a reference in this transaction; collected at commit.
    candidates: set[str] = field(default_factory=set)
    depth: int = 0  # nesting depth, names the savepoints


def _translated(method: Callable) -> Callable:
    """Turn sqlite3 errors raised by `method` into JournalError."""

    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise JournalError(f"journal {self.path}: {exc}") from exc

    return wrapper


def _reading(method: Callable) -> Callable:
    """Run `method` under the lock on an open journal, errors translated."""

    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._check_open()
            return method(self, *args, **kwargs)

    return _translated(wrapper)


def _writing(method: Callable) -> Callable:
    """Run `method` inside `transaction()` (joining one that is open)."""

    @functools.wraps(method)
    def wrapper(self: Journal, *args: Any, **kwargs: Any) -> Any:
        with self.transaction():
            return method(self, *args, **kwargs)

    return _translated(wrapper)


class Journal(Limits):
    """An open journal file (see the module docstring for what it holds and
    guarantees).  Thread-safe; usable as a context manager that closes it."""

    def __init__(self, db_path: str | os.PathLike[str], *, max_entries: int = 1_000_000,
                 max_bytes: int = 2 << 30, durable: bool = False,
                 summarize: Callable[[Entry, "Summaries"], None] | None = None) -> None:
        if max_entries < 1 or max_bytes < 0:
            raise ValueError("max_entries must be >= 1 and max_bytes >= 0")
        self.path = Path(db_path)
        self.summarize = summarize
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._lock = threading.RLock()
        self._recent: OrderedDict[str, bytes] = OrderedDict()  # see _remember
        self._txn: _Txn | None = None  # Invariant: not None only while the lock is held
        self._subscribers: list[tuple[object, Callable[[list[Entry]], None]]] = []
        # Committed batches not yet handed to subscribers, in commit order.
        self._pending: deque[list[Entry]] = deque()
        self._notify_lock = threading.Lock()
        self._delivering = False  # Invariant: True while one thread drains _pending
        self._byte_walk_failed_at: int | None = None
        self._conn = connect(self.path, durable)
        try:
            open_schema(self._conn, self.path)
            # Invariant: outside a transaction, _head/_first describe the committed journal.
            self._head, self._first = self._read_bounds()
        except sqlite3.Error as exc:
            self._conn.close()
            raise JournalError(f"cannot open journal {self.path}: corrupt or not a "
                               f"vfs journal ({exc})") from exc
        except BaseException:
            self._conn.close()
            raise
        self._closed = False

    def _read_bounds(self) -> tuple[int, int]:
        """(head, first_seq) as stored: two index lookups, no scan."""
        head = self._conn.execute(
            "SELECT value FROM counters WHERE name = 'head'").fetchone()[0]
        first = self._conn.execute("SELECT MIN(seq) FROM entries").fetchone()[0]
        return head, head + 1 if first is None else first

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(f"journal {self.path} is closed")

    def close(self) -> None:
        """Close the file (idempotent).  JournalError inside a transaction."""
        with self._lock:
            if self._closed:
                return
            if self._txn is not None:
                raise JournalError("close() inside a transaction")
            self._closed = True
            self._conn.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- transactions ---

    @contextlib.contextmanager
    def transaction(self) -> Iterator[int]:
        """Group every write in the block into one SQLite transaction; yields
        the transaction id, which is also the seq its first entry gets.

        On normal exit of the outermost block everything commits at once, limits
        are applied, then subscribers are notified (with the lock released).  On
        an exception nothing of the block remains (rows, seq counter, pending
        notifications) and the exception propagates.  A nested block joins the
        outer transaction but is a savepoint: its own failure undoes only its
        own writes, and the outer block may catch the exception and go on."""
        with self._lock:
            self._check_open()
            txn = self._txn
            if txn is not None:
                yield from self._nested(txn)
                return
            txn = self._begin()
            try:
                yield txn.id
            except BaseException:
                self._abort()
                raise
            batch = self._commit(txn)
        self._deliver(batch)

    def _nested(self, txn: _Txn) -> Iterator[int]:
        name = f"sp{txn.depth}"
        mark = (txn.head, len(txn.entries), set(txn.candidates))
        txn.depth += 1
        try:
            self._conn.execute(f"SAVEPOINT {name}")
            try:
                yield txn.id
            except BaseException:
                self._conn.execute(f"ROLLBACK TO {name}")
                self._conn.execute(f"RELEASE {name}")
                txn.head, count, txn.candidates = mark
                del txn.entries[count:]
                raise
            self._conn.execute(f"RELEASE {name}")
        finally:
            txn.depth -= 1

    @_translated
    def _begin(self) -> _Txn:
        # IMMEDIATE takes SQLite's write lock now, so COMMIT cannot hit a
        # deadlock with another process; re-reading the bounds under it keeps seq
        # contiguous even if another process wrote in between.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            head, first = self._read_bounds()
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._txn = _Txn(id=head + 1, head=head, first=first)
        return self._txn

    def _abort(self) -> None:
        self._txn = None
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.Error:
            logger.exception("journal %s: rollback failed", self.path)

    def _commit(self, txn: _Txn) -> list[Entry]:
        try:
            self._apply_limits(txn)
            self._conn.execute("UPDATE counters SET value = ? WHERE name = 'head'", (txn.head,))
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._abort()
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"journal {self.path}: commit failed: {exc}") from exc
            raise
        self._txn = None
        self._head, self._first = txn.head, txn.first
        return txn.entries

    def _deliver(self, batch: list[Entry]) -> None:
        """Hand `batch` to subscribers, after every batch committed before it.
        The first committing thread drains the queue; a thread that commits
        while another is delivering leaves its batch to that thread."""
        if not batch:
            return
        with self._notify_lock:
            self._pending.append(batch)
            if self._delivering:
                return
            self._delivering = True
        drained = False
        try:
            while True:
                with self._notify_lock:
                    if not self._pending:
                        # Cleared under the lock that committers check, so no
                        # batch can be left behind between the check and here.
                        self._delivering, drained = False, True
                        break
                    batch = self._pending.popleft()
                    subscribers = [cb for _, cb in self._subscribers]
                for callback in subscribers:
                    try:
                        callback(list(batch))
                    except Exception:
                        logger.exception("journal subscriber %r failed", callback)
        finally:
            if not drained:  # a BaseException escaped a callback: let others deliver
                with self._notify_lock:
                    self._delivering = False

    def subscribe(self, callback: Callable[[list[Entry]], None]) -> Callable[[], None]:
        """Call `callback(entries)` after each commit that appended entries.

        Batches arrive exactly once, in commit order, with the journal's lock
        released (a callback may read or append).  The committing thread
        delivers, unless another thread is already delivering: then that thread
        delivers this batch too, after the ones before it.  An exception from a
        callback is logged and does not affect the commit or other subscribers.
        Returns an idempotent unsubscribe function."""
        token = object()
        with self._notify_lock:
            self._subscribers.append((token, callback))

        def unsubscribe() -> None:
            with self._notify_lock:
                self._subscribers = [s for s in self._subscribers if s[0] is not token]

        return unsubscribe

    # --- entries ---

    @_writing
    def append(self, op: str, path: str = "", *, agent: str, path2: str | None = None,
               before: str | None = None, after: str | None = None,
               mode: int | None = None, info: dict | None = None) -> Entry:
        """Record one operation as entry head+1 and return it.  `before` and
        `after` are blob ids (need not be stored); `info` must be JSON-able.
        While the entry is retained it keeps alive `before`, `after` and every
        blob id found under a "blob" key at any depth of `info`."""
        if op not in OPS:
            raise ValueError(f"unknown journal op {op!r}")
        if not agent:
            raise ValueError("agent must be a non-empty string")
        for blob in (before, after):
            if blob is not None and not _BLOB_ID.match(blob):
                raise ValueError(f"not a blob id: {blob!r}")
        info_text = json.dumps(info, sort_keys=True) if info else None
        txn = self._txn
        entry = Entry(txn.head + 1, time.time(), agent, op, path, path2, before, after,
                      mode, txn.id, json.loads(info_text) if info_text else {})
        self._conn.execute(
            f"INSERT INTO entries({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (entry.seq, entry.time, _to_db(agent), op, _to_db(path), _to_db(path2), before, after,
             mode, txn.id, info_text))
        self._conn.executemany("INSERT INTO refs(blob, seq) VALUES (?, ?)",
                               [(b, entry.seq) for b in _entry_blobs(before, after, entry.info)])
        txn.head = entry.seq
        txn.entries.append(entry)
        return entry

    def head(self) -> int:
        """The last committed seq; 0 when nothing was ever appended."""
        with self._lock:
            return self._head

    def first_seq(self) -> int:
        """The oldest retained committed seq; head()+1 when none is retained."""
        with self._lock:
            return self._first

    @_reading
    def entries(self, since: int = 0, until: int | None = None, *, agent: str | None = None,
                path: str | None = None, limit: int | None = None) -> list[Entry]:
        """Entries with since < seq <= until, ascending; `path` matches path or
        path2.  Inside a transaction its own uncommitted entries are included."""
        sql = f"SELECT {_COLUMNS} FROM entries WHERE seq > ?"
        args: list[Any] = [since]
        if until is not None:
            sql += " AND seq <= ?"
            args.append(until)
        if agent is not None:
            sql += " AND agent = ?"
            args.append(_to_db(agent))
        if path is not None:
            sql += " AND (path = ? OR path2 = ?)"
            args += [_to_db(path), _to_db(path)]
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Entry._from_row(r) for r in self._conn.execute(sql, args)]

    @_reading
    def entry(self, seq: int) -> Entry:
        """Entry `seq`; KeyError when it does not exist or was trimmed."""
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM entries WHERE seq = ?",
                                 (seq,)).fetchone()
        if row is None:
            raise KeyError(seq)
        return Entry._from_row(row)

    @_reading
    def agents(self) -> list[str]:
        """Distinct agents of the retained entries, sorted (an index skip-scan)."""
        rows = self._conn.execute(
            "WITH RECURSIVE a(name) AS (SELECT MIN(agent) FROM entries UNION ALL "
            "SELECT (SELECT MIN(agent) FROM entries WHERE agent > a.name) FROM a "
            "WHERE a.name IS NOT NULL) SELECT name FROM a WHERE name IS NOT NULL")
        return sorted(_from_db(r[0]) for r in rows)

    @_reading
    def summary(self, key: str) -> Any:
        """The record the `summarize` hook left under `key`, or None."""
        row = self._conn.execute("SELECT record FROM summaries WHERE key = ?", (_to_db(key),)).fetchone()
        return None if row is None else json.loads(row[0])

    # --- blobs ---

    @_writing
    def put_blob(self, data: bytes, like: str | None = None) -> str:
        """Store `data` (once per content) and return its blob id.  `like` names the previous
        version of the same file: a big content is stored as a delta against it when that
        saves at least half (see `vfs.journal.delta`; chains stay at most MAX_DELTA_DEPTH deep)."""
        data = bytes(data)
        blob = blob_id(data)
        if self._conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob,)).fetchone():
            return blob
        if like is not None and like != blob and len(data) >= DELTA_MIN_BYTES:
            row = self._conn.execute("SELECT depth FROM blobs WHERE id = ?", (like,)).fetchone()
            if row is not None and row[0] < MAX_DELTA_DEPTH:
                try:
                    diff = delta.encode(self._content(like), data)
                except JournalError:  # an unreadable base: this version is stored whole
                    diff = data
                if len(diff) <= len(data) // 2:
                    self._conn.execute("INSERT INTO blobs(id, size, data, base, depth) VALUES (?, ?, ?, ?, ?)",
                                       (blob, len(diff), diff, like, row[0] + 1))
                    self._remember(blob, data)
                    return blob
        self._conn.execute("INSERT INTO blobs(id, size, data) VALUES (?, ?, ?)",
                           (blob, len(data), data))
        if len(data) >= DELTA_MIN_BYTES:
            self._remember(blob, data)
        return blob

    def _remember(self, blob: str, data: bytes) -> None:
        """Keep a big content at hand for the delta of its next version (bounded LRU)."""
        recent = self._recent
        recent[blob] = data
        recent.move_to_end(blob)
        total = sum(len(v) for v in recent.values())
        while len(recent) > 1 and total > _RECENT_BYTES:
            total -= len(recent.popitem(last=False)[1])

    @_reading
    def get_blob(self, blob: str) -> bytes:
        """The content of `blob`; KeyError when unknown or evicted, JournalError
        when the stored bytes no longer match their id."""
        data = self._content(blob)
        if blob_id(data) != blob:
            raise JournalError(f"journal {self.path}: blob {blob} is corrupt")
        return data

    def _content(self, blob: str) -> bytes:
        """The bytes of `blob`, its chain of deltas applied (KeyError when unknown)."""
        chain = []
        name: str | None = blob
        while name is not None:
            row = self._conn.execute("SELECT base FROM blobs WHERE id = ?", (name,)).fetchone()
            if row is None:
                if name == blob:
                    raise KeyError(blob)
                raise JournalError(f"journal {self.path}: base {name} of blob {blob} is missing")
            known = self._recent.get(name)
            if known is not None:
                chain.append(known)
                break
            chain.append(bytes(self._conn.execute("SELECT data FROM blobs WHERE id = ?", (name,)).fetchone()[0]))
            name = row[0]
        data = chain.pop()
        try:
            while chain:
                data = delta.decode(data, chain.pop())
        except ValueError as exc:
            raise JournalError(f"journal {self.path}: blob {blob} is corrupt ({exc})") from None
        return data

    @_reading
    def has_blob(self, blob: str) -> bool:
        return self._conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob,)).fetchone() is not None

    @_writing
    def pin_blob(self, blob: str) -> None:
        """Keep `blob` alive until `unpin_blob` (a set, not a refcount).
        KeyError when the blob is not stored."""
        if not self._conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob,)).fetchone():
            raise KeyError(blob)
        self._conn.execute("INSERT OR IGNORE INTO pins(blob) VALUES (?)", (blob,))

    @_writing
    def unpin_blob(self, blob: str) -> None:
        """Drop the pin (no-op when not pinned); the blob is deleted at commit
        if nothing else references it."""
        if self._conn.execute("DELETE FROM pins WHERE blob = ?", (blob,)).rowcount:
            self._txn.candidates.add(blob)

    # --- overlay state ---

    @_writing
    def set_state(self, path: str, record: dict | None) -> None:
        """Set (or, with None, remove) the state record of `path`.  A string
        `record["blob"]` keeps that blob alive while the record names it."""
        path = _to_db(path)
        old = self._conn.execute("SELECT blob FROM state WHERE path = ?", (path,)).fetchone()
        if record is None:
            self._conn.execute("DELETE FROM state WHERE path = ?", (path,))
            new_blob = None
        else:
            if not isinstance(record, dict):
                raise TypeError(f"state record must be a dict, not {type(record).__name__}")
            blob = record.get("blob")
            new_blob = blob if isinstance(blob, str) else None
            self._conn.execute(
                "INSERT OR REPLACE INTO state(path, record, blob) VALUES (?, ?, ?)",
                (path, json.dumps(record, sort_keys=True), new_blob))
        if old is not None and old[0] is not None and old[0] != new_blob:
            self._txn.candidates.add(old[0])

    @_reading
    def state(self) -> dict[str, dict]:
        """Every state record by path (sorted by path)."""
        rows = self._conn.execute("SELECT path, record FROM state")
        return dict(sorted((_from_db(path), json.loads(record)) for path, record in rows))

    @_writing
    def clear_state(self) -> None:
        """Remove every state record."""
        rows = self._conn.execute("SELECT DISTINCT blob FROM state WHERE blob IS NOT NULL")
        self._txn.candidates.update(r[0] for r in rows)
        self._conn.execute("DELETE FROM state")

    # --- file times and owners ---

    @_writing
    def set_attrs(self, path: str, attrs: tuple[int, int, int, int] | None) -> None:
        """Remember (atime_ns, mtime_ns, uid, gid) of `path` (None: forget them)."""
        if attrs is None:
            self._conn.execute("DELETE FROM attrs WHERE path = ?", (_to_db(path),))
        else:
            self._conn.execute("INSERT OR REPLACE INTO attrs(path, atime, mtime, uid, gid, at)"
                               " VALUES (?, ?, ?, ?, ?, ?)", (_to_db(path), *attrs, time.time_ns()))

    @_reading
    def attrs(self) -> dict[str, tuple[int, int, int, int, int]]:
        """Every remembered (atime_ns, mtime_ns, uid, gid, recorded_at_ns) by path."""
        rows = self._conn.execute("SELECT path, atime, mtime, uid, gid, at FROM attrs")
        return {_from_db(row[0]): tuple(row[1:]) for row in rows}

    @_writing
    def set_link(self, path: str, file: int | None) -> None:
        """Record that `path` is a hard link of file number `file` (None: it is not)."""
        if file is None:
            self._conn.execute("DELETE FROM links WHERE path = ?", (_to_db(path),))
        else:
            self._conn.execute("INSERT OR REPLACE INTO links(path, file) VALUES (?, ?)", (_to_db(path), file))

    @_writing
    def clear_links(self) -> None:
        """Forget every hard-link group (file numbers are only meaningful within one daemon)."""
        self._conn.execute("DELETE FROM links")

    @_reading
    def link_groups(self) -> list[list[str]]:
        """The recorded hard-link groups of two paths or more, each sorted."""
        groups: dict[int, list[str]] = {}
        for path, file in self._conn.execute("SELECT path, file FROM links"):
            groups.setdefault(file, []).append(_from_db(path))
        return sorted(sorted(g) for g in groups.values() if len(g) > 1)

    # --- checkpoints ---

    @_writing
    def add_checkpoint(self, name: str, seq: int, info: dict | None = None) -> None:
        """Name journal position `seq` (0 <= seq <= head).  JournalError if the
        name is taken, empty or not a single line."""
        if not name or any(map(_breaks_line, name)):
            raise JournalError(f"checkpoint name must be a non-empty single line: {name!r}")
        if not 0 <= seq <= self._txn.head:
            raise JournalError(f"checkpoint {name!r}: seq {seq} is not in 0..{self._txn.head}")
        row = self._conn.execute("SELECT seq FROM checkpoints WHERE name = ?", (name,)).fetchone()
        if row is not None:
            raise JournalError(f"checkpoint {name!r} already exists (at seq {row[0]})")
        self._conn.execute(
            "INSERT INTO checkpoints(name, seq, time, info) VALUES (?, ?, ?, ?)",
            (name, seq, time.time(), json.dumps(info, sort_keys=True) if info else None))

    @_reading
    def checkpoints(self) -> list[tuple[str, int, float]]:
        """(name, seq, time) of every checkpoint, in creation order.  A seq below
        first_seq() names history that has been trimmed."""
        return [tuple(r) for r in self._conn.execute(
            "SELECT name, seq, time FROM checkpoints ORDER BY ord")]

    @_reading
    def checkpoint_seq(self, name: str) -> int:
        """The seq checkpoint `name` marks; KeyError when unknown."""
        row = self._conn.execute("SELECT seq FROM checkpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        return row[0]

    @_reading
    def checkpoint_info(self, name: str) -> dict:
        """The `info` given to add_checkpoint (a copy); KeyError when unknown."""
        row = self._conn.execute("SELECT info FROM checkpoints WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(name)
        return json.loads(row[0]) if row[0] else {}

    # --- meta and stats ---

    @_reading
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else row[0]

    @_writing
    def set_meta(self, key: str, value: str | None) -> None:
        """Set `key` (None deletes it).  The journal's own keys are refused."""
        if key in _RESERVED_META:
            raise JournalError(f"meta key {key!r} is reserved")
        if value is None:
            self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                               (key, str(value)))

    @_reading
    def stats(self) -> dict:
        """Sizes and limits: entries, first_seq, head, blobs, blob_bytes,
        db_bytes (database plus WAL file), max_entries, max_bytes, agents (count)."""
        counters = dict(self._conn.execute("SELECT name, value FROM counters"))
        db_bytes = 0
        for suffix in ("", "-wal"):
            with contextlib.suppress(FileNotFoundError):
                db_bytes += os.path.getsize(f"{self.path}{suffix}")
        return {
            "entries": self._head - self._first + 1, "first_seq": self._first,
            "head": self._head, "blobs": counters["blobs"],
            "blob_bytes": counters["blob_bytes"], "db_bytes": db_bytes,
            "max_entries": self.max_entries, "max_bytes": self.max_bytes,
            "agents": len(self.agents()),
        }

    @_reading
    def check_invariants(self) -> None:
        """Verify the stored invariants (full scans; for tests).  AssertionError
        names the first one broken."""
        txn = self._txn
        head, first = (self._head, self._first) if txn is None else (txn.head, txn.first)
        if txn is None and self._read_bounds() != (head, first):
            raise AssertionError(f"cached bounds {(head, first)} != stored {self._read_bounds()}")
        count, low, high = self._conn.execute(
            "SELECT COUNT(*), MIN(seq), MAX(seq) FROM entries").fetchone()
        if count != head - first + 1 or (count and (low, high) != (first, head)):
            raise AssertionError(f"entries not contiguous {first}..{head}: "
                                 f"{count} rows, {low}..{high}")
        orphans = self._conn.execute(
            "SELECT COUNT(*) FROM refs WHERE seq NOT IN (SELECT seq FROM entries)").fetchone()[0]
        if orphans:
            raise AssertionError(f"{orphans} blob references to trimmed entries")
        missing = self._conn.execute(
            "SELECT COUNT(*) FROM blobs AS d WHERE d.base IS NOT NULL"
            " AND NOT EXISTS(SELECT 1 FROM blobs AS b WHERE b.id = d.base)").fetchone()[0]
        if missing:
            raise AssertionError(f"{missing} deltas whose base is gone")
        blobs, size = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM blobs").fetchone()
        counters = dict(self._conn.execute("SELECT name, value FROM counters"))
        if (counters["blobs"], counters["blob_bytes"]) != (blobs, size):
            raise AssertionError(f"blob counters {counters} != ({blobs}, {size})")
