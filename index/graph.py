"""The file-level import graph and test impact.

Edges run from a file to the in-tree files its import statements load:

- the module each import names (``import a.b.c`` -> ``a/b/c.py``;
  ``from .util import x`` -> ``pkg/util.py``);
- for ``from M import n``, also ``M.n`` when that is a submodule;
- the ``__init__.py`` of every package on the way (``a/__init__.py``,
  ``a/b/__init__.py``), because importing ``a.b.c`` runs them.

Never listed: the ``__init__.py`` of a package that contains the importing
file (``from . import x``, ``from pkg import y`` inside ``pkg``): it is
loaded before the file anyway, and listing it would put every module in a
cycle with its own ``__init__``.  Whoever imports the file from outside
depends on that ``__init__`` and so carries the edge transitively.

Imports inside functions count: they run when the function does.

The graph also remembers which module *names* each file's imports mention,
found or not, so adding or removing a file re-evaluates exactly the importers
whose edges it can change.

Not thread-safe; the index guards it with its lock.
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

__all__ = ["DependencyGraph", "is_test_file", "candidate_modules"]

_TEST_RE = re.compile(r"(?:test_.*|.*_test)\.py\Z")


def is_test_file(path: str) -> bool:
    """pytest's default collection rule: ``test_*.py`` or ``*_test.py``, any directory."""
    return _TEST_RE.match(posixpath.basename(path)) is not None


def candidate_modules(imports: Iterable[tuple]) -> list[str]:
    """Module names an import list may load, from packed import rows: each
    named module, each ``module.name`` of a from-import (a submodule or not),
    and every enclosing package."""
    out: list[str] = []
    for module, name, _alias, _level, _line, _col in imports:
        if not module:
            continue
        out.append(module)
        if name and name != "*":
            out.append(f"{module}.{name}")
        head, dot, _ = module.rpartition(".")
        while dot:
            out.append(head)
            head, dot, _ = head.rpartition(".")
    return out


class DependencyGraph:
    """Forward and reverse edges between indexed files (see module docstring)."""

    def __init__(self) -> None:
        # Invariant: b in _reverse[a] iff a in _forward[b];
        # p in _importers[n] iff n in _mentions[p].
        self._forward: dict[str, tuple[str, ...]] = {}
        self._reverse: dict[str, set[str]] = {}
        self._mentions: dict[str, frozenset[str]] = {}
        self._importers: dict[str, set[str]] = {}

    def set(self, path: str, deps: Iterable[str], mentions: Iterable[str]) -> None:
        """Replace the edges out of ``path`` and the names its imports mention."""
        self.discard(path)
        forward = tuple(sorted(set(deps) - {path}))
        self._forward[path] = forward
        for dep in forward:
            self._reverse.setdefault(dep, set()).add(path)
        mentioned = frozenset(mentions)
        self._mentions[path] = mentioned
        for name in mentioned:
            self._importers.setdefault(name, set()).add(path)

    def discard(self, path: str) -> None:
        """Forget the edges out of ``path`` (edges into it stay with their owners)."""
        for dep in self._forward.pop(path, ()):
            users = self._reverse.get(dep)
            if users is not None:
                users.discard(path)
                if not users:
                    del self._reverse[dep]
        for name in self._mentions.pop(path, ()):
            users = self._importers.get(name)
            if users is not None:
                users.discard(path)
                if not users:
                    del self._importers[name]

    def dependencies(self, path: str) -> tuple[str, ...]:
        """Direct dependencies, sorted."""
        return self._forward.get(path, ())

    def mentions(self, path: str) -> frozenset[str]:
        """Module names the imports of ``path`` mention."""
        return self._mentions.get(path, frozenset())

    def importers_of(self, names: Iterable[str]) -> set[str]:
        """Files whose imports mention any of ``names``."""
        out: set[str] = set()
        for name in names:
            out |= self._importers.get(name, set())
        return out

    def dependents(self, path: str, transitive: bool = False) -> set[str]:
        """Files importing ``path`` (directly, or through any chain)."""
        direct = set(self._reverse.get(path, ()))
        if not transitive:
            return direct
        seen = set(direct)
        frontier = list(direct)
        while frontier:
            for user in self._reverse.get(frontier.pop(), ()):
                if user not in seen:
                    seen.add(user)
                    frontier.append(user)
        seen.discard(path)
        return seen

    def check_invariants(self) -> None:
        """Assert forward and reverse edges agree."""
        for path, deps in self._forward.items():
            for dep in deps:
                assert path in self._reverse[dep], (path, dep)
        for dep, users in self._reverse.items():
            for user in users:
                assert dep in self._forward[user], (user, dep)
        for path, names in self._mentions.items():
            for name in names:
                assert path in self._importers[name], (path, name)
