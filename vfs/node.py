"""Inodes of the session tree.

A `Node` is one file system object: a regular file, directory, symlink or
special file.  It is *not* a path: hard links give one node several names, and
an unlinked node lives on while the kernel or an open handle still holds it.

Three flavours share the class:
- memory nodes: content (`data`) and children live in memory; the base is read
  once, lazily (`data is None` / `children is None` means "not loaded yet").
- disk nodes (`disk is True`): passthrough entries (`.git/`, ignored paths);
  the backing file is the truth and nothing is cached but the name.
- the root, which is a memory directory.

Thread safety: nodes are plain data guarded by the owning Session's lock.
"""
from __future__ import annotations

import stat
import time

__all__ = ["Node", "now_ns", "DirEntries"]


def now_ns() -> int:
    return time.time_ns()


class DirEntries:
    """A directory's names with readdir cookies that stay stable under change.

    Each name gets a cookie larger than every cookie before it; iteration is in
    cookie order, so a readdir resumed at cookie C sees every entry that existed
    throughout and never sees one twice.
    """

    __slots__ = ("_names", "_next")

    # Invariant: cookies in _names are strictly increasing in dict order, all < _next.
    FIRST_COOKIE = 3  # 1 and 2 are "." and ".."

    def __init__(self) -> None:
        self._names: dict[str, tuple[int, int]] = {}
        self._next = self.FIRST_COOKIE

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def get(self, name: str) -> int | None:
        hit = self._names.get(name)
        return hit[1] if hit else None

    def set(self, name: str, ino: int) -> None:
        self._names.pop(name, None)
        self._names[name] = (self._next, ino)
        self._next += 1

    def pop(self, name: str) -> int:
        return self._names.pop(name)[1]

    def names(self) -> list[str]:
        return list(self._names)

    def items(self) -> list[tuple[str, int]]:
        return [(name, ino) for name, (_, ino) in self._names.items()]

    def since(self, cookie: int) -> list[tuple[int, str, int]]:
        """(cookie, name, ino) for entries with cookie > `cookie`, in order."""
        return [(c, name, ino) for name, (c, ino) in self._names.items() if c > cookie]


class Node:
    """One inode (see module docstring)."""

    __slots__ = (
        "ino", "mode", "uid", "gid", "rdev", "nlink",
        "atime_ns", "mtime_ns", "ctime_ns",
        "data", "children", "target",
        "parent", "name", "links",
        "base_rel", "base_size", "disk", "lookups", "opens", "unsaved",
    )

    def __init__(self, ino: int, mode: int, uid: int = 0, gid: int = 0, *, mtime_ns: int | None = None) -> None:
        t = now_ns() if mtime_ns is None else mtime_ns
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = 0
        self.nlink = 2 if stat.S_ISDIR(mode) else 1
        self.atime_ns = self.mtime_ns = self.ctime_ns = t
        self.data: bytearray | None = None       # regular files; None = not loaded from base
        self.children: DirEntries | None = None  # directories; None = not listed from base
        self.target: bytes | None = None         # symlinks
        # The primary name; `links` holds every (parent ino, name) of a hard-linked node.
        self.parent: int = 0
        self.name: str = ""
        self.links: set[tuple[int, str]] = set()
        self.base_rel: str | None = None  # path in the base this node was loaded from
        self.base_size = 0                 # size in the base, valid while data is None
        self.disk = False
        # Invariant: lookups == number of kernel references not yet forgotten.
        self.lookups = 0
        self.opens = 0
        # Content written since the last commit (close/fsync) of this node.
        self.unsaved = False

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_lnk(self) -> bool:
        return stat.S_ISLNK(self.mode)

    def touch(self, content: bool = True) -> None:
        """Record a change: content changes move mtime and ctime, metadata ctime only."""
        t = now_ns()
        if content:
            self.mtime_ns = t
        self.ctime_ns = t

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        if self.target is not None:
            return len(self.target)
        return self.base_size if self.is_reg else 0
