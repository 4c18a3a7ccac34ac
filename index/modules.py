"""Module names from paths.

Each Python file has one **canonical** name, a pure function of its path
(so extracted facts never need re-extraction when other files come and go):

- the path relative to the tree root, dotted, suffix dropped, a trailing
  ``__init__`` dropped: ``pkg/sub/mod.py`` -> ``pkg.sub.mod``,
  ``pkg/__init__.py`` -> ``pkg``;
- a top-level ``src/`` directory is a source root (the ``src`` layout):
  ``src/pkg/mod.py`` -> ``pkg.mod``;
- directories without ``__init__.py`` are namespace packages (PEP 420), so
  ``ns/part/mod.py`` -> ``ns.part.mod`` whether or not any ``__init__.py``
  exists.

Because tools put other directories on ``sys.path`` (pytest's rootdir
insertion, Django's ``runtests.py`` adding ``tests/``, a monorepo's
``packages/foo/src``), each file also has **aliases**, which depend on the set
of known paths:

- the name relative to the top of its chain of regular packages (the first
  ancestor directory without ``__init__.py`` is a ``sys.path`` entry):
  ``tests/admin_views/models.py`` with ``tests/admin_views/__init__.py`` ->
  ``admin_views.models``; ``tests/helpers.py`` -> ``helpers``;
- for files under ``src/``, the name with ``src`` kept (``src.pkg.mod``).

Lookups prefer canonical names; an alias is used only when no file has that
canonical name, and among several files with the same alias the one with the
shortest path (then the smallest) wins.  ``.py`` wins over ``.pyi``, and a
package (``x/__init__.py``) over a module (``x.py``), as in CPython.

`ModuleTable` is not thread-safe; the index guards it with its lock.
"""
from __future__ import annotations

import posixpath
from collections.abc import Iterable

__all__ = ["PY_SUFFIXES", "module_name", "is_package", "aliases", "ModuleTable"]

PY_SUFFIXES = (".py", ".pyi")


def _strip(path: str) -> str:
    return posixpath.splitext(path)[0]


def is_package(path: str) -> bool:
    """True for ``__init__.py`` / ``__init__.pyi`` (any suffix)."""
    return posixpath.basename(_strip(path)) == "__init__"


def module_name(path: str) -> str:
    """The canonical module name of ``path`` (see module docstring)."""
    parts = _strip(path).split("/")
    if parts[0] == "src" and len(parts) > 1 and parts != ["src", "__init__"]:
        parts = parts[1:]
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def aliases(path: str, has_init) -> tuple[str, ...]:
    """Other names ``path`` may be imported by; ``has_init(dir)`` tells
    whether ``dir/__init__.py`` (or ``.pyi``) is known."""
    canonical = module_name(path)
    parts = _strip(path).split("/")
    package = parts[-1] == "__init__"
    if package:
        parts = parts[:-1]
    # Climb from the innermost package directory while it has an __init__.
    start = len(parts) - (0 if package else 1)  # number of directory components
    top = start
    while top > 0 and has_init("/".join(parts[:top])):
        top -= 1
    if package and top == start:
        top = start - 1  # a package whose own dir has no init cannot happen; be safe
    names = []
    chain = ".".join(parts[top:])
    if chain and chain != canonical:
        names.append(chain)
    if parts and parts[0] == "src" and len(parts) > 1:
        full = ".".join(parts)
        if full != canonical and full not in names:
            names.append(full)
    return tuple(names)


def _rank(path: str) -> tuple:
    # Preference among files claiming one name: packages over modules, .py
    # over .pyi, then shorter paths, then lexical order.
    return (not is_package(path), path.endswith(".pyi"), len(path), path)


class ModuleTable:
    """Which file (if any) each module name denotes, for a set of paths.

    Also knows *namespace* names: every dotted prefix of a known name is a
    package even when no ``__init__.py`` backs it (``lookup`` then returns
    `NAMESPACE`).  Mutators return the set of names whose meaning changed, so
    the index can refresh whatever consulted them.
    """

    NAMESPACE = ""  # lookup() result for a package without a file

    def __init__(self) -> None:
        # Invariant: _names[p] == (module_name(p),) + aliases(p, self._has_init) for p in _paths.
        self._paths: set[str] = set()
        self._init_dirs: dict[str, int] = {}  # dir -> number of __init__ files in it
        self._names: dict[str, tuple[str, ...]] = {}
        self._canonical: dict[str, list[str]] = {}
        self._alias: dict[str, list[str]] = {}
        self._prefixes: dict[str, int] = {}  # dotted prefixes of every name -> count

    def __contains__(self, path: str) -> bool:
        return path in self._paths

    def __len__(self) -> int:
        return len(self._paths)

    def _has_init(self, directory: str) -> bool:
        return directory in self._init_dirs

    def names(self, path: str) -> tuple[str, ...]:
        """Canonical name first, then aliases; () for an unknown path."""
        return self._names.get(path, ())

    def names_for(self, path: str) -> tuple[str, ...]:
        """Names ``path`` has, or would have if it were added now."""
        known = self._names.get(path)
        if known is not None:
            return known
        return (module_name(path),) + aliases(path, self._has_init)

    def namespace_names(self) -> set[str]:
        """Every dotted prefix of a known name (packages, with or without a file)."""
        return set(self._prefixes)

    def lookup(self, name: str) -> str | None:
        """The path ``name`` denotes, `NAMESPACE` for a file-less package, or None."""
        paths = self._canonical.get(name)
        if paths:
            return paths[0]
        paths = self._alias.get(name)
        if paths:
            return paths[0]
        if name in self._prefixes:
            return self.NAMESPACE
        return None

    def add(self, paths: Iterable[str]) -> set[str]:
        """Add paths; returns the names whose meaning changed."""
        new = [p for p in paths if p not in self._paths]
        if not new:
            return set()
        changed: set[str] = set()
        init_dirs = set()
        for path in new:
            self._paths.add(path)
            if is_package(path):
                directory = posixpath.dirname(path)
                self._init_dirs[directory] = self._init_dirs.get(directory, 0) + 1
                init_dirs.add(directory)
        redo = set(new) | self._under(init_dirs)
        for path in redo:
            changed |= self._unregister(path)
        for path in redo:
            changed |= self._register(path)
        return changed

    def remove(self, paths: Iterable[str]) -> set[str]:
        """Remove paths; returns the names whose meaning changed."""
        gone = [p for p in paths if p in self._paths]
        if not gone:
            return set()
        changed: set[str] = set()
        init_dirs = set()
        for path in gone:
            changed |= self._unregister(path)
            self._paths.discard(path)
            if is_package(path):
                directory = posixpath.dirname(path)
                count = self._init_dirs[directory] - 1
                if count:
                    self._init_dirs[directory] = count
                else:
                    del self._init_dirs[directory]
                init_dirs.add(directory)
        redo = self._under(init_dirs)
        for path in redo:
            changed |= self._unregister(path)
        for path in redo:
            changed |= self._register(path)
        return changed

    def _under(self, directories: set[str]) -> set[str]:
        if not directories:
            return set()
        prefixes = tuple(d + "/" if d else "" for d in directories)
        return {p for p in self._paths if p.startswith(prefixes)}

    def _register(self, path: str) -> set[str]:
        """Enter ``path``'s names; returns them plus the namespace names that
        came into existence."""
        canonical = module_name(path)
        names = (canonical,) + aliases(path, self._has_init)
        self._names[path] = names
        changed = set(names)
        for i, name in enumerate(names):
            table = self._canonical if i == 0 else self._alias
            bucket = table.get(name)
            if bucket is None:
                table[name] = [path]
            else:
                bucket.append(path)
                bucket.sort(key=_rank)
            head, dot, _ = name.rpartition(".")
            while dot:
                count = self._prefixes.get(head, 0)
                if not count:
                    changed.add(head)
                self._prefixes[head] = count + 1
                head, dot, _ = head.rpartition(".")
        return changed

    def _unregister(self, path: str) -> set[str]:
        """Drop ``path``'s names; returns them plus the namespace names that
        ceased to exist."""
        names = self._names.pop(path, ())
        changed = set(names)
        for i, name in enumerate(names):
            table = self._canonical if i == 0 else self._alias
            bucket = table.get(name)
            if bucket is not None:
                bucket.remove(path)
                if not bucket:
                    del table[name]
            head, dot, _ = name.rpartition(".")
            while dot:
                count = self._prefixes[head] - 1
                if count:
                    self._prefixes[head] = count
                else:
                    del self._prefixes[head]
                    changed.add(head)
                head, dot, _ = head.rpartition(".")
        return changed

    def check_invariants(self) -> None:
        """Assert the table agrees with a from-scratch computation."""
        for path in self._paths:
            expected = (module_name(path),) + aliases(path, self._has_init)
            assert self._names[path] == expected, (path, self._names[path], expected)
        assert set(self._names) == self._paths
