"""The journal's limits: trimming the oldest entries (entry count, stored bytes) and collecting
the blobs nothing references any more.  A mixin of `Journal`: these run inside the committing
transaction, under its lock."""
from __future__ import annotations

import json
import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from .records import _COLUMNS, Entry, _to_db
from .schema import _FREED_AT, _REFERENCED

if TYPE_CHECKING:
    from .store import _Txn

logger = logging.getLogger("vfs.journal.store")


class Summaries:
    """The summaries table as the `summarize` hook sees it while trimming:
    `get(key)` (None when absent) and `put(key, record)` (JSON-able); written
    back in the trimming transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._records: dict[str, Any] = {}
        self._dirty: set[str] = set()

    def get(self, key: str) -> Any:
        if key not in self._records:
            row = self._conn.execute("SELECT record FROM summaries WHERE key = ?",
                                     (_to_db(key),)).fetchone()
            self._records[key] = None if row is None else json.loads(row[0])
        return self._records[key]

    def put(self, key: str, record: Any) -> None:
        self._records[key] = record
        self._dirty.add(key)

    def _flush(self) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO summaries(key, record) VALUES (?, ?)",
            [(_to_db(k), json.dumps(self._records[k], separators=(",", ":"))) for k in sorted(self._dirty)])
        self._dirty.clear()


class Limits:
    """Trimming and collection (see module docstring)."""

    def _blob_bytes(self) -> int:
        return self._conn.execute(
            "SELECT value FROM counters WHERE name = 'blob_bytes'").fetchone()[0]

    def _apply_limits(self, txn: _Txn) -> None:
        """Trim entries and collect blobs inside the committing transaction."""
        if txn.head - txn.first + 1 > self.max_entries:
            self._trim_through(txn, txn.head - self.max_entries)
        self._collect(txn)
        if self._blob_bytes() > self.max_bytes:
            cut = self._byte_cut(txn)
            if cut is not None:
                self._trim_through(txn, cut)
                self._collect(txn)

    def _trim_through(self, txn: _Txn, last: int) -> None:
        """Delete entries with seq <= last (folded into the summaries first, when
        a `summarize` hook is set); their blobs become candidates."""
        if self.summarize is not None:
            summaries = Summaries(self._conn)
            rows = self._conn.execute(
                f"SELECT {_COLUMNS} FROM entries WHERE seq <= ? ORDER BY seq", (last,))
            for row in rows:
                self.summarize(Entry._from_row(row), summaries)
            summaries._flush()
        rows = self._conn.execute("SELECT blob FROM refs WHERE seq <= ?", (last,))
        txn.candidates.update(r[0] for r in rows)
        self._conn.execute("DELETE FROM refs WHERE seq <= ?", (last,))
        self._conn.execute("DELETE FROM entries WHERE seq <= ?", (last,))
        logger.debug("journal %s: trimmed entries %d..%d", self.path, txn.first, last)
        txn.first = last + 1

    def _collect(self, txn: _Txn) -> None:
        """Delete the candidate blobs nothing references any more (then the bases that only
        the deleted deltas needed)."""
        dropped = 0
        pending = sorted(txn.candidates)
        txn.candidates.clear()
        while pending:
            bases = []
            for blob in pending:
                if not self._conn.execute(_REFERENCED, (blob, 0)).fetchone()[0]:
                    row = self._conn.execute("SELECT base FROM blobs WHERE id = ?", (blob,)).fetchone()
                    dropped += self._conn.execute("DELETE FROM blobs WHERE id = ?", (blob,)).rowcount
                    if row is not None and row[0] is not None:
                        bases.append(row[0])
            pending = sorted(set(bases))
        if dropped:
            logger.debug("journal %s: deleted %d unreferenced blobs", self.path, dropped)

    def _byte_cut(self, txn: _Txn) -> int | None:
        """The smallest seq such that trimming through it frees enough blob bytes
        to get under max_bytes, or None when no prefix suffices.  A blob is freed
        at its last referencing entry.  The first entries are walked one by one
        (the steady state needs one or two); a longer prefix is found with one
        aggregate query.  After a failure, the next try waits until the journal
        has grown by 1/16, so an unreachable limit costs O(1) amortised."""
        failed_at = self._byte_walk_failed_at
        if failed_at is not None and \
                txn.head - failed_at < max(64, (txn.head - txn.first + 1) // 16):
            return None
        excess = self._blob_bytes() - self.max_bytes
        freed = 0
        walk = self._conn.execute("SELECT seq, blob FROM refs WHERE seq < ? ORDER BY seq",
                                  (txn.first + 256,))
        for seq, blob in walk:
            if not self._conn.execute(_REFERENCED, (blob, seq)).fetchone()[0]:
                size = self._conn.execute("SELECT size FROM blobs WHERE id = ?", (blob,)).fetchone()
                freed += size[0] if size else 0
                if freed >= excess:
                    walk.close()
                    self._byte_walk_failed_at = None
                    return seq
        freed = 0
        long_history = txn.head >= txn.first + 256
        for seq, size in self._conn.execute(_FREED_AT) if long_history else ():
            freed += size
            if freed >= excess:
                self._byte_walk_failed_at = None
                return seq
        log = logger.debug if failed_at is not None else logger.warning
        log("journal %s: blob bytes exceed max_bytes %d by %d even without history; "
            "keeping history", self.path, self.max_bytes, excess)
        self._byte_walk_failed_at = txn.head
        return None
