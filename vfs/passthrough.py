"""Which paths bypass the session and go straight to disk.

`.git/` and whatever the project's ignore rules match (`__pycache__`,
`.pytest_cache`, `.venv`, build output, ...) are passthrough: tools write
them through the mount, but they land on the backing directory, untracked by
the journal, so `git` works inside the mount and caches do not fill memory.
Extra glob patterns (gitignore syntax) come from configuration.

The rules are read when the mount starts (`.gitignore` files through the
session's base, not through the mount).  As in git, a file the index tracks is
never ignored: it stays with the session even when a pattern matches it (so
does a directory with tracked files below it).
"""
from __future__ import annotations

import os
from typing import Callable, Iterable

from gitsync import IgnoreRules, TrackedPaths

__all__ = ["PassthroughRules", "DEFAULT_PATTERNS"]

# pytest builds its cache in a `pytest-cache-files-*` directory and renames it to
# `.pytest_cache`: both must live on the same side, or the rename is EXDEV.
DEFAULT_PATTERNS = (".git", "__pycache__/", ".pytest_cache/", "pytest-cache-files-*/", ".mypy_cache/",
                    ".ruff_cache/", ".venv/", "*.pyc")


class PassthroughRules:
    def __init__(self, root: str, extra_patterns: Iterable[str] = (),
                 read: Callable[[str], bytes | None] | None = None) -> None:
        self.rules = IgnoreRules(root, (*DEFAULT_PATTERNS, *extra_patterns), read=read)
        self.tracked = TrackedPaths(root) if os.path.isdir(os.path.join(root, ".git")) else None

    def is_passthrough(self, rel: str, is_dir: bool) -> bool:
        if rel == ".vfs" or rel.startswith(".vfs/"):
            return False
        if not self.rules.is_ignored(rel, is_dir):
            return False
        if rel == ".git" or rel.startswith(".git/") or self.tracked is None:
            return True
        return not self.tracked.is_tracked(rel, is_dir)
