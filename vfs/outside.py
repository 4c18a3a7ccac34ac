"""Noticing edits made to the backing files outside the mount (watchdog).

In worktree mode a watchdog observer watches the backing tree through the
pre-mount descriptor path (`/proc/self/fd/N`), so it sees the directory under
the mount, never the mount itself.  Events for passthrough paths (`.git`,
ignored files) and for vfs's own temporary sync files are dropped; the rest
are coalesced for a short moment and handed to `Session.base_changed`, which
decides: a clean path shows the new content at once, a dirty one becomes a
conflict.  Our own syncs produce events too; they find the disk equal to the
buffer and change nothing.

A passthrough entry directly below a watched (memory) directory, such as
`pkg/__pycache__`, made, removed or replaced outside the mount goes to
`Session.passthrough_changed`: the memory directory's entry must follow the
disk (the kernel keeps listings, so nothing else would notice).

What is watched: the root itself, and recursively each top-level directory
that is not passthrough -- `.git`, `.venv` and the like are never watched (git
writes there all the time, and watchdog reads every new directory, which on
`relatime` moves the atime of passthrough directories).  A top-level directory
made or removed later gets its watch added or dropped by the worker thread.
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Callable

import watchdog.events
from watchdog.events import (DirCreatedEvent, DirDeletedEvent, DirMovedEvent, FileClosedEvent, FileCreatedEvent,
                             FileDeletedEvent, FileModifiedEvent, FileMovedEvent, FileSystemEvent,
                             FileSystemEventHandler)
from watchdog.observers import Observer

from .syncer import SYNC_TMP_MARK

__all__ = ["OutsideWatcher"]

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.05
# Changes only.  Without a filter inotify also reports every open and close of a file, and
# the daemon opens backing files all the time (each first read through the mount): the
# watcher's threads spent as much CPU as serving the reads.
# (watchdog >= 7 reports chmod and touch as File/DirAttribEvent, older ones as modified.)
EVENTS = [FileModifiedEvent, FileClosedEvent, FileCreatedEvent, FileDeletedEvent, FileMovedEvent,
          DirCreatedEvent, DirDeletedEvent, DirMovedEvent,
          *(getattr(watchdog.events, name) for name in ("FileAttribEvent", "DirAttribEvent")
            if hasattr(watchdog.events, name))]


class OutsideWatcher(FileSystemEventHandler):
    def __init__(self, root: str, on_change: Callable[[str], str],
                 is_passthrough: Callable[[str, bool], bool],
                 on_passthrough_change: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.root = root.rstrip("/")
        self.on_change = on_change
        self.is_passthrough = is_passthrough
        self.on_passthrough_change = on_passthrough_change
        self._observer: Observer | None = None
        self._pending: dict[str, None] = {}
        self._pending_passthrough: dict[str, None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._worker = threading.Thread(target=self._drain, name="vfs-outside", daemon=True)
        self._watches: dict[str, object] = {}  # top-level directory -> its recursive watch
        self._tops: dict[str, None] = {}  # top-level names to (re)consider, for the worker
        self.seen = 0

    def start(self) -> None:
        self._observer = Observer()
        # "/." makes inotify watch the directory the descriptor names, not the /proc symlink.
        self._observer.schedule(self, self.root + "/.", recursive=False, event_filter=EVENTS)
        for name in os.listdir(self.root + "/."):
            self._watch_top(name)
        self._observer.daemon = True
        self._observer.start()
        self._worker.start()

    def _watch_top(self, name: str) -> None:
        """Watch top-level directory `name` recursively unless it is passthrough or gone
        (drop its watch when it went).  Worker thread or start() only: watchdog's schedule
        waits for the lock its event dispatch holds."""
        full = f"{self.root}/./{name}"
        is_dir = os.path.isdir(full) and not os.path.islink(full)
        try:
            wanted = is_dir and not self.is_passthrough(name, True)
        except Exception:
            log.exception("passthrough check failed for %s", name)
            wanted = False
        watch = self._watches.pop(name, None)
        if watch is not None:
            try:
                self._observer.unschedule(watch)
            except (KeyError, OSError):
                pass
        if wanted:
            try:
                self._watches[name] = self._observer.schedule(self, full, recursive=True, event_filter=EVENTS)
            except OSError as exc:  # vanished meanwhile
                log.info("cannot watch %s: %s", name, exc)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
        if self._worker.ident is not None:  # (a mount that failed never started it)
            self._worker.join(timeout=5)

    def _rel(self, raw: str | bytes) -> str | None:
        path = os.fsdecode(raw)
        prefix = self.root + "/./"
        if not path.startswith(prefix):
            return None
        rel = path[len(prefix):]
        name = rel.rpartition("/")[2]
        if SYNC_TMP_MARK in name:  # our own sync at work
            return None
        return rel

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return
        paths = [event.src_path]
        if getattr(event, "dest_path", None):
            paths.append(event.dest_path)
        with self._lock:
            for raw in paths:
                rel = self._rel(raw)
                if rel is None:
                    continue
                if event.is_directory and "/" not in rel and event.event_type in ("created", "deleted", "moved"):
                    self._tops[rel] = None
                try:
                    if self.is_passthrough(rel, event.is_directory):
                        # The topmost passthrough entry below a watched directory: its entry in
                        # that (memory) directory must follow the disk.  Deeper ones are served
                        # from the disk as they are.
                        parent = rel.rpartition("/")[0]
                        if self.on_passthrough_change is not None and not (
                                parent and self.is_passthrough(parent, True)):
                            self._pending_passthrough[rel] = None
                        continue
                except Exception:
                    log.exception("passthrough check failed for %s", rel)
                    continue
                self._pending[rel] = None
        self._wake.set()

    def _drain(self) -> None:
        while not self._stopped:
            self._wake.wait()
            if self._stopped:
                return
            self._wake.clear()
            threading.Event().wait(SETTLE_SECONDS)
            with self._lock:
                batch, self._pending = list(self._pending), {}
                entries, self._pending_passthrough = list(self._pending_passthrough), {}
                tops, self._tops = list(self._tops), {}
            for name in tops:
                self._watch_top(name)
            for rel in entries:
                try:
                    outcome = self.on_passthrough_change(rel)
                    log.info("outside change of passthrough entry %s: %s", rel, outcome)
                except Exception:
                    log.exception("handling outside change of passthrough entry %s failed", rel)
            for rel in batch:
                try:
                    outcome = self.on_change(rel)
                    self.seen += 1
                    log.info("outside edit %s: %s", rel, outcome)
                except Exception:
                    log.exception("handling outside edit of %s failed", rel)
