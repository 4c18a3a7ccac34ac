"""The session's semantic index: `index.Index` kept live over the session's buffers.

`Semantics` subscribes to the session's changes and schedules a re-extraction
of each changed Python file on the index's worker threads (never on the FUSE
loop).  Content is read from the session without loading buffers: untouched
files are read straight from the base, so indexing a large tree does not
fill memory.  The initial build lists the tree from the base (plus the
overlay) on a background thread, parses on both cores, and reuses the
content-addressed cache in the state directory, so a second mount of an
unchanged tree parses nothing.

Every query first waits (bounded by `FRESH_TIMEOUT`) until all scheduled
re-extractions are applied, so answers reflect the current buffers.

Thread safety: every method may be called from any thread; call queries from
a worker thread, not the FUSE loop, because they may wait.
"""
from __future__ import annotations

import errno
import logging
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from index import (Index, LiveIndex, render_definitions, render_paths, render_references,
                   render_symbols)

from .errors import FsError
from .session import check_rel_path

if TYPE_CHECKING:
    from .session import Change, Session

__all__ = ["Semantics", "FRESH_TIMEOUT"]

log = logging.getLogger(__name__)

FRESH_TIMEOUT = 10.0
SUFFIXES = (".py", ".pyi")


class Semantics:
    def __init__(self, session: "Session", cache_dir: Path | None, workers: int = 2, lazy: bool = False) -> None:
        self.session = session
        self.lazy = lazy  # lazy_parse: build on the first query instead of at mount
        self.index = Index(cache_dir=cache_dir)
        self.live = LiveIndex(self.index, self._read, workers=workers)
        self._unsubscribe = session.subscribe(self._on_change)
        self._lister: threading.Thread | None = None
        self._build_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.live.start()
        if not self.lazy:
            self._start_build()

    def _start_build(self) -> None:
        with self._build_lock:
            if self._lister is not None:
                return
            self._lister = threading.Thread(target=self._initial_build, name="vfs-index-list", daemon=True)
            self._lister.start()

    def close(self) -> None:
        self._unsubscribe()
        self.live.close()
        try:
            self.index.save()
        except Exception:  # the cache is an optimisation; never fail an unmount for it
            log.exception("saving the index cache failed")

    def _initial_build(self) -> None:
        try:
            paths = self.source_paths()
        except Exception:
            log.exception("listing the tree for the index failed")
            return
        self.live.initial_build(paths)

    def source_paths(self) -> list[str]:
        """Every indexable path of the tree: the base's, minus deletions, plus the overlay's."""
        s = self.session
        base = s.base
        passthrough = s.tree.passthrough
        out: set[str] = set()
        stack = [""]
        while stack:
            d = stack.pop()
            try:
                names = base.listdir(d)
            except OSError:
                continue
            for name in names:
                rel = f"{d}/{name}" if d else name
                st = base.stat(rel)
                if st is None:
                    continue
                is_dir = stat.S_ISDIR(st.mode)
                if passthrough is not None and passthrough(rel, is_dir):
                    continue
                if is_dir:
                    stack.append(rel)
                elif stat.S_ISREG(st.mode) and rel.endswith(SUFFIXES):
                    out.add(rel)
        with s.lock:
            for path, state in s.overlay.items():
                if state is None:
                    out.discard(path)
                    out = {p for p in out if not p.startswith(path + "/")}
                elif state["kind"] == "file" and path.endswith(SUFFIXES):
                    out.add(path)
        return sorted(out)

    def _read(self, path: str) -> bytes | None:
        s = self.session
        with s.lock:
            node = s.tree.try_resolve(path)
            if node is None or node.disk or not node.is_reg:
                return None
            if node.data is not None:
                return bytes(node.data)
            base_rel = node.base_rel
        return s.base.read(base_rel) if base_rel is not None else b""

    def _on_change(self, change: "Change") -> None:
        for path in change.paths:
            if path.endswith(SUFFIXES):
                self.live.changed(path)
            else:
                # Perhaps a directory that moved or vanished: every file below it changed path.
                self._rescan_below(path)

    def _rescan_below(self, path: str) -> None:
        with self.session.lock:
            node = self.session.tree.try_resolve(path)
            if node is not None and not node.is_dir:
                return  # a plain file (the common case): nothing below it to re-key
        prefix = path + "/"
        for known in self.index.paths():
            if known.startswith(prefix):
                self.live.changed(known)
        with self.session.lock:
            node = self.session.tree.try_resolve(path)
            if node is None or not node.is_dir:
                return
            for sub, child in self.session.tree.walk(node, path):
                if child.is_reg and sub.endswith(SUFFIXES):
                    self.live.changed(sub)

    # ------------------------------------------------------------------ queries
    def fresh(self) -> None:
        if self._lister is None:
            self._start_build()  # lazy_parse: the first query builds
        lister = self._lister
        if lister is not None and lister.is_alive():
            lister.join(FRESH_TIMEOUT)  # the initial build is not even scheduled yet
        if not self.live.wait_fresh(FRESH_TIMEOUT):
            log.warning("index query answered before pending reindexing finished (timeout)")

    def status(self) -> dict:
        st = dict(self.live.status())
        st.update({k: v for k, v in self.index.stats().items() if k in ("files", "definitions", "references",
                                                                       "parsed", "cache_hits", "lines")})
        return st

    def symbols(self, path: str) -> list:
        path = check_rel_path(path)
        self.fresh()
        try:
            return self.index.symbols(path)
        except KeyError:
            raise FsError(errno.ENOENT, f"not indexed: {path}") from None

    def symbols_text(self, path: str) -> bytes:
        defs = self.symbols(path)
        return render_symbols(defs, self.index.is_stale(path)).encode("utf-8", "surrogateescape")

    def definitions(self, name: str) -> list:
        self.fresh()
        return self.index.definitions(name)

    def definitions_text(self, name: str) -> bytes:
        defs = self.definitions(name)
        if not defs:
            raise FsError(errno.ENOENT, f"no definition of {name}")
        return render_definitions(defs).encode("utf-8", "surrogateescape")

    def references(self, qualname: str) -> list:
        self.fresh()
        return self.index.references(qualname)

    def references_text(self, qualname: str) -> bytes:
        refs = self.references(qualname)
        if not refs and not self.index.definitions(qualname):
            raise FsError(errno.ENOENT, f"no symbol {qualname}")
        return render_references(refs, self._line_of).encode("utf-8", "surrogateescape")

    def _line_of(self, path: str, line: int) -> str:
        data = self._read(path) or b""
        lines = data.split(b"\n")
        if 1 <= line <= len(lines):
            return lines[line - 1].rstrip(b"\r").decode("utf-8", "replace")
        return ""

    def _known(self, path: str) -> str:
        path = check_rel_path(path)
        self.fresh()
        if path not in set(self.index.paths()):
            raise FsError(errno.ENOENT, f"not indexed: {path}")
        return path

    def dependencies(self, path: str) -> list[str]:
        return self.index.dependencies(self._known(path))

    def dependents(self, path: str, transitive: bool = False) -> list[str]:
        return self.index.dependents(self._known(path), transitive=transitive)

    def paths_text(self, paths: list[str]) -> bytes:
        return render_paths(paths).encode("utf-8", "surrogateescape")

    def affected_tests(self) -> list[str]:
        self.fresh()
        with self.session.lock:
            changed = list(self.session.overlay)
        return self.index.affected_tests(changed)

    def errors(self) -> list[str]:
        self.fresh()
        return self.index.errors()
