"""Recording writes whose close the daemon never sees.

With `kernel_opens` (and the pyfuse3 that `scripts/setup` builds, patch level 2)
the main mount answers OPEN with ENOSYS, and the kernel then opens its files itself:
no OPEN, FLUSH or RELEASE per file, so a `close()` is invisible to the daemon.
Writes and truncations through such opens are applied to the buffer at once
(every reader sees them) and mark their node *unsettled* (`Session.settle`).
The `Settler` records the unsettled nodes, each as one journal write, once
writes have been quiet for `quiet` seconds (a file written in many chunks, or
truncated and then written, becomes one version), and at the latest `longest`
seconds after the first of them.  Anything that reads or changes journaled
state settles first (`Session.settle`), and `fsync` settles its file, so the
journal, `.vfs` and the diff branch never lag behind what readers see.

One write(2) may reach the daemon as several WRITE requests: the kernel sends
the part up to a page it had to keep locked, then the rest.  A settle between
the parts would journal a version that ends inside the caller's bytes (and a
rollback could bring it back).  So a write whose last request ended on a page
boundary is left pending by a settle that another thread asked for, until
`EDGE_WAIT` passed (the kernel holds the inode's lock for the whole write(2),
so no other write or truncation of the file can come in between; the thread
that wrote it asks only once its write(2) returned).

Invariant: a node is unsettled only between a write that reached its buffer
and the settle that records it; `settle()` may run from any thread.
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

__all__ = ["Settler", "PendingWrites", "QUIET", "LONGEST", "EDGE_WAIT"]

log = logging.getLogger(__name__)

QUIET = 0.005
LONGEST = 1.0
EDGE_WAIT = 0.05
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


@dataclass
class _Pending:
    node: Node
    caller: Caller  # the writer (thread) whose bytes these are
    agent: str  # its name, taken while it ran
    bases: dict[str, State]  # base states of the node's paths when its writes began
    edge_at: float | None = None  # monotonic time of a last request that ended on a page boundary


class PendingWrites:
    """The `Session` side of settling (module docstring): handle-less I/O and its records.

    Mixed into `Session`; uses its lock, tree, base states, journal and recorder.
    """

    def __init__(self) -> None:
        self._unsettled: dict[int, _Pending] = {}
        self._pinned_bases: dict[str, State] | None = None  # while settling: the bases writes saw
        self.settler: Any = None  # set by the daemon for a kernel_opens mount: .wake()
        self.settle_at_once = False  # write-through: no waiting for writes to go quiet

    def read_inode(self, ino: int, offset: int, size: int) -> bytes:
        """read(2) through an open the kernel made without asking us."""
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
            self._written(node, offset + n)
            return n

    def fsync_inode(self, ino: int, caller: Caller) -> None:
        with self.lock:
            node = self.tree.node(ino)
            if node.disk:
                self.tree.disk_fsync(node)
            else:
                self.settle(caller.pid)

    def _begin_write(self, node: Node, caller: Caller, truncating: bool = False) -> None:
        """Before `caller` changes `node`'s bytes with no close point to come.

        What another thread wrote to it is a version of its own, and so is what was written
        before a truncation (open(O_TRUNC) starts a new one).  The first write of a version
        takes the writer's name now, while it runs (it may be gone when the writes settle), and
        the paths' base states and contents (an outside edit meanwhile is then a conflict with
        a known ancestor, not our new base).
        """
        earlier = self._unsettled.get(node.ino)
        if earlier is not None and (truncating or earlier.caller.pid != caller.pid):
            del self._unsettled[node.ino]
            self._settle_one(earlier)
            earlier = None
        if earlier is None:
            bases = {}
            for path in self.tree.paths_of(node):
                bases[path] = self.base_states.state(path)
                self._store(path, self.overlay.get(path, bases[path]), None)
            self._unsettled[node.ino] = _Pending(node, caller, self.agent_name(caller), bases)

    def _written(self, node: Node, end: int | None = None) -> None:
        """After a change that `_begin_write` announced (`end`: where a write ended):
        record it now, or when writes went quiet."""
        pending = self._unsettled.get(node.ino)
        if pending is not None:
            pending.edge_at = time.monotonic() if end is not None and end % PAGE == 0 else None
        if self.settler is None or self.settle_at_once:
            self.settle(force=True)
        else:
            self.settler.wake()

    def _settle_one(self, pending: _Pending) -> bool:
        self._pinned_bases = pending.bases
        try:
            with self._as(pending.agent):
                return self.tree.commit(pending.node, pending.caller)
        finally:
            self._pinned_bases = None

    def settle(self, requester: int | None = None, *, force: bool = False) -> int:
        """Record the nodes written without a close point, one write each, before anything
        reads or changes journaled state.  `requester`: the thread that asks (its own writes
        are complete); `force`: also writes that may be halfway (module docstring).
        Returns how many were recorded."""
        with self.lock:
            if not self._unsettled:
                return 0
            now = time.monotonic()
            ready = [ino for ino, p in self._unsettled.items()
                     if force or p.edge_at is None or p.caller.pid == requester or now - p.edge_at >= EDGE_WAIT]
            # They happened before whatever compound or restore is running: entries of their own.
            outer, quiet, self._compound, self._quiet = self._compound, self._quiet, None, 0
            try:
                done = 0
                for ino in ready:
                    pending = self._unsettled.pop(ino, None)
                    if pending is not None:
                        done += self._settle_one(pending)
            finally:
                self._compound, self._quiet = outer, quiet
            if self._unsettled and self.settler is not None:
                self.settler.wake()  # what was left waits for its write(2) to finish
            return done
