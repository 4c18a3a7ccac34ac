"""Cross-file resolution: symbolic targets -> canonical qualified names.

A symbolic target (see `index.facts`) is resolved one component at a time:

- the first component is a module name (`ModuleTable.lookup`: canonical,
  alias or namespace package); otherwise it is an external module
  (``os``, ``builtins``) and the rest of the path is taken as written;
- an attribute of an in-tree module is looked up in that module's
  `Namespace`: its definitions, then its bindings (imports and re-exports are
  followed to where the name is defined), then submodules, then the modules
  it star-imports (honouring their ``__all__``);
- an attribute of a class or of an instance (``X()``) is looked up in the
  class, then along its bases, depth-first, left to right; ``C.<super>``
  (``super()`` in a method of ``C``) looks along the bases only;
- anything else (attributes of functions' results, of external classes'
  instances, of unknown values) is unresolved.

Each result records the module names it *consulted*, found or not; the index
uses them to refresh exactly the files whose resolution a change can alter.

A `Resolver` memoizes per instance and must not outlive the snapshot it was
given: create one per refresh, under the index lock.  Not thread-safe.
"""
from __future__ import annotations

from collections.abc import Mapping

from .modules import ModuleTable

__all__ = ["Namespace", "Resolver"]

_NONE: tuple = (None, None, ())


class Namespace:
    """What one file defines and binds, as the resolver reads it.

    ``kinds`` maps every qualified name defined in the file to its kind;
    ``bindings`` maps module- and class-level names to symbolic targets;
    ``bases`` maps classes to their bases' symbolic targets; ``stars`` lists
    star-imported modules; ``exports`` is ``__all__`` or None.  Immutable
    after construction.
    """

    __slots__ = ("module", "kinds", "bindings", "bases", "stars", "exports")

    def __init__(self, module: str, defs, bindings, bases, imports, exports) -> None:
        self.module = module
        self.kinds = {row[1]: row[0] for row in defs if row[0] != "module"}
        self.bindings = dict(bindings)
        self.bases = {cls: tuple(b) for cls, b in bases}
        self.stars = tuple(row[0] for row in imports if row[1] == "*" and row[0])
        self.exports = None if exports is None else frozenset(exports)

    def same_as(self, other: "Namespace | None") -> bool:
        """True when other files resolve identically through either."""
        return (
            other is not None
            and self.module == other.module
            and self.kinds == other.kinds
            and self.bindings == other.bindings
            and self.bases == other.bases
            and self.stars == other.stars
            and self.exports == other.exports
        )


class Resolver:
    """Resolves symbolic targets against one snapshot (see module docstring)."""

    def __init__(self, modules: ModuleTable, namespaces: Mapping[str, Namespace]) -> None:
        self._modules = modules
        self._namespaces = namespaces
        # Invariant: _memo[s] is the final result of s; _active holds the
        # symbols being computed (a re-entry is a cycle and yields nothing).
        self._memo: dict[str, tuple] = {}
        self._active: set[str] = set()

    def resolve(self, sym: str) -> tuple[str | None, tuple[str, ...]]:
        """(canonical qualified name or None, module names consulted)."""
        try:
            target, _, consulted = self._resolve(sym)
        except RecursionError:
            self._active.clear()
            return None, ()
        return target, consulted

    def resolve_rows(self, rows, column: int) -> tuple[list, set[str]]:
        """Resolve ``row[column]`` of every row (None stays None): the list of
        targets and the union of the module names consulted.  The batch form
        of `resolve`, for whole files; repeated symbols cost one lookup."""
        memo = self._memo
        seen: dict[str, str | None] = {}
        targets: list = []
        append = targets.append
        consulted: set[str] = set()
        for row in rows:
            sym = row[column]
            if sym is None:
                append(None)
                continue
            if sym in seen:
                append(seen[sym])
                continue
            result = memo.get(sym)
            if result is None:
                try:
                    result = self._resolve(sym)
                except RecursionError:
                    self._active.clear()
                    result = _NONE
            consulted.update(result[2])
            seen[sym] = result[0]
            append(result[0])
        return targets, consulted

    # ---- internals ---------------------------------------------------------

    def _resolve(self, sym: str) -> tuple:
        found = self._memo.get(sym)
        if found is not None:
            return found
        if sym in self._active:
            return _NONE
        self._active.add(sym)
        try:
            found = self._compute(sym)
        finally:
            self._active.discard(sym)
        self._memo[sym] = found
        return found

    def _compute(self, sym: str) -> tuple:
        if sym.endswith("()"):
            target, value, consulted = self._resolve(sym[:-2])
            if value is not None and value[0] == "c":
                return None, ("i", value[1], value[2]), consulted
            return None, None, consulted
        head, dot, attr = sym.rpartition(".")
        if not dot:
            return self._module(sym)
        base = self._resolve(head)
        value = base[1]
        if value is None:
            return None, None, base[2]
        tag = value[0]
        if tag == "m":
            result = self._module_attr(value, attr)
        elif tag == "c" and attr == "<super>":
            return None, ("s", value[1], value[2]), base[2]
        elif tag == "c" or tag == "i":
            result = self._member(value, attr)
        elif tag == "s":
            result = self._member(value, attr, skip_own=True)
        elif tag == "f":
            result = self._nested(value, attr)
        else:  # external: take the dotted path as written
            dotted = f"{value[1]}.{attr}"
            return dotted, ("x", dotted), base[2]
        return result[0], result[1], base[2] + result[2]

    def _module(self, name: str) -> tuple:
        path = self._modules.lookup(name)
        if path is None:
            return name, ("x", name), (name,)
        if path == ModuleTable.NAMESPACE:
            return name, ("m", name, None), (name,)
        canonical = self._modules.names(path)[0]
        return canonical, ("m", canonical, self._namespaces.get(path)), (name,)

    def _definition(self, qualname: str, kind: str, ns: Namespace) -> tuple:
        if kind == "class":
            return qualname, ("c", qualname, ns), ()
        bound = ns.bindings.get(qualname)
        if bound is not None and kind in ("variable", "attribute"):
            _, value, consulted = self._resolve(bound)
            return qualname, value, consulted
        return qualname, ("f", qualname, ns), ()

    def _module_attr(self, value: tuple, attr: str) -> tuple:
        _, module, ns = value
        qualname = f"{module}.{attr}"
        consulted: tuple[str, ...] = (module,)
        if ns is not None:
            kind = ns.kinds.get(qualname)
            if kind is not None:
                target, val, more = self._definition(qualname, kind, ns)
                return target, val, consulted + more
            bound = ns.bindings.get(qualname)
            if bound is not None:
                target, val, more = self._resolve(bound)
                return target, val, consulted + more
        path = self._modules.lookup(qualname)
        consulted += (qualname,)
        if path is not None:
            target, val, more = self._module(qualname)
            return target, val, consulted + more
        if ns is not None:
            for star in ns.stars:
                _, star_value, more = self._resolve(star)
                consulted += more
                if star_value is None or star_value[0] != "m" or star_value[2] is None:
                    continue
                exports = star_value[2].exports
                if (attr in exports) if exports is not None else not attr.startswith("_"):
                    target, val, more = self._resolve(f"{star_value[1]}.{attr}")
                    consulted += more
                    if target is not None:
                        return target, val, consulted
        return None, None, consulted

    def _member(self, value: tuple, attr: str, skip_own: bool = False) -> tuple:
        """``attr`` of a class or instance, along the bases; ``skip_own``
        starts at the bases (``super()``)."""
        consulted: list[str] = []
        seen = {value[1]}
        stack = [(value[1], value[2])]
        # Depth-first, left to right: close enough to the C3 MRO for lookups.
        while stack:
            cls, ns = stack.pop()
            consulted.append(ns.module)
            qualname = f"{cls}.{attr}"
            if skip_own:
                skip_own = False
            else:
                kind = ns.kinds.get(qualname)
                if kind is not None:
                    target, val, more = self._definition(qualname, kind, ns)
                    return target, val, tuple(consulted) + more
                bound = ns.bindings.get(qualname)
                if bound is not None:
                    target, val, more = self._resolve(bound)
                    return target, val, tuple(consulted) + more
            found = []
            for base in ns.bases.get(cls, ()):
                if base is None:
                    continue
                _, base_value, more = self._resolve(base)
                consulted.extend(more)
                if base_value is not None and base_value[0] == "c" and base_value[1] not in seen:
                    seen.add(base_value[1])
                    found.append((base_value[1], base_value[2]))
            stack.extend(reversed(found))
        return None, None, tuple(consulted)

    def _nested(self, value: tuple, attr: str) -> tuple:
        _, owner, ns = value
        qualname = f"{owner}.{attr}"
        kind = ns.kinds.get(qualname)
        if kind is None:
            return _NONE
        return self._definition(qualname, kind, ns)
