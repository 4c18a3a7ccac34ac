"""Keeping an `Index` current in the background.

The session calls `LiveIndex.changed` for every path it mutates; this only
records the path (repeats coalesce) and returns, so it is safe on the FUSE
loop.  A path is taken up only after `settle` seconds without a new change
(5 ms by default): the editor that caused the change gets its reply before a
worker competes with it for the interpreter, and a burst of writes costs one
re-extraction.  `wait_fresh` does not wait for the settle time.  Worker threads read the current content through ``read(path)`` (None
means deleted) and apply it with `Index.update` / `Index.remove`.  Because
content is read when the work is done, not when it is scheduled, a burst of
writes to one file costs one re-extraction.

Ordering: a path is never processed by two workers at once; a path changed
while it is being processed is processed again afterwards.  The initial
bulk build runs on one worker while the others keep applying changes; the
index's per-path sequence numbers make the later call win either way.

A big source parses in a child process (see `index._pool`), so one
pathological file delays only itself: the other worker keeps going.

Thread-safe: every method may be called from any thread.  Errors from
``read`` or the index are logged and the path is skipped; the workers keep
running.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .index import Index

__all__ = ["LiveIndex"]

log = logging.getLogger(__name__)


class LiveIndex:
    """The background indexing service (see module docstring)."""

    def __init__(
        self, index: Index, read: Callable[[str], bytes | None], workers: int = 2, build_workers: int = 2,
        settle: float = 0.005,
    ) -> None:
        """``workers`` threads apply changes; the bulk build parses in
        ``build_workers`` processes."""
        self.index = index
        self._read = read
        self._workers = max(1, workers)
        self._build_workers = build_workers
        self._cond = threading.Condition()
        # Invariant: a path is in at most one of _pending and _running, except
        # that a running path changed again is also pending.
        self._settle = settle
        # path -> monotonic time from which it may be taken (ordered by first change)
        self._pending: dict[str, float] = {}
        self._running: set[str] = set()
        self._build: list[str] | None = None  # scheduled bulk build, not yet started
        self._building = False
        self._done = 0
        self._total = 0
        self._threads: list[threading.Thread] = []
        self._closing = False

    # ---- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        with self._cond:
            if self._threads:
                return
            self._closing = False
            for n in range(self._workers):
                thread = threading.Thread(target=self._work, name=f"vfs-index-{n}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def close(self) -> None:
        """Stop the workers after their current item (pending work is
        dropped), then save the index's resolution snapshot for a warm start."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join()
        self.index.save()

    # ---- scheduling ----------------------------------------------------------

    def changed(self, path: str) -> None:
        """Schedule a re-extraction of ``path``; never blocks on indexing."""
        with self._cond:
            self._pending[path] = time.monotonic() + self._settle
            self._cond.notify()

    def initial_build(self, paths: list[str]) -> None:
        """Schedule the bulk build of ``paths`` (progress in `status`)."""
        with self._cond:
            self._build = list(paths)
            self._done, self._total = 0, len(paths)
            self._cond.notify_all()

    def wait_fresh(self, timeout: float = 5.0) -> bool:
        """Block until everything scheduled so far is applied; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            if self._pending:
                self._pending = dict.fromkeys(self._pending, 0.0)
                self._cond.notify_all()
            while self._pending or self._running or self._build is not None or self._building:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def status(self) -> dict:
        """``state`` ('building' or 'ready'), bulk ``done``/``total``, ``pending`` paths."""
        with self._cond:
            building = self._build is not None or self._building
            return {
                "state": "building" if building else "ready",
                "done": self._done,
                "total": self._total,
                "pending": len(self._pending.keys() | self._running),
            }

    # ---- workers -------------------------------------------------------------

    def _take(self) -> tuple[str, object] | None:
        """Next job under the condition: ('build', paths) or ('path', path)."""
        while not self._closing:
            if self._build is not None and not self._building:
                paths, self._build = self._build, None
                self._building = True
                return "build", paths
            now, wake = time.monotonic(), None
            for path, ready in self._pending.items():
                if path in self._running:
                    continue
                if ready <= now:
                    del self._pending[path]
                    self._running.add(path)
                    return "path", path
                wake = ready if wake is None else min(wake, ready)
            self._cond.wait(None if wake is None else wake - now)
        return None

    def _work(self) -> None:
        while True:
            with self._cond:
                job = self._take()
            if job is None:
                return
            kind, arg = job
            try:
                if kind == "build":
                    self._run_build(arg)
                else:
                    self._apply(arg)
            except Exception:  # a bug in one file's handling must not stop indexing
                log.exception("index: failed on %s", arg if kind == "path" else "initial build")
            finally:
                with self._cond:
                    if kind == "build":
                        self._building = False
                    else:
                        self._running.discard(arg)
                    self._cond.notify_all()

    def _apply(self, path: str) -> None:
        try:
            source = self._read(path)
        except OSError as exc:
            log.warning("index: cannot read %s: %s", path, exc)
            return
        if source is None:
            self.index.remove(path)
        else:
            self.index.update(path, source)

    def _run_build(self, paths: list[str]) -> None:
        def reader(path: str) -> Callable[[], bytes]:
            def read() -> bytes:
                source = self._read(path)
                if source is None:
                    raise FileNotFoundError(path)
                return source

            return read

        def progress(done: int, total: int) -> None:
            with self._cond:
                self._done, self._total = done, total

        started = time.monotonic()
        self.index.build([(p, reader(p)) for p in paths], workers=self._build_workers, progress=progress)
        log.info("index: built %d files in %.1fs", len(paths), time.monotonic() - started)
