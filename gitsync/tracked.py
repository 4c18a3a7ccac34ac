"""`TrackedPaths`: the paths git's index tracks, which git never treats as ignored.

`.gitignore` does not apply to a tracked file (`git check-ignore` answers no,
`git status` shows its changes), so a path that matches an ignore rule but is
in the index must stay with the session.  The index is read lazily, at the
first question, and read again when the index file changes (checked at most
once per `recheck` seconds); a directory is tracked when a tracked file lies
below it.

Thread-safe.
"""
from __future__ import annotations

import os
import threading
import time

from dulwich.index import Index

from .repo import open_repo

__all__ = ["TrackedPaths"]


class TrackedPaths:
    def __init__(self, root: str | os.PathLike[str], *, recheck: float = 1.0) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.recheck = recheck
        self._lock = threading.Lock()
        self._index_path: str | None = None
        self._stamp: tuple[int, int, int] | None = None  # (st_ino, st_size, st_mtime_ns) of the index read
        self._checked = float("-inf")
        self._files: frozenset[str] = frozenset()
        self._dirs: frozenset[str] = frozenset()

    def is_tracked(self, rel: str, is_dir: bool) -> bool:
        """True when the index has file `rel` (or, for a directory, a file below it)."""
        with self._lock:
            self._refresh()
            return rel in (self._dirs if is_dir else self._files)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.recheck:
            return
        self._checked = now
        if self._index_path is None:
            repo = open_repo(self.root)
            try:
                self._index_path = repo.index_path()
            finally:
                repo.close()
        try:
            st = os.stat(self._index_path)
        except FileNotFoundError:
            self._stamp, self._files, self._dirs = None, frozenset(), frozenset()
            return
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == self._stamp:
            return
        files = {os.fsdecode(path) for path in Index(self._index_path).paths()}
        dirs = set()
        for path in files:
            parent = path.rpartition("/")[0]
            while parent and parent not in dirs:
                dirs.add(parent)
                parent = parent.rpartition("/")[0]
        self._stamp, self._files, self._dirs = stamp, frozenset(files), frozenset(dirs)
