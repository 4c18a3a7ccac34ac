"""Hot module replacement: patch live modules in place when their source changes.

A `Reloader` serves the modules of one workspace: those whose `__file__` lies
under a directory (a vfs mount, or any directory), or those loaded from a
`Session` by `vfs.importer`.  `reload(module)` runs the new source and then
patches the module *in place*:

- a changed function keeps its identity and gets the new `__code__`,
  `__defaults__`, `__kwdefaults__`, `__doc__`, `__annotations__` and
  `__dict__`, so every reference held elsewhere (`from m import f`, callbacks,
  registries) runs the new code.  Decorators built with closures
  (`functools.wraps`) and `functools.lru_cache` are followed to the function
  they wrap (the cache is cleared);
- a changed class keeps its identity: methods (plain, static, class,
  properties, nested classes) are patched, added and removed on it, so
  existing instances and bound methods see the new behaviour;
- module state is kept: a module-level (or class-level) value that is not a
  function or class keeps its old value even when the new source assigns
  another (listed in `ReloadReport.kept`); dunder values (`__all__`,
  `__doc__`, `__version__`) take the new value; new names appear; functions
  and classes no longer defined are removed; imports are rebound.

What cannot be patched is reported in `ReloadReport.skipped`, never ignored:
a function running on a stack (an activation on the reloader's caller's
stack, or one that stays on another thread's stack for `wait_running`: a
loop, a blocking call) keeps its old code — calls that merely come and go
are patched; a class whose `__slots__` or metaclass changed is left as it
was; a function whose closure cells changed (e.g. a method that starts using `super()`) cannot take
the new code in place, so the new function is bound in its place (module or
class attribute) and references held elsewhere keep the old code; a name that
changed kind (a function that became a value) is rebound; C extensions are
not touched.  A module's import-time side effects (registering into another
module, say) run again.  A reload whose source does not compile or whose module code
raises changes nothing and reports `error` (the module namespace, which the
new code ran in, is put back).

Not supported: functions reachable only through data (lambdas in a dict),
instances of classes whose layout changed, other modules' `from m import *`
copies of names added later, suspended generators (they finish with the code
they started with).

`watch_mount(MOUNT)` follows `MOUNT/.vfs/events` in a thread and reloads the
imported modules whose files an event names; `watch_session(session)` does
the same in-process from the session's change listeners.

Thread safety: reloads are serialised by the reloader's lock.  The new code
runs in the live module namespace (as `importlib.reload` does), so for the
duration of that run other threads may see new definitions and reset values;
afterwards each name is restored or patched one by one.  Each single patch is
atomic under the GIL; a reload as a whole is not.
"""
from __future__ import annotations

import enum
import functools
import importlib.machinery
import inspect
import json
import linecache
import logging
import os
import queue
import sys
import threading
import time
import traceback
import types
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

__all__ = ["Reloader", "ReloadReport", "Watcher", "watch_mount", "watch_session"]

log = logging.getLogger(__name__)

# Attributes the import system owns: a reload never changes them.
_IMPORT_DUNDERS = frozenset({"__name__", "__file__", "__spec__", "__loader__", "__package__", "__path__",
                             "__cached__", "__builtins__"})
# Class attributes that are part of the class object rather than its definitions.
_CLASS_SKIP = frozenset({"__dict__", "__weakref__", "__module__", "__qualname__", "__slots__", "__doc__"})
_DESCRIPTORS = (staticmethod, classmethod, property, functools.cached_property)
_SLOT_TYPES = (types.MemberDescriptorType, types.GetSetDescriptorType)
_EMPTY = object()


@dataclass
class ReloadReport:
    """What one reload of one module did.

    `patched`, `added`, `removed` and `kept` hold qualified names (`f`,
    `Widget.describe`); `kept` lists values whose old content was kept although
    the new source assigns something else; `skipped` pairs a name with why it
    was not patched.  `error` is set when the new source failed to compile or
    run: then nothing changed.  Watchers fill `seq` and `event_time` (the
    change that triggered the reload, as the session recorded it).
    """

    module: str
    patched: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    seq: int | None = None
    event_time: float | None = None

    @property
    def ok(self) -> bool:
        """True when everything in the new source took effect."""
        return self.error is None and not self.skipped

    def summary(self) -> str:
        if self.error is not None:
            first = self.error.strip().splitlines()[-1] if self.error.strip() else self.error
            return f"{self.module}: reload failed, old code kept: {first}"
        parts = [f"{k} {', '.join(v)}" for k, v in (("patched", self.patched), ("added", self.added),
                                                    ("removed", self.removed), ("kept", self.kept)) if v]
        parts += [f"skipped {name} ({why})" for name, why in self.skipped]
        return f"{self.module}: " + ("; ".join(parts) if parts else "no change")


def _loader_of(module: types.ModuleType) -> Any:
    spec = getattr(module, "__spec__", None)
    loader = getattr(spec, "loader", None)
    return loader if loader is not None else getattr(module, "__loader__", None)


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


class Reloader:
    """Reloads the modules of one workspace in place (see module docstring).

    `root` is a directory (modules whose `__file__` lies below it) or a
    `Session` (modules `vfs.importer` loaded from it).  `wait_running` is how
    long a reload waits for another thread to leave a function before
    reporting it as running.
    """

    def __init__(self, root: Any, *, wait_running: float = 0.05) -> None:
        if isinstance(root, (str, os.PathLike)):
            self.session = None
            given = os.path.abspath(os.fspath(root))
            self.root: str | None = given
            self._prefixes = tuple(dict.fromkeys(p.rstrip(os.sep) for p in (given, os.path.realpath(given))))
        else:
            self.session = root
            self.root = None
            self._prefixes = ()
        self.wait_running = wait_running
        self._lock = threading.RLock()
        # Every function object that stands for (module, qualname): the original and
        # the new ones a reload bound somewhere.  Each reload patches all that live.
        self._families: dict[tuple[str, str], weakref.WeakSet] = {}

    def __repr__(self) -> str:
        return f"<Reloader {self.root}>" if self.session is None else f"<Reloader {self.session!r}>"

    # ------------------------------------------------------------------ which modules
    def rel_of(self, module: types.ModuleType) -> str | None:
        """The workspace-relative path of `module`'s source, or None when not ours."""
        if self.session is not None:
            loader = _loader_of(module)
            return getattr(loader, "rel", None) if getattr(loader, "session", None) is self.session else None
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):
            return None
        path = os.path.abspath(file)
        for prefix in self._prefixes:
            if path.startswith(prefix + os.sep):
                return path[len(prefix) + 1:]
        return None

    def owns(self, module: types.ModuleType) -> bool:
        if self.session is not None:
            return getattr(_loader_of(module), "session", None) is self.session
        return self.rel_of(module) is not None

    def _rel_path(self, path: str | os.PathLike[str]) -> str:
        text = os.fspath(path)
        if self.session is None and os.path.isabs(text):
            text = os.path.abspath(text)
            for prefix in self._prefixes:
                if text.startswith(prefix + os.sep):
                    return text[len(prefix) + 1:]
            return text
        text = os.path.normpath(text)
        return "" if text == "." else text

    def modules_for(self, paths: Iterable[str]) -> list[types.ModuleType]:
        """Imported modules of this workspace whose source is one of `paths` (workspace-relative).

        Submodules come before their packages (deepest name first).
        """
        wanted = {self._rel_path(p) for p in paths if p}
        found = [m for m in list(sys.modules.values())
                 if isinstance(m, types.ModuleType) and self.rel_of(m) in wanted]
        return sorted(found, key=lambda m: (-m.__name__.count("."), m.__name__))

    # ------------------------------------------------------------------ reloading
    def reload(self, target: types.ModuleType | str | os.PathLike[str]) -> ReloadReport:
        """Reload a module given as object, name (in `sys.modules`) or source path.

        A path is workspace-relative, or absolute under the root.  Raises
        LookupError when no imported module of this workspace matches.
        """
        if isinstance(target, types.ModuleType):
            return self._reload_module(target)
        if isinstance(target, str) and target in sys.modules:
            return self._reload_module(sys.modules[target])
        modules = self.modules_for([os.fspath(target)])
        if not modules:
            raise LookupError(f"no imported module for {os.fspath(target)!r} in {self!r}")
        return [self._reload_module(m) for m in modules][0]

    def reload_paths(self, paths: Iterable[str]) -> list[ReloadReport]:
        """Reload every imported module whose source is among `paths`; the others are ignored."""
        return [self._reload_module(m) for m in self.modules_for(paths)]

    def _reload_module(self, module: types.ModuleType) -> ReloadReport:
        report = ReloadReport(getattr(module, "__name__", "?"))
        started = time.perf_counter()
        with self._lock:
            try:
                self._reload_into(module, report)
            finally:
                report.seconds = time.perf_counter() - started
        level = logging.WARNING if not report.ok else logging.INFO
        log.log(level, "%s (%.1f ms)", report.summary(), report.seconds * 1e3)
        return report

    def _reload_into(self, module: types.ModuleType, report: ReloadReport) -> None:
        name = report.module
        if not self.owns(module):
            report.error = f"{name} is not a module of {self!r}"
            return
        loader = _loader_of(module)
        file = getattr(module, "__file__", None)
        if isinstance(loader, importlib.machinery.ExtensionFileLoader) or (
                isinstance(file, str) and file.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))):
            report.skipped.append((name, "C extension module: its code cannot be patched"))
            return
        get_source = getattr(loader, "get_source", None)
        try:
            source = get_source(name) if get_source is not None else None
        except (ImportError, OSError) as exc:
            report.error = f"cannot read the source of {name}: {exc}"
            return
        if source is None:
            report.skipped.append((name, "no Python source: cannot be patched"))
            return
        filename = file if isinstance(file, str) else f"<{name}>"
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            report.error = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
            return
        ns = module.__dict__
        old = dict(ns)
        try:
            exec(code, ns)
        except BaseException as exc:
            for key in [k for k in ns if k not in old]:
                del ns[key]
            for key, value in old.items():
                if ns.get(key, _EMPTY) is not value:
                    ns[key] = value
            if not isinstance(exc, (Exception, SystemExit)):
                raise  # KeyboardInterrupt & co: the namespace is back, the interruption goes on
            report.error = traceback.format_exc().rstrip()
            return
        new = dict(ns)
        _Patch(self, module, old, new, report).run()
        linecache.cache.pop(filename, None)  # tracebacks must show the new lines

    # ------------------------------------------------------------------ stacks and families
    def _family(self, module: str, qualname: str, fn: types.FunctionType) -> weakref.WeakSet:
        family = self._families.setdefault((module, qualname), weakref.WeakSet())
        family.add(fn)
        return family

    def running(self, codes: Iterable[types.CodeType]) -> str | None:
        """Why code objects `codes` cannot be replaced now (where they run), or None.

        A function counts as running when an activation of it is on the
        caller's own stack, or when one activation stays on another thread's
        stack for `wait_running` (a loop, a blocking call).  Calls that come
        and go while we look do not count: the next call takes the new code.
        """
        ids = {id(c) for c in codes}
        if not ids:
            return None
        me = threading.get_ident()
        deadline = time.monotonic() + self.wait_running
        # id(frame) -> (thread id, frame): the activations seen in every look so far.
        # Holding the frames keeps their ids from being reused between looks.
        alive: dict[int, tuple[int, types.FrameType]] | None = None
        while True:
            found: dict[int, tuple[int, types.FrameType]] = {}
            for tid, top in sys._current_frames().items():
                f = top
                while f is not None:
                    if id(f.f_code) in ids:
                        if tid == me:
                            return self._running_reason({me})
                        found[id(f)] = (tid, f)
                    f = f.f_back
            top = f = None
            alive = found if alive is None else {k: v for k, v in alive.items() if k in found}
            if not alive:
                return None
            if time.monotonic() >= deadline:
                return self._running_reason({tid for tid, _ in alive.values()})
            time.sleep(0.001)

    @staticmethod
    def _running_reason(tids: set[int]) -> str:
        names = {t.ident: t.name for t in threading.enumerate()}
        who = ", ".join(sorted(names.get(t, str(t)) for t in tids))
        return f"running on the stack (thread {who}): not patched, the old code stays until a later reload"


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


# ---------------------------------------------------------------------- watchers
class Watcher:
    """A daemon thread that hot-reloads the modules named by each change.

    `reports` keeps the last 256 reports; `seq` is the last change handled;
    `wait(seq)` blocks until a change is handled.  `callback(report)` runs on
    the watcher's thread after each module's reload (exceptions are logged).
    """

    def __init__(self, reloader: Reloader, callback: Callable[[ReloadReport], Any] | None, name: str) -> None:
        self.reloader = reloader
        self.callback = callback
        self.reports: deque[ReloadReport] = deque(maxlen=256)
        self.seq = 0
        self.error: BaseException | None = None  # why the thread ended early, if it did
        self._cond = threading.Condition()
        self._stopping = False
        self._done = False
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported through `error`; the thread must end cleanly
            log.exception("%s stopped", self.thread.name)
            self.error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _run(self) -> None:
        raise NotImplementedError

    def _handle(self, seq: int, paths: Iterable[str], event_time: float | None) -> list[ReloadReport]:
        reports = self.reloader.reload_paths(paths)
        for report in reports:
            report.seq, report.event_time = seq, event_time
            self.reports.append(report)
            if self.callback is not None:
                try:
                    self.callback(report)
                except Exception:  # a callback must not end the watcher
                    log.exception("hot-reload callback failed")
        with self._cond:
            self.seq = max(self.seq, seq)
            self._cond.notify_all()
        return reports

    @property
    def alive(self) -> bool:
        return not self._done

    def wait(self, seq: int, timeout: float = 5.0) -> bool:
        """Block until change `seq` was handled (True) or the watcher ended / timed out (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self.seq >= seq or self._done, timeout)
            return self.seq >= seq

    def stop(self, timeout: float = 1.0) -> None:
        self._stopping = True


class _MountWatcher(Watcher):
    """Follows MOUNT/.vfs/events.

    The events file is opened by the watcher thread itself: the daemon
    answers a blocked stream read when its opener is being killed, so a
    process exiting with this thread blocked is not held up.  `stop()` is
    best effort: the thread notices at the next event or when the mount ends.
    """

    def __init__(self, mount: str, reloader: Reloader, callback: Callable | None) -> None:
        super().__init__(reloader, callback, f"vfs-hotreload {mount}")
        self.mount = mount
        self.events = os.path.join(mount, ".vfs", "events")
        self._opened = threading.Event()

    def _run(self) -> None:
        try:
            fd = os.open(self.events, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self.error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            buf = b""
            while not self._stopping:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    return  # the mount is going away
                *lines, buf = (buf + chunk).split(b"\n")
                events = []
                for line in lines:
                    try:
                        events.append(json.loads(line))
                    except ValueError:
                        log.warning("bad line in %s: %r", self.events, line[:200])
                if events and not self._stopping:
                    # One reload per module for everything that arrived together.
                    paths = [p for e in events for p in [*e.get("paths", ()), e.get("path2")] if p]
                    self._handle(max(e.get("seq", 0) for e in events), paths, events[-1].get("time"))
        finally:
            os.close(fd)


class _SessionWatcher(Watcher):
    """Follows a Session's change listeners; reloads on its own thread, never the writer's."""

    def __init__(self, session: Any, reloader: Reloader, callback: Callable | None) -> None:
        super().__init__(reloader, callback, "vfs-hotreload session")
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._unsubscribe = session.subscribe(self._queue.put)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            changes = [c for c in batch if c is not None]
            if changes:
                paths = [p for c in changes for p in [*c.paths, c.path2] if p]
                self._handle(max(c.seq for c in changes), paths, changes[-1].time)
            if None in batch:
                return

    def stop(self, timeout: float = 1.0) -> None:
        super().stop(timeout)
        self._unsubscribe()
        self._queue.put(None)
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


def watch_mount(mount_path: str | os.PathLike[str], callback: Callable[[ReloadReport], Any] | None = None,
                *, reloader: Reloader | None = None, timeout: float = 5.0) -> Watcher:
    """Hot-reload the imported modules under a vfs mount whenever `.vfs/events` names their files.

    Returns once the events file is open, so every change made after the call
    is seen.  Raises FileNotFoundError when `mount_path` is not a vfs mount.
    """
    mount = os.path.abspath(os.fspath(mount_path))
    if not os.path.exists(os.path.join(mount, ".vfs", "events")):
        raise FileNotFoundError(f"not a vfs mount (no .vfs/events): {mount}")
    watcher = _MountWatcher(mount, reloader or Reloader(mount), callback)
    watcher.thread.start()
    if not watcher._opened.wait(timeout):
        raise TimeoutError(f"opening {watcher.events} took more than {timeout} s")
    if watcher.error is not None:
        raise watcher.error
    return watcher


def watch_session(session: Any, callback: Callable[[ReloadReport], Any] | None = None,
                  *, reloader: Reloader | None = None) -> Watcher:
    """Hot-reload the modules `vfs.importer` loaded from `session` after each of its changes.

    Reloads run on the watcher's thread; `watcher.wait(change.seq)` waits for one.
    """
    watcher = _SessionWatcher(session, reloader or Reloader(session), callback)
    watcher.thread.start()
    return watcher
