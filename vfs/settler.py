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

Invariant: a node is unsettled only between a write that reached its buffer
and the next settle; `settle()` is idempotent and may run from any thread.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

__all__ = ["Settler", "QUIET", "LONGEST"]

log = logging.getLogger(__name__)

QUIET = 0.005
LONGEST = 1.0


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
