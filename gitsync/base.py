"""A git commit's tree, read lazily from the object store, as a vfs base.

`GitBase` implements the `vfs.base.Base` protocol.  Opening one reads the
commit and nothing else; a path is resolved on demand by walking trees from
the root tree, one component at a time.  Tree objects are kept in an LRU keyed
by sha, so a warm walk costs a few dict lookups; blob contents are kept in a
byte-bounded LRU, so the `stat` (which needs the size) and the `read` that
usually follows decompress a blob once.

What the mount shows:

- directories are `0o40755`, regular files `0o100644` or `0o100755`,
  symlinks `0o120777` with the target as content;
- submodules (gitlinks, `0o160000`) are empty directories;
- every entry's mtime is the commit time (committer date); uid and gid are the
  mounting user's;
- a directory's size is 0.

It is not a snapshot of a worktree: there are no untracked or ignored files,
and no `.git`.

Thread safety: every public method may be called from any thread.  One lock
guards the dulwich object store (pack files are read through shared file
objects that are not safe for concurrent use) and the caches.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from dulwich.objects import Blob, Commit, Tree

from vfs.base import BaseStat

from .errors import UnknownRevisionError
from .repo import EMPTY_TREE_SHA, open_repo

__all__ = ["GitBase"]

log = logging.getLogger(__name__)

_DIR_MODE = stat.S_IFDIR | 0o755
_SYMLINK_MODE = stat.S_IFLNK | 0o777
_GITLINK = 0o160000

K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    """A least-recently-used map bounded by the total weight of its values.

    Not thread-safe: the owner serialises access.
    """

    def __init__(self, capacity: int, weigh: Callable[[V], int] = lambda _v: 1) -> None:
        self._capacity = capacity
        self._weigh = weigh
        self._items: OrderedDict[K, V] = OrderedDict()
        # Invariant: self._weight == sum(self._weigh(v) for v in self._items.values())
        self._weight = 0

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value)
        if weight > self._capacity:
            return  # would evict everything else; not worth keeping
        old = self._items.pop(key, None)
        if old is not None:
            self._weight -= self._weigh(old)
        self._items[key] = value
        self._weight += weight
        while self._weight > self._capacity:
            _key, evicted = self._items.popitem(last=False)
            self._weight -= self._weigh(evicted)

    def __len__(self) -> int:
        return len(self._items)

    def check_invariants(self) -> None:
        assert self._weight == sum(self._weigh(v) for v in self._items.values())
        assert self._weight <= self._capacity


def _not_found(rel: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), rel)


def _oserror(code: int, rel: str) -> OSError:
    # OSError's constructor picks the subclass (IsADirectoryError, ...) from the errno.
    return OSError(code, os.strerror(code), rel)


class GitBase:
    """The tree of one commit (or the empty tree), served read-only and lazily.

    `commit_sha` is a full hex sha, or None for an unborn branch: then the
    base is the empty tree and its mtime is the time of opening.

    Raises `GitSyncError` if `repo_path` is not a repository and
    `UnknownRevisionError` if `commit_sha` is not a commit in it.

    Call `close()` when done; the object is unusable afterwards.
    """

    def __init__(
        self,
        repo_path: str | os.PathLike[str],
        commit_sha: str | None,
        *,
        tree_cache_entries: int = 4096,
        blob_cache_bytes: int = 64 << 20,
    ) -> None:
        self._repo = open_repo(repo_path)
        self._store = self._repo.object_store
        self._lock = threading.Lock()
        self._trees: _LRU[bytes, Tree] = _LRU(tree_cache_entries)
        self._blobs: _LRU[bytes, bytes] = _LRU(blob_cache_bytes, len)
        self._sizes: _LRU[bytes, int] = _LRU(1 << 18)
        self.commit_sha = commit_sha
        if commit_sha is None:
            self._root = EMPTY_TREE_SHA.encode("ascii")
            self.mtime_ns = time.time_ns()
            self._trees.put(self._root, Tree())
        else:
            try:
                commit = self._store[commit_sha.encode("ascii")]
            except (KeyError, ValueError, AssertionError):
                # dulwich asserts on a malformed sha, raises KeyError on a missing one.
                self._repo.close()
                raise UnknownRevisionError(f"unknown revision '{commit_sha}'") from None
            if not isinstance(commit, Commit):
                self._repo.close()
                raise UnknownRevisionError(f"revision '{commit_sha}' is not a commit")
            self._root = commit.tree
            self.mtime_ns = commit.commit_time * 1_000_000_000
        self._uid = os.getuid()
        self._gid = os.getgid()
        log.debug("opened %s at %s (tree %s)", repo_path, commit_sha, self._root.decode())

    @property
    def tree_sha(self) -> str:
        """Hex sha of the root tree."""
        return self._root.decode("ascii")

    def close(self) -> None:
        """Release the repository's file handles."""
        with self._lock:
            self._repo.close()

    # -- Base protocol ---------------------------------------------------------

    def stat(self, rel: str) -> BaseStat | None:
        """lstat of `rel`, or None when it does not exist (see module docstring for modes)."""
        with self._lock:
            try:
                mode, sha = self._resolve(rel)
            except (FileNotFoundError, NotADirectoryError):
                return None
            if stat.S_ISDIR(mode) or mode == _GITLINK:
                return self._stat(_DIR_MODE, 0)
            size = self._sizes.get(sha)
            if size is None:
                size = len(self._blob(sha))
            if stat.S_ISLNK(mode):
                return self._stat(_SYMLINK_MODE, size)
            return self._stat(_file_mode(mode), size)

    def listdir(self, rel: str) -> list[str]:
        """Names in directory `rel`; FileNotFoundError / NotADirectoryError as the OS would."""
        with self._lock:
            mode, sha = self._resolve(rel)
            if mode == _GITLINK:
                return []
            if not stat.S_ISDIR(mode):
                raise _oserror(errno.ENOTDIR, rel)
            return [os.fsdecode(name) for name in self._tree(sha)]

    def read(self, rel: str) -> bytes:
        """Content of regular file `rel`.

        IsADirectoryError for a directory, OSError(ELOOP) for a symlink (as an
        `O_NOFOLLOW` open would), FileNotFoundError when missing.
        """
        with self._lock:
            mode, sha = self._resolve(rel)
            if stat.S_ISDIR(mode) or mode == _GITLINK:
                raise _oserror(errno.EISDIR, rel)
            if stat.S_ISLNK(mode):
                raise _oserror(errno.ELOOP, rel)
            return self._blob(sha)

    def readlink(self, rel: str) -> bytes:
        """Target of symlink `rel`; OSError(EINVAL) if it is not a symlink."""
        with self._lock:
            mode, sha = self._resolve(rel)
            if not stat.S_ISLNK(mode):
                raise _oserror(errno.EINVAL, rel)
            return self._blob(sha)

    # -- git-specific queries -------------------------------------------------

    def git_entry(self, rel: str) -> tuple[int, str] | None:
        """(git mode, hex object id) of `rel` as recorded in the tree, or None.

        The root is `(0o40000, tree_sha)`.  Lets a caller compare a buffer with
        the base by blob id instead of by content.
        """
        with self._lock:
            try:
                mode, sha = self._resolve(rel)
            except (FileNotFoundError, NotADirectoryError):
                return None
            return mode, sha.decode("ascii")

    def check_invariants(self) -> None:
        with self._lock:
            self._trees.check_invariants()
            self._blobs.check_invariants()
            self._sizes.check_invariants()

    # -- private helpers (callers hold self._lock) -----------------------------

    def _stat(self, mode: int, size: int) -> BaseStat:
        return BaseStat(mode=mode, size=size, mtime_ns=self.mtime_ns, uid=self._uid, gid=self._gid)

    def _resolve(self, rel: str) -> tuple[int, bytes]:
        """(git mode, binary-hex sha) of `rel`, walking trees from the root."""
        mode, sha = stat.S_IFDIR, self._root
        if rel == "":
            return mode, sha
        for name in rel.split("/"):
            if name in ("", ".", ".."):
                raise _not_found(rel)
            if not stat.S_ISDIR(mode):
                if mode == _GITLINK:
                    raise _not_found(rel)  # an empty directory has no children
                raise _oserror(errno.ENOTDIR, rel)
            try:
                mode, sha = self._tree(sha)[os.fsencode(name)]
            except KeyError:
                raise _not_found(rel) from None
        return mode, sha

    def _tree(self, sha: bytes) -> Tree:
        tree = self._trees.get(sha)
        if tree is None:
            obj = self._store[sha]
            if not isinstance(obj, Tree):
                raise TypeError(f"object {sha.decode()} is a {obj.type_name.decode()}, not a tree")
            tree = obj
            self._trees.put(sha, tree)
        return tree

    def _blob(self, sha: bytes) -> bytes:
        data = self._blobs.get(sha)
        if data is None:
            obj = self._store[sha]
            if not isinstance(obj, Blob):
                raise TypeError(f"object {sha.decode()} is a {obj.type_name.decode()}, not a blob")
            data = obj.as_raw_string()
            self._blobs.put(sha, data)
            self._sizes.put(sha, len(data))
        return data


def _file_mode(git_mode: int) -> int:
    """Regular-file st_mode for a git blob mode (git only records the exec bit)."""
    return stat.S_IFREG | (0o755 if git_mode & 0o100 else 0o644)
