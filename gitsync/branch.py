"""The diff branch: the session's changes recorded as commits on one git branch.

`DiffBranch.commit` turns "the session differs from the base commit by these
paths" into a commit on `refs/heads/<branch>`:

- tree = base commit's tree with exactly these changes applied.  The caller
  passes its *whole* current difference every time, so the call is
  idempotent: recording the same difference twice writes nothing the second
  time.
- parent = the branch's current head, or the base commit when the branch
  does not exist yet, so the branch is a history of the session's states.

What is written: new blob, tree and commit objects (loose for small commits,
one pack for larger ones: see `gitsync.objects`) and the one ref, with a reflog entry when `core.logAllRefUpdates` asks for one
(git's default: yes in a worktree, no in a bare repository).  The worktree,
the index, HEAD and every other ref are never touched.  The ref is moved by
compare-and-swap; if someone else moved it meanwhile, the new commit is
rebuilt on top of their head (same tree) and the swap retried, so other
people's commits are never dropped from the branch.

The branch may not be one a worktree has checked out (`BranchCheckedOutError`):
moving it would change what that worktree's HEAD means.

Thread safety: `commit` may be called from any thread; calls on one
`DiffBranch` are serialised by a lock.  Other processes (git, another
`DiffBranch`) are handled by the compare-and-swap.
"""
from __future__ import annotations

import logging
import os
import random
import stat
import threading
import time
from collections.abc import Mapping

from dulwich.file import FileLocked
from dulwich.objects import Blob, Commit
from dulwich.repo import Repo

from .errors import BranchCheckedOutError, ConcurrentUpdateError, GitSyncError, UnknownRevisionError
from .objects import LOCK_TIMEOUT_S, add_object, write_objects
from .repo import EMPTY_TREE_SHA, check_branch_name, checked_out_branches, open_repo
from .tree import TreeChange, apply_changes

__all__ = ["DiffBranch", "DEFAULT_BRANCH", "DEFAULT_AUTHOR", "normalise_mode"]

log = logging.getLogger(__name__)

DEFAULT_BRANCH = "in-memory-edits"
DEFAULT_AUTHOR = "vfs <vfs@localhost>"

#: How many times `commit` rebuilds on a head that moved before giving up.
MAX_ATTEMPTS = 5
_BACKOFF_S = 0.002


def normalise_mode(mode: int) -> int:
    """The git mode for an st_mode: 0o100644 / 0o100755 by the owner exec bit, or 0o120000.

    Raises ValueError for anything else (directories, devices, gitlinks).
    """
    if stat.S_ISLNK(mode):
        return stat.S_IFLNK
    if stat.S_ISREG(mode):
        return stat.S_IFREG | (0o755 if mode & stat.S_IXUSR else 0o644)
    raise ValueError(f"unsupported mode {oct(mode)}: only regular files and symlinks are recorded")


def _encode_path(path: str) -> bytes:
    """Validate a relative path and return it as bytes; ValueError if it is unusable."""
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "\0" in path:
        raise ValueError(f"invalid path {path!r}: must be relative, '/'-separated, without '.', '..' or empty parts")
    if any(p.lower() == ".git" for p in parts):
        # git refuses trees with ".git" entries (fsck: hasDotgit; case-insensitive
        # because core.protectNTFS is on by default).
        raise ValueError(f"invalid path {path!r}: git cannot record a '.git' entry")
    return os.fsencode(path)


class DiffBranch:
    """One diff branch of one repository (see module docstring).

    `base_commit` is the full hex sha the session's base shows, or None for an
    unborn branch (base = empty tree; the first commit has no parent).

    Raises `InvalidBranchNameError`, `UnknownRevisionError` (base commit not in
    the repository), `BranchCheckedOutError`, or `GitSyncError` (not a
    repository) at construction.
    """

    def __init__(
        self,
        repo_path: str | os.PathLike[str],
        branch: str = DEFAULT_BRANCH,
        *,
        base_commit: str | None,
    ) -> None:
        self.ref = check_branch_name(branch)
        self.name = branch
        self._ref = self.ref.encode("utf-8")
        self._repo: Repo = open_repo(repo_path)
        self._store = self._repo.object_store
        self._lock = threading.Lock()
        self.base_commit = base_commit
        try:
            if base_commit is None:
                self._base_tree = EMPTY_TREE_SHA.encode("ascii")
            else:
                self._base_tree = self._commit_tree(base_commit.encode("ascii"))
            self._check_not_checked_out()
            self._check_no_ref_conflict()
        except GitSyncError:
            self._repo.close()
            raise
        config = self._repo.get_config()
        self._reflog = config.get_boolean(b"core", b"logAllRefUpdates", not self._repo.bare)

    def close(self) -> None:
        """Release the repository's file handles."""
        with self._lock:
            self._repo.close()

    def head(self) -> str | None:
        """The branch's current commit, or None when the branch does not exist."""
        with self._lock:
            sha = self._read_head()
        return None if sha is None else sha.decode("ascii")

    def commit(
        self,
        changes: Mapping[str, tuple[int, bytes] | None],
        message: str,
        author: str = DEFAULT_AUTHOR,
    ) -> str | None:
        """Record base + `changes` on the branch; return the branch head afterwards.

        `changes` maps a relative path to `(st_mode, content)` or None for a
        deleted path.  Regular-file modes are normalised to 0o100644/0o100755
        by the owner exec bit; a symlink's content is its target.  A deleted
        directory is given as the deletion of each of its paths (or of the
        directory's own path).  Deleting a path the base does not have is a
        no-op.

        When the resulting tree equals the tree of the would-be parent, no
        commit is written and the current head is returned; that is None only
        when the branch does not exist and there is nothing to record.

        Raises ValueError for an invalid path, mode or content, or
        contradictory changes (a path both a file and a directory);
        `GitSyncError` when another ref now blocks creating the branch;
        `BranchCheckedOutError` if a worktree has checked out the branch
        meanwhile; `ConcurrentUpdateError` if the branch moved under every
        one of `MAX_ATTEMPTS` attempts.
        """
        prepared = self._prepare(changes)
        author_b = author.encode("utf-8")
        if b"<" not in author_b or not author_b.endswith(b">"):
            raise ValueError(f"invalid author {author!r}: expected 'Name <email>'")
        text = message if message.endswith("\n") else message + "\n"
        with self._lock:
            tree = self._build_tree(prepared)
            for attempt in range(1, MAX_ATTEMPTS + 1):
                self._check_not_checked_out()
                old = self._read_head()
                if old is None:
                    self._check_no_ref_conflict()
                parent = old if old is not None else self._base_commit_bytes()
                parent_tree = self._base_tree if parent is None else self._commit_tree(parent)
                if tree == parent_tree:
                    log.debug("%s: tree unchanged (%s), nothing to commit", self.ref, tree.decode())
                    return None if old is None else old.decode("ascii")
                new = self._write_commit(tree, parent, text, author_b)
                if self._swap(old, new, text, author_b):
                    log.info("%s: %s -> %s (%d paths)", self.ref, old.decode() if old else "(new)",
                             new.decode(), len(prepared))
                    return new.decode("ascii")
                log.info("%s moved while committing (attempt %d of %d); rebuilding on the new head",
                         self.ref, attempt, MAX_ATTEMPTS)
                if attempt < MAX_ATTEMPTS:
                    # Random backoff, so writers that keep colliding fall out of step.
                    time.sleep(random.uniform(0, _BACKOFF_S * 2**attempt))
        raise ConcurrentUpdateError(
            f"branch '{self.name}' moved concurrently; gave up after {MAX_ATTEMPTS} attempts"
        )

    # -- private helpers -------------------------------------------------------

    def _prepare(self, changes: Mapping[str, tuple[int, bytes] | None]) -> dict[bytes, tuple[int, bytes] | None]:
        """Validate and normalise `changes` (no I/O): path -> (git mode, content) or None."""
        prepared: dict[bytes, tuple[int, bytes] | None] = {}
        for path, change in changes.items():
            key = _encode_path(path)
            if change is None:
                prepared[key] = None
                continue
            mode, content = change
            if not isinstance(content, bytes):
                raise ValueError(f"content of {path!r} must be bytes, not {type(content).__name__}")
            try:
                prepared[key] = (normalise_mode(mode), content)
            except ValueError as exc:
                raise ValueError(f"{path!r}: {exc}") from None
        return prepared

    def _build_tree(self, prepared: Mapping[bytes, tuple[int, bytes] | None]) -> bytes:
        """Write the new blobs and trees (loose, or one pack when many); return the root tree id."""
        tree_changes: dict[bytes, TreeChange] = {}
        blobs: list[Blob] = []
        for path, change in prepared.items():
            if change is None:
                tree_changes[path] = None
                continue
            mode, content = change
            blob = Blob.from_string(content)
            blobs.append(blob)
            tree_changes[path] = (mode, blob.id)
        root, trees = apply_changes(self._store, self._base_tree, tree_changes)
        written = write_objects(self._store, [*blobs, *trees])
        log.debug("%s: %d new objects for %d paths", self.ref, written, len(prepared))
        return root

    def _write_commit(self, tree: bytes, parent: bytes | None, message: str, author: bytes) -> bytes:
        now = int(time.time())
        offset = time.localtime(now).tm_gmtoff
        commit = Commit()
        commit.tree = tree
        commit.parents = [] if parent is None else [parent]
        commit.author = commit.committer = author
        commit.author_time = commit.commit_time = now
        commit.author_timezone = commit.commit_timezone = offset
        commit.message = message.encode("utf-8")
        add_object(self._store, commit)
        return commit.id

    def _swap(self, old: bytes | None, new: bytes, message: str, committer: bytes) -> bool:
        """Compare-and-swap the ref from `old` (None: absent) to `new`; False if it moved."""
        summary = message.splitlines()[0] if message.strip() else ""
        reflog = f"vfs: {summary}".encode("utf-8") if self._reflog else None
        refs = self._repo.refs
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                if old is None:
                    return refs.add_if_new(self._ref, new, committer=committer, message=reflog)
                return refs.set_if_equals(self._ref, old, new, committer=committer, message=reflog)
            except FileLocked as exc:
                # Someone else holds the ref's lock: wait for them, then compare again.
                if time.monotonic() > deadline:
                    raise GitSyncError(f"cannot update {self.ref}: {exc.lockfilename} is locked") from exc
                time.sleep(0.002)
            except OSError as exc:
                raise GitSyncError(f"cannot update {self.ref}: {exc}") from exc

    def _read_head(self) -> bytes | None:
        _names, sha = self._repo.refs.follow(self._ref)
        return sha

    def _base_commit_bytes(self) -> bytes | None:
        return None if self.base_commit is None else self.base_commit.encode("ascii")

    def _commit_tree(self, sha: bytes) -> bytes:
        try:
            obj = self._store[sha]
        except (KeyError, ValueError, AssertionError):
            raise UnknownRevisionError(f"unknown revision '{sha.decode(errors='replace')}'") from None
        if not isinstance(obj, Commit):
            raise UnknownRevisionError(f"revision '{sha.decode(errors='replace')}' is not a commit")
        return obj.tree

    def _check_no_ref_conflict(self) -> None:
        """Refuse a ref that would be a directory of another ref, or under one (git's D/F rule)."""
        refs = self._repo.refs
        below = sorted(refs.subkeys(self._ref + b"/"))
        if below:
            other = self.ref + "/" + below[0].decode("utf-8", "surrogateescape")
            raise GitSyncError(f"cannot create branch '{self.name}': ref '{other}' exists")
        parts = self.ref.split("/")
        for i in range(3, len(parts)):  # "refs/heads/a" for "refs/heads/a/b"
            prefix = "/".join(parts[:i])
            if refs.read_ref(prefix.encode("utf-8")) is not None:
                raise GitSyncError(f"cannot create branch '{self.name}': ref '{prefix}' exists")

    def _check_not_checked_out(self) -> None:
        path = checked_out_branches(self._repo).get(self.ref)
        if path is not None:
            raise BranchCheckedOutError(
                f"branch '{self.name}' is checked out at {path}; choose another diff branch"
            )
