"""The exceptions gitsync raises.

Every message is one line a user can act on; the CLI prints it as is.  All of
them derive from `GitSyncError`, so callers that do not care which git problem
occurred catch that one class.
"""
from __future__ import annotations

__all__ = [
    "GitSyncError",
    "BareRepositoryError",
    "UnknownRevisionError",
    "InvalidBranchNameError",
    "BranchCheckedOutError",
    "ConcurrentUpdateError",
]


class GitSyncError(Exception):
    """A git repository cannot be read or written the way it was asked to."""


class BareRepositoryError(GitSyncError):
    """A bare repository was given without a revision to mount."""


class UnknownRevisionError(GitSyncError):
    """A revision does not name a commit of the repository."""


class InvalidBranchNameError(GitSyncError):
    """A diff-branch name breaks git's check-ref-format rules."""


class BranchCheckedOutError(GitSyncError):
    """The diff branch is the branch a worktree has checked out.

    Moving it would change what that worktree's HEAD means behind the user's
    back, so gitsync refuses.
    """


class ConcurrentUpdateError(GitSyncError):
    """The diff branch kept moving under us; the commit was not recorded."""
