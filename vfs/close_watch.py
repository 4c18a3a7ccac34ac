"""The closes a `kernel_opens` mount never hears of, seen through fanotify.

With `kernel_opens` the kernel opens and closes the mount's files without telling
the daemon (vfs.settler), so a writer's `close()` — the point where a version
ends — is invisible to FUSE.  fanotify sees it: a mark on the mount for
`FAN_CLOSE_WRITE` queues one event per last close of a file opened for writing,
with the closing thread's id (`FAN_REPORT_TID`), before that thread's `close()`
returns.  So when a thread's next write reaches the daemon, the close that ended
its previous version is already in the queue: `drain()` (non-blocking) reads it
there, and a thread of our own reads the rest as they come.  Both read and
deliver under the session lock, so a close is never read by one and applied
after the other went on without it.

FUSE has no fsid, so fanotify cannot report file ids: each event carries a
descriptor the kernel opened on the file.  No request reaches the daemon for it
once the connection knows OPEN is answered ENOSYS, which holds after the first
handle-less read or write (`armed`); before that, the watch thread reads events
without the session lock (the FUSE loop may have to answer that OPEN).  Its
inode number is read from /proc/self/fdinfo, never by fstat (that could ask
this very daemon); descriptors are closed by the watch thread only, since the
first close on the connection sends a FLUSH that the FUSE loop must be free to
answer.

fanotify on a mount needs CAP_SYS_ADMIN: without it `start()` raises OSError and
the daemon keeps to the /proc checks of vfs.settler alone.

Invariant: every event read, by either reader, reaches `on_close` exactly once;
once `armed`, in the same hold of the session lock as its read.
"""
from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import threading
from typing import Any, Callable

__all__ = ["CloseWatch", "can_watch"]

log = logging.getLogger(__name__)

FAN_CLOSE_WRITE = 0x08
FAN_CLOEXEC = 0x01
FAN_NONBLOCK = 0x02
FAN_REPORT_TID = 0x100
FAN_MARK_ADD = 0x01
FAN_MARK_MOUNT = 0x10
FAN_Q_OVERFLOW = 0x4000
AT_FDCWD = -100
_META = struct.Struct("IBBHQii")  # struct fanotify_event_metadata

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]

Close = tuple[int, int]  # (thread id, inode number)


def _watch(path: str) -> int:
    """A non-blocking fanotify descriptor with a FAN_CLOSE_WRITE mark on `path`'s mount."""
    # O_NONBLOCK: the descriptor of a FIFO's event must not wait for a writer.
    fd = _libc.fanotify_init(FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID,
                             os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC | os.O_NONBLOCK)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fanotify_init: {os.strerror(err)}")
    if _libc.fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD,
                           os.fsencode(path)) != 0:
        err = ctypes.get_errno()
        os.close(fd)
        raise OSError(err, f"fanotify_mark {path}: {os.strerror(err)}")
    return fd


def can_watch(path: str) -> bool:
    """May this process watch closes on a mount (CAP_SYS_ADMIN)?  Tried on `path`'s own."""
    try:
        os.close(_watch(path))
    except OSError as exc:
        log.debug("closes cannot be watched: %s", exc)
        return False
    return True


def _inode_of(fd: int) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("ino:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class CloseWatch:
    """Report `(tid, ino)` of each close after writing on `mount_path` to `on_close`
    (called from the watch thread, or from `drain()`'s caller)."""

    def __init__(self, mount_path: str, on_close: Callable[[list[Close]], None], lock: Any) -> None:
        self.mount_path = mount_path
        self.on_close = on_close
        self.lock = lock  # the session lock
        self.armed = False  # the kernel opens files without asking: reading events asks nothing
        self._fd = -1
        self._read_lock = threading.Lock()  # one reader at a time: events are taken in order
        self._to_close: list[int] = []  # event descriptors the watch thread closes
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)  # a full pipe already wakes the thread
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.error: OSError | None = None  # why closes are not watched, if they are not

    def start(self) -> "CloseWatch":
        """Begin watching (in the thread: marking resolves the mount point, which may ask
        the daemon, so it must not run on the thread that serves FUSE)."""
        self._thread = threading.Thread(target=self._run, name="vfs-close-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self._fd = _watch(self.mount_path)
        except OSError as exc:
            self.error = exc
            log.info("closes are not watched (%s): versions end by the /proc checks alone", exc)
            return
        while not self._stopped:
            select.select([self._fd, self._wake_r], [], [])
            if self._stopped:
                break
            try:
                if select.select([self._wake_r], [], [], 0)[0]:
                    os.read(self._wake_r, 4096)
                if self.armed:
                    with self.lock:
                        self.on_close(self.drain())
                else:
                    self.on_close(self.drain())
            except Exception:  # one bad event must not end the watch
                log.exception("reading close events failed")
            self._close_descriptors()

    def drain(self) -> list[Close]:
        """Take every queued event now, without waiting.  Safe on the FUSE thread once `armed`:
        it opens nothing that asks the daemon and closes nothing (the watch thread does)."""
        if self._fd < 0:
            return []
        closes: list[Close] = []
        with self._read_lock:
            while True:
                try:
                    buf = os.read(self._fd, 64 << 10)
                except BlockingIOError:
                    break
                except OSError as exc:
                    log.warning("fanotify read failed: %s", exc)
                    break
                if not buf:
                    break
                off = 0
                while off + _META.size <= len(buf):
                    length, _vers, _res, _mlen, mask, fd, tid = _META.unpack_from(buf, off)
                    off += max(length, _META.size)
                    if fd >= 0:
                        ino = _inode_of(fd)
                        self._to_close.append(fd)
                        if ino is not None and mask & FAN_CLOSE_WRITE:
                            closes.append((tid, ino))
                    elif mask & FAN_Q_OVERFLOW:
                        log.warning("fanotify queue overflowed: some closes were not seen")
        if self._to_close and threading.current_thread() is not self._thread:
            self._wake()
        return closes

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    def _close_descriptors(self) -> None:
        with self._read_lock:
            fds, self._to_close = self._to_close, []
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass

    def stop(self) -> None:
        self._stopped = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._close_descriptors()
        for fd in (self._fd, self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._fd = -1
