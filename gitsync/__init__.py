"""gitsync: every use of git in vfs, done with dulwich (never the `git` command).

Layout, one git concept per module:

- `repo`   -- find the repository behind a source, resolve revisions, branch names
- `base`   -- `GitBase`: a commit's tree, read lazily, as a vfs base
- `tree`   -- rebuild only the trees on changed paths
- `branch` -- `DiffBranch`: the session's difference as commits on one branch
- `ignore` -- `IgnoreRules`: git's ignore rules, nested `.gitignore` included
- `tracked` -- `TrackedPaths`: the paths the index tracks (never ignored)
- `merge`  -- `merge3`: line-based three-way merge with git's conflict markers
- `errors` -- `GitSyncError` and its subclasses

gitsync never writes a user's worktree, index, HEAD or any ref but the diff
branch's.
"""
from .base import GitBase
from .branch import DiffBranch
from .errors import (
    BareRepositoryError,
    BranchCheckedOutError,
    ConcurrentUpdateError,
    GitSyncError,
    InvalidBranchNameError,
    UnknownRevisionError,
)
from .ignore import IgnoreRules
from .tracked import TrackedPaths
from .merge import merge3
from .repo import EMPTY_TREE_SHA, RepoInfo, check_branch_name, open_source

__all__ = [
    "GitSyncError",
    "BareRepositoryError",
    "UnknownRevisionError",
    "InvalidBranchNameError",
    "BranchCheckedOutError",
    "ConcurrentUpdateError",
    "RepoInfo",
    "TrackedPaths",
    "open_source",
    "check_branch_name",
    "EMPTY_TREE_SHA",
    "GitBase",
    "DiffBranch",
    "IgnoreRules",
    "merge3",
]
