"""Write-ahead records of writes that are not journaled yet, so `kill -9` loses none.

With `kernel_opens` a write is in the buffer when `write(2)` returns but is
journaled only when its file's writes settle (vfs.settler).  Until then each
write, truncation and change of the file's names is appended here, one file per
pending node (`<state dir>/pending/<ns>.wal`), with one `write(2)` per record
and no fsync: a dead daemon does not take the page cache with it.  The file is
removed once the node's writes are journaled; a daemon that starts finds the
files a killed one left and replays them on top of what the journal restored
(`replay`), in the order they were begun.

Format: a JSON header line (`paths`, `agent`), then records of `<kind:1><a:8><b:8>`
and a payload: `W` offset, length + bytes; `T` size, 0; `P` 0, length + a JSON
list of the node's new paths.  Replaying is idempotent: every record sets bytes
or a size outright, so replaying records a rename already captured gives the
same content.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import time
from pathlib import Path
from typing import Callable

__all__ = ["PendingLog", "replay"]

log = logging.getLogger(__name__)

_REC = struct.Struct("<cQQ")


class PendingLog:
    """One append-only file per pending node (module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[int, tuple[int, Path]] = {}  # ino -> (fd, path)

    def begin(self, ino: int, paths: list[str], agent: str) -> None:
        self.done(ino)
        path = self.directory / f"{time.time_ns():020d}-{ino}.wal"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._files[ino] = (fd, path)
        os.write(fd, json.dumps({"paths": paths, "agent": agent}).encode() + b"\n")

    def write(self, ino: int, offset: int, data: bytes, truncated_to: int | None = None) -> None:
        """A write; `truncated_to`: a truncation just before it, noted in the same write(2)
        (open(O_TRUNC) and its first write survive a kill together or not at all)."""
        records = [] if truncated_to is None else [(b"T", truncated_to, b"")]
        self._append(ino, records + [(b"W", offset, data)])

    def truncate(self, ino: int, size: int) -> None:
        self._append(ino, [(b"T", size, b"")])

    def moved(self, ino: int, paths: list[str]) -> None:
        self._append(ino, [(b"P", 0, json.dumps(paths).encode())])

    def _append(self, ino: int, records: list[tuple[bytes, int, bytes]]) -> None:
        entry = self._files.get(ino)
        if entry is not None:
            os.writev(entry[0], [part for kind, a, payload in records
                                 for part in (_REC.pack(kind, a, len(payload)), payload)])

    def done(self, ino: int) -> None:
        """`ino`'s writes are journaled: its file goes."""
        entry = self._files.pop(ino, None)
        if entry is not None:
            os.close(entry[0])
            entry[1].unlink(missing_ok=True)

    def close(self) -> None:
        """Stop writing; the files of nodes still pending stay for the next start."""
        for fd, _ in self._files.values():
            os.close(fd)
        self._files.clear()


def replay(directory: Path, content_of: Callable[[str], bytes | None],
           put: Callable[[str, bytes, str], None]) -> int:
    """Replay the files a killed daemon left: for each, the node's content at its last known
    path (`content_of`, None when it is no regular file any more) with every record applied,
    is `put(path, data, agent)`.  The files are removed.  Returns how many were replayed."""
    done = 0
    for path in sorted(directory.glob("*.wal")) if directory.is_dir() else []:
        try:
            raw = path.read_bytes()
            head, _, rest = raw.partition(b"\n")
            header = json.loads(head)
            paths, agent = list(header["paths"]), str(header["agent"])
            records = _parse(rest)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("unreadable pending-write file %s: skipped", path)
            path.unlink(missing_ok=True)
            continue
        for kind, _a, payload in records:
            if kind == b"P":
                paths = json.loads(payload)
        target = next((p for p in paths if content_of(p) is not None), None)
        if target is not None:
            data = bytearray(content_of(target))
            for kind, a, payload in records:
                if kind == b"W":
                    if a > len(data):
                        data.extend(b"\0" * (a - len(data)))
                    data[a:a + len(payload)] = payload
                elif kind == b"T":
                    del data[a:]
                    data.extend(b"\0" * (a - len(data)))
            put(target, bytes(data), agent)
            done += 1
        path.unlink(missing_ok=True)
    return done


def _parse(raw: bytes) -> list[tuple[bytes, int, bytes]]:
    out, pos = [], 0
    while pos + _REC.size <= len(raw):
        kind, a, n = _REC.unpack_from(raw, pos)
        pos += _REC.size
        if pos + n > len(raw):
            break  # cut short by the kill: that write(2) never returned
        out.append((kind, a, raw[pos:pos + n]))
        pos += n
    return out
