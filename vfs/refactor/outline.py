"""The cheap `ast` outline that decides which files libcst must parse."""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import libcst as cst


@dataclass
class _Outline:
    """What the pre-filter needs of one file, from the stdlib `ast` (about 20x
    faster than libcst with scope analysis), so that libcst runs only on
    files that can refer to the symbol.

    ``froms``: (absolute module or None, ((name, asname), ...) or None for
    ``*``, at module level); ``imports``: (dotted name, asname) of ``import``
    statements; ``bases``: per class, the identifiers in its bases;
    ``roots``: attribute name -> the leftmost identifiers of the expressions
    it is taken of (``a.b().attr`` -> ``a``); ``chains``: attribute name ->
    the dotted names it is taken of (``a.b.attr`` -> ``a.b``); ``flows``:
    (names bound, names in the value or annotation) of each assignment,
    ``with ... as``, annotated parameter.  `roots`, `chains` and `flows` are
    None when libcst had to stand in (then the filter lets the file through).
    """
    froms: list[tuple[str | None, tuple[tuple[str, str | None], ...] | None, bool]] = field(default_factory=list)
    imports: list[tuple[str, str | None]] = field(default_factory=list)
    bases: list[set[str]] = field(default_factory=list)
    roots: dict[str, set[str]] | None = None
    chains: dict[str, set[str]] | None = None
    flows: list[tuple[set[str], set[str]]] | None = None

    def reexports(self, name: str, modules: set[str]) -> bool:
        """Binds `name` at module level by importing it unaliased (or ``*``) from `modules`."""
        return any(top and module in modules
                   and (imported is None or any(n == name and a in (None, name) for n, a in imported))
                   for module, imported, top in self.froms)


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def _ast_outline(tree: ast.Module, package: str) -> _Outline:
    o = _Outline(roots=defaultdict(set), chains=defaultdict(set), flows=[])
    stack: list[tuple[ast.AST, bool]] = [(tree, True)]
    while stack:
        node, top = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ImportFrom):
                module = _absolute(package, child.level, child.module)
                imported = None if child.names[0].name == "*" else \
                    tuple((a.name, a.asname) for a in child.names)
                o.froms.append((module, imported, top))
            elif isinstance(child, ast.Import):
                o.imports.extend((a.name, a.asname) for a in child.names)
            elif isinstance(child, ast.ClassDef):
                o.bases.append({n.id if isinstance(n, ast.Name) else n.attr for b in child.bases
                                for n in ast.walk(b) if isinstance(n, (ast.Name, ast.Attribute))})
            elif isinstance(child, ast.Attribute):
                o.roots[child.attr].add(_root(child.value))
                chain = _dotted(child.value)
                if chain:
                    o.chains[child.attr].add(chain)
            elif isinstance(child, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
                targets = child.targets if isinstance(child, ast.Assign) else [child.target]
                sources = [child.value, getattr(child, "annotation", None)]
                o.flows.append((_identifiers(targets), _identifiers(sources)))
            elif isinstance(child, ast.withitem) and child.optional_vars is not None:
                o.flows.append((_identifiers([child.optional_vars]), _identifiers([child.context_expr])))
            elif isinstance(child, ast.arg) and child.annotation is not None:
                o.flows.append(({child.arg}, _identifiers([child.annotation])))
            stack.append((child, top and not isinstance(child, _SCOPES)))
    return o


def _root(expr: ast.AST) -> str:
    while isinstance(expr, (ast.Attribute, ast.Call, ast.Subscript)):
        expr = expr.func if isinstance(expr, ast.Call) else expr.value
    return expr.id if isinstance(expr, ast.Name) else ""


def _dotted(expr: ast.AST) -> str | None:
    parts = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    parts.append(expr.id)
    return ".".join(reversed(parts))


def _identifiers(exprs: Iterable[ast.AST | None]) -> set[str]:
    """Names in `exprs`, including words of string annotations."""
    out: set[str] = set()
    for expr in exprs:
        if expr is None:
            continue
        for n in ast.walk(expr):
            if isinstance(n, ast.Name):
                out.add(n.id)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                out.update(re.findall(r"\w+", n.value))
    return out


def _absolute(package: str, level: int, module: str | None) -> str | None:
    """``from <level dots><module> import`` in `package`, made absolute (None: leaves the tree)."""
    if not level:
        return module
    bits = package.rsplit(".", level - 1)
    if len(bits) < level or not bits[0]:
        return None
    return f"{bits[0]}.{module}" if module else bits[0]


def _names_in(node: cst.CSTNode) -> list[cst.Name]:
    if isinstance(node, cst.Name):
        return [node]
    if isinstance(node, cst.Attribute):
        return [node.attr] + _names_in(node.value)
    return []
