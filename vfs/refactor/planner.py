"""The planner: finds the symbol, its family and every use, and plans the edits (see the package docstring)."""
from __future__ import annotations

import ast
import errno
import logging
import re
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import libcst as cst
from libcst.metadata import BuiltinAssignment, ClassScope, FunctionScope, GlobalScope, ImportAssignment

from .common import RenameError, _check_identifier, attribute_lines
from .edits import _Edits, _string_value, _string_with
from .facts import _File, _is_name, _Modules
from .outline import _ast_outline, _Outline

log = logging.getLogger(__name__)


class _Planner:
    """One rename plan over a snapshot read through `read`; not thread-safe, single use."""

    def __init__(self, read: Callable[[str], bytes | None], paths: list[str],
                 module_of: Callable[[str], str | None] | None) -> None:
        self._read = read
        self.paths = sorted(set(paths))
        self.modules = _Modules(self.paths, module_of)
        self._texts: dict[str, bytes | None] = {}
        self._files: dict[str, _File] = {}
        self._outlines: dict[str, _Outline] = {}
        self._star: list[str] | None = None  # see star_importers
        self.stats: dict[str, int] = {}  # files read / outlined with ast / parsed with libcst, for tuning
        self._edits: dict[str, _Edits] = {}
        self.what = ""  # "pkg.mod.old to new", for messages
        self.old = ""

    # .................................................................. inputs
    def text(self, path: str) -> bytes | None:
        if path not in self._texts:
            try:
                data = self._read(path)
            except OSError as exc:  # FsError included: a path listed but gone meanwhile
                if exc.errno != errno.ENOENT:
                    raise
                data = None
            self._texts[path] = bytes(data) if data is not None else None
        return self._texts[path]

    def candidates(self, words: Iterable[str]) -> list[str]:
        """Paths whose text contains any of `words` as a word (the fast path: no parsing)."""
        words = sorted(set(words))
        needles = [w.encode() for w in words]
        # Not \b: identifiers may start or end with non-ASCII letters.
        pattern = re.compile(rb"(?<![A-Za-z0-9_])(?:" + b"|".join(re.escape(n) for n in needles)
                             + rb")(?![A-Za-z0-9_])")
        out = []
        for path in self.paths:
            data = self.text(path)
            if data is not None and any(n in data for n in needles) and pattern.search(data):
                out.append(path)
        return out

    _STAR = re.compile(rb"(?<![A-Za-z0-9_])import\s*\*")

    def star_importers(self) -> list[str]:
        """Paths whose text has a ``from M import *`` (the text filter: no parsing)."""
        if self._star is None:
            self._star = [p for p in self.paths
                          if b"*" in (self.text(p) or b"") and self._STAR.search(self.text(p) or b"")]
        return self._star

    def file(self, path: str) -> _File:
        f = self._files.get(path)
        if f is None:
            data = self.text(path)
            assert data is not None, path
            f = self._files[path] = _File(path, data, self.modules.canonical(path))
        return f

    def edits(self, f: _File) -> _Edits:
        e = self._edits.get(f.path)
        if e is None:
            e = self._edits[f.path] = _Edits(f)
        return e

    def refuse(self, f: _File, node: cst.CSTNode, reason: str) -> RenameError:
        return RenameError(errno.EINVAL, f"cannot rename {self.what}: {f.path}:{f.line(node)}: {reason}")

    # .................................................................. plan
    def plan(self, qualname: str, new: str) -> dict[str, bytes]:
        parts = qualname.split(".")
        for part in parts:
            _check_identifier(part, f"qualified name {qualname!r}: part")
        path, rest = self.definition(qualname)
        self.what = f"{qualname} to {new}"
        self.old = rest[-1]
        if rest[-1] == new:
            return {}
        if len(rest) == 1:
            self.plan_global(path, rest[0], new)
        else:
            self.plan_member(path, rest[0], rest[1], new)
        out = {}
        for p, e in sorted(self._edits.items()):
            data = e.result()
            if data != e.file.data:
                out[p] = data
        self.stats.update(read=len(self._texts), outlined=len(self._outlines), parsed=len(self._files),
                          parsed_lines=sum(f.data.count(b"\n") for f in self._files.values()),
                          changed=len(out))
        log.debug("rename %s: %s", self.what, self.stats)
        return out

    def leftovers(self, out: dict[str, bytes]) -> list[str]:
        """``path:line: text`` of each ``.old`` attribute access in code that `out` leaves
        (strings and comments that mention it are not uses; a file that does not tokenize is
        scanned as text)."""
        if not self.old:
            return []
        found = []
        for path in self.candidates([self.old]):
            data = out.get(path, self.text(path) or b"")
            lines = data.splitlines()
            for n in attribute_lines(data, self.old):
                found.append(f"{path}:{n}: {lines[n - 1].strip().decode(errors='replace')}")
        return found

    def definition(self, qualname: str, seen: frozenset = frozenset()) -> tuple[str, list[str]]:
        """(defining path, [name] or [Class, member]) — re-exports followed."""
        parts = qualname.split(".")
        for i in range(len(parts), 0, -1):
            path = self.modules.lookup(".".join(parts[:i]))
            if path is not None:
                break
        else:
            raise RenameError(errno.ENOENT, f"no module of the tree in {qualname}")
        module, rest = ".".join(parts[:i]), parts[i:]
        if not rest:
            raise RenameError(errno.EINVAL, f"{qualname} is a module; module renames are not supported")
        if len(rest) > 2:
            raise RenameError(errno.EINVAL, f"{qualname}: only module-level names and Class.member "
                                            "can be renamed")
        data = self.text(path)
        if data is None or rest[0].encode() not in data:
            raise RenameError(errno.ENOENT, f"{module} ({path}) does not define {rest[0]}")
        f = self.file(path)
        scope = f.global_scope
        bindings = list(scope.assignments[rest[0]])
        if not bindings:
            raise RenameError(errno.ENOENT, f"{module} ({path}) does not define {rest[0]}")
        if all(isinstance(b, ImportAssignment) for b in bindings):
            b = bindings[0]
            fact = next((x for x in f.imports if x.node is b.node and x.alias is not None
                         and (x.asname or x.name) == rest[0]), None)
            target = f"{fact.module}.{fact.name}" if fact is not None and fact.module else None
            if target is None or target in seen or self.modules.lookup(fact.module) is None:
                raise RenameError(errno.EINVAL, f"{module}.{rest[0]} is imported in {path}:{f.line(b.node)} "
                                                "from outside the tree; rename it where it is defined")
            return self.definition(".".join([target] + rest[1:]), seen | {qualname})
        if len(rest) == 2:
            classdef = self.class_of(f, bindings)
            if classdef is None:
                raise RenameError(errno.EINVAL, f"{module}.{rest[0]} is not a class")
            members = self.class_scope(f, classdef).assignments[rest[1]]
            if not members:
                raise RenameError(errno.ENOENT, f"class {module}.{rest[0]} ({path}) does not define {rest[1]}")
        return path, rest

    @staticmethod
    def class_of(f: _File, bindings: Iterable) -> cst.ClassDef | None:
        for b in bindings:
            if isinstance(b.node, cst.ClassDef):
                return b.node
        return None

    @staticmethod
    def class_scope(f: _File, classdef: cst.ClassDef) -> ClassScope:
        return next(s for s in f.all_scopes if isinstance(s, ClassScope) and s.node is classdef)

    # .................................................................. pre-filter
    def outline(self, path: str) -> "_Outline":
        o = self._outlines.get(path)
        if o is None:
            data = self.text(path)
            assert data is not None, path
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not ours to report
                    tree = ast.parse(data)
            except (SyntaxError, ValueError):
                # Newer syntax than this interpreter's, or broken: ask libcst,
                # which raises the "cannot parse" refusal if it is broken.
                o = self.file(path).outline()
            else:
                o = _ast_outline(tree, self.modules.canonical(path).package)
            self._outlines[path] = o
        return o

    def reach(self, path: str, name: str) -> set[str]:
        """Module names through which `name` of the module at `path` can be
        imported: the module's own names, plus every module that re-exports
        it (imports it unaliased at module level, or by ``*``), transitively."""
        modules = set(self.modules.names(path)) or {self.modules.canonical(path).name}
        spelled = set(self.candidates([name]))
        # A `from M import *` re-exports the name without spelling it.
        files = sorted(spelled | set(self.star_importers()))
        changed = True
        while changed:
            changed = False
            for p in files:
                names = set(self.modules.names(p))
                if names and not names <= modules and self.reexports(p, name, modules, strict=p in spelled):
                    modules |= names
                    changed = True
        return modules

    def reexports(self, path: str, name: str, modules: set[str], *, strict: bool) -> bool:
        """Does `path` re-export `name` of `modules`?  A file that does not spell the name
        and does not parse cannot: it is skipped (not `strict`), not refused."""
        try:
            return self.outline(path).reexports(name, modules)
        except RenameError:
            if strict:
                raise
            return False

    def relevant(self, path: str, modules: set[str], names: set[str], strings: set[str]) -> bool:
        """Whether `path` can refer to `names` of `modules` at all: it is one of
        the modules, imports the names (or ``*``) from one, takes attribute
        ``.name`` of a name bound to one of the modules or a package above
        one, or spells a target as a string.  Conservative: the libcst pass
        decides what actually changes."""
        if set(self.modules.names(path)) & modules:
            return True
        o = self.outline(path)
        for module, imported, _ in o.froms:
            if module in modules and (imported is None or any(n in names for n, _ in imported)):
                return True
        bound = self.module_bindings(o, modules)
        if bound and o.chains is None:
            return True
        for n in names:
            for chain in o.chains.get(n, ()) if bound else ():
                head, _, rest = chain.partition(".")
                if head in bound and (f"{bound[head]}.{rest}" if rest else bound[head]) in modules:
                    return True  # module.n, through whatever name the module is bound to
        data = self.text(path) or b""
        return any(s.encode() in data for s in strings)

    @staticmethod
    def module_bindings(o: "_Outline", modules: set[str]) -> dict[str, str]:
        """Names `o`'s imports bind to one of `modules` or a package above
        one -> the module they stand for."""
        above = {m.rsplit(".", i)[0] for m in modules for i in range(m.count(".") + 1)}
        tops = {m.split(".", 1)[0] for m in modules}
        bound = {}
        for module, imported, _ in o.froms:
            for n, a in imported or ():
                if f"{module}.{n}" in above:
                    bound[a or n] = f"{module}.{n}"
        for dotted, alias in o.imports:
            if alias is not None and dotted in above:
                bound[alias] = dotted
            elif alias is None and dotted.split(".", 1)[0] in tops:
                bound[dotted.split(".", 1)[0]] = dotted.split(".", 1)[0]  # `import a.b` binds `a`
        return bound

    # .................................................................. module-level names
    def twins(self, path: str, name: str) -> list[str]:
        """`path` and the other files of its module that bind `name` (a ``.pyi`` stub next to the ``.py``)."""
        module = self.modules.canonical(path).name
        return [path] + [p for p in self.candidates([name])
                         if p != path and self.modules.canonical(p).name == module
                         and self.file(p).global_scope.assignments[name]]

    def plan_global(self, def_path: str, old: str, new: str) -> None:
        modules = self.reach(def_path, old)
        targets = {f"{m}.{old}" for m in modules}
        homes = self.twins(def_path, old)
        for path in self.candidates([old]):
            if self.relevant(path, modules, {old}, targets):
                self.rename_in_file(self.file(path), path in homes, old, new, targets)

    def rename_in_file(self, f: _File, home: bool, old: str, new: str, targets: set[str]) -> None:
        e = self.edits(f)
        bindings = []
        if home:
            bindings.append(f.global_scope)
        star = False
        for fact in f.imports:
            if fact.module is None or f"{fact.module}.{old}" not in targets:
                continue
            if fact.alias is None:
                star = True
            elif fact.name == old:
                e.name(fact.alias.name, new)
                if fact.asname is None or fact.asname == old:
                    if fact.scope not in bindings:
                        bindings.append(fact.scope)
        for scope in bindings:
            self.rename_binding(f, scope, old, new)
        if star and f.global_scope not in bindings:
            self.rename_star_uses(f, old, new)
        if f.global_scope in bindings or star:
            self.rename_all_entries(f, old, new)
        for node in f.collected.attributes.get(old, ()):
            if f.fqn(node) & targets:
                e.name(node.attr, new)
        self.rename_qualname_strings(f, targets, new)

    def rename_binding(self, f: _File, scope: Any, old: str, new: str) -> None:
        """Rename the binding `old` of `scope` — every assignment and every use."""
        e = self.edits(f)
        clash = sorted(scope.assignments[new], key=lambda a: f.line(a.node))
        if clash:
            raise self.refuse(f, clash[0].node, f"{new!r} is already defined in {self.scope_label(f, scope)}")
        mine = set(scope.assignments[old])
        for a in mine:
            self.rename_assignment(f, a, old, new)
        for s in f.all_scopes:
            for access in s.accesses[old]:
                if access.referents & mine:
                    self.rename_access(f, access, s, scope, old, new)
        self.check_shadowing(f, scope, new)
        if isinstance(scope, GlobalScope):
            for stmt in f.collected.globals:
                for item in stmt.names:
                    if item.name.value == old:
                        e.name(item.name, new)

    def rename_assignment(self, f: _File, a: Any, old: str, new: str) -> None:
        e = self.edits(f)
        node = a.node
        if isinstance(a, ImportAssignment):
            if isinstance(node, cst.Import):
                aliases = [x for x in node.names if x.evaluated_alias == old
                           or (x.asname is None and x.evaluated_name == old)]
            else:
                aliases = [x for x in node.names if (x.evaluated_alias or x.evaluated_name) == old] \
                    if not isinstance(node.names, cst.ImportStar) else []
            for alias in aliases:
                if alias.asname is not None:
                    e.name(alias.asname.name, new)  # `... as old` -> `... as new`
                elif not e.has(alias.name):
                    # Another symbol bound to the same name (e.g. an ImportError
                    # fallback): keep importing it, bind it to the new name.
                    e.node(alias, lambda u: u.with_changes(
                        asname=cst.AsName(name=cst.Name(new))))
            return
        if isinstance(node, cst.Name):
            e.name(node, new)
        elif isinstance(getattr(node, "name", None), cst.Name) and node.name.value == old:
            e.name(node.name, new)  # def, class, type alias
        else:
            raise self.refuse(f, node, f"cannot rename this binding of {old!r} ({type(node).__name__})")

    def rename_access(self, f: _File, access: Any, scope: Any, binding_scope: Any, old: str, new: str) -> None:
        node = access.node
        e = self.edits(f)
        if isinstance(node, cst.Name):
            foreign = _between(scope, binding_scope, new)
            if foreign:
                a = min(foreign, key=lambda a: f.line(a.node))
                raise self.refuse(f, node, f"the renamed use would refer to {new!r} defined at line "
                                           f"{f.line(a.node)}")
            e.name(node, new)
        elif isinstance(node, cst.SimpleString):
            value = node.value
            e.string(node, re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, value))
        else:
            raise self.refuse(f, node, f"cannot rename this use of {old!r} ({type(node).__name__})")

    def check_shadowing(self, f: _File, binding_scope: Any, new: str) -> None:
        """Refuse when an existing use of `new` (builtin or unresolved) would
        start to see the renamed binding."""
        for s in f.all_scopes:
            if not _sees(s, binding_scope):
                continue
            for access in s.accesses[new]:
                if all(isinstance(r, BuiltinAssignment) for r in access.referents):
                    what = "the builtin" if access.referents else "the unresolved name"
                    raise self.refuse(f, access.node, f"{what} {new!r} used here would be shadowed")

    def scope_label(self, f: _File, scope: Any) -> str:
        if isinstance(scope, GlobalScope):
            return f"module {f.module}"
        if isinstance(scope, ClassScope):
            return f"class {scope.name}"
        return f"{scope.name or 'this scope'}"

    def rename_star_uses(self, f: _File, old: str, new: str) -> None:
        e = self.edits(f)
        for s in f.all_scopes:
            if not _sees(s, f.global_scope):
                continue
            for access in s.accesses[old]:
                if all(isinstance(r, BuiltinAssignment) for r in access.referents) \
                        and isinstance(access.node, cst.Name):
                    e.name(access.node, new)

    def rename_all_entries(self, f: _File, old: str, new: str) -> None:
        e = self.edits(f)
        for value in f.collected.all_values:
            for node in _strings_in(value):
                if _string_value(node) == old:
                    e.string(node, _string_with(node, new))

    def rename_qualname_strings(self, f: _File, targets: set[str], new: str) -> None:
        e = self.edits(f)
        for node in f.collected.strings:
            value = _string_value(node)
            if value in targets and not e.has(node):
                e.string(node, _string_with(node, value.rpartition(".")[0] + "." + new))

    # .................................................................. class members
    def plan_member(self, def_path: str, cls: str, member: str, new: str) -> None:
        family, modules, tops = self.class_family(def_path, cls)
        qualnames = set().union(*(q for _, _, q in family))
        targets = {f"{q}.{member}" for q in qualnames}
        classdefs = {id(c) for _, c, _ in family}
        homes = {p for p, _, _ in family}
        for path, classdef, _ in family:
            f = self.file(path)
            scope = self.class_scope(f, classdef)
            if scope.assignments[member]:
                self.rename_binding(f, scope, member, new)
            else:
                clash = sorted(scope.assignments[new], key=lambda a: f.line(a.node))
                if clash:
                    raise self.refuse(f, clash[0].node, f"{new!r} is already defined in subclass "
                                                        f"{classdef.name.value}")
        words = {c.name.value for _, c, _ in family} | tops
        for path in sorted(set(self.candidates([member])) | homes):
            if path not in homes and not (self.relevant(path, modules, tops, targets)
                                          and (self.may_use_member(path, member, words, modules)
                                               or any(t.encode() in (self.text(path) or b"") for t in targets))):
                continue
            f = self.file(path)
            e = self.edits(f)
            if path in homes:
                for node in f.collected.attributes.get(new, ()):
                    if self.self_like(f, node.value, classdefs):
                        raise self.refuse(f, node, f"{new!r} is already used as an attribute of the class")
            for node in f.collected.attributes.get(member, ()):
                if f.fqn(node) & targets or self.instance_of(f, node.value, classdefs, qualnames):
                    e.name(node.attr, new)
            self.rename_qualname_strings(f, targets, new)

    def class_family(self, def_path: str, cls: str) -> tuple[list[tuple[str, cst.ClassDef, set[str]]], set[str], set[str]]:
        """The class and its subclasses in the tree, each as (path, ClassDef,
        every qualified name it is reachable by); plus the modules they can be
        imported from and their top-level names there (for `relevant`)."""
        f = self.file(def_path)
        root = self.class_of(f, f.global_scope.assignments[cls])
        family: list[tuple[str, cst.ClassDef, set[str]]] = []
        modules: set[str] = set()
        tops: set[str] = set()
        seen: set[int] = set()
        pending = [(def_path, root)] + [(p, self.class_of(self.file(p), self.file(p).global_scope.assignments[cls]))
                                        for p in self.twins(def_path, cls)[1:]]
        pending = [(p, c) for p, c in pending if c is not None]
        while pending:
            for path, classdef in pending:
                seen.add(id(classdef))
                qualnames = self.class_names(self.file(path), classdef, modules, tops)
                family.append((path, classdef, qualnames))
            known = set().union(*(q for _, _, q in family))
            words = {c.name.value for _, c, _ in family} | tops
            pending = []
            for path in self.candidates(words):
                if not self.may_subclass(path, words, modules) or not self.relevant(path, modules, tops, set()):
                    continue
                g = self.file(path)
                for classdef in g.collected.classes:
                    if id(classdef) not in seen and any(g.fqn(b.value) & known for b in classdef.bases):
                        pending.append((path, classdef))
        return family, modules, tops

    def may_use_member(self, path: str, member: str, words: set[str], modules: set[str]) -> bool:
        """Pre-filter: some ``x.member`` of `path` starts from a name that is,
        or is assigned or annotated from, a family class, its module, a
        package above it, or `super`."""
        o = self.outline(path)
        if o.roots is None or o.flows is None:
            return True
        roots = o.roots.get(member)
        if not roots:
            return False
        bound = set(words) | {"super"} | set(self.module_bindings(o, modules))
        for module, imported, _ in o.froms:
            if module in modules:
                bound |= {a or n for n, a in imported or () if n in words}
        changed = True
        while changed:  # assignments propagate: obj = Class(); other = obj
            changed = False
            for targets, sources in o.flows:
                if sources & bound and not targets <= bound:
                    bound |= targets
                    changed = True
        return bool(roots & bound)

    def may_subclass(self, path: str, words: set[str], modules: set[str]) -> bool:
        """Pre-filter: some class of `path` names one of `words` (or an alias
        imported for one) in its bases."""
        o = self.outline(path)
        names = set(words)
        for module, imported, _ in o.froms:
            if module in modules and imported:
                names |= {a for n, a in imported if a and n in words}
        return any(bases & names for bases in o.bases)

    def class_names(self, f: _File, classdef: cst.ClassDef, modules: set[str], tops: set[str]) -> set[str]:
        """Qualified names of `classdef` through every module that exposes it;
        adds those modules and the class's top-level name to `modules`, `tops`."""
        names = set()
        for q in f.fqn(classdef):
            if not q.startswith(f.module + "."):
                continue
            inner = q[len(f.module) + 1:]  # "Class", "Outer.Class", "f.<locals>.Class"
            top = inner.split(".", 1)[0]
            exposed = self.reach(f.path, top) if "<locals>" not in inner else {f.module}
            modules |= exposed
            tops.add(top)
            names |= {f"{m}.{inner}" for m in exposed}
        return names

    def self_like(self, f: _File, value: cst.CSTNode, classdefs: set[int]) -> bool:
        """`value` is the first parameter of a method of a family class (`self`, `cls`)."""
        if not isinstance(value, cst.Name):
            return False
        refs = f.referents(value)
        return bool(refs) and all(self.first_param(r, classdefs) for r in refs)

    @staticmethod
    def method_of(scope: Any, classdefs: set[int]) -> bool:
        """`scope` is the body of a method defined directly in a family class."""
        return (isinstance(scope, FunctionScope) and isinstance(scope.parent, ClassScope)
                and id(scope.parent.node) in classdefs)

    def first_param(self, binding: Any, classdefs: set[int]) -> bool:
        """`binding` is the first parameter of a (non-static) method of a family class."""
        param, scope = binding.node, binding.scope
        if not isinstance(param, cst.Param) or not self.method_of(scope, classdefs):
            return False
        func = scope.node
        if not isinstance(func, cst.FunctionDef):
            return False
        first = (list(func.params.posonly_params) + list(func.params.params))[:1]
        return first == [param] and not any(_is_name(d.decorator, "staticmethod") for d in func.decorators)

    def instance_of(self, f: _File, value: cst.CSTNode, classdefs: set[int], qualnames: set[str]) -> bool:
        """Best effort: `value` evidently is an instance of a family class, or its `super()`."""
        if isinstance(value, cst.Call):
            if _is_name(value.func, "super"):
                return self.method_of(f.scopes.get(value), classdefs)
            return bool(f.fqn(value.func) & qualnames) or self.self_like(f, value.func, classdefs)
        if not isinstance(value, cst.Name):
            return False
        refs = f.referents(value)
        if not refs or any(isinstance(r, (ImportAssignment, BuiltinAssignment)) for r in refs):
            return False
        return all(self.binds_instance(f, r, classdefs, qualnames) for r in refs)

    def binds_instance(self, f: _File, binding: Any, classdefs: set[int], qualnames: set[str]) -> bool:
        def is_class(expr: cst.CSTNode | None) -> bool:
            return expr is not None and bool(f.fqn(expr) & qualnames)

        def is_new(expr: cst.CSTNode | None) -> bool:
            return isinstance(expr, cst.Call) and is_class(expr.func)

        node = binding.node
        if isinstance(node, cst.Param):
            if node.annotation is not None and is_class(node.annotation.annotation):
                return True
            return self.first_param(binding, classdefs)
        if id(node) in f.collected.made:
            return is_new(f.collected.made[id(node)])
        ann = f.collected.annotated.get(id(node))
        return ann is not None and (is_class(ann.annotation.annotation) or is_new(ann.value))


def _between(inner: Any, outer: Any, name: str) -> list:
    """Bindings of `name` in the scopes a lookup from `inner` passes before
    reaching `outer` (class scopes other than `inner` are not looked in)."""
    found: list = []
    scope = inner
    while scope is not outer:
        if scope is inner or not isinstance(scope, ClassScope):
            found.extend(scope.assignments[name])
        if scope.parent is scope:
            break
        scope = scope.parent
    return found


def _sees(inner: Any, target: Any) -> bool:
    """Whether names bound in `target` are visible from scope `inner`."""
    if isinstance(target, ClassScope):
        return inner is target
    scope = inner
    while True:
        if scope is target:
            return True
        parent = scope.parent
        if parent is scope:
            return False
        scope = parent


def _strings_in(node: cst.CSTNode) -> list[cst.SimpleString]:
    found: list[cst.SimpleString] = []

    class Strings(cst.CSTVisitor):
        def visit_SimpleString(self, string: cst.SimpleString) -> None:
            found.append(string)

    node.visit(Strings())
    return found
