"""Scopes and binding values of the Python extractor (private to `index._pyextract`).

A `Scope` is one Python scope (module, class, function; lambdas and
comprehensions are function-like).  Its ``names`` map each bound name to a
*binding value*:

- ``("m", qualname)``: a module- or class-level name, read as ``qualname``
  and resolved by the index through that namespace;
- ``("s", sym, is_local)``: an absolute symbolic target known at bind time
  (imports, nested definitions, ``self``/``cls``); ``sym`` is None when an
  import cannot be anchored (a relative import above the top package);
- ``("e", root, suffix, scope)``: the value of a chain ``root`` + ``suffix``
  (``Foo`` + ``()`` for ``x = Foo()``), whose root is looked up in ``scope``
  once the walk is over;
- `UNKNOWN`: a local whose value is not known.

`Roots` looks names up with Python's rules after the walk, when every
scope's bindings are complete.  Not thread-safe; one per extraction.
"""
from __future__ import annotations

import ast
import builtins
import re
from sys import intern

__all__ = ["BUILTINS", "DOTTED_RE", "UNKNOWN", "Scope", "Roots", "chain_text", "value_of", "annotation_value"]

BUILTINS = frozenset(dir(builtins))
DOTTED_RE = re.compile(r"[^\W\d]\w*(?:\.[^\W\d]\w*)*\Z")
UNKNOWN = ("u",)  # a local of unknown value


class Scope:
    """One Python scope: its bindings and what nesting it stands for."""

    __slots__ = ("kind", "qualname", "enclosing", "parent", "names", "globals", "nonlocals", "cls", "self_name")

    def __init__(self, kind: str, qualname: str, parent: "Scope | None", enclosing: str | None = None):
        self.kind = kind  # 'module' | 'class' | 'function'
        self.qualname = qualname
        self.enclosing = intern(enclosing or qualname)  # what references here report as enclosing
        self.parent = parent
        self.names: dict[str, tuple] = {}
        self.globals: set[str] = set()
        self.nonlocals: set[str] = set()
        self.cls: "Scope | None" = None  # the class a method belongs to
        self.self_name: str | None = None  # first parameter of a method


def chain_text(node: ast.AST | None) -> tuple[str, str] | None:
    """(root name, suffix) of a pure ``a.b().c`` chain, else None."""
    suffix = []
    n = node
    while True:
        t = type(n)
        if t is ast.Attribute:
            suffix.append("." + n.attr)
            n = n.value
        elif t is ast.Call:
            suffix.append("()")
            n = n.func
        elif t is ast.Name:
            return n.id, "".join(reversed(suffix))
        else:
            return None


def value_of(node: ast.AST | None, scope: Scope, instance: bool = False) -> tuple:
    """The binding value of an expression: a chain or unknown."""
    chain = chain_text(node)
    if chain is None:
        return UNKNOWN
    root, suffix = chain
    return ("e", root, suffix + "()" if instance else suffix, scope)

def annotation_value(node: ast.AST | None, scope: Scope) -> tuple:
    """The value a name annotated with ``node`` holds: an instance of it."""
    if node is None:
        return UNKNOWN
    t = type(node)
    if t is ast.Constant and isinstance(node.value, str) and DOTTED_RE.match(node.value):
        root, _, rest = node.value.partition(".")
        return ("e", root, ("." + rest if rest else "") + "()", scope)
    if t is ast.Subscript and chain_text(node.value) in (("Optional", ""), ("typing", ".Optional")):
        return annotation_value(node.slice, scope)
    if t is ast.BinOp and isinstance(node.op, ast.BitOr):
        if isinstance(node.right, ast.Constant) and node.right.value is None:
            return annotation_value(node.left, scope)
        if isinstance(node.left, ast.Constant) and node.left.value is None:
            return annotation_value(node.right, scope)
        return UNKNOWN
    return value_of(node, scope, instance=True)


class Roots:
    """Looks up the root names of chains, after the walk (see module docstring)."""

    def __init__(self, module: str, module_scope: Scope) -> None:
        self.module = module
        self._module_scope = module_scope
        # Invariant: _memo[(id(scope), name)] is final; _active holds lookups
        # in progress (re-entry means a local defined through itself).
        self._memo: dict[tuple[int, str], tuple] = {}
        self._active: set[tuple[int, str]] = set()

    def lookup(self, name: str, scope: Scope) -> tuple[str | None, bool]:
        """(symbolic target, is a function local) of ``name`` read in ``scope``."""
        key = (id(scope), name)
        found = self._memo.get(key)
        if found is not None:
            return found
        if key in self._active:
            return None, True  # a local defined through itself
        self._active.add(key)
        try:
            found = self._lookup_uncached(name, scope)
        finally:
            self._active.discard(key)
        self._memo[key] = found
        return found

    def _lookup_uncached(self, name: str, scope: Scope) -> tuple[str | None, bool]:
        s = scope
        while s is not None:
            if s.kind == "class" and s is not scope:
                s = s.parent
                continue
            if name in s.globals:
                s = self._module_scope
            value = s.names.get(name)
            if value is not None:
                tag = value[0]
                if tag == "m":
                    return value[1], False
                if tag == "s":
                    return value[1], value[2]
                if tag == "e":
                    return self.chain_sym(value), True
                return None, True
            s = s.parent
        if name in BUILTINS:
            return "builtins." + name, False
        # Unbound here: maybe a star import or a dynamic global; the index
        # looks it up in this module's namespace.
        return f"{self.module}.{name}", False

    def chain_sym(self, value: tuple) -> str | None:
        _, root, suffix, scope = value
        sym, _ = self.lookup(root, scope)
        return None if sym is None else sym + suffix

    def value_sym(self, value: tuple) -> str | None:
        tag = value[0]
        if tag == "s":
            return value[1]
        if tag == "e":
            return self.chain_sym(value)
        if tag == "m":
            return value[1]
        return None
