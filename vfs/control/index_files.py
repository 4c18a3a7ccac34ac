"""The index's control files: symbols/, defs/, refs/, deps/, rdeps/, impact.

`symbols/PATH`, `deps/PATH` and `rdeps/PATH` mirror the tree; `rdeps/PATH?all`
(and `deps/PATH?all`) give the transitive closure.  `defs/NAME` and
`refs/QUALIFIED.NAME` are looked up by name (their listings are empty: the
name space is every symbol).  A missing name or path answers ENOENT.
Renderings wait for pending reindexing, so they are unsized (read to EOF).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import FsError
from ..session import check_rel_path
from .tree import CNode

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["index_entries"]

ALL = "?all"


def index_entries(ws: "Workspace") -> tuple[dict[str, Callable[[], CNode]], dict[str, Callable[[], CNode]]]:
    """(files, dirs) to add to the `.vfs` root."""
    sem = ws.semantics
    files = {"impact": lambda: CNode(("f", "impact"), read=lambda: sem.paths_text(sem.affected_tests()),
                                     sized=False)}
    dirs = {
        "symbols": lambda: _mirror(ws, "symbols", lambda p: sem.symbols_text(p)),
        "deps": lambda: _mirror(ws, "deps", lambda p: sem.paths_text(sem.dependencies(p)),
                                lambda p: sem.paths_text(_closure(sem.dependencies, p))),
        "rdeps": lambda: _mirror(ws, "rdeps", lambda p: sem.paths_text(sem.dependents(p)),
                                 lambda p: sem.paths_text(sem.dependents(p, transitive=True))),
        "defs": lambda: _by_name("defs", sem.definitions_text),
        "refs": lambda: _by_name("refs", sem.references_text),
    }
    return files, dirs


def _closure(direct: Callable[[str], list[str]], path: str) -> list[str]:
    seen: set[str] = set()
    todo = list(direct(path))
    while todo:
        p = todo.pop()
        if p in seen or p == path:
            continue
        seen.add(p)
        todo.extend(direct(p))
    return sorted(seen)


def _mirror(ws: "Workspace", key: str, render: Callable[[str], bytes],
            render_all: Callable[[str], bytes] | None = None, path: str = "") -> CNode:
    def names() -> list[str]:
        return [n for n in ws.list_dir(path)
                if ws.kind_of(f"{path}/{n}" if path else n) == "dir" or n.endswith((".py", ".pyi"))]

    def child(name: str) -> CNode | None:
        transitive = render_all is not None and name.endswith(ALL)
        base_name = name[: -len(ALL)] if transitive else name
        sub = f"{path}/{base_name}" if path else base_name
        try:
            sub = check_rel_path(sub)
        except FsError:
            return None
        kind = ws.kind_of(sub)
        if kind is None:
            return None
        if kind == "dir":
            return None if transitive else _mirror(ws, key, render, render_all, sub)
        fn = render_all if transitive else render
        return CNode((key, "f", sub, transitive), read=lambda: fn(sub), sized=False)

    return CNode((key, "d", path), is_dir=True, list=names, child=child)


def _by_name(key: str, render: Callable[[str], bytes]) -> CNode:
    def child(name: str) -> CNode | None:
        if not name or "/" in name:
            return None
        try:
            render(name)  # ENOENT for unknown names, at lookup time
        except FsError:
            return None
        return CNode((key, "f", name), read=lambda: render(name), sized=False)

    return CNode((key, "d"), is_dir=True, list=lambda: [], child=child)
