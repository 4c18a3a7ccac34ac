"""Edits keyed by node identity, applied by one libcst transformer."""
from __future__ import annotations

from collections.abc import Callable

import libcst as cst

from .facts import _File


class _Edits:
    """Replacements for one file, keyed by node identity, applied in one transform."""

    def __init__(self, file: _File) -> None:
        self.file = file
        # Invariant: every key is id() of a node of file.tree, kept alive by that tree.
        self.replace: dict[int, Callable[[cst.CSTNode], cst.CSTNode]] = {}

    def name(self, node: cst.Name, new: str) -> None:
        self.replace[id(node)] = lambda updated: updated.with_changes(value=new)

    def has(self, node: cst.CSTNode) -> bool:
        return id(node) in self.replace

    def string(self, node: cst.SimpleString, text: str) -> None:
        self.replace[id(node)] = lambda updated: updated.with_changes(value=text)

    def node(self, node: cst.CSTNode, fn: Callable[[cst.CSTNode], cst.CSTNode]) -> None:
        self.replace[id(node)] = fn

    def result(self) -> bytes:
        if not self.replace:
            return self.file.data
        return self.file.tree.visit(_Apply(self.replace)).bytes


class _Apply(cst.CSTTransformer):
    def __init__(self, replace: dict[int, Callable[[cst.CSTNode], cst.CSTNode]]) -> None:
        super().__init__()
        self.replace = replace

    def on_leave(self, original_node, updated_node):  # type: ignore[override]
        fn = self.replace.get(id(original_node))
        return fn(updated_node) if fn is not None else updated_node


def _string_with(node: cst.SimpleString, value: str) -> str:
    return f"{node.prefix}{node.quote}{value}{node.quote}"


def _string_value(node: cst.SimpleString) -> str | None:
    try:
        value = node.evaluated_value
    except Exception:  # malformed escapes: not a name anyway
        return None
    return value if isinstance(value, str) else None
