"""Recording writes whose close the daemon never sees.

With `kernel_opens` (and the pyfuse3 that `scripts/setup` builds, patch level 2)
the main mount answers OPEN and CREATE with ENOSYS, and the kernel then opens its
files itself: no handles, no OPEN, FLUSH or RELEASE per file, so a `close()` is
invisible to FUSE.  Writes and truncations through such opens are applied to the
buffer at once (every reader sees them) and mark their node *unsettled*; each
writer thread's writes to a file are journaled as one version when it ends.

A version ends at its writer's close, seen by fanotify (vfs.close_watch): the
watch thread delivers closes as they come, and before a thread's write is
applied the closes already queued are read, so a close between two writes of
one thread always splits them (`closed`).  It also ends when another thread
writes the file or an open(O_TRUNC) truncates it, on fsync, before a change of
names or attributes, and — for writers that no longer hold the file open for
writing (read from /proc, never by stat) or are gone — before anything reads or
changes journaled state (`settle`) and when writes went quiet for `quiet`
seconds (`Settler`; at the latest `longest` after the first).  Without fanotify
(not root) those checks alone end versions.

One write(2) may reach the daemon as several WRITE requests: the kernel sends
the part up to a page it had to keep locked, then the rest.  A settle between
the parts would journal a version that ends inside the caller's bytes (and a
rollback could bring it back).  So a write whose last request ended on a page
boundary is left pending by a settle that another thread asked for, until
`EDGE_WAIT` passed (the kernel holds the inode's lock for the whole write(2),
so no other write or truncation of the file can come in between; the thread
that wrote it asks only once its write(2) returned).  Likewise a truncation
waits `TRUNCATE_WAIT` for its writer's next write: `cmd > f` is one version,
never an empty one first (as with a close point).  A held write is released
early once its writer (thread) asks itself, wrote something later, or is gone;
so each writer's versions are journaled in the order it made them.

Invariant: a node is unsettled only between a write that reached its buffer
and the settle that records it; `settle()` may run from any thread, and the
records a settle makes settle nothing more (`_settling`).
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .caller import Caller
from .errors import FsError
from .node import Node
from .states import State

__all__ = ["Settler", "PendingWrites", "QUIET", "LONGEST", "EDGE_WAIT", "TRUNCATE_WAIT"]

log = logging.getLogger(__name__)

QUIET = 0.005
LONGEST = 1.0
EDGE_WAIT = 0.05  # after a request that ended on a page boundary: the rest may follow
TRUNCATE_WAIT = 1.0  # after a truncation: open(O_TRUNC)'s write usually follows
PAGE = 4096


class Settler:
    """One thread that calls `settle()` after a burst of `wake()`s went quiet."""

    def __init__(self, settle: Callable[[], Any], quiet: float = QUIET, longest: float = LONGEST) -> None:
        self._settle = settle
        self.quiet, self.longest = quiet, longest
        self._cond = threading.Condition()
        self._first: float | None = None  # monotonic time of the first wake since the last settle
        self._last = 0.0
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="vfs-settle", daemon=True)

    def start(self) -> "Settler":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        now = time.monotonic()
        with self._cond:
            self._last = now
            if self._first is None:
                self._first = now
                self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._first is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                while True:
                    due = min(self._last + self.quiet, self._first + self.longest)
                    left = due - time.monotonic()
                    if left <= 0 or self._stopped:
                        break
                    self._cond.wait(left)
                self._first = None
            try:
                self._settle()
            except Exception:  # a failed record must not end the thread; the next wake retries
                log.exception("recording settled writes failed")


def _open_for_writing(pid: int, names: set[str]) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") not in names:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("flags:"):
                        if int(line.split()[1], 8) & os.O_ACCMODE != os.O_RDONLY:
                            return True
                        break
        except (OSError, ValueError, IndexError):
            continue
    return False


def _maybe_split(start: int, end: int) -> bool:
    """Could a write request covering [start, end) be the first part of a longer write(2)?
    The kernel ends a part at the page where a write starts inside a page it does not hold
    whole, and after `max_write` bytes (a multiple of 64 KiB)."""
    return end % PAGE == 0 and (start % PAGE != 0 or (end - start) % (64 << 10) == 0)


@dataclass
class _Pending:
    node: Node
    caller: Caller  # the writer (thread) whose bytes these are
    agent: str  # its name, taken while it ran
    bases: dict[str, State]  # base states of the node's paths when its writes began
    paths: list[str]  # its names, as the pending log last noted them
    hold_until: float | None = None  # monotonic time until which only its writer settles it
    truncated_to: int | None = None  # a truncation the pending log notes with the next write


class PendingWrites:
    """The `Session` side of settling (module docstring): handle-less I/O and its records.

    Mixed into `Session`; uses its lock, tree, base states, journal and recorder.
    """

    def __init__(self) -> None:
        self._unsettled: dict[int, _Pending] = {}
        self._pinned_bases: dict[str, State] | None = None  # while settling: the bases writes saw
        self._settling = False  # while journaling settled writes: their records settle nothing more
        self.settler: Any = None  # set by the daemon for a kernel_opens mount: .wake()
        self.settle_at_once = False  # write-through: no waiting for writes to go quiet
        self.pending_log: Any = None  # vfs.pending_log.PendingLog (set with a journal)
        self.mount_path: str | None = None  # where the kernel_opens mount is (set by the daemon)
        self.close_watch: Any = None  # vfs.close_watch.CloseWatch, where fanotify is allowed

    def opens_mode(self) -> str:
        """How files are opened on the mount, for `.vfs/status`."""
        if self.settler is None:
            return "handles"
        watch = self.close_watch
        if watch is not None and watch.error is None:
            return "kernel (closes watched with fanotify)"
        return "kernel (closes found in /proc)"

    def kernel_opened(self) -> None:
        """A request through an open the kernel made: it no longer asks for opens."""
        if self.close_watch is not None:
            self.close_watch.armed = True

    def read_inode(self, ino: int, offset: int, size: int) -> bytes:
        """read(2) through an open the kernel made without asking us."""
        self.kernel_opened()
        with self.lock:
            node = self.tree.node(ino)
            if node.disk:
                return self.tree.disk_pread(node, offset, size)
            return self.tree.read(node, offset, size)

    def write_inode(self, ino: int, offset: int, buf: bytes, caller: Caller, flags: int = 0) -> int:
        """write(2) without a handle: applied now, recorded when the writes settle.

        O_APPEND writes land at the end of the buffer; where the kernel's idea of the
        size was behind (a change it had not yet been told of), its cache of the file is
        dropped, since it copied the bytes to the offset it chose.
        """
        self.kernel_opened()
        with self.lock:
            node = self.tree.node(ino)
            if node.disk:
                return self.tree.disk_pwrite(node, offset, buf)
            if node.is_dir:
                raise FsError(errno.EISDIR, "is a directory")
            self._begin_write(node, caller)
            if flags & os.O_APPEND:
                end = node.size()
                if end != offset:
                    offset = end
                    if self.invalidator is not None:
                        self.invalidator.inode(node.ino)
            n = self.tree.write(node, offset, buf, caller)
            self._log_write(node, offset, buf[:n])
            self._written(node, (offset, offset + n))
            return n

    def fsync_inode(self, ino: int, caller: Caller) -> None:
        with self.lock:
            node = self.tree.node(ino)
            if node.disk:
                self.tree.disk_fsync(node)
            else:
                self.settle(caller.pid)

    def _begin_write(self, node: Node, caller: Caller, truncating: bool = False) -> None:
        """Before `caller` changes `node`'s bytes through an open the kernel made (no handles
        on such a mount: OPEN and CREATE answer ENOSYS), with no close point to come.

        What another thread wrote to it is a version of its own, and so is what was written
        before a truncation (open(O_TRUNC) starts a new one) or before the writer's close.
        The first write of a version takes the writer's name now, while it runs (it may be gone
        when the writes settle), and the paths' base states and contents (an outside edit
        meanwhile is then a conflict with a known ancestor, not our new base).
        """
        if self.close_watch is not None and self.close_watch.armed:
            # The closes queued so far end earlier versions; read later, one could be taken for
            # the end of the version this write continues or begins.
            self.closed(self.close_watch.drain())
        earlier = self._unsettled.get(node.ino)
        if earlier is not None and (truncating or earlier.caller.pid != caller.pid):
            self.settle_through(node.ino)
            earlier = None
        if earlier is None:
            bases = {}
            paths = self.tree.paths_of(node)
            for path in paths:
                bases[path] = self.base_states.state(path)
                self._store(path, self.overlay.get(path, bases[path]), None)
            pending = _Pending(node, caller, self.agent_name(caller), bases, paths)
            self._unsettled[node.ino] = pending
            if self.pending_log is not None:
                self.pending_log.begin(node.ino, paths, pending.agent)

    def _log_write(self, node: Node, offset: int, data: bytes) -> None:
        pending = self._unsettled.get(node.ino)
        if self.pending_log is not None and pending is not None:
            self.pending_log.write(node.ino, offset, data, pending.truncated_to)
            pending.truncated_to = None

    def _log_truncate(self, node: Node, size: int) -> None:
        """A truncation is noted with the write that follows it (`cmd > f` killed between the
        two keeps the last content, as the close-based journal did); alone, it is journaled
        when it settles."""
        pending = self._unsettled.get(node.ino)
        if pending is not None:
            if pending.truncated_to is not None and self.pending_log is not None:
                self.pending_log.truncate(node.ino, pending.truncated_to)
            pending.truncated_to = size

    def _note_moves(self) -> None:
        """After a change of names: the pending log follows each pending node's paths."""
        for pending in self._unsettled.values():
            paths = self.tree.paths_of(pending.node)
            if paths != pending.paths:
                pending.paths = paths
                if self.pending_log is not None:
                    self.pending_log.moved(pending.node.ino, paths)

    def _written(self, node: Node, span: tuple[int, int] | None = None, *, emptied: bool = False) -> None:
        """After a change that `_begin_write` announced (`span`: the bytes a write request
        covered; `emptied`: a truncation to 0, as open(O_TRUNC) makes): record it now, or when
        writes went quiet."""
        pending = self._unsettled.get(node.ino)
        if pending is not None:
            wait = TRUNCATE_WAIT if emptied else EDGE_WAIT if span and _maybe_split(*span) else None
            pending.hold_until = None if wait is None else time.monotonic() + wait
        if self.settler is None or self.settle_at_once:
            self.settle(force=True)
        else:
            self.settler.wake()

    def _still_open(self, pending: _Pending) -> bool:
        """Does the writer still hold the file open for writing?  Then its close has not come:
        its writes wait for it (one version per close, as with handles).  Looked up in /proc by
        name, never by stat (that would ask this very daemon)."""
        if self.mount_path is None:
            return False
        names = {os.path.join(self.mount_path, p) for p in pending.paths}
        return _open_for_writing(pending.caller.pid, names)

    def _settle_for(self, caller: Caller) -> None:
        """Before a change of names or attributes: pending writes are journaled as they were made."""
        if self._unsettled:
            self.settle(caller.pid)

    def closed(self, closes: list[tuple[int, int]]) -> None:
        """Threads closed files they had opened for writing (`(tid, ino)`, vfs.close_watch):
        the version each wrote there ends now, as a handle's FLUSH ends it."""
        if not closes:
            return
        with self.lock:
            for tid, ino in closes:
                pending = self._unsettled.get(ino)
                if pending is not None and pending.caller.pid == tid:
                    self.settle_through(ino)

    def settle_through(self, ino: int) -> None:
        """A close (or another writer) ends `ino`'s pending version: journal it, after the
        versions its writer began before it, and none of the writer's later ones."""
        target = self._unsettled.get(ino)
        if target is None:
            return
        mine = []
        for key in [k for k, p in self._unsettled.items() if p.caller.pid == target.caller.pid]:
            mine.append(self._unsettled.pop(key))
            if key == ino:
                break
        with self.lock:
            self._settle_all(mine)

    def _settle_all(self, pendings: list[_Pending]) -> int:
        # They happened before whatever compound or restore is running: entries of their own.
        outer, quiet, self._compound, self._quiet = self._compound, self._quiet, None, 0
        settling, self._settling = self._settling, True
        try:
            return sum(self._settle_one(p) for p in pendings)
        finally:
            self._compound, self._quiet, self._settling = outer, quiet, settling

    def _settle_one(self, pending: _Pending) -> bool:
        self._pinned_bases = pending.bases
        try:
            with self._as(pending.agent):
                recorded = self.tree.commit(pending.node, pending.caller)
        finally:
            self._pinned_bases = None
        if self.pending_log is not None:
            self.pending_log.done(pending.node.ino)
        return recorded

    def settle(self, requester: int | None = None, *, force: bool = False) -> int:
        """Record the nodes written without a close point, one write each, before anything
        reads or changes journaled state.  `requester`: the thread that asks (its own writes
        are complete); `force`: also writes that may be halfway (module docstring).
        Returns how many were recorded."""
        with self.lock:
            if not self._unsettled:
                return 0
            now = time.monotonic()
            ready, moved_on = [], set()  # moved_on: writers with a later pending write
            for ino, p in reversed(self._unsettled.items()):
                pid = p.caller.pid
                if force or pid == requester or pid in moved_on or not os.path.exists(f"/proc/{pid}"):
                    ready.append(ino)
                elif (p.hold_until is None or now >= p.hold_until) and not self._still_open(p):
                    ready.append(ino)
                moved_on.add(pid)
            ready.reverse()  # in the order the writes began
            done = self._settle_all([self._unsettled.pop(ino) for ino in ready])
            if self._unsettled and self.settler is not None:
                self.settler.wake()  # what was left waits for its write(2) to finish
            return done
