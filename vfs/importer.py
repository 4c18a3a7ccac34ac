"""Library mode without FUSE: import Python modules straight from a Session's buffers.

`SessionFinder` is a meta-path finder (`importlib.abc.MetaPathFinder`) whose
`SessionLoader`s read source from a `Session` (`read_file`), so a program can
create a module that exists only in memory, import it, change it and
hot-reload it (`vfs.hotreload`) on a machine with no FUSE at all.

What the hook serves, and what it does not:
- only names whose files lie under the finder's *root* directory inside the
  session: `a` is `ROOT/a/__init__.py` (a package), else `ROOT/a.py` (a
  module), else the directory `ROOT/a/` (served as an empty package — not a
  namespace package: it never merges with directories on `sys.path`);
  `a.b` only when `a` itself came from this finder;
- every other name falls through to the next finder on `sys.meta_path`;
- a name already in `sys.modules` is never looked up again (that is Python's
  import system, not us): `ModuleRegistry.import_module` refuses to hand back
  a module of that name that did not come from its session.
Modules get `__file__` = `vfs-session://LABEL/PATH`, a name that is not a file
on disk; tracebacks still show their lines (the loader has `get_source`).  No
bytecode is cached anywhere.

`MemoryBase` is an in-memory `vfs.base.Base` (empty by default), so
`Session(MemoryBase())` is a workspace with nothing on disk behind it.
`ModuleRegistry` puts the three together with a `vfs.hotreload.Reloader`:

    registry = ModuleRegistry()
    registry.create_module("math_utils", "def add(a, b):\\n    return a + b\\n")
    math = registry.import_module("math_utils")
    registry.update_module("math_utils", "def add(a, b):\\n    return a + b + 0\\n")
    registry.reload_module("math_utils")   # `math.add` now runs the new code

Thread safety: the finder and loaders only call the session's public methods,
which take the session lock; import-system locking is Python's.
"""
from __future__ import annotations

import errno
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import logging
import os
import stat
import sys
import time
from types import ModuleType
from typing import Callable, Mapping, Sequence

from .base import BaseStat
from .errors import FsError
from .session import Session, check_rel_path

__all__ = ["MemoryBase", "SessionFinder", "SessionLoader", "ModuleRegistry", "URL_SCHEME"]

log = logging.getLogger(__name__)

URL_SCHEME = "vfs-session://"
_labels = itertools.count(1)


class MemoryBase:
    """A read-only `vfs.base.Base` held in memory: `{path: bytes}`, directories implied.

    The empty default is the base of a workspace that exists only in memory.
    Like every base it never changes; edits live in the Session above it.
    Thread-safe: nothing in it changes after construction.
    """

    def __init__(self, files: Mapping[str, bytes] | None = None) -> None:
        self._files = {check_rel_path(p): bytes(data) for p, data in (files or {}).items()}
        self._dirs: dict[str, set[str]] = {"": set()}
        for path in self._files:
            parts = path.split("/")
            for i in range(len(parts)):
                parent, name = "/".join(parts[:i]), parts[i]
                self._dirs.setdefault(parent, set()).add(name)
                if i < len(parts) - 1:
                    self._dirs.setdefault("/".join(parts[:i + 1]), set())
        self._mtime_ns = time.time_ns()
        self._uid, self._gid = os.getuid(), os.getgid()

    def stat(self, rel: str) -> BaseStat | None:
        if rel in self._dirs:
            return BaseStat(stat.S_IFDIR | 0o755, 0, self._mtime_ns, self._uid, self._gid)
        if rel in self._files:
            return BaseStat(stat.S_IFREG | 0o644, len(self._files[rel]), self._mtime_ns, self._uid, self._gid)
        return None

    def listdir(self, rel: str) -> list[str]:
        if rel in self._files:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", rel)
        if rel not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", rel)
        return list(self._dirs[rel])

    def read(self, rel: str) -> bytes:
        try:
            return self._files[rel]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such file", rel) from None

    def readlink(self, rel: str) -> bytes:
        raise OSError(errno.EINVAL, "not a symlink", rel)


class SessionLoader(importlib.abc.Loader):
    """Loads one module from `session` path `rel` (see module docstring).

    `rel` is None for a directory served as an empty package.  The source is
    read at each `exec_module`/`get_source`, so a reload sees the buffer as it
    is now.
    """

    def __init__(self, session: Session, fullname: str, rel: str | None, origin: str,
                 is_package: bool) -> None:
        self.session = session
        self.fullname = fullname
        self.rel = rel
        self.origin = origin
        self._is_package = is_package

    def __repr__(self) -> str:
        return f"<SessionLoader {self.fullname} from {self.origin}>"

    def _check(self, fullname: str) -> None:
        if fullname != self.fullname:
            raise ImportError(f"loader for {self.fullname} cannot load {fullname}", name=fullname)

    def is_package(self, fullname: str) -> bool:
        self._check(fullname)
        return self._is_package

    def get_filename(self, fullname: str) -> str:
        self._check(fullname)
        return self.origin

    def get_source(self, fullname: str) -> str:
        self._check(fullname)
        if self.rel is None:
            return ""
        try:
            data = self.session.read_file(self.rel)
        except FsError as exc:
            raise ImportError(f"cannot read {self.rel} for {fullname}: {exc}", name=fullname) from None
        return importlib.util.decode_source(data)

    def get_code(self, fullname: str):
        return compile(self.get_source(fullname), self.origin, "exec", dont_inherit=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        exec(self.get_code(module.__name__), module.__dict__)


class SessionFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder serving the modules under `root` in `session`.

    Only names under the root are served (see module docstring); `install()`
    puts the finder on `sys.meta_path` (first by default, so the session's
    modules shadow same-named modules elsewhere, as `sys.path[0]` would).
    """

    def __init__(self, session: Session, root: str = "", label: str | None = None) -> None:
        self.session = session
        self.root = check_rel_path(root) if root else ""
        self.label = label or f"memory-{next(_labels)}"

    def __repr__(self) -> str:
        return f"<SessionFinder {URL_SCHEME}{self.label}/{self.root}>"

    def url(self, rel: str) -> str:
        return f"{URL_SCHEME}{self.label}/{rel}"

    def install(self, first: bool = True) -> None:
        if self in sys.meta_path:
            return
        if first:
            sys.meta_path.insert(0, self)
        else:
            sys.meta_path.append(self)

    def uninstall(self) -> None:
        while self in sys.meta_path:
            sys.meta_path.remove(self)

    def owns(self, module: ModuleType) -> bool:
        """True when `module` was loaded by this finder's session."""
        spec = getattr(module, "__spec__", None)
        loader = getattr(spec, "loader", None)
        return isinstance(loader, SessionLoader) and loader.session is self.session

    def _kind(self, rel: str) -> str | None:
        """'file', 'dir' or None for session path `rel`."""
        try:
            if not self.session.exists(rel):
                return None
            self.session.read_file(rel)
        except FsError as exc:
            if exc.errno == errno.EISDIR:
                return "dir"
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EINVAL):
                return None
            raise
        return "file"

    def locate(self, fullname: str) -> tuple[str, str | None, bool] | None:
        """(directory-or-file path, source path or None, is_package) of `fullname`, or None."""
        parts = fullname.split(".")
        if not all(p.isidentifier() for p in parts):
            return None
        base = "/".join([self.root, *parts]) if self.root else "/".join(parts)
        if self._kind(base + "/__init__.py") == "file":
            return base, base + "/__init__.py", True
        if self._kind(base + ".py") == "file":
            return base + ".py", base + ".py", False
        if self._kind(base) == "dir":
            return base, None, True
        return None

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        parent, _, _ = fullname.rpartition(".")
        if parent and not (parent in sys.modules and self.owns(sys.modules[parent])):
            return None  # submodules only of our own packages
        found = self.locate(fullname)
        if found is None:
            return None
        where, rel, is_package = found
        origin = self.url(rel if rel is not None else where + "/")
        loader = SessionLoader(self.session, fullname, rel, origin, is_package)
        spec = importlib.machinery.ModuleSpec(fullname, loader, origin=origin, is_package=is_package)
        spec.has_location = True  # sets __file__
        if is_package:
            spec.submodule_search_locations = [self.url(where)]
        return spec

    def invalidate_caches(self) -> None:
        pass  # nothing cached: every lookup asks the session


class ModuleRegistry:
    """Modules that exist only in memory: a Session, the import hook, a hot reloader.

    By default the session is `Session(MemoryBase())` — an empty workspace in
    memory; pass any Session (e.g. `Workspace.open(dir).session`) to serve its
    files instead.  The hook only serves names under `root` in that session
    (see module docstring).  Module names map to paths as the import system
    does: `a.b` is `ROOT/a/b.py` (or `ROOT/a/b/__init__.py` for a package).

    `close()` (or leaving a `with` block) removes the hook and drops the
    modules it served from `sys.modules`.  Not thread-safe as a whole: each
    call is as thread-safe as the import system and the session are.
    """

    def __init__(self, session: Session | None = None, *, root: str = "", first: bool = True,
                 label: str | None = None) -> None:
        from .hotreload import Reloader  # hotreload does not need us; avoid the import cycle

        self.session = session if session is not None else Session(MemoryBase())
        self.finder = SessionFinder(self.session, root, label)
        self.root = self.finder.root
        self.reloader = Reloader(self.session)
        self.finder.install(first)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.finder.uninstall()
        for name, module in list(sys.modules.items()):
            if module is not None and self.finder.owns(module):
                del sys.modules[name]

    def __enter__(self) -> "ModuleRegistry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ sources
    def path_of(self, name: str) -> str | None:
        """Session path of module `name`'s source, or None when it has none."""
        found = self.finder.locate(name)
        return found[1] if found else None

    def _new_path(self, name: str, package: bool) -> str:
        parts = name.split(".")
        if not parts or not all(p.isidentifier() for p in parts):
            raise ValueError(f"not a module name: {name!r}")
        rel = "/".join(filter(None, [self.root, *parts]))
        return rel + "/__init__.py" if package else rel + ".py"

    @staticmethod
    def _bytes(source: str | bytes) -> bytes:
        return source.encode() if isinstance(source, str) else bytes(source)

    def create_module(self, name: str, source: str | bytes = "") -> str:
        """Create module `name` (parent directories as needed); returns its session path.

        Raises FileExistsError when the module already exists.
        """
        return self._create(name, source, package=False)

    def create_package(self, name: str, source: str | bytes = "") -> str:
        """Create package `name` with `source` as its `__init__.py`; returns that path."""
        return self._create(name, source, package=True)

    def _create(self, name: str, source: str | bytes, package: bool) -> str:
        existing = self.path_of(name)
        if existing is not None:
            raise FileExistsError(errno.EEXIST, f"module {name} already exists", existing)
        rel = self._new_path(name, package)
        self.session.write_file(rel, self._bytes(source))
        return rel

    def update_module(self, name: str, source: str | bytes) -> str:
        """Replace the source of existing module `name` (live modules change at `reload_module`)."""
        rel = self.path_of(name)
        if rel is None:
            raise FileNotFoundError(errno.ENOENT, f"no module {name} in the registry")
        self.session.write_file(rel, self._bytes(source))
        return rel

    def source(self, name: str) -> str:
        rel = self.path_of(name)
        if rel is None:
            raise FileNotFoundError(errno.ENOENT, f"no module {name} in the registry")
        return importlib.util.decode_source(self.session.read_file(rel))

    # ------------------------------------------------------------------ importing
    def import_module(self, name: str) -> ModuleType:
        """Import `name` from the session (or return it when already imported from it).

        Raises ImportError when a module of that name was imported from elsewhere.
        """
        module = importlib.import_module(name)
        if not self.finder.owns(module):
            where = getattr(module, "__file__", None) or "built in"
            raise ImportError(f"{name} is already imported from {where}, not from this registry", name=name)
        return module

    def reload_module(self, name: str):
        """Hot-reload imported module `name` in place; returns a `vfs.hotreload.ReloadReport`."""
        module = sys.modules.get(name)
        if module is None or not self.finder.owns(module):
            raise LookupError(f"{name} is not imported from this registry")
        return self.reloader.reload(module)

    def watch(self, callback: Callable | None = None):
        """Reload imported modules after every change of the session (see `vfs.hotreload.watch_session`)."""
        from .hotreload import watch_session

        return watch_session(self.session, callback, reloader=self.reloader)
