"""What the journal stores, as Python sees it: `Entry`, blob ids, escaping, the column encoding of paths."""
from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

OPS = frozenset(
    "write create unlink rename mkdir rmdir chmod symlink link mknod rollback "
    "checkpoint sync batch external resolve mode".split()
)

_BLOB_ID = re.compile(r"[0-9a-f]{40}\Z")
_RESERVED_META = frozenset({"schema_version"})

_COLUMNS = "seq, time, agent, op, path, path2, before, after, mode, txn, info"


def blob_id(data: bytes) -> str:
    """The git blob id (sha1 hex) of `data`; the journal's content address."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


class JournalError(Exception):
    """The journal cannot do what was asked: corrupt or foreign file,
    incompatible schema, duplicate checkpoint, closed journal, I/O failure."""


def _breaks_line(ch: str) -> bool:
    """Could `ch` split a line or fail to encode (control, separator, surrogate)?"""
    return unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp")


def _escape(text: str) -> str:
    """`text` on one line: backslashes and line-breaking characters escaped."""
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif _breaks_line(ch):
            named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(ch)
            code = ord(ch)
            out.append(named or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"))
        else:
            out.append(ch)
    return "".join(out)


def _entry_blobs(before: str | None, after: str | None, info: Any) -> set[str]:
    """The blobs an entry keeps alive: `before`, `after`, and every blob id
    under a "blob" key at any depth of `info` (where the session keeps the
    per-path states of multi-path entries)."""
    found = {b for b in (before, after) if b is not None}
    stack = [info]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            blob = value.get("blob")
            if isinstance(blob, str) and _BLOB_ID.match(blob):
                found.add(blob)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return found


_RAW = "\0"  # never in a path or an agent name: marks one stored as JSON


def _to_db(text: str | None) -> str | None:
    """`text` as SQLite can store it: a path or agent name that is not valid
    UTF-8 (lone surrogates from `os.fsdecode`) is kept as NUL + its JSON."""
    if text is None:
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _RAW + json.dumps(text)
    return text


def _from_db(text: str | None) -> str | None:
    """The inverse of `_to_db`."""
    if text and text[0] == _RAW:
        return json.loads(text[1:])
    return text


def _short(blob: str | None) -> str:
    return "0000000" if blob is None else blob[:7] + ".."


@dataclass(frozen=True)
class Entry:
    """One recorded operation.  Immutable; `info` must not be mutated."""

    seq: int
    time: float
    agent: str
    op: str
    path: str
    path2: str | None = None
    before: str | None = None
    after: str | None = None
    mode: int | None = None
    txn: int = 0
    info: dict = field(default_factory=dict)

    def line(self) -> str:
        """One-line rendering for `.vfs/log`; deterministic, never contains a
        newline or tab (free text is escaped), e.g.
        `17 2026-11-26T17:40:01.123Z agent=alice write src/a.py 3f2a1c9..->9b8e7d6..`.
        A whole-session path renders as `.`, a missing blob as `0000000`."""
        millis = int(self.time * 1000)
        stamp = datetime.fromtimestamp(millis // 1000, tz=timezone.utc)
        parts = [
            str(self.seq),
            f"{stamp:%Y-%m-%dT%H:%M:%S}.{millis % 1000:03d}Z",
            "agent=" + _escape(self.agent),
            _escape(self.op),
            _escape(self.path) if self.path else ".",
        ]
        if self.path2 is not None:
            parts += ["->", _escape(self.path2)]
        if self.before is not None or self.after is not None:
            parts.append(f"{_short(self.before)}->{_short(self.after)}")
        if self.mode is not None:
            parts.append(f"mode={self.mode:o}")
        for key in sorted(self.info):
            value = self.info[key]
            if not isinstance(value, str):
                value = json.dumps(value, sort_keys=True, separators=(",", ":"))
            parts.append(f"{_escape(str(key))}={_escape(value)}")
        return " ".join(parts)

    def to_json(self) -> dict:
        """Every field as a JSON-able dict (all keys present, None kept)."""
        return {
            "seq": self.seq, "time": self.time, "agent": self.agent, "op": self.op,
            "path": self.path, "path2": self.path2, "before": self.before,
            "after": self.after, "mode": self.mode, "txn": self.txn,
            "info": dict(self.info),
        }

    @classmethod
    def _from_row(cls, row: tuple) -> Entry:
        seq, when, agent, op, path, path2, *rest, info = row
        return cls(seq, when, _from_db(agent), op, _from_db(path), _from_db(path2), *rest,
                   info=json.loads(info) if info else {})
