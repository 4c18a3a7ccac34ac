"""Kernel cache invalidation, done off the request path.

`pyfuse3.invalidate_inode` / `invalidate_entry` block until the kernel is
done, and calling them from inside a request handler can deadlock (the kernel
may wait for that very request).  So changes only *queue* invalidations here;
one worker thread performs them.  `wait()` lets a caller that must guarantee
visibility (a control command, an API write) block until the queue is
drained — from a thread, never from the trio loop itself.

Invalidations of inodes or names the kernel does not know fail with ENOENT;
that is expected and ignored.
"""
from __future__ import annotations

import logging
import os
import queue
import threading

import pyfuse3

__all__ = ["Invalidator"]

log = logging.getLogger(__name__)


class Invalidator:
    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="vfs-invalidate", daemon=True)
        self._pending = 0
        self._cond = threading.Condition()
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped = True
        self._queue.put(None)
        self._thread.join(timeout=5)

    def inode(self, ino: int) -> None:
        self._put(("inode", ino))

    def entry(self, parent_ino: int, name: str) -> None:
        self._put(("entry", parent_ino, os.fsencode(name)))

    def _put(self, item: tuple) -> None:
        if self._stopped:
            return
        with self._cond:
            self._pending += 1
        self._queue.put(item)

    def wait(self, timeout: float = 5.0) -> bool:
        """Block until every queued invalidation ran; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending == 0, timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if item[0] == "inode":
                    pyfuse3.invalidate_inode(item[1], False)
                else:
                    pyfuse3.invalidate_entry(item[1], item[2])
            except OSError:
                pass  # the kernel does not hold it: nothing to invalidate
            except Exception:
                log.exception("invalidation %r failed", item)
            finally:
                with self._cond:
                    self._pending -= 1
                    if self._pending == 0:
                        self._cond.notify_all()
