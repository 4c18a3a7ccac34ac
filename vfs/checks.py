"""`validate`: what is wrong with the changed Python files, beyond syntax.

Three kinds of problems, each as `path:line:col: message`:
- syntax errors (from `vfs.validation`);
- undefined names (pyflakes' "undefined name" messages);
- unresolved imports: an absolute import whose top-level module is neither in
  the tree nor importable by the daemon's interpreter, or a relative import
  that leaves the package or names a module the tree does not have.
Only changed files are checked.  Pure reading; never changes state.
"""
from __future__ import annotations

import ast
import importlib.util
import sys
from typing import TYPE_CHECKING

from pyflakes import api as pyflakes_api
from pyflakes import messages as pyflakes_messages

if TYPE_CHECKING:
    from .workspace import Workspace

__all__ = ["validate"]


class _Collect:
    def __init__(self) -> None:
        self.items: list[tuple[int, int, str]] = []

    def unexpectedError(self, filename, msg) -> None:  # noqa: N802 (pyflakes reporter API)
        self.items.append((1, 1, str(msg)))

    def syntaxError(self, filename, msg, lineno, offset, text) -> None:  # noqa: N802
        pass  # reported by the syntax check

    def flake(self, message) -> None:
        if isinstance(message, (pyflakes_messages.UndefinedName, pyflakes_messages.UndefinedExport,
                                pyflakes_messages.UndefinedLocal)):
            self.items.append((message.lineno, message.col + 1, message.message % message.message_args))


def _top_modules(ws: "Workspace") -> set[str]:
    names = set()
    for name in ws.list_dir(""):
        if name.endswith(".py"):
            names.add(name[:-3])
        elif ws.kind_of(name) == "dir":
            names.add(name)
    if "src" in names and ws.kind_of("src") == "dir":
        for name in ws.list_dir("src"):
            names.add(name[:-3] if name.endswith(".py") else name)
    return names


def _importable(top: str) -> bool:
    if top in sys.builtin_module_names or top in sys.stdlib_module_names:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _module_exists(ws: "Workspace", package_dir: str, dotted: str) -> bool:
    rel = "/".join(p for p in [package_dir, *dotted.split(".")] if p)
    return ws.kind_of(rel + ".py") == "file" or ws.kind_of(rel) == "dir" or ws.kind_of(rel + ".pyi") == "file"


def _imports(ws: "Workspace", path: str, tree: ast.AST, tops: set[str]) -> list[tuple[int, int, str]]:
    out = []
    pkg_dir = path.rpartition("/")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                top = a.name.split(".")[0]
                if top not in tops and not _importable(top):
                    out.append((node.lineno, node.col_offset + 1, f"unresolved import {a.name!r}"))
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                top = (node.module or "").split(".")[0]
                if top and top not in tops and not _importable(top):
                    out.append((node.lineno, node.col_offset + 1, f"unresolved import {node.module!r}"))
                continue
            base = pkg_dir.split("/") if pkg_dir else []
            if node.level - 1 > len(base):
                out.append((node.lineno, node.col_offset + 1, "relative import beyond the top of the tree"))
                continue
            anchor = "/".join(base[: len(base) - (node.level - 1)])
            if node.module:
                if not _module_exists(ws, anchor, node.module):
                    out.append((node.lineno, node.col_offset + 1,
                                f"unresolved import {'.' * node.level + node.module!r}"))
    return out


def validate(ws: "Workspace") -> list[str]:
    """Problems of the changed `.py` files (see module docstring), sorted by path and position."""
    problems: list[tuple[str, int, int, str]] = []
    for err in ws.validator.errors():
        path, line, col, msg = err.split(":", 3)
        problems.append((path, int(line), int(col), msg.strip()))
    broken = {p[0] for p in problems}
    tops = _top_modules(ws)
    with ws.session.lock:
        overlay = dict(ws.session.overlay)
    for path, state in sorted(overlay.items()):
        if not path.endswith(".py") or state is None or state.get("kind") != "file" or path in broken:
            continue
        source = ws.session.state_content(path, state)
        reporter = _Collect()
        pyflakes_api.check(source.decode("utf-8", "replace"), path, reporter)
        for line, col, msg in reporter.items:
            problems.append((path, line, col, msg))
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for line, col, msg in _imports(ws, path, tree, tops):
            problems.append((path, line, col, msg))
    return [f"{p}:{l}:{c}: {m}" for p, l, c, m in sorted(set(problems))]
