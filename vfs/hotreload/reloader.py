"""`Reloader`: which modules a tree owns, reloading them in place, refusing while their code runs."""
from __future__ import annotations

import importlib.machinery
import linecache
import logging
import os
import sys
import threading
import time
import traceback
import types
import weakref
from typing import Any, Iterable

from .patch import _EMPTY, _Patch
from .report import ReloadReport

log = logging.getLogger(__name__)


def _loader_of(module: types.ModuleType) -> Any:
    spec = getattr(module, "__spec__", None)
    loader = getattr(spec, "loader", None)
    return loader if loader is not None else getattr(module, "__loader__", None)


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
