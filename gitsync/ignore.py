"""Git's ignore rules for a tree, answered per path and cheaply.

`IgnoreRules` decides, as `git status` would, whether a path is ignored.  The
patterns come from, in falling precedence:

1. `extra_patterns` given by the caller (like `git ls-files --exclude`),
   relative to the root;
2. every `.gitignore` file from the path's own directory up to the root:
   **nested `.gitignore` files are honoured**, a deeper file overriding a
   shallower one;
3. `<git-dir>/info/exclude`, then the user's `core.excludesFile` (default
   `~/.config/git/ignore`) -- only when the root is a git worktree.

Within one source the last matching pattern decides; `!pattern` re-includes.
As in git, nothing below an ignored directory can be re-included, and a
pattern such as `dir/*` ignores what `dir` holds without ignoring `dir`
itself (so a walker still enters it to find `!dir/keep`).  A directory named
`.git` and everything under it are always ignored.

The directory root need not be a git repository: a plain directory still has
its `.gitignore` files read.  Pattern matching is dulwich's (`dulwich.ignore`
`IgnoreFilter` / `Pattern`); this module only decides which patterns apply
and caches them per directory, so a call costs one dict lookup per ancestor
plus the matching itself.  It does not use dulwich's `IgnoreFilterManager`
because that one reads only from disk, cannot forget a changed `.gitignore`,
and asks the disk whether a path is a directory; `tests/gitsync` checks this
module against `git ls-files --others --ignored --exclude-standard`.

`.gitignore` files are read from disk under `root`, or through the `read`
callable when given (e.g. to see a session's in-memory edits).  They are read
once per directory; call `invalidate()` after one changes.  A `.gitignore`
that is a symlink is not followed, as git does not follow it.

Thread safety: every method may be called from any thread; the caches are
guarded by one lock.
"""
from __future__ import annotations

import errno
import io
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence

from dulwich.ignore import IgnoreFilter, Pattern, default_user_ignore_filter_path, read_ignore_patterns

from .repo import open_repo

__all__ = ["IgnoreRules"]

log = logging.getLogger(__name__)

#: Reads a root-relative file; returns None when it does not exist.
Reader = Callable[[str], "bytes | None"]

# A source of patterns and the directory (root-relative, "" for the root) its
# patterns are relative to.
_Layer = tuple[str, IgnoreFilter]


class IgnoreRules:
    """The ignore rules of the tree at `root` (see module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        extra_patterns: Iterable[str] = (),
        *,
        read: Reader | None = None,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self._read = read if read is not None else self._read_from_disk
        self._ignorecase = False
        self._global: list[_Layer] = []
        if os.path.lexists(os.path.join(self.root, ".git")):
            self._load_repository_excludes()
        self._extra: _Layer = (
            "",
            IgnoreFilter((os.fsencode(p) for p in extra_patterns), self._ignorecase, path="<extra>"),
        )
        self._lock = threading.Lock()
        # dir -> its .gitignore filter and those of its ancestors, deepest first.
        self._chains: dict[str, tuple[_Layer, ...]] = {}
        # dir -> whether the directory itself is ignored (itself or an ancestor excluded).
        # Invariant: a dir is in _excluded only if its parent is (or it is top-level).
        self._excluded: dict[str, bool] = {}

    def is_ignored(self, rel_path: str, is_dir: bool) -> bool:
        """True when git would ignore `rel_path` (root-relative, '/'-separated).

        `is_dir` says whether the entry is a directory: patterns ending in "/"
        only match directories.  The root itself is never ignored.
        """
        rel = rel_path.strip("/")
        if not rel:
            return False
        parts = rel.split("/")
        if ".git" in parts:
            return True
        parent = "/".join(parts[:-1])
        with self._lock:
            if parent and self._dir_excluded(parent):
                return True
            return self._decide(parent, rel, is_dir)

    def invalidate(self) -> None:
        """Forget every cached `.gitignore`; they are re-read on the next call."""
        with self._lock:
            self._chains.clear()
            self._excluded.clear()

    # -- private helpers (callers hold self._lock) -----------------------------

    def _dir_excluded(self, d: str) -> bool:
        cached = self._excluded.get(d)
        if cached is not None:
            return cached
        parent, _slash, _name = d.rpartition("/")
        result = (bool(parent) and self._dir_excluded(parent)) or self._decide(parent, d, True)
        self._excluded[d] = result
        return result

    def _decide(self, parent: str, rel: str, is_dir: bool) -> bool:
        """Whether the last applicable pattern for `rel` (in directory `parent`) excludes it."""
        for layers in ((self._extra,), self._chain(parent), self._global):
            pattern = _last_match(layers, rel, is_dir)
            if pattern is not None:
                return pattern.is_exclude
        return False

    def _chain(self, d: str) -> tuple[_Layer, ...]:
        chain = self._chains.get(d)
        if chain is not None:
            return chain
        parent_chain = self._chain(d.rpartition("/")[0]) if d else ()
        own = self._load(d)
        chain = parent_chain if own is None else ((d, own),) + parent_chain
        self._chains[d] = chain
        return chain

    def _load(self, d: str) -> IgnoreFilter | None:
        rel = f"{d}/.gitignore" if d else ".gitignore"
        content = self._read(rel)
        if content is None:
            return None
        log.debug("read %s", rel)
        return IgnoreFilter(read_ignore_patterns(io.BytesIO(content)), self._ignorecase, path=rel)

    def _read_from_disk(self, rel: str) -> bytes | None:
        try:
            fd = os.open(os.path.join(self.root, rel), os.O_RDONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                log.warning("not following %s: it is a symbolic link", rel)
                return None
            raise
        with os.fdopen(fd, "rb") as f:
            return f.read()

    def _load_repository_excludes(self) -> None:
        repo = open_repo(self.root)
        try:
            config = repo.get_config_stack()
            self._ignorecase = config.get_boolean(b"core", b"ignorecase", False)
            sources = [
                os.path.join(repo.controldir(), "info", "exclude"),
                os.path.expanduser(default_user_ignore_filter_path(config)),
            ]
        finally:
            repo.close()
        for path in sources:
            try:
                self._global.append(("", IgnoreFilter.from_path(path, self._ignorecase)))
            except FileNotFoundError:
                continue


def _last_match(layers: Sequence[_Layer], rel: str, is_dir: bool) -> Pattern | None:
    """The deciding pattern of the first layer that has one, or None."""
    for base, ignore_filter in layers:
        name = os.fsencode(rel[len(base) + 1:] if base else rel)
        for pattern in reversed(ignore_filter.patterns):
            if pattern.matches(name, is_dir):
                return pattern
    return None
