"""Read-only sources a Session layers its buffers over.

A *base* is what the mount shows before anyone edits: the worktree on disk
(`WorktreeBase`) or a git commit (`gitsync.GitBase`).  Paths are relative,
'/'-separated `str` with no leading slash; the root is `""`.  A base never
changes the thing it reads.

Thread safety: every method may be called from any thread; implementations hold
no mutable state beyond caches guarded by their own locks.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Protocol

__all__ = ["BaseStat", "Base", "WorktreeBase"]


@dataclass(frozen=True)
class BaseStat:
    """What a base knows of one entry (lstat semantics: symlinks not followed)."""

    mode: int  # full st_mode, file type bits included
    size: int
    mtime_ns: int
    uid: int = 0
    gid: int = 0
    rdev: int = 0


class Base(Protocol):
    """The read-only source interface (see module docstring)."""

    def stat(self, rel: str) -> BaseStat | None:
        """lstat of `rel`, or None when it does not exist."""

    def listdir(self, rel: str) -> list[str]:
        """Names in directory `rel` (unsorted). Raises OSError if not a directory."""

    def read(self, rel: str) -> bytes:
        """Whole content of regular file `rel`."""

    def readlink(self, rel: str) -> bytes:
        """Target of symlink `rel`."""


class WorktreeBase:
    """A directory on disk, reached through a descriptor opened before mounting.

    Opening the directory first is what lets vfs mount over the source itself:
    after the mount, the path resolves to the FUSE filesystem, but `dir_fd`
    still names the directory underneath.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.path.abspath(root)
        self.dir_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        os.close(self.dir_fd)

    def _parent(self, rel: str) -> tuple[int, str, bool]:
        """(descriptor of rel's directory, last component, whether to close the descriptor).

        Parent components are opened one by one with O_NOFOLLOW: a symlink on
        disk never leads a base path elsewhere (not outside the tree, and not to
        another place inside it), as the session's tree never follows one either.
        Raises FileNotFoundError when a component is missing or not a directory.
        """
        if not rel or "/" not in rel:
            return self.dir_fd, rel or ".", False
        parent, _, name = rel.rpartition("/")
        fd = self.dir_fd
        try:
            for part in parent.split("/"):
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                if fd != self.dir_fd:
                    os.close(fd)
                fd = nxt
        except OSError as exc:
            if fd != self.dir_fd:
                os.close(fd)
            raise FileNotFoundError(exc.errno, f"{rel}: {exc.strerror}") from None
        return fd, name, fd != self.dir_fd

    def stat(self, rel: str) -> BaseStat | None:
        try:
            fd, name, close = self._parent(rel)
        except FileNotFoundError:
            return None
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        finally:
            if close:
                os.close(fd)
        return BaseStat(st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid, st.st_gid, st.st_rdev)

    def _open(self, rel: str, flags: int) -> int:
        fd, name, close = self._parent(rel)
        try:
            return os.open(name, flags | os.O_NOFOLLOW, dir_fd=fd)
        finally:
            if close:
                os.close(fd)

    def listdir(self, rel: str) -> list[str]:
        fd = self._open(rel or ".", os.O_RDONLY | os.O_DIRECTORY) if rel else \
            os.open(".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.dir_fd)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def read(self, rel: str) -> bytes:
        fd = self._open(rel, os.O_RDONLY)
        try:
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(fd)

    def readlink(self, rel: str) -> bytes:
        fd, name, close = self._parent(rel)
        try:
            return os.fsencode(os.readlink(name, dir_fd=fd))
        finally:
            if close:
                os.close(fd)

    def is_dir(self, rel: str) -> bool:
        st = self.stat(rel)
        return st is not None and stat.S_ISDIR(st.mode)
