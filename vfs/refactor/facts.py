"""Facts about the tree's modules and one file's bindings, imports and uses (libcst scopes)."""
from __future__ import annotations

import errno
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libcst as cst
from libcst.helpers import get_absolute_module_from_package_for_import
from libcst.metadata import (GlobalScope, MetadataWrapper, PositionProvider, QualifiedName, QualifiedNameSource,
                             ScopeProvider)
from libcst.metadata.name_provider import ModuleNameAndPackage

from index import ModuleTable, module_name

from .common import RenameError, _is_package
from .outline import _names_in, _Outline


class _Modules:
    """Module names of the tree's files, both ways."""

    def __init__(self, paths: list[str], module_of: Callable[[str], str | None] | None) -> None:
        if module_of is None:
            table = ModuleTable()
            table.add(paths)
            self._names = table.names
            self._lookup = lambda name: table.lookup(name) or None  # NAMESPACE ("") is not a file
        else:
            names = {p: module_of(p) for p in paths}
            by_name: dict[str, str] = {}
            for path in sorted(paths, key=lambda p: (not _is_package(p), p.endswith(".pyi"), len(p), p)):
                name = names[path]
                if name:
                    by_name.setdefault(name, path)
            self._names = lambda p: (names[p],) if names.get(p) else ()  # type: ignore[assignment]
            self._lookup = by_name.get

    def names(self, path: str) -> tuple[str, ...]:
        """Every name `path` is importable as, canonical first."""
        return self._names(path)

    def lookup(self, name: str) -> str | None:
        return self._lookup(name)

    def canonical(self, path: str) -> ModuleNameAndPackage:
        names = self.names(path)
        name = names[0] if names else module_name(path)
        package = name if _is_package(path) else name.rpartition(".")[0]
        return ModuleNameAndPackage(name, package)


# ---------------------------------------------------------------------- one file
@dataclass(frozen=True)
class _ImportFact:
    """One name of a ``from M import ...`` statement (``alias`` None: ``*``)."""
    node: cst.ImportFrom
    alias: cst.ImportAlias | None
    module: str | None  # absolute; None when a relative import leaves the tree
    scope: Any

    @property
    def name(self) -> str | None:
        return self.alias.name.value if self.alias is not None else None

    @property
    def asname(self) -> str | None:
        if self.alias is None or self.alias.asname is None:
            return None
        return self.alias.asname.name.value  # type: ignore[union-attr]


class _Collect(cst.CSTVisitor):
    """One pass over a module; the nodes the rename looks at.

    Attributes: ``imports`` (ImportFrom), ``plain_imports`` (Import),
    ``attributes`` (attr name -> Attribute nodes), ``strings``
    (SimpleString), ``globals`` (Global), ``classes`` (ClassDef),
    ``all_values`` (expressions assigned or added to a module-level
    ``__all__``), ``made`` (id of a Name bound by ``name = Call(...)`` or
    ``with Call(...) as name`` -> the Call), ``annotated`` (id of a Name
    bound by ``name: T [= value]`` -> the AnnAssign).
    """

    def __init__(self) -> None:
        self.imports: list[cst.ImportFrom] = []
        self.plain_imports: list[cst.Import] = []
        self.made: dict[int, cst.Call] = {}
        self.annotated: dict[int, cst.AnnAssign] = {}
        self.attributes: dict[str, list[cst.Attribute]] = defaultdict(list)
        self.strings: list[cst.SimpleString] = []
        self.globals: list[cst.Global] = []
        self.classes: list[cst.ClassDef] = []
        self.all_values: list[cst.CSTNode] = []
        self._depth = 0  # function/class nesting: __all__ counts at depth 0 only

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        self.imports.append(node)

    def visit_Import(self, node: cst.Import) -> None:
        self.plain_imports.append(node)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if node.asname is not None and isinstance(node.asname.name, cst.Name) and isinstance(node.item, cst.Call):
            self.made[id(node.asname.name)] = node.item

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.attributes[node.attr.value].append(node)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        self.strings.append(node)

    def visit_Global(self, node: cst.Global) -> None:
        self.globals.append(node)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.classes.append(node)
        self._depth += 1

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self._depth -= 1

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth -= 1

    def visit_Assign(self, node: cst.Assign) -> None:
        if not self._depth and any(_is_name(t.target, "__all__") for t in node.targets):
            self.all_values.append(node.value)
        if isinstance(node.value, cst.Call):
            for t in node.targets:
                if isinstance(t.target, cst.Name):
                    self.made[id(t.target)] = node.value

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if not self._depth and _is_name(node.target, "__all__") and node.value is not None:
            self.all_values.append(node.value)
        if isinstance(node.target, cst.Name):
            self.annotated[id(node.target)] = node

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        if not self._depth and _is_name(node.target, "__all__"):
            self.all_values.append(node.value)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if (not self._depth and isinstance(func, cst.Attribute) and _is_name(func.value, "__all__")
                and func.attr.value in ("append", "extend")):
            self.all_values.extend(arg.value for arg in node.args)


def _is_name(node: cst.CSTNode, value: str) -> bool:
    return isinstance(node, cst.Name) and node.value == value


class _File:
    """A parsed candidate file with scope and fully-qualified-name metadata.

    Holds the tree for the duration of one plan only.
    """

    def __init__(self, path: str, data: bytes, module: ModuleNameAndPackage) -> None:
        self.path = path
        self.data = data
        self.module = module.name
        self.package = module.package
        try:
            tree = cst.parse_module(data)
        except cst.ParserSyntaxError as exc:
            raise RenameError(errno.EINVAL, f"{path}:{exc.raw_line}:{exc.raw_column + 1}: "
                              f"cannot parse: {exc.message}") from None
        except (ValueError, LookupError) as exc:  # undecodable bytes, unknown coding cookie
            raise RenameError(errno.EINVAL, f"{path}: cannot parse: {exc}") from None
        # Invariant: every node below belongs to self.tree (metadata is keyed by node identity).
        self.wrapper = MetadataWrapper(tree, unsafe_skip_copy=True)
        self.tree = self.wrapper.module
        self.scopes = self.wrapper.resolve(ScopeProvider)
        self._positions: Any = None
        found = _Collect()
        self.tree.visit(found)
        self.collected = found
        self.all_scopes = [s for s in set(self.scopes.values()) if s is not None]
        self.global_scope: GlobalScope = self.scopes[self.tree]
        self.imports: list[_ImportFact] = []
        for node in found.imports:
            absolute = self._absolute(node)
            scope = self.scopes.get(node)
            if isinstance(node.names, cst.ImportStar):
                self.imports.append(_ImportFact(node, None, absolute, scope))
            else:
                self.imports.extend(_ImportFact(node, alias, absolute, scope) for alias in node.names)

    def _absolute(self, node: cst.ImportFrom) -> str | None:
        # None for a relative import that leaves the tree (or a top-level module's).
        return get_absolute_module_from_package_for_import(self.package or None, node)

    def fqn(self, node: cst.CSTNode) -> set[str]:
        """Fully qualified names of `node` (``pkg.mod.name``), relative imports resolved.

        What `FullyQualifiedNameProvider` computes, asked of the scope for
        the few nodes the rename looks at instead of for every node of the
        file (that provider pass cost as much as the scope analysis itself).
        """
        scope = self.scopes.get(node)
        if scope is None:
            return set()
        out = set()
        for q in scope.get_qualified_names_for(node):
            name = _fully_qualify(self.module, self.package, q)
            if name is not None:
                out.add(name)
        return out

    def outline(self) -> "_Outline":
        """The pre-filter's facts, for a file the running Python's `ast` cannot parse."""
        o = _Outline()
        for fact in self.imports:
            names = None if fact.alias is None else ((fact.name, fact.asname),)
            o.froms.append((fact.module, names, fact.scope is self.global_scope))
        for node in self.collected.plain_imports:
            o.imports.extend((a.evaluated_name, a.evaluated_alias) for a in node.names)
        o.bases = [{n.value for b in c.bases for n in _names_in(b.value)} for c in self.collected.classes]
        return o

    def line(self, node: cst.CSTNode) -> int:
        if self._positions is None:
            self._positions = self.wrapper.resolve(PositionProvider)
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            node = node.name
        return self._positions[node].start.line

    def referents(self, name: cst.Name) -> set:
        scope = self.scopes.get(name)
        if scope is None:
            return set()
        return {r for access in scope.accesses[name] for r in access.referents}


def _fully_qualify(module: str, package: str, q: QualifiedName) -> str | None:
    """As libcst's `FullyQualifiedNameProvider` does; None for a relative
    import beyond the top-level package (where that provider raises)."""
    if q.source == QualifiedNameSource.BUILTIN:
        return q.name
    if q.source == QualifiedNameSource.IMPORT and not q.name.startswith("."):
        return q.name
    bare = q.name.lstrip(".")
    dots = len(q.name) - len(bare)
    if dots:
        bits = package.rsplit(".", dots - 1)  # importlib._bootstrap._resolve_name
        if len(bits) < dots or not bits[0]:
            return None
        module = bits[0]
    return f"{module}.{bare}"
