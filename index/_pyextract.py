"""The `ast` walker behind `index.python` (private; use `PythonLanguage`).

One `Extractor` reads one parsed module in a single pass and produces packed
facts (see `index.facts`).  How names are anchored:

- Bindings are collected per scope while walking (module, class, function;
  lambdas and comprehensions are function-like scopes without definitions).
- Every load of a name or dotted chain (``a.b().c``) is recorded as
  *pending* with its scope; only after the whole module has been walked, when
  every scope's bindings are known, are roots looked up with Python's rules
  (local, enclosing functions, module, builtins; class scopes are invisible
  to nested functions; ``global`` jumps to the module).
- A root bound at module or class level becomes ``module.name`` /
  ``module.Class.name``; the index resolves that through its namespace
  (definitions, imports, re-exports, star imports).
- A root that is a function local yields no reference of its own (locals are
  not definitions) but gives its attributes a symbolic target when its value
  is known: ``x = Foo()``, a parameter annotated ``Foo``, ``self``/``cls`` in
  methods, ``except E as e``.  A local assigned twice with different values,
  or from anything else, is unknown: its attributes become name-only
  candidates.

Not thread-safe per instance; create one per file (the walker keeps no
global state).
"""
from __future__ import annotations

import ast
import re
from sys import intern

from ._pyscope import DOTTED_RE, UNKNOWN, Roots, Scope, annotation_value, value_of
from .facts import PACK_VERSION

__all__ = ["Extractor"]

_FROM_RE = re.compile(r"from\s+(\.*)\s*([\w.]*)")


_SKIP_FIELDS = frozenset({"ctx", "op", "ops"})
_FIELDS: dict[type, tuple[str, ...]] = {}
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


def _fields(t: type) -> tuple[str, ...]:
    fields = _FIELDS.get(t)
    if fields is None:
        fields = _FIELDS[t] = tuple(f for f in t._fields if f not in _SKIP_FIELDS)
    return fields


class Extractor:
    """Extract packed facts from one parsed module (see module docstring)."""

    def __init__(self, path: str, module: str, package: str, text: str, ascii_only: bool, lines: int):
        self.path = path
        self.module = module
        self.package = package  # what relative imports are relative to
        self._text = text
        self._ascii = ascii_only
        self._lines: list[str] | None = None
        self._nlines = lines
        self.defs: list[tuple] = []
        self.refs: list[list] = []  # [name, line, col, enclosing, sym]
        self.imports: list[tuple] = []
        self.bindings: dict[str, object] = {}  # qualname -> pending value (first wins)
        self.bases: list[tuple] = []  # (class qualname, [values], scope)
        self.exports: list[str] | None = None
        self._pending: list[tuple] = []  # (scope, root, [(ref index, suffix)])
        self._defined: set[str] = set()

    # ---- positions -------------------------------------------------------

    def _line(self, line: int) -> str:
        if self._lines is None:
            self._lines = self._text.split("\n")
        return self._lines[line - 1] if 0 < line <= len(self._lines) else ""

    def _col(self, line: int, byte_col: int) -> int:
        """1-based character column of an ast (UTF-8 byte) offset."""
        if self._ascii:
            return byte_col + 1
        text = self._line(line)
        if text.isascii():
            return byte_col + 1
        return len(text.encode("utf-8")[:byte_col].decode("utf-8", "replace")) + 1

    def _end(self, node: ast.AST) -> tuple[int, int]:
        line = node.end_lineno or node.lineno
        return line, self._col(line, node.end_col_offset or 0)

    # ---- entry point -----------------------------------------------------

    def run(self, tree: ast.Module) -> tuple:
        """Walk ``tree`` and return the packed facts."""
        last = self._line(self._nlines) if self._nlines else ""
        self.defs.append(("module", self.module, 1, 1, max(self._nlines, 1), len(last) + 1))
        top = Scope("module", self.module, None)
        self._module_scope = top
        self._stmts(tree.body, top)
        roots = Roots(self.module, top)
        self._finish(roots)
        refs = sorted((tuple(r) for r in self.refs if r is not None), key=lambda r: (r[1], r[2]))
        return (
            PACK_VERSION,
            self.path,
            self.module,
            tuple(self.defs),
            tuple(refs),
            tuple(self.imports),
            None,
            self._final_bindings(roots),
            self._final_bases(roots),
            None if self.exports is None else tuple(self.exports),
            self._nlines,
        )

    # ---- binding ---------------------------------------------------------

    def _bind(self, scope: Scope, name: str, value: tuple, node: ast.AST | None = None, stmt: ast.AST | None = None) -> None:
        if name in scope.globals and scope.kind != "module":
            scope = self._module_scope
        if scope.kind == "function":
            if name in scope.nonlocals:
                return
            old = scope.names.get(name)
            scope.names[name] = value if old is None or old == value else UNKNOWN
            return
        qualname = f"{scope.qualname}.{name}"
        scope.names[name] = ("m", qualname)
        if value[0] in ("s", "e") and not (value[0] == "s" and value[1] is None):
            old = self.bindings.get(qualname)
            if old is None:
                self.bindings[qualname] = (value, scope)
            elif old[0] != value and old[0][0] != "s":
                self.bindings[qualname] = ((None,), scope)  # conflicting assignments: unknown
        if node is not None and qualname not in self._defined:
            self._defined.add(qualname)
            kind = "variable" if scope.kind == "module" else "attribute"
            line = node.lineno
            end_line, end_col = self._end(stmt or node)
            self.defs.append((kind, qualname, line, self._col(line, node.col_offset), end_line, end_col))

    def _bind_target(self, target: ast.AST, scope: Scope, value: tuple, stmt: ast.AST) -> None:
        t = type(target)
        if t is ast.Name:
            self._bind(scope, target.id, value, target, stmt)
        elif t is ast.Tuple or t is ast.List:
            for elt in target.elts:
                self._bind_target(elt, scope, UNKNOWN, stmt)
        elif t is ast.Starred:
            self._bind_target(target.value, scope, UNKNOWN, stmt)
        elif t is ast.Attribute:
            self._expr(target, scope)
            owner = target.value
            if (
                type(owner) is ast.Name
                and scope.self_name is not None
                and owner.id == scope.self_name
                and scope.names.get(owner.id, (None,))[0] == "s"
            ):
                # An instance attribute: a definition and a binding of the
                # class, but not a name visible in the class body.
                qualname = f"{scope.cls.qualname}.{target.attr}"
                if value is not UNKNOWN and qualname not in self.bindings:
                    self.bindings[qualname] = (value, scope)
                if qualname not in self._defined:
                    self._defined.add(qualname)
                    line = target.end_lineno
                    col = self._col(line, target.end_col_offset - len(target.attr.encode()))
                    end_line, end_col = self._end(stmt)
                    self.defs.append(("attribute", qualname, line, col, end_line, end_col))
        else:
            self._expr(target, scope)

    # ---- statements ------------------------------------------------------

    def _stmts(self, body: list, scope: Scope) -> None:
        for stmt in body:
            handler = _HANDLERS.get(type(stmt))
            if handler is not None:
                handler(self, stmt, scope)
            else:
                self._generic_stmt(stmt, scope)

    def _generic_stmt(self, stmt: ast.AST, scope: Scope) -> None:
        for field in _fields(type(stmt)):
            value = getattr(stmt, field)
            if type(value) is list:
                if value and isinstance(value[0], ast.stmt):
                    self._stmts(value, scope)
                else:
                    for item in value:
                        if isinstance(item, ast.AST):
                            self._expr(item, scope)
            elif isinstance(value, ast.AST):
                self._expr(value, scope)

    def _function(self, node: ast.FunctionDef, scope: Scope) -> None:
        for decorator in node.decorator_list:
            self._expr(decorator, scope)
        args = node.args
        for default in args.defaults:
            self._expr(default, scope)
        for default in args.kw_defaults:
            if default is not None:
                self._expr(default, scope)
        every = args.posonlyargs + args.args + args.kwonlyargs
        every += [a for a in (args.vararg, args.kwarg) if a is not None]
        for arg in every:
            if arg.annotation is not None:
                self._annotation(arg.annotation, scope)
        if node.returns is not None:
            self._annotation(node.returns, scope)
        kind = "method" if scope.kind == "class" else "function"
        qualname = f"{scope.qualname}.{node.name}"
        self._def(kind, qualname, node, "async def" if type(node) is ast.AsyncFunctionDef else "def")
        self._bind(scope, node.name, ("s", qualname, False) if scope.kind == "function" else ("d",))
        inner = Scope("function", qualname, scope)
        positional = args.posonlyargs + args.args
        decorators = {d.id for d in node.decorator_list if type(d) is ast.Name}
        first = positional[0].arg if positional else None
        for arg in every:
            value = UNKNOWN
            if arg.annotation is not None:
                value = annotation_value(arg.annotation, scope)
            inner.names[arg.arg] = value
        if scope.kind == "class" and first is not None and "staticmethod" not in decorators:
            if "classmethod" in decorators or node.name in ("__new__", "__init_subclass__", "__class_getitem__"):
                inner.names[first] = ("s", scope.qualname, True)
            else:
                inner.names[first] = ("s", scope.qualname + "()", True)
                inner.self_name = first
                inner.cls = scope
        self._stmts(node.body, inner)

    def _class(self, node: ast.ClassDef, scope: Scope) -> None:
        for decorator in node.decorator_list:
            self._expr(decorator, scope)
        values = []
        for base in node.bases:
            self._expr(base, scope)
            values.append(value_of(base, scope))
        for keyword in node.keywords:
            self._expr(keyword.value, scope)
        qualname = f"{scope.qualname}.{node.name}"
        self._def("class", qualname, node, "class")
        self._bind(scope, node.name, ("s", qualname, False) if scope.kind == "function" else ("d",))
        self.bases.append((qualname, values))
        self._stmts(node.body, Scope("class", qualname, scope))

    def _def(self, kind: str, qualname: str, node: ast.AST, keyword: str) -> None:
        """Record a def/class, positioned at its name (``ast`` only gives the
        keyword's position; the name follows it on the same line unless a
        backslash continuation intervenes, then the keyword's is used)."""
        self._defined.add(qualname)
        line = node.lineno
        start = self._col(line, node.col_offset) - 1
        text = self._line(line)
        name = qualname.rpartition(".")[2]
        if keyword == "async def":
            after = text.find("def", start + len("async"))
            after = after + len("def") if after >= 0 else -1
        else:
            after = start + len(keyword)
        index = text.find(name, after) if after >= 0 else -1
        col = index + 1 if index >= 0 else start + 1
        end_line, end_col = self._end(node)
        self.defs.append((kind, qualname, line, col, end_line, end_col))

    def _assign(self, node: ast.Assign, scope: Scope) -> None:
        self._expr(node.value, scope)
        value = value_of(node.value, scope)
        for target in node.targets:
            self._bind_target(target, scope, value, node)
        if scope.kind == "module" and any(type(t) is ast.Name and t.id == "__all__" for t in node.targets):
            self._exports(node.value, scope, replace=True)

    def _ann_assign(self, node: ast.AnnAssign, scope: Scope) -> None:
        self._annotation(node.annotation, scope)
        if node.value is not None:
            self._expr(node.value, scope)
            value = value_of(node.value, scope)
            if value is UNKNOWN:
                value = annotation_value(node.annotation, scope)
        else:
            value = annotation_value(node.annotation, scope)
        if node.simple or type(node.target) is not ast.Name:
            self._bind_target(node.target, scope, value, node)
        else:
            self._expr(node.target, scope)
        if scope.kind == "module" and type(node.target) is ast.Name and node.target.id == "__all__":
            self._exports(node.value, scope, replace=True)

    def _aug_assign(self, node: ast.AugAssign, scope: Scope) -> None:
        self._expr(node.value, scope)
        target = node.target
        if type(target) is ast.Name:
            self._load(target, scope)
            if scope.kind == "function" and target.id not in scope.globals:
                self._bind(scope, target.id, UNKNOWN)
            if scope.kind == "module" and target.id == "__all__":
                self._exports(node.value, scope, replace=False)
        else:
            self._expr(target, scope)

    def _for(self, node: ast.For, scope: Scope) -> None:
        self._expr(node.iter, scope)
        self._bind_target(node.target, scope, UNKNOWN, node.target)
        self._stmts(node.body, scope)
        self._stmts(node.orelse, scope)

    def _with(self, node: ast.With, scope: Scope) -> None:
        for item in node.items:
            self._expr(item.context_expr, scope)
            if item.optional_vars is not None:
                self._bind_target(item.optional_vars, scope, UNKNOWN, item.optional_vars)
        self._stmts(node.body, scope)

    def _try(self, node: ast.Try, scope: Scope) -> None:
        self._stmts(node.body, scope)
        for handler in node.handlers:
            if handler.type is not None:
                self._expr(handler.type, scope)
            if handler.name:
                self._bind(scope, handler.name, value_of(handler.type, scope, instance=True))
            self._stmts(handler.body, scope)
        self._stmts(node.orelse, scope)
        self._stmts(node.finalbody, scope)

    def _global(self, node: ast.Global, scope: Scope) -> None:
        scope.globals.update(node.names)

    def _nonlocal(self, node: ast.Nonlocal, scope: Scope) -> None:
        scope.nonlocals.update(node.names)

    def _match(self, node: ast.AST, scope: Scope) -> None:
        self._expr(node.subject, scope)
        for case in node.cases:
            self._expr(case.pattern, scope)
            if case.guard is not None:
                self._expr(case.guard, scope)
            self._stmts(case.body, scope)

    # ---- imports ---------------------------------------------------------

    def _ref(self, name: str, line: int, col: int, scope: Scope, sym: str | None) -> int:
        # Interned strings stay interned through marshal, so the same name
        # or target in many files is one object once loaded.
        self.refs.append([intern(name), line, col, scope.enclosing, None if sym is None else intern(sym)])
        return len(self.refs) - 1

    def _import(self, node: ast.Import, scope: Scope) -> None:
        for alias in node.names:
            line = alias.lineno
            col = self._col(line, alias.col_offset)
            offset = 0
            written = ""
            for part in alias.name.split("."):
                written = f"{written}.{part}" if written else part
                self._ref(written, line, col + offset, scope, written)
                offset += len(part) + 1
            self.imports.append((alias.name, None, alias.asname, 0, line, col))
            if alias.asname:
                self._bind(scope, alias.asname, ("s", alias.name, False))
            else:
                top = alias.name.partition(".")[0]
                self._bind(scope, top, ("s", top, False))

    def _absolute(self, level: int, module: str | None) -> str | None:
        if not level:
            return module or None
        base = self.package
        for _ in range(level - 1):
            if not base:
                return None
            base = base.rpartition(".")[0]
        if not base:
            return None
        return f"{base}.{module}" if module else base

    def _import_from(self, node: ast.ImportFrom, scope: Scope) -> None:
        target = self._absolute(node.level, node.module)
        line = node.lineno
        if node.module:
            text = self._line(line)
            match = _FROM_RE.match(text, self._col(line, node.col_offset) - 1)
            if match and match.group(2) == node.module:
                col = match.start(2) + 1
                dots = "." * node.level
                written = ""
                base = None if target is None else target[: len(target) - len(node.module)]
                for part in node.module.split("."):
                    written = f"{written}.{part}" if written else part
                    sym = None if base is None else base + written
                    self._ref(dots + written, line, col, scope, sym)
                    col += len(part) + 1
        for alias in node.names:
            if alias.name == "*":
                self.imports.append((target or "", "*", None, node.level, line, self._col(line, node.col_offset)))
                continue
            aline = alias.lineno
            acol = self._col(aline, alias.col_offset)
            sym = None if target is None else f"{target}.{alias.name}"
            self._ref(alias.name, aline, acol, scope, sym)
            self.imports.append((target or "", alias.name, alias.asname, node.level, aline, acol))
            self._bind(scope, alias.asname or alias.name, ("s", sym, False))

    # ---- __all__ -----------------------------------------------------------

    def _exports(self, node: ast.AST | None, scope: Scope, replace: bool) -> None:
        if type(node) not in (ast.List, ast.Tuple):
            return
        names = [] if replace or self.exports is None else self.exports
        for elt in node.elts:
            if type(elt) is ast.Constant and isinstance(elt.value, str):
                names.append(elt.value)
                if elt.value.isidentifier() and elt.lineno == elt.end_lineno:
                    line = elt.lineno
                    col = self._col(line, elt.col_offset) + 1
                    self._ref(elt.value, line, col, scope, f"{self.module}.{elt.value}")
        self.exports = names

    # ---- expressions -------------------------------------------------------

    def _annotation(self, node: ast.AST, scope: Scope) -> None:
        t = type(node)
        if t is ast.Constant and isinstance(node.value, str):
            if DOTTED_RE.match(node.value) and node.lineno == node.end_lineno:
                line = node.lineno
                col = self._col(line, node.col_offset) + 1
                root, *rest = node.value.split(".")
                slots = [(self._ref(root, line, col, scope, None), "")]
                written, suffix = root, ""
                col += len(root) + 1
                for part in rest:
                    written += "." + part
                    suffix += "." + part
                    slots.append((self._ref(written, line, col, scope, None), suffix))
                    col += len(part) + 1
                self._pending.append((scope, root, slots))
        elif t is ast.Subscript:
            self._expr(node.value, scope)
            self._annotation(node.slice, scope)
        elif t is ast.BinOp:
            self._annotation(node.left, scope)
            self._annotation(node.right, scope)
        elif t is ast.Tuple or t is ast.List:
            for elt in node.elts:
                self._annotation(elt, scope)
        else:
            self._expr(node, scope)

    def _load(self, node: ast.Name, scope: Scope) -> None:
        index = self._ref(node.id, node.lineno, self._col(node.lineno, node.col_offset), scope, None)
        self._pending.append((scope, node.id, [(index, "")]))

    def _expr(self, node: ast.AST, scope: Scope) -> None:
        stack = [node]
        pop, push, extend = stack.pop, stack.append, stack.extend
        Name, Attribute, Call, Constant = ast.Name, ast.Attribute, ast.Call, ast.Constant
        while stack:
            n = pop()
            t = type(n)
            if t is Name:
                if type(n.ctx) is ast.Load:
                    self._load(n, scope)
                elif type(n.ctx) is ast.Store:
                    self._bind(scope, n.id, UNKNOWN)
            elif t is Attribute or t is Call:
                root = self._chain(n, scope, stack)
                if root is not None:
                    push(root)
            elif t is Constant:
                continue
            elif t is ast.Lambda:
                self._lambda(n, scope)
            elif t in _COMPREHENSIONS:
                self._comprehension(n, scope)
            elif t is ast.NamedExpr:
                owner = scope  # := binds in the scope around comprehensions
                while owner.qualname.endswith(".<comp>"):
                    owner = owner.parent
                self._bind(owner, n.target.id, value_of(n.value, scope))
                push(n.value)
            else:
                for field in _fields(t):
                    value = getattr(n, field)
                    if type(value) is list:
                        extend(v for v in value if isinstance(v, ast.AST))
                    elif isinstance(value, ast.AST):
                        push(value)
                if t is ast.MatchAs or t is ast.MatchStar:
                    if n.name:
                        self._bind(scope, n.name, UNKNOWN)
                elif t is ast.MatchMapping and n.rest:
                    self._bind(scope, n.rest, UNKNOWN)

    def _chain(self, node: ast.AST, scope: Scope, stack: list) -> ast.AST | None:
        """Record the references of a dotted/call chain; push call arguments
        onto ``stack``; return the chain's root when it is not a name."""
        parts = []
        n = node
        while True:
            t = type(n)
            if t is ast.Attribute:
                parts.append(n)
                n = n.value
            elif t is ast.Call:
                parts.append(n)
                n = n.func
            else:
                break
        root = n
        named = type(root) is ast.Name and type(root.ctx) is ast.Load
        slots = []
        if named:
            written = root.id
            slots.append((self._ref(written, root.lineno, self._col(root.lineno, root.col_offset), scope, None), ""))
        else:
            written = ""
        parts.reverse()
        if named and root.id == "super" and scope.cls is not None and parts and type(parts[0]) is ast.Call:
            return self._super_chain(root, parts, scope, stack, slots)
        suffix = ""
        for part in parts:
            if type(part) is ast.Call:
                stack.extend(part.args)
                stack.extend(k.value for k in part.keywords)
                suffix += "()"
                written += "()"
            else:
                attr = part.attr
                suffix += "." + attr
                written = f"{written}.{attr}" if written else attr
                line = part.end_lineno
                col = self._col(line, part.end_col_offset - len(attr.encode()))
                index = self._ref(written, line, col, scope, None)
                if named:
                    slots.append((index, suffix))
        if named:
            self._pending.append((scope, root.id, slots))
            return None
        return root

    def _super_chain(self, root: ast.Name, parts: list, scope: Scope, stack: list, slots: list) -> None:
        """``super().x`` in a method of class C: ``x`` is looked up along C's
        bases, written symbolically as ``C.<super>.x`` (see `index.resolve`)."""
        self._pending.append((scope, "super", slots))  # `super` itself: builtins.super
        call = parts[0]
        stack.extend(call.args)
        stack.extend(k.value for k in call.keywords)
        cls_name = scope.cls.qualname.rpartition(".")[2]
        plain = not call.args or (
            len(call.args) == 2 and type(call.args[0]) is ast.Name and call.args[0].id == cls_name
        )  # super() or super(C, self)
        sym = f"{scope.cls.qualname}.<super>" if plain else None
        written = "super()"
        for part in parts[1:]:
            if type(part) is ast.Call:
                stack.extend(part.args)
                stack.extend(k.value for k in part.keywords)
                written += "()"
                sym = None if sym is None else sym + "()"
            else:
                written += "." + part.attr
                sym = None if sym is None else f"{sym}.{part.attr}"
                line = part.end_lineno
                col = self._col(line, part.end_col_offset - len(part.attr.encode()))
                self._ref(written, line, col, scope, sym)
        return None

    def _lambda(self, node: ast.Lambda, scope: Scope) -> None:
        args = node.args
        for default in args.defaults + [d for d in args.kw_defaults if d is not None]:
            self._expr(default, scope)
        inner = Scope("function", scope.qualname + ".<lambda>", scope, scope.enclosing)
        for arg in args.posonlyargs + args.args + args.kwonlyargs + [a for a in (args.vararg, args.kwarg) if a]:
            inner.names[arg.arg] = UNKNOWN
        self._expr(node.body, inner)

    def _comprehension(self, node: ast.AST, scope: Scope) -> None:
        inner = Scope("function", scope.qualname + ".<comp>", scope, scope.enclosing)
        for generator in node.generators:
            self._expr(generator.iter, inner)
            self._bind_target(generator.target, inner, UNKNOWN, generator.target)
            for condition in generator.ifs:
                self._expr(condition, inner)
        if type(node) is ast.DictComp:
            self._expr(node.key, inner)
            self._expr(node.value, inner)
        else:
            self._expr(node.elt, inner)

    # ---- after the walk --------------------------------------------------------

    def _finish(self, roots: Roots) -> None:
        """Give every pending chain its symbolic target; drop references to
        function locals (they are not references to definitions)."""
        refs = self.refs
        for scope, root, slots in self._pending:
            sym, local = roots.lookup(root, scope)
            for index, suffix in slots:
                if suffix:
                    refs[index][4] = None if sym is None else intern(sym + suffix)
                elif local:
                    refs[index] = None
                else:
                    refs[index][4] = None if sym is None else intern(sym)

    def _final_bindings(self, roots: Roots) -> tuple:
        out = []
        for qualname, (value, _scope) in self.bindings.items():
            sym = roots.value_sym(value)
            if sym is not None and sym != qualname:
                out.append((qualname, sym))
        return tuple(out)

    def _final_bases(self, roots: Roots) -> tuple:
        return tuple((q, tuple(roots.value_sym(v) for v in values)) for q, values in self.bases)


_HANDLERS = {
    ast.FunctionDef: Extractor._function,
    ast.AsyncFunctionDef: Extractor._function,
    ast.ClassDef: Extractor._class,
    ast.Assign: Extractor._assign,
    ast.AnnAssign: Extractor._ann_assign,
    ast.AugAssign: Extractor._aug_assign,
    ast.For: Extractor._for,
    ast.AsyncFor: Extractor._for,
    ast.With: Extractor._with,
    ast.AsyncWith: Extractor._with,
    ast.Try: Extractor._try,
    ast.Import: Extractor._import,
    ast.ImportFrom: Extractor._import_from,
    ast.Global: Extractor._global,
    ast.Nonlocal: Extractor._nonlocal,
    ast.Match: Extractor._match,
}
if hasattr(ast, "TryStar"):
    _HANDLERS[ast.TryStar] = Extractor._try
