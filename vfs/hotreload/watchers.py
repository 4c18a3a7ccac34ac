"""Watchers that reload on change: of a mount (`.vfs/events`) or of an in-process session."""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import deque
from typing import Any, Callable, Iterable

from .reloader import Reloader
from .report import ReloadReport

log = logging.getLogger(__name__)


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
