"""Inodes of the session tree.

A `Node` is one file system object: a regular file, directory, symlink or
special file.  It is *not* a path: hard links give one node several names, and
an unlinked node lives on while the kernel or an open handle still holds it.

Three flavours share the class:
- memory nodes: content (`data`) and children live in memory; the base is read
  once, lazily (`data is None` / `children is None` means "not loaded yet").
- disk nodes (`disk is True`): passthrough entries (`.git/`, ignored paths);
  the backing file is the truth and nothing is cached but the name (names of
  one hard-linked backing file share a node; an open file unlinked keeps an
  O_PATH descriptor in `pin`).
- the root, which is a memory directory.

Thread safety: nodes are plain data guarded by the owning Session's lock.
"""
from __future__ import annotations

import bisect
import stat
import time
from typing import Iterator

__all__ = ["Node", "now_ns", "DirEntries", "BLOCK_SIZE", "DIR_SIZE"]

BLOCK_SIZE = 4096
DIR_SIZE = BLOCK_SIZE  # what ext4 reports for a directory of ordinary size
FAST_SYMLINK_MAX = 60  # ext4 keeps shorter symlink targets in the inode: no block


def now_ns() -> int:
    return time.time_ns()


class DirEntries:
    """A directory's names with readdir cookies that stay stable under change.

    Each name gets a cookie larger than every cookie before it; iteration is in
    cookie order, so a readdir resumed at cookie C sees every entry that existed
    throughout and never sees one twice.  Resuming costs O(log n) plus the
    entries returned, so listing a large directory in kernel-sized batches
    stays linear overall.
    """

    __slots__ = ("_names", "_order", "_by_cookie", "_next")

    FIRST_COOKIE = 3  # 1 and 2 are "." and ".."

    def __init__(self) -> None:
        # Invariant: _names[name] == (cookie, ino) iff _by_cookie[cookie] == name; all cookies < _next.
        self._names: dict[str, tuple[int, int]] = {}
        self._by_cookie: dict[int, str] = {}
        # Invariant: _order is strictly increasing and holds every live cookie (and some dead ones,
        # dropped when they outnumber the live ones).
        self._order: list[int] = []
        self._next = self.FIRST_COOKIE

    def __contains__(self, name: str) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def get(self, name: str) -> int | None:
        hit = self._names.get(name)
        return hit[1] if hit else None

    def set(self, name: str, ino: int) -> None:
        """Add `name` (or re-add it: a replaced name gets a new cookie, like a new entry)."""
        self._drop(name)
        cookie = self._next
        self._next += 1
        self._names[name] = (cookie, ino)
        self._by_cookie[cookie] = name
        self._order.append(cookie)

    def pop(self, name: str) -> int:
        ino = self._names[name][1]
        self._drop(name)
        return ino

    def _drop(self, name: str) -> None:
        hit = self._names.pop(name, None)
        if hit is None:
            return
        del self._by_cookie[hit[0]]
        if len(self._order) > 2 * len(self._names) + 64:
            self._order = [c for c in self._order if c in self._by_cookie]

    def names(self) -> list[str]:
        return list(self._names)

    def items(self) -> list[tuple[str, int]]:
        """(name, ino) in cookie order."""
        return [(name, self._names[name][1]) for name in self._iter_names(0)]

    def since(self, cookie: int) -> Iterator[tuple[int, str, int]]:
        """(cookie, name, ino) for entries with cookie > `cookie`, in order.

        Lazy: consume it before the directory changes again.
        """
        order, by_cookie, names = self._order, self._by_cookie, self._names
        for i in range(bisect.bisect_right(order, cookie), len(order)):
            name = by_cookie.get(order[i])
            if name is not None:
                yield order[i], name, names[name][1]

    def _iter_names(self, cookie: int) -> Iterator[str]:
        for _, name, _ in self.since(cookie):
            yield name

    def check_invariants(self) -> None:
        assert all(self._by_cookie[c] == n for n, (c, _) in self._names.items())
        assert len(self._by_cookie) == len(self._names)
        assert all(a < b for a, b in zip(self._order, self._order[1:]))
        assert set(self._by_cookie) <= set(self._order)


class Node:
    """One inode (see module docstring)."""

    __slots__ = (
        "ino", "mode", "uid", "gid", "rdev", "nlink",
        "atime_ns", "mtime_ns", "ctime_ns",
        "data", "children", "target",
        "parent", "name", "links",
        "base_rel", "base_size", "disk", "pin", "lookups", "opens", "unsaved", "dir_size",
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
        self.pin: int | None = None  # disk nodes unlinked while open: an O_PATH descriptor of the file
        # Invariant: lookups == number of kernel references not yet forgotten.
        self.lookups = 0
        self.opens = 0
        # Content written since the last commit (close/fsync) of this node.
        self.unsaved = False
        # st_size of a directory: ext4 truncates one on rmdir (an open descriptor then sees 0),
        # but not when rename replaces it.
        self.dir_size = DIR_SIZE

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
        """st_size as a local file system reports it (ext4: a directory is one 4 KiB block)."""
        if self.is_dir:
            return self.dir_size
        if self.data is not None:
            return len(self.data)
        if self.target is not None:
            return len(self.target)
        return self.base_size if self.is_reg or self.is_lnk else 0

    def blocks(self) -> int:
        """st_blocks (512-byte units) of a file system with 4 KiB blocks and inline short symlinks."""
        if self.is_dir:
            return DIR_SIZE // 512  # also once removed: ext4 keeps the block while the inode lives
        if self.is_reg or (self.is_lnk and self.size() >= FAST_SYMLINK_MAX):
            return (self.size() + BLOCK_SIZE - 1) // BLOCK_SIZE * (BLOCK_SIZE // 512)
        return 0
