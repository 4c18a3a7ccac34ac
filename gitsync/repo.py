"""Finding the git repository behind a mounted source, and naming commits in it.

`open_source` answers the first question a mount asks: is this directory a git
repository, and which commit is the base?  It handles a worktree root (with a
`.git` directory, or a `.git` file as linked worktrees and submodules have) and
a bare repository (which has no worktree, so a revision must be named).  A
subdirectory of a repository is *not* treated as a repository: it is served as
a plain directory, because a diff branch can only describe the whole tree.

This module also owns the two small rules other gitsync modules share: how a
revision string is resolved (`resolve_revision`) and what a valid diff-branch
name is (`check_branch_name`).

Nothing here writes to the repository.

Thread safety: the functions keep no state; each call opens its own
`dulwich.repo.Repo`.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass

from dulwich.errors import NotGitRepository
from dulwich.objects import Commit, Tree
from dulwich.objectspec import AmbiguousShortId, parse_commit
from dulwich.refs import SYMREF, check_ref_format
from dulwich.repo import Repo

from .errors import (
    BareRepositoryError,
    GitSyncError,
    InvalidBranchNameError,
    UnknownRevisionError,
)

__all__ = [
    "EMPTY_TREE_SHA",
    "RepoInfo",
    "open_source",
    "open_repo",
    "resolve_revision",
    "check_branch_name",
    "checked_out_branches",
]

log = logging.getLogger(__name__)

#: The id of the tree with no entries: the base of an unborn branch.
EMPTY_TREE_SHA: str = Tree().id.decode("ascii")

# A revision is a name followed by navigation suffixes: "~", "~N", "^", "^N",
# "^{}", "^{commit}".  Ref names cannot contain "~" or "^", so the first such
# character always starts the suffixes.
_SUFFIX = re.compile(r"~(\d*)|\^\{(commit|)\}|\^(\d*)")


@dataclass(frozen=True)
class RepoInfo:
    """What a mount needs to know about the repository behind its source.

    `base_commit` is the commit the mount shows: HEAD's commit, or the
    resolved `rev`.  It is None only for an unborn branch without a `rev`, and
    then `base_tree` is the empty tree.
    """

    source: str  # absolute path that was given to open_source
    git_dir: str  # this worktree's git directory (".git", or ".git/worktrees/NAME")
    common_dir: str  # the git directory shared by all worktrees (objects, refs)
    worktree: str | None  # worktree root; None for a bare repository
    bare: bool
    head_ref: str | None  # "refs/heads/main" when HEAD is symbolic, None when detached
    head_commit: str | None  # HEAD's commit; None when unborn
    rev: str | None  # the revision asked for, as given
    base_commit: str | None
    base_tree: str

    @property
    def head_branch(self) -> str | None:
        """HEAD's branch name ("main"), or None when HEAD is detached."""
        if self.head_ref is None:
            return None
        return self.head_ref.removeprefix("refs/heads/")

    @property
    def detached(self) -> bool:
        """True when HEAD names a commit directly rather than a branch."""
        return self.head_ref is None

    @property
    def unborn(self) -> bool:
        """True when HEAD's branch has no commit yet."""
        return self.head_commit is None

    @property
    def state_dir(self) -> str:
        """Where vfs keeps its state for this source: `<git-dir>/vfs`."""
        return os.path.join(self.git_dir, "vfs")


def open_repo(path: str | os.PathLike[str]) -> Repo:
    """Open the repository at `path` (worktree root or bare) with dulwich.

    Raises `GitSyncError` when `path` is not one, or when the repository uses
    an object format other than SHA-1 (not supported yet).
    """
    try:
        repo = Repo(os.fspath(path))
    except NotGitRepository:
        raise GitSyncError(f"{os.fspath(path)} is not a git repository") from None
    if repo.object_format.name != "sha1":
        repo.close()
        raise GitSyncError(
            f"{os.fspath(path)} uses {repo.object_format.name} object names;"
            " only sha1 repositories are supported"
        )
    return repo


def _is_repository(path: str) -> bool:
    """True when `path` is a worktree root or a bare repository itself."""
    if os.path.lexists(os.path.join(path, ".git")):
        return True
    # A bare repository: dulwich recognises it by its objects/ and refs/.
    return os.path.isdir(os.path.join(path, "objects")) and os.path.isdir(
        os.path.join(path, "refs")
    ) and os.path.isfile(os.path.join(path, "HEAD"))


def open_source(src_path: str | os.PathLike[str], rev: str | None = None) -> RepoInfo | None:
    """Describe the repository at `src_path`, or return None when there is none.

    `src_path` must be a worktree root or a bare repository; anything else
    (including a subdirectory of a worktree) returns None, unless `rev` was
    given, which needs a repository and raises `GitSyncError`.

    Raises:
      GitSyncError: `src_path` is not a directory; `rev` given for a
        non-repository; unsupported object format.
      BareRepositoryError: a bare repository without `rev`.
      UnknownRevisionError: `rev` names no commit.
    """
    source = os.path.abspath(os.fspath(src_path))
    if not os.path.isdir(source):
        raise GitSyncError(f"{source} is not a directory")
    if not _is_repository(source):
        if rev is not None:
            raise GitSyncError(f"{source} is not a git repository; --rev needs one")
        log.debug("%s is not a git repository", source)
        return None
    repo = open_repo(source)
    try:
        if repo.bare and rev is None:
            raise BareRepositoryError(
                f"{source} is a bare repository; mount a commit with --rev REV"
            )
        head_ref, head_commit = _head_state(repo)
        if rev is None:
            base_commit = head_commit
        else:
            base_commit = resolve_revision(repo, rev)
        if base_commit is None:
            base_tree = EMPTY_TREE_SHA
        else:
            commit = repo.object_store[base_commit.encode("ascii")]
            assert isinstance(commit, Commit)
            base_tree = commit.tree.decode("ascii")
        return RepoInfo(
            source=source,
            git_dir=os.path.abspath(repo.controldir()),
            common_dir=os.path.abspath(repo.commondir()),
            worktree=None if repo.bare else os.path.abspath(repo.path),
            bare=repo.bare,
            head_ref=head_ref,
            head_commit=head_commit,
            rev=rev,
            base_commit=base_commit,
            base_tree=base_tree,
        )
    finally:
        repo.close()


def _head_state(repo: Repo) -> tuple[str | None, str | None]:
    """(symbolic target of HEAD or None if detached, HEAD's commit or None if unborn)."""
    names, sha = repo.refs.follow(b"HEAD")
    head_ref = names[-1].decode("utf-8", "surrogateescape") if len(names) > 1 else None
    return head_ref, None if sha is None else sha.decode("ascii")


def resolve_revision(repo: Repo, rev: str) -> str:
    """The full hex sha of the commit `rev` names in `repo`.

    Accepts what `git rev-parse REV^{commit}` accepts for the common cases: a
    full or abbreviated (at least 4 digits) sha, a branch, tag (annotated tags
    are peeled), remote-tracking or other ref name, `HEAD`, each optionally
    followed by `~N`, `^N` and `^{commit}` navigation.

    Raises `UnknownRevisionError("unknown revision 'REV'")` when any step
    fails, and `UnknownRevisionError("revision 'REV' is not a commit")` when
    it names another kind of object.
    """
    cut = min((i for i in (rev.find("~"), rev.find("^")) if i >= 0), default=len(rev))
    name, suffixes = rev[:cut], rev[cut:]
    unknown = UnknownRevisionError(f"unknown revision '{rev}'")
    if not name:
        raise unknown
    try:
        commit = parse_commit(repo, name)
    except KeyError:
        raise unknown from None
    except AmbiguousShortId:
        raise UnknownRevisionError(f"short revision '{name}' is ambiguous") from None
    except ValueError:
        # parse_commit says "Expected commit, got tree" and the like.
        raise UnknownRevisionError(f"revision '{rev}' is not a commit") from None
    pos = 0
    while pos < len(suffixes):
        m = _SUFFIX.match(suffixes, pos)
        if m is None:
            raise unknown
        pos = m.end()
        tilde, _peel, caret = m.groups()
        if tilde is not None:
            for _ in range(int(tilde) if tilde else 1):
                commit = _parent(repo, commit, 1, unknown)
        elif caret is not None:
            n = int(caret) if caret else 1
            if n:
                commit = _parent(repo, commit, n, unknown)
        # ^{} and ^{commit}: parse_commit already peeled to a commit.
    return commit.id.decode("ascii")


def _parent(repo: Repo, commit: Commit, n: int, unknown: UnknownRevisionError) -> Commit:
    if len(commit.parents) < n:
        raise unknown
    parent = repo.object_store[commit.parents[n - 1]]
    assert isinstance(parent, Commit)
    return parent


def check_branch_name(name: str) -> str:
    """Return `refs/heads/NAME` if `name` is a valid branch name.

    The rules are git's (`git check-ref-format --branch`): those of
    `dulwich.refs.check_ref_format` for the full ref, plus no leading "-" and
    not "HEAD".  Raises `InvalidBranchNameError("'NAME' is not a valid branch
    name")`, the message git itself prints.
    """
    ref = "refs/heads/" + name
    try:
        encoded = ref.encode("utf-8")
    except UnicodeEncodeError:
        encoded = b""
    if not name or name.startswith("-") or name == "HEAD" or not check_ref_format(encoded):
        raise InvalidBranchNameError(f"'{name}' is not a valid branch name")
    return ref


def checked_out_branches(repo: Repo) -> dict[str, str]:
    """Map each branch ref checked out in a worktree to that worktree's path.

    Covers the main worktree (unless the repository is bare) and every linked
    worktree under `<common-dir>/worktrees/`.  Reads HEAD files directly:
    dulwich's worktree listing fails on unborn branches.
    """
    common = os.path.abspath(repo.commondir())
    heads: list[tuple[str, str]] = []
    if os.path.abspath(repo.controldir()) == common:
        main: str | None = None if repo.bare else os.path.abspath(repo.path)
    else:
        # Opened from a linked worktree: the main one is the directory holding
        # the common git directory, unless that repository is bare.
        bare = repo.get_config().get_boolean(b"core", b"bare", False)
        main = None if bare else os.path.dirname(common)
    if main is not None:
        heads.append((os.path.join(common, "HEAD"), main))
    linked = os.path.join(common, "worktrees")
    try:
        names = os.listdir(linked)
    except FileNotFoundError:
        names = []
    for entry in names:
        try:
            with open(os.path.join(linked, entry, "gitdir"), "rb") as f:
                path = os.path.dirname(os.fsdecode(f.read().strip()))
        except FileNotFoundError:
            path = os.path.join(linked, entry)
        heads.append((os.path.join(linked, entry, "HEAD"), path))
    result: dict[str, str] = {}
    for head_file, path in heads:
        try:
            with open(head_file, "rb") as f:
                content = f.read().strip()
        except FileNotFoundError:
            continue
        if content.startswith(SYMREF):
            result[content[len(SYMREF):].strip().decode("utf-8", "surrogateescape")] = path
    return result
