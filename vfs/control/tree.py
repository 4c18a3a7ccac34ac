"""A small virtual-file framework for the `.vfs/` control directory.

Each control node is a directory (`list` of names, `child(name)`) or a file:
- a *view* has `read()`: bytes rendered at open, so `cat` sees one consistent
  snapshot; `live=True` views re-render when a reader reaches the end (so
  `tail -f` sees growth), `stream` views block for new data (`events`);
- a *command* has `command(text, agent) -> message`: executed for each
  complete line written (or, with `whole=True`, for the whole text once it
  parses or at close).  A refused command raises FsError; the writer's
  `write()` (or `close()`) fails with its errno and the reason is kept for
  `cat`, which shows the file's usage and the outcome of its last command.

Inodes live in their own range (>= CONTROL_INO) and are never forgotten: the
set of control paths an agent can name is small.  Reading never changes state.

Written bytes must be UTF-8 text without NUL; anything else is refused at the
`write()` that carries it (not later at `close()`, whose errors shells
ignore).  Once a command written through a handle is refused, the handle is
spent: later writes fail with the same error and nothing left in its buffer
runs at close (the writer was told its write failed).

A stream read blocks until data arrives.  pyfuse3 does not pass on the
kernel's INTERRUPT, and the kernel waits uninterruptibly for the reply of a
request that a dying process sent, so a blocked read polls its opener: when
the opener has a fatal signal pending (`kill`, Ctrl-C on `cat .vfs/events`)
the read ends at once.  `drain_streams()` ends every blocked read and waits
for the readers to close (await it before `pyfuse3.terminate()`: the FUSE
loop only returns once every read was answered).

Thread safety: runs on the FUSE loop; commands take the session lock.
"""
from __future__ import annotations

import codecs
import errno
import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pyfuse3
import trio

from ..errors import FsError

__all__ = ["CNode", "ControlTree", "CONTROL_INO", "MAX_COMMAND_BYTES"]

log = logging.getLogger(__name__)

CONTROL_INO = 1 << 40
CONTROL_FH = 1 << 40
MAX_COMMAND_BYTES = 64 << 20
MAX_LINE_BYTES = 1 << 20
SMALL_JSON = 64 << 10  # batches up to this size are judged at every newline (see ControlTree.write)
MAX_MESSAGE = 2000  # characters of an outcome kept for `cat` (user input is echoed in reasons)
STATIC_ENTRY_TIMEOUT = 300.0  # seconds the kernel may keep the names of `.vfs` and its files


@dataclass
class CNode:
    key: tuple
    is_dir: bool = False
    read: Callable[[], bytes] | None = None
    command: Callable[[str, str], str] | None = None
    whole: bool = False
    live: bool = False
    stream: Callable[[], "Stream"] | None = None
    list: Callable[[], list[str]] | None = None
    child: Callable[[str], "CNode | None"] | None = None
    usage: str = ""
    sized: bool = True  # False: getattr reports size 0 (rendering is costly; readers read to EOF)
    # the outcome of the last command: ("ok"|"error", message, time)
    last: tuple[str, str, float] | None = field(default=None)


class Stream:
    """Bytes produced over time for one reader (e.g. `.vfs/events`). Thread-safe.

    A reader that stops reading must not make the daemon hoard memory: past
    `limit` queued bytes the queue is dropped and replaced by `overflow(n)`,
    a line telling the reader how many chunks it missed.
    """

    def __init__(self, limit: int = 8 << 20,
                 overflow: Callable[[int], bytes] = lambda n: b'{"op": "overflow", "dropped": %d}\n' % n) -> None:
        self._lock = threading.Lock()
        self._chunks: list[bytes] = []
        self._size = 0
        self._dropped = 0
        self.limit = limit
        self.overflow = overflow
        self.closed = False
        self.cleanup: Callable[[], None] | None = None
        self._wake: Callable[[], None] | None = None

    def push(self, data: bytes) -> None:
        with self._lock:
            if self._size + len(data) > self.limit:
                # Invariant: everything queued is newer than what was dropped.
                self._dropped += len(self._chunks) + 1
                self._chunks, self._size = [], 0
            else:
                self._chunks.append(data)
                self._size += len(data)
            wake, self._wake = self._wake, None
        if wake is not None:
            wake()

    def on_data(self, wake: Callable[[], None]) -> None:
        """Call `wake()` (once, from the pushing thread) when data arrives; now if some is queued."""
        with self._lock:
            if self._chunks or self._dropped:
                self._wake = None
            else:
                self._wake = wake
                return
        wake()

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._dropped:
                self._chunks.insert(0, self.overflow(self._dropped))
                self._dropped = 0
            data = b"".join(self._chunks)
            out, rest = data[:size], data[size:]
            self._chunks = [rest] if rest else []
            self._size = len(rest)
            return out


@dataclass
class _Handle:
    node: CNode
    agent: str
    writing: bool
    snapshot: bytes = b""
    buffer: bytearray = field(default_factory=bytearray)
    stream: Stream | None = None
    pid: int = 0  # the opener (thread) id
    # The refusal that spent this handle (see module docstring), else None.
    failed: FsError | None = None
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")())
    nesting: "_Nesting" = field(default_factory=lambda: _Nesting())
    ran: bool = False  # a command already ran through this handle


class ControlTree:
    """The `.vfs` directory (see module docstring)."""

    def __init__(self, root: CNode, agent_of: Callable[[int], str],
                 after_command: Callable[[], Any] | None = None) -> None:
        self.root = root
        self.agent_of = agent_of
        self.after_command = after_command  # blocking; run in a thread (waits for invalidations)
        self._ino: dict[tuple, int] = {}
        self._nodes: dict[int, CNode] = {}
        self._parents: dict[int, int] = {}  # directory inode -> the inode it was looked up in
        self._handles: dict[int, _Handle] = {}
        self._next_fh = CONTROL_FH
        self._uid, self._gid = os.getuid(), os.getgid()
        self._started = time.time_ns()
        self._closed = False
        self._register(root)

    # ---------------------------------------------------------------- inodes
    def owns(self, ino: int) -> bool:
        return ino >= CONTROL_INO

    def owns_fh(self, fh: int) -> bool:
        return fh >= CONTROL_FH

    def opener(self, fh: int) -> int | None:
        """The pid (thread) that opened `fh`, if it is open."""
        h = self._handles.get(fh)
        return h.pid if h is not None else None

    @property
    def root_ino(self) -> int:
        return self._ino[self.root.key]

    def _register(self, node: CNode) -> int:
        ino = self._ino.get(node.key)
        if ino is None:
            ino = CONTROL_INO + len(self._ino)
            self._ino[node.key] = ino
        self._nodes[ino] = node
        return ino

    def _node(self, ino: int) -> CNode:
        try:
            return self._nodes[ino]
        except KeyError:
            raise FsError(errno.ESTALE) from None

    def _attrs(self, node: CNode) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = self._register(node)
        a.generation = 0
        # `.vfs` and its own files never go away: the kernel may keep their names;
        # what they hold (and so their size) changes at any time.
        a.entry_timeout = STATIC_ENTRY_TIMEOUT if _static(node) else 0
        a.attr_timeout = 0
        a.st_uid, a.st_gid = self._uid, self._gid
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = time.time_ns()
        a.st_blksize = 4096
        if node.is_dir:
            # Owner only: `.vfs` shows the content of every file (diffs, versions), which other
            # users of an --allow-other mount may not be allowed to read (the kernel checks).
            a.st_mode = stat.S_IFDIR | 0o500
            a.st_nlink = 2
            a.st_size = 0
        else:
            a.st_mode = stat.S_IFREG | (0o600 if node.command else 0o400)
            a.st_nlink = 1
            a.st_size = self._size(node)
        return a

    def _size(self, node: CNode) -> int:
        if node.stream is not None or node.read is None or not node.sized:
            return 0
        try:
            return len(node.read())
        except FsError:
            return 0
        except Exception:
            log.exception("control view %r failed", node.key)
            return 0

    # ---------------------------------------------------------------- FUSE-facing
    def lookup_root(self) -> pyfuse3.EntryAttributes:
        return self._attrs(self.root)

    def lookup(self, parent_ino: int, name: str) -> pyfuse3.EntryAttributes:
        parent = self._node(parent_ino)
        if not parent.is_dir or parent.child is None:
            raise FsError(errno.ENOTDIR)
        if name == ".":
            return self._attrs(parent)
        node = parent.child(name)
        if node is None:
            raise FsError(errno.ENOENT)
        attrs = self._attrs(node)
        if node.is_dir:
            self._parents[attrs.st_ino] = parent_ino
        return attrs

    def getattr(self, ino: int) -> pyfuse3.EntryAttributes:
        return self._attrs(self._node(ino))

    def setattr(self, ino: int, attr, fields) -> pyfuse3.EntryAttributes:
        node = self._node(ino)
        if fields.update_size and node.command is not None:
            return self._attrs(node)  # O_TRUNC on a command file: nothing to truncate
        raise FsError(errno.EPERM, "control files cannot be changed this way")

    def opendir(self, ino: int) -> int:
        if not self._node(ino).is_dir:
            raise FsError(errno.ENOTDIR)
        return ino

    def readdir(self, ino: int, start_id: int, token) -> None:
        """`.` and `..` first (`..` of `.vfs` is the mount's root), then the listing."""
        node = self._node(ino)
        names = [".", ".."] + (sorted(node.list()) if node.list else [])
        for i, name in enumerate(names[start_id:], start_id + 1):
            if name == ".":
                attrs = self._attrs(node)
            elif name == "..":
                attrs = self._attrs(node)
                attrs.st_ino = self._parents.get(ino, pyfuse3.ROOT_INODE)
            else:
                child = node.child(name) if node.child else None
                if child is None:
                    continue
                attrs = self._attrs(child)
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attrs, i):
                return

    def releasedir(self, fh: int) -> None:
        pass

    async def open(self, ino: int, flags: int, ctx) -> pyfuse3.FileInfo:
        node = self._node(ino)
        if node.is_dir:
            raise FsError(errno.EISDIR)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY
        if writing and node.command is None:
            raise FsError(errno.EACCES, "read-only control file")
        handle = _Handle(node, self.agent_of(ctx.pid), writing, pid=ctx.pid)
        if not writing:
            if node.stream is not None:
                handle.stream = node.stream()
            elif node.sized:
                handle.snapshot = self.render(node)  # cheap: getattr renders it too
            else:  # costly (index queries wait for reindexing): off the FUSE loop
                handle.snapshot = await trio.to_thread.run_sync(self.render, node)
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return pyfuse3.FileInfo(fh=fh, direct_io=True, nonseekable=node.stream is not None)

    def render(self, node: CNode) -> bytes:
        if node.read is None:
            return (node.usage + self._outcome(node)).encode("utf-8", "surrogateescape")
        return node.read()

    def _outcome(self, node: CNode) -> str:
        if node.last is None:
            return "last: none\n"
        status, message, _ = node.last
        return f"last: {status}: {message}\n"

    def _handle(self, fh: int) -> _Handle:
        try:
            return self._handles[fh]
        except KeyError:
            raise FsError(errno.EBADF) from None

    async def read_async(self, fh: int, off: int, size: int) -> bytes:
        h = self._handle(fh)
        if h.stream is not None:
            polls = 0
            while not h.stream.closed and not self._closed:
                data = h.stream.take(size)
                if data:
                    return data
                polls += 1
                if polls % 4 == 0 and _dying(h.pid):
                    return b""  # the reader is being killed and waits for this reply
                # Sleep until a push wakes us (from any thread), or 50 ms pass
                # (to notice a dying reader or the mount stopping).
                arrived = trio.Event()
                token = trio.lowlevel.current_trio_token()
                h.stream.on_data(lambda: token.run_sync_soon(arrived.set))
                with trio.move_on_after(0.05):
                    await arrived.wait()
            return h.stream.take(size)
        if h.node.live and off >= len(h.snapshot):
            h.snapshot = self.render(h.node)
        return h.snapshot[off:off + size]

    def close_streams(self) -> None:
        """End every blocked stream read, now and later (the mount is stopping)."""
        self._closed = True
        for h in self._handles.values():
            if h.stream is not None:
                h.stream.closed = True

    async def drain_streams(self, timeout: float = 1.0) -> None:
        """`close_streams()`, then wait (at most `timeout`) until their readers closed them.

        Run it before `pyfuse3.terminate()`: a reader that sees the end of the
        stream still closes its descriptor, and that close must find the FUSE
        loop answering, or it fails (ECONNABORTED) when the mount goes.
        """
        self.close_streams()
        with trio.move_on_after(timeout):
            while any(h.stream is not None for h in self._handles.values()):
                await trio.sleep(0.02)

    def read(self, fh: int, off: int, size: int) -> bytes:
        h = self._handle(fh)
        if h.node.live and off >= len(h.snapshot):
            h.snapshot = self.render(h.node)
        return h.snapshot[off:off + size]

    def is_stream(self, fh: int) -> bool:
        h = self._handles.get(fh)
        return h is not None and h.stream is not None

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        h = self._handle(fh)
        if not h.writing:
            raise FsError(errno.EBADF)
        if h.failed is not None:
            raise FsError(h.failed.errno, h.failed.reason)
        if len(h.buffer) + len(buf) > (MAX_COMMAND_BYTES if h.node.whole else MAX_LINE_BYTES):
            limit = MAX_COMMAND_BYTES if h.node.whole else MAX_LINE_BYTES
            what = "command" if h.node.whole else "command line"
            self._spend(h, FsError(errno.EFBIG, f"{what} too large (limit {limit} bytes)"))
        try:
            h.decoder.decode(bytes(buf))
        except UnicodeDecodeError:
            self._spend(h, FsError(errno.EINVAL, "command is not UTF-8 text"))
        if b"\0" in buf:
            self._spend(h, FsError(errno.EINVAL, "command contains NUL"))
        h.buffer += buf
        if h.node.whole:
            h.nesting.feed(bytes(buf))
            # Parsing the whole buffer at every newline costs quadratic time in
            # its size (a big pretty-printed batch written line by line would
            # stall the FUSE loop for minutes): past SMALL_JSON bytes, try only
            # once every bracket opened was closed.
            # A small valid JSON document runs at once, newline or not (`printf '%s' JSON`):
            # then a refusal fails this write, which the writer sees (shells ignore the
            # errors of close(2)).
            if h.buffer.endswith(b"\n") and (len(h.buffer) <= SMALL_JSON or h.nesting.closed()) \
                    and _complete_json(bytes(h.buffer)) \
                    or len(h.buffer) <= SMALL_JSON and h.nesting.closed() and _valid_json(bytes(h.buffer)):
                text, h.buffer = bytes(h.buffer), bytearray()
                h.nesting = _Nesting()
                await self._run(h, text)
        elif b"\n" in buf:  # (only a new chunk can complete a line: no rescan of a long one)
            while b"\n" in h.buffer:
                line, _, rest = bytes(h.buffer).partition(b"\n")
                h.buffer = bytearray(rest)
                await self._run(h, line)
        return len(buf)

    def _spend(self, h: _Handle, exc: FsError) -> None:
        """Refuse what was written through `h`, and everything written through it later."""
        h.buffer = bytearray()
        h.failed = exc
        self._fail(h.node, exc)
        raise exc

    def _pending(self, h: _Handle) -> bool:
        """Is there a command left in `h`'s buffer to run at close?  (Whitespace after a
        batch that already ran is not one: `printf '%s\n'` may write the newline apart.)"""
        if not (h.writing and h.failed is None and h.buffer):
            return False
        return not (h.node.whole and h.ran and not h.buffer.strip())

    async def flush(self, fh: int) -> None:
        h = self._handle(fh)
        if self._pending(h):
            text, h.buffer = bytes(h.buffer), bytearray()
            await self._run(h, text)

    async def release(self, fh: int) -> None:
        h = self._handles.pop(fh, None)
        if h is None:
            return
        if h.stream is not None:
            h.stream.closed = True
            if h.stream.cleanup:
                h.stream.cleanup()
        if self._pending(h):
            text, h.buffer = bytes(h.buffer), bytearray()
            try:
                await self._run(h, text)
            except FsError:
                pass  # release cannot report errors; the outcome is kept for `cat`

    async def _run(self, h: _Handle, raw: bytes) -> None:
        node = h.node
        try:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FsError(errno.EINVAL, "command is not UTF-8 text") from None
            if "\0" in text:
                raise FsError(errno.EINVAL, "command contains NUL")
            if not node.whole:
                text = text.rstrip("\r")
            message = await trio.to_thread.run_sync(self._command, node, text, h.agent)
        except FsError as exc:
            h.buffer = bytearray()
            h.failed = exc
            self._fail(node, exc)
            raise
        except Exception as exc:
            log.exception("control command %r failed", node.key)
            err = FsError(errno.EIO, f"internal error: {type(exc).__name__}: {exc}")
            h.buffer = bytearray()
            h.failed = err
            self._fail(node, err)
            raise err from None
        node.last = ("ok", _one_line(message), time.time())
        h.ran = True

    def _command(self, node: CNode, text: str, agent: str) -> str:
        """Run a command and wait until the kernel saw its effects: in a worker
        thread, so a long command (a rename across a big tree) never stalls the
        FUSE loop, which must stay free to serve the invalidations it waits for."""
        message = node.command(text, agent)
        if self.after_command is not None:
            self.after_command()
        return message

    def _fail(self, node: CNode, exc: FsError) -> None:
        reason = _one_line(exc.reason)
        node.last = ("error", f"{reason} [{errno.errorcode.get(exc.errno, exc.errno)}]", time.time())


def _static(node: CNode) -> bool:
    """`.vfs` itself or one of its files (not the directories below it, whose entries come and go)."""
    return node.key == ("d", "") or node.key[0] == "f"


# Line breaks and other control characters a user's input can carry into a message
# (a path from a JSON batch may hold "\n"): shown escaped, so that the outcome stays
# the one last line of `cat FILE`.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_line(text: str) -> str:
    """`text` on one line, at most about MAX_MESSAGE characters (a refused 1 MiB path is not echoed whole)."""
    text = _CONTROL.sub(_escape, text)
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE // 2]}...({len(text) - MAX_MESSAGE} characters)...{text[-MAX_MESSAGE // 2:]}"
    return text


def _escape(m: "re.Match") -> str:
    c = m.group()
    return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c) or \
        (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


# Signals whose default action does not end the process (chld, cont, stop, tstp, ttin, ttou, urg, winch).
_HARMLESS = sum(1 << (n - 1) for n in (17, 18, 19, 20, 21, 22, 23, 28))


def _dying(pid: int) -> bool:
    """True when process (thread) `pid` has a fatal signal pending.

    Such a process waits uninterruptibly for the reply to the FUSE request it
    sent; a blocked stream read must answer so that it can exit.
    """
    if pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read()
    except OSError:
        return False  # gone: then someone else holds the descriptor
    masks = {}
    for line in text.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"SigPnd", b"ShdPnd", b"SigBlk", b"SigIgn", b"SigCgt"):
            masks[key] = int(value.strip() or b"0", 16)
    pending = masks.get(b"SigPnd", 0) | masks.get(b"ShdPnd", 0)
    if pending & (1 << 8):  # SIGKILL
        return True
    fatal = pending & ~masks.get(b"SigBlk", 0) & ~masks.get(b"SigIgn", 0) & ~masks.get(b"SigCgt", 0)
    return bool(fatal & ~_HARMLESS)


class _Nesting:
    """Bracket depth of a JSON text fed in pieces, outside strings; linear in the bytes fed.

    Only a hint for when a complete document may have arrived: `closed()`
    says no bracket is open (and no string), so it is worth parsing now.
    """

    _OUTSIDE = re.compile(rb'["\[\]{}]')
    _INSIDE = re.compile(rb'["\\]')

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False  # the last byte fed was a backslash inside a string
        self.opened = False
        self.blank = True  # nothing but whitespace so far

    def feed(self, data: bytes) -> None:
        if self.blank and data.strip():
            self.blank = False
        pos, end = 0, len(data)
        if self.escaped and end:
            pos, self.escaped = 1, False
        while pos < end:
            if self.in_string:
                m = self._INSIDE.search(data, pos)
                if m is None:
                    return
                if m.group() == b"\\":
                    if m.end() >= end:
                        self.escaped = True
                        return
                    pos = m.end() + 1
                else:
                    self.in_string, pos = False, m.end()
                continue
            m = self._OUTSIDE.search(data, pos)
            if m is None:
                return
            c, pos = m.group(), m.end()
            if c == b'"':
                self.in_string = True
            elif c in (b"[", b"{"):
                self.depth += 1
                self.opened = True
            else:
                self.depth -= 1

    def closed(self) -> bool:
        if self.in_string:
            return False
        return self.depth <= 0 if self.opened else not self.blank  # (no bracket: a scalar or garbage)


def _valid_json(raw: bytes) -> bool:
    """True when `raw` is one valid JSON document."""
    import json

    try:
        json.loads(raw)
        return True
    except (ValueError, RecursionError):
        return False


def _complete_json(raw: bytes) -> bool:
    """True when `raw` is one complete JSON document (or clearly not JSON at all)."""
    import json

    try:
        json.loads(raw)
        return True
    except RecursionError:
        return True  # nested too deeply to be a batch: refuse it now
    except ValueError as exc:
        # Incomplete documents fail at their very end; anything else is a real error to report now.
        pos = getattr(exc, "pos", None)
        return pos is not None and pos < len(raw.rstrip())
