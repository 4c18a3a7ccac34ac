"""Path states: what one path holds, as a small JSON-able record.

A *state* is `None` (nothing at that path) or a dict:
    {"kind": "file", "mode": st_mode, "blob": id}     content named by its git blob id
    {"kind": "symlink", "blob": id}                    id of the target bytes
    {"kind": "dir", "mode": st_mode}
    {"kind": "special", "mode": st_mode, "rdev": n}    fifo, socket, device
States are absolute (they do not depend on the base), so the journal can store
"before" and "after" of every change and rollback can put any state back.

`BaseStates` computes the state of a path in the base, hashing a base file
once per (path, size, mtime).
"""
from __future__ import annotations

import hashlib
import stat
import threading

from .base import Base
from .node import Node

__all__ = ["blob_id", "State", "node_state", "BaseStates"]

State = dict | None


def blob_id(data: bytes) -> str:
    """git's blob id (sha1 of "blob <len>\\0" + data): the content address used everywhere."""
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def node_state(node: Node, content: bytes | None) -> State:
    """State of `node`; `content` is the file's bytes or the symlink's target."""
    mode = node.mode
    if stat.S_ISREG(mode):
        return {"kind": "file", "mode": mode, "blob": blob_id(content or b"")}
    if stat.S_ISDIR(mode):
        return {"kind": "dir", "mode": mode}
    if stat.S_ISLNK(mode):
        return {"kind": "symlink", "blob": blob_id(content or b"")}
    return {"kind": "special", "mode": mode, "rdev": node.rdev}


class BaseStates:
    """States of paths in the base, cached; thread-safe."""

    def __init__(self, base: Base) -> None:
        self.base = base
        self._lock = threading.Lock()
        self._blobs: dict[str, tuple[int, int, str]] = {}

    def content(self, path: str, state: State) -> bytes:
        """Bytes behind a base state (file content or symlink target)."""
        if state["kind"] == "symlink":
            return self.base.readlink(path)
        return self.base.read(path)

    def state(self, path: str) -> State:
        for _attempt in range(3):
            try:
                return self._state(path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # changed on disk between the stat and the read: look again
        return self._state(path)

    def _state(self, path: str) -> State:
        st = self.base.stat(path)
        if st is None:
            return None
        mode = st.mode
        if stat.S_ISDIR(mode):
            return {"kind": "dir", "mode": mode}
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            key = (st.size, st.mtime_ns)
            with self._lock:
                hit = self._blobs.get(path)
            if hit is not None and hit[:2] == key:
                blob = hit[2]
            else:
                data = self.base.read(path) if stat.S_ISREG(mode) else self.base.readlink(path)
                blob = blob_id(data)
                with self._lock:
                    self._blobs[path] = (*key, blob)
            if stat.S_ISLNK(mode):
                return {"kind": "symlink", "blob": blob}
            return {"kind": "file", "mode": mode, "blob": blob}
        return {"kind": "special", "mode": mode, "rdev": st.rdev}

    def cached(self, path: str) -> State:
        """The last computed state of a base file or symlink, without looking at the disk."""
        with self._lock:
            hit = self._blobs.get(path)
        if hit is None:
            return None
        return {"kind": "file", "blob": hit[2]}

    def forget(self, path: str) -> None:
        with self._lock:
            self._blobs.pop(path, None)
