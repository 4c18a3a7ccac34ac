"""The reverse maps index queries answer from (private to `index.index`).

Each map goes from a key to the set of paths whose facts contain it:

- ``def_names``: last component of a defined qualified name -> paths;
- ``ref_paths``: canonical target of a resolved reference -> paths;
- ``cand_paths``: last component of a name-only candidate -> paths;
- ``consulters``: module name looked at while resolving -> paths.

Queries then scan only the files a key names.  Entries are added and
removed per file, from the same rows and targets, so they never drift.

Not thread-safe: the index guards it with its lock.
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["QueryMaps", "last_component"]


def last_component(name: str) -> str:
    """``helper`` for ``pkg.util.helper`` (and ``greet`` for ``Greeter().greet``)."""
    return name.rpartition(".")[2]


def _add(table: dict[str, set[str]], key: str, path: str) -> None:
    paths = table.get(key)
    if paths is None:
        table[key] = {path}
    else:
        paths.add(path)


def _discard(table: dict[str, set[str]], key: str, path: str) -> None:
    paths = table.get(key)
    if paths is not None:
        paths.discard(path)
        if not paths:
            del table[key]


class QueryMaps:
    """Key -> paths maps (see module docstring)."""

    def __init__(self) -> None:
        # Invariant: p in def_names[n] iff a definition row of p has last component n;
        # p in ref_paths[t] iff t is among p's targets; p in cand_paths[n] iff a ref
        # row of p with target None ends in n; p in consulters[m] iff p consulted m.
        self.def_names: dict[str, set[str]] = {}
        self.ref_paths: dict[str, set[str]] = {}
        self.cand_paths: dict[str, set[str]] = {}
        self.consulters: dict[str, set[str]] = {}

    def add_definitions(self, path: str, def_rows: Iterable[tuple]) -> None:
        for row in def_rows:
            _add(self.def_names, last_component(row[1]), path)

    def forget_definitions(self, path: str, def_rows: Iterable[tuple]) -> None:
        for row in def_rows:
            _discard(self.def_names, last_component(row[1]), path)

    def add_resolution(self, path: str, ref_rows, targets, consulted: Iterable[str]) -> None:
        """Enter one file's resolution: ``targets[i]`` belongs to ``ref_rows[i]``."""
        for target in set(targets):
            if target is not None:
                _add(self.ref_paths, target, path)
        for last in {last_component(row[0]) for row, t in zip(ref_rows, targets) if t is None}:
            _add(self.cand_paths, last, path)
        for name in consulted:
            _add(self.consulters, name, path)

    def forget_resolution(self, path: str, ref_rows, targets, consulted: Iterable[str]) -> None:
        """Undo `add_resolution` with the same arguments."""
        for target in set(targets):
            if target is not None:
                _discard(self.ref_paths, target, path)
        for last in {last_component(row[0]) for row, t in zip(ref_rows, targets) if t is None}:
            _discard(self.cand_paths, last, path)
        for name in consulted:
            _discard(self.consulters, name, path)

    def consulters_of(self, names: Iterable[str]) -> set[str]:
        """Paths that consulted any of ``names``."""
        out: set[str] = set()
        for name in names:
            out |= self.consulters.get(name, set())
        return out

    def check(self, files: dict[str, tuple]) -> None:
        """Assert agreement with ``files``: path -> (def rows, ref rows, targets, consulted)."""
        expected = QueryMaps()
        for path, (def_rows, ref_rows, targets, consulted) in files.items():
            expected.add_definitions(path, def_rows)
            expected.add_resolution(path, ref_rows, targets, consulted)
        for name in ("def_names", "ref_paths", "cand_paths", "consulters"):
            assert getattr(self, name) == getattr(expected, name), name
