"""`_Patch`: carrying a module's new definitions into its live objects (functions, classes, attributes)."""
from __future__ import annotations

import enum
import functools
import inspect
import logging
import types
from typing import TYPE_CHECKING, Any, Callable, Iterable

from .report import ReloadReport

if TYPE_CHECKING:
    from .reloader import Reloader

log = logging.getLogger(__name__)


# Attributes the import system owns: a reload never changes them.
_IMPORT_DUNDERS = frozenset({"__name__", "__file__", "__spec__", "__loader__", "__package__", "__path__",
                             "__cached__", "__builtins__"})


# Class attributes that are part of the class object rather than its definitions.
_CLASS_SKIP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__slots__", "__doc__"})


_DESCRIPTORS = (staticmethod, classmethod, property, functools.cached_property)


_SLOT_TYPES = (types.MemberDescriptorType, types.GetSetDescriptorType)


_EMPTY = object()


def _differs(a: Any, b: Any, b_type: type | None = None) -> bool:
    """Whether a kept value and the one the new source assigns differ (worth reporting).

    `b_type` is the class `b` counts as (the patched class standing for its new class).
    """
    if a is b:
        return False
    if type(a) is (b_type or type(b)) and (type(a).__eq__ is object.__eq__ or isinstance(a, enum.Enum)):
        return False  # identity-compared objects (sentinels, plain instances, members): nothing to compare
    try:
        return bool(a != b)
    except Exception:  # arrays and other values without a truth value: call them different
        return True


def _cell(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY


def _slots(cls: type) -> tuple[str, ...] | None:
    slots = cls.__dict__.get("__slots__")
    if slots is None:
        return None
    return (slots,) if isinstance(slots, str) else tuple(slots)


def _functions_in(value: Any) -> Iterable[types.FunctionType]:
    """The functions behind a class attribute (a function or a descriptor wrapping some)."""
    if isinstance(value, types.FunctionType):
        yield value
    elif isinstance(value, (staticmethod, classmethod)):
        if isinstance(value.__func__, types.FunctionType):
            yield value.__func__
    elif isinstance(value, property):
        yield from (f for f in (value.fget, value.fset, value.fdel) if isinstance(f, types.FunctionType))
    elif isinstance(value, functools.cached_property) and isinstance(value.func, types.FunctionType):
        yield value.func


class _Patch:
    """One reload's patching of module namespace `ns` from `old` to `new` names."""

    def __init__(self, reloader: Reloader, module: types.ModuleType, old: dict, new: dict,
                 report: ReloadReport) -> None:
        self.reloader = reloader
        self.modname = module.__name__
        self.ns = module.__dict__
        self.old, self.new = old, new
        self.report = report
        # id(new object) -> the old object that stands for it after the reload.
        # The new objects stay alive in `new` while this runs, so the ids are stable.
        self.trans: dict[int, Any] = {}
        self.handled: set[int] = set()  # ids of old functions and classes already patched (aliases)

    def first_time(self, obj: Any) -> bool:
        if id(obj) in self.handled:
            return False
        self.handled.add(id(obj))
        return True

    def t(self, value: Any) -> Any:
        return self.trans.get(id(value), value)

    def differs(self, name: str, ov: Any, nv: Any) -> bool:
        """Whether keeping `ov` over `nv` is worth reporting (`_sunder_` names are enum and
        library bookkeeping that holds the new objects: not reported)."""
        if len(name) > 2 and name[0] == name[-1] == "_" and name[1] != "_":
            return False
        return _differs(ov, nv, self.t(type(nv)))

    def kind(self, obj: Any) -> str:
        """'function' / 'class' (defined in this module), 'wrapper' (lru_cache & co), 'foreign', 'data'."""
        if isinstance(obj, types.FunctionType):
            return "function" if obj.__module__ == self.modname else "foreign"
        if isinstance(obj, type):
            return "class" if obj.__module__ == self.modname else "foreign"
        if isinstance(obj, (types.ModuleType, types.BuiltinFunctionType)):
            return "foreign"
        if callable(obj) and isinstance(inspect.getattr_static(obj, "__wrapped__", None), types.FunctionType):
            return "wrapper" if inspect.getattr_static(obj, "__module__", None) == self.modname else "foreign"
        return "data"

    # ------------------------------------------------------------------ the module
    def run(self) -> None:
        old, new = self.old, self.new
        for name, nv in new.items():  # first pass: what stands for what
            if name in old and old[name] is not nv:
                ov = old[name]
                kinds = (self.kind(ov), self.kind(nv))
                if kinds == ("class", "class"):
                    self.pair_classes(ov, nv)
                elif kinds in (("function", "function"), ("data", "data")):
                    self.trans[id(nv)] = ov
        for name, nv in new.items():
            if name in _IMPORT_DUNDERS:
                continue
            try:
                self.module_name(name, nv)
            except Exception as exc:  # one name failing must not stop the others
                log.exception("patching %s.%s failed", self.modname, name)
                if name in old:
                    self.ns[name] = old[name]
                self.report.skipped.append((name, f"patch failed: {exc!r}"))

    def module_name(self, name: str, nv: Any) -> None:
        report, ns = self.report, self.ns
        if name not in self.old:
            self.add(name, nv)
            return
        ov = self.old[name]
        ok, nk = self.kind(ov), self.kind(nv)
        if nv is ov:
            if ok in ("function", "class", "wrapper"):  # not defined by the new source
                del ns[name]
                report.removed.append(name)
            return
        if (ok, nk) == ("function", "function"):
            ns[name] = ov
            self.patch_function(name, ov, nv, lambda v: ns.__setitem__(name, v))
        elif (ok, nk) == ("class", "class"):
            ns[name] = ov
            self.patch_class(name, ov, nv)
        elif (ok, nk) == ("wrapper", "wrapper") and type(ov) is type(nv):
            ns[name] = ov
            if self.patch_function(name, ov.__wrapped__, nv.__wrapped__, lambda v: ns.__setitem__(name, nv)) \
                    and hasattr(ov, "cache_clear"):
                ov.cache_clear()
        elif nk == "foreign" and ok in ("foreign", "data"):
            pass  # an import: the new binding stands
        elif (ok, nk) == ("data", "data"):
            if name.startswith("__") and name.endswith("__"):
                return  # __all__, __doc__, __version__: the new source says what they are
            ns[name] = ov
            if self.differs(name, ov, nv):
                report.kept.append(name)
        else:
            report.skipped.append((name, f"changed from {ok} to {nk}: rebound in the module; "
                                         f"references held elsewhere keep the old object"))

    def add(self, name: str, nv: Any) -> None:
        kind = self.kind(nv)
        if kind == "class":
            self.adopt_class(name, nv)
        elif kind == "function":
            self.retarget(nv)
            self.reloader._family(self.modname, nv.__qualname__, nv)
        elif kind == "data" and id(type(nv)) in self.trans:
            try:
                nv.__class__ = self.trans[id(type(nv))]  # an instance of a patched class made at import
            except TypeError as exc:
                self.report.skipped.append((name, f"instance of the new class, not of the patched one: {exc}"))
        if not (name.startswith("__") and name.endswith("__")):
            self.report.added.append(name)

    def retarget(self, fn: types.FunctionType) -> None:
        """Point a new function's defaults at the old objects they stand for (sentinels, kept values)."""
        if fn.__defaults__:
            fn.__defaults__ = tuple(self.t(v) for v in fn.__defaults__)
        if fn.__kwdefaults__:
            fn.__kwdefaults__ = {k: self.t(v) for k, v in fn.__kwdefaults__.items()}

    # ------------------------------------------------------------------ functions
    def plan(self, fn: types.FunctionType, nv: types.FunctionType, out: list, seen: set) -> str | None:
        """Collect in `out` the (old, new) function pairs to patch: `fn` and the functions its
        closure wraps (decorators).  Returns why it cannot be done in place, or None."""
        if id(fn) in seen:
            return None
        seen.add(id(fn))
        if fn.__code__.co_freevars != nv.__code__.co_freevars:
            return (f"closure cells changed ({len(fn.__code__.co_freevars)} -> "
                    f"{len(nv.__code__.co_freevars)})")
        out.append((fn, nv))
        for var, oc, nc in zip(fn.__code__.co_freevars, fn.__closure__ or (), nv.__closure__ or ()):
            cur, val = _cell(oc), _cell(nc)
            if var != "__class__" and isinstance(cur, types.FunctionType) and isinstance(val, types.FunctionType) \
                    and cur is not val:
                self.trans[id(val)] = cur  # e.g. the new `__wrapped__` stands for the old one
                why = self.plan(cur, val, out, seen)
                if why is not None:
                    return f"{why} in the wrapped {val.__qualname__}"
        return None

    def patch_function(self, qual: str, ov: types.FunctionType, nv: types.FunctionType,
                       rebind: Callable[[types.FunctionType], None]) -> bool:
        """Give `ov` (and its family) the code of `nv`; True if something changed."""
        report = self.report
        if not self.first_time(ov):
            return False
        family = self.reloader._family(self.modname, qual, ov)
        pairs: list = []
        seen: set = set()
        why = self.plan(ov, nv, pairs, seen)
        for member in (f for f in family if f is not ov):
            if why is None and member.__code__.co_freevars == ov.__code__.co_freevars:
                self.plan(member, nv, pairs, seen)
        if why is not None:
            self.retarget(nv)
            rebind(nv)
            family.add(nv)
            report.skipped.append((qual, f"{why}: the new function is bound in its place; "
                                         f"references held elsewhere keep the old code"))
            return True
        changed = any(a.__code__ != b.__code__ or _differs(a.__defaults__, self.tdefaults(b.__defaults__))
                      or _differs(a.__kwdefaults__, self.tkwdefaults(b.__kwdefaults__)) or a.__doc__ != b.__doc__
                      or any(self.cell_value(var, oc, nc) is not _EMPTY and _differs(_cell(oc), self.t(_cell(nc)))
                             for var, oc, nc in zip(a.__code__.co_freevars, a.__closure__ or (), b.__closure__ or ()))
                      for a, b in pairs)
        busy = self.reloader.running(a.__code__ for a, b in pairs if a.__code__ != b.__code__)
        if busy:
            report.skipped.append((qual, busy))
            return False
        for a, b in pairs:
            self.assign(a, b)
        family.add(nv)
        if changed:
            report.patched.append(qual)
        return changed

    @staticmethod
    def cell_value(var: str, oc: types.CellType, nc: types.CellType) -> Any:
        """The new value a plain closure cell takes (`_EMPTY`: the cell is left alone)."""
        cur, val = _cell(oc), _cell(nc)
        if var == "__class__" or oc is nc or val is _EMPTY or \
                (isinstance(cur, types.FunctionType) and isinstance(val, types.FunctionType)):
            return _EMPTY  # the old class stays the class; wrapped functions are patched themselves (plan)
        return val

    def tdefaults(self, values: tuple | None) -> tuple | None:
        return None if values is None else tuple(self.t(v) for v in values)

    def tkwdefaults(self, values: dict | None) -> dict | None:
        return None if values is None else {k: self.t(v) for k, v in values.items()}

    def assign(self, fn: types.FunctionType, nv: types.FunctionType) -> None:
        for var, oc, nc in zip(fn.__code__.co_freevars, fn.__closure__ or (), nv.__closure__ or ()):
            val = self.cell_value(var, oc, nc)
            if val is not _EMPTY:
                oc.cell_contents = self.t(val)
        fn.__code__ = nv.__code__
        fn.__defaults__ = self.tdefaults(nv.__defaults__)
        fn.__kwdefaults__ = self.tkwdefaults(nv.__kwdefaults__)
        fn.__doc__ = nv.__doc__
        fn.__annotations__ = dict(nv.__annotations__)
        fn.__dict__.update({k: self.t(v) for k, v in nv.__dict__.items()})

    # ------------------------------------------------------------------ classes
    def pair_classes(self, oc: type, nc: type) -> None:
        """Record that new class `nc` stands for `oc` (nested classes too) and point its class cell at `oc`."""
        self.trans[id(nc)] = oc
        for attr, nv in nc.__dict__.items():
            ov = oc.__dict__.get(attr)
            if isinstance(nv, type) and isinstance(ov, type) and nv is not ov \
                    and nv.__module__ == ov.__module__ == self.modname:
                self.pair_classes(ov, nv)
            elif ov is not None and type(ov) is type(nv) and not isinstance(nv, type) \
                    and not list(_functions_in(nv)):
                self.trans[id(nv)] = ov
        self.fix_class_cell(nc, oc)

    @staticmethod
    def fix_class_cell(nc: type, target: type) -> None:
        # All methods of one class body share one `__class__` cell (super(), __class__).
        for value in nc.__dict__.values():
            for fn in _functions_in(value):
                if "__class__" in fn.__code__.co_freevars:
                    cell = fn.__closure__[fn.__code__.co_freevars.index("__class__")]
                    if _cell(cell) is nc:
                        cell.cell_contents = target

    def adopt_class(self, qual: str, nc: type) -> None:
        """A class new to the module: base it on the patched classes, retarget its functions."""
        bases = tuple(self.t(b) for b in nc.__bases__)
        if bases != nc.__bases__:
            try:
                nc.__bases__ = bases
            except TypeError as exc:
                self.report.skipped.append((qual, f"new class keeps the new versions of its bases: {exc}"))
        for value in list(nc.__dict__.values()):
            for fn in _functions_in(value):
                self.retarget(fn)
                self.reloader._family(self.modname, fn.__qualname__, fn)

    def patch_class(self, qual: str, oc: type, nc: type) -> None:
        report = self.report
        if not self.first_time(oc):
            return
        if _slots(oc) != _slots(nc):
            report.skipped.append((qual, f"__slots__ changed from {_slots(oc)} to {_slots(nc)}: existing "
                                         f"instances cannot change layout; class not patched"))
            return
        if type(oc) is not type(nc):
            report.skipped.append((qual, f"metaclass changed from {type(oc).__name__} to {type(nc).__name__}: "
                                         f"class not patched"))
            return
        bases = tuple(self.t(b) for b in nc.__bases__)
        if bases != oc.__bases__:
            names = lambda bs: ", ".join(b.__qualname__ for b in bs)
            report.skipped.append((f"{qual}.__bases__", f"bases changed from ({names(oc.__bases__)}) to "
                                                        f"({names(bases)}): old bases kept"))
        for attr, nv in list(nc.__dict__.items()):
            if attr in _CLASS_SKIP or isinstance(nv, _SLOT_TYPES):
                continue
            q = f"{qual}.{attr}"
            try:
                if attr not in oc.__dict__:
                    setattr(oc, attr, nv)
                    for fn in _functions_in(nv):
                        self.retarget(fn)
                        self.reloader._family(self.modname, fn.__qualname__, fn)
                    report.added.append(q)
                elif oc.__dict__[attr] is not nv:
                    self.patch_attr(q, oc, attr, oc.__dict__[attr], nv)
            except (TypeError, AttributeError) as exc:
                report.skipped.append((q, f"cannot set on the class: {exc}"))
        for attr, ov in list(oc.__dict__.items()):
            if attr in nc.__dict__ or attr in _CLASS_SKIP:
                continue
            here = [f for f in _functions_in(ov) if f.__module__ == self.modname]
            if here or (isinstance(ov, type) and ov.__module__ == self.modname):
                delattr(oc, attr)
                report.removed.append(f"{qual}.{attr}")
        if oc.__doc__ != nc.__doc__:
            oc.__doc__ = nc.__doc__

    def patch_attr(self, q: str, oc: type, attr: str, ov: Any, nv: Any) -> None:
        report = self.report

        def replace(_fn: Any = None) -> None:
            setattr(oc, attr, nv)
            for fn in _functions_in(nv):
                self.retarget(fn)

        if isinstance(ov, types.FunctionType) and isinstance(nv, types.FunctionType):
            self.patch_function(q, ov, nv, replace)
        elif isinstance(ov, (staticmethod, classmethod)) and type(ov) is type(nv) \
                and isinstance(ov.__func__, types.FunctionType) and isinstance(nv.__func__, types.FunctionType):
            self.patch_function(q, ov.__func__, nv.__func__, replace)
        elif isinstance(ov, functools.cached_property) and type(ov) is type(nv):
            self.patch_function(q, ov.func, nv.func, replace)
        elif isinstance(ov, property) and type(ov) is type(nv):
            parts = [(getattr(ov, p), getattr(nv, p), s) for p, s in
                     (("fget", ""), ("fset", ".setter"), ("fdel", ".deleter"))]
            if all((a is None) == (b is None) for a, b, _ in parts) and all(
                    isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType)
                    for a, b, _ in parts if a is not None):
                for a, b, suffix in parts:
                    if a is not None:
                        self.patch_function(q + suffix, a, b, replace)
            else:
                replace()
                report.patched.append(q)
        elif isinstance(ov, type) and isinstance(nv, type) and ov.__module__ == nv.__module__ == self.modname:
            self.patch_class(q, ov, nv)
        elif not isinstance(ov, (types.FunctionType, type, *_DESCRIPTORS)) \
                and not isinstance(nv, (types.FunctionType, type, *_DESCRIPTORS)):
            if attr.startswith("__") and attr.endswith("__"):
                setattr(oc, attr, nv)  # __hash__, __match_args__, ...: part of the definition
            elif self.differs(attr, ov, nv):
                report.kept.append(q)  # class state (counters, registries) stays
        else:
            replace()
            report.skipped.append((q, f"changed from {type(ov).__name__} to {type(nv).__name__}: replaced on "
                                      f"the class; references held elsewhere keep the old object"))
