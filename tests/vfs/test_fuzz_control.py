"""Fuzz of the `.vfs/` control directory over ONE long-lived real mount.

Hypothesis drives writes of random and adversarial input into every command
file (`rollback`, `checkpoint`, `sync`, `mode`, `batch`, `resolve`, `rename`):
binary junk, invalid UTF-8, NUL, huge lines and documents, unicode, paths
with `..`, absolute paths, paths through symlinks that point out of the tree
(on disk from the start, made in the mount, synced to disk), malformed and
deeply nested JSON, conflicting batches, rollback targets, checkpoint, mode,
resolve and rename lines — plus writes to files that take no commands, and
several writers at once.  Inputs are drawn while the run goes (`st.data()`),
so valid ones can name the current journal head, checkpoints and contents.

After every write (`Fuzzer.write`) it checks:
- the write was answered within `BOUND` seconds (a watchdog thread unmounts
  and fails the run otherwise) and the daemon is alive;
- a refused command got an errno, and `cat .vfs/FILE` ends with
  `last: error: REASON [ERRNO]` naming that errno; an accepted one ends with
  `last: ok: ...`; never an internal error (EIO);
- a refused command changed nothing: journal head (`status.json`), the tree
  seen through the mount (a hash of every entry, `.vfs` excluded) and the
  backing directory on disk are as before;
- the disk changes only through an accepted `sync` (or `mode`, or any
  accepted change while the mode is write-through);
- nothing outside the tree is touched: an inotify watch on a canary
  directory (reachable through symlinks in the tree) must stay silent — no
  open, read, write, create or delete — and the canary's secret (or
  /etc/passwd's first line) never appears in any `.vfs` output (every 2,500
  writes all of them are read in full); nothing new appears next to the
  source or the mount.  (While vfs.base still follows symlinks in parent
  components, `BASE_READS_OUTSIDE`, reads of the canary are only counted:
  test_security pins that bug down; writes are always fatal.)

Writes that run exactly one command are checked strictly; a payload holding
several lines may be partly accepted, so it only has to answer with an errno
or success, and its effects are taken as the new state.  Conflicts come from
the watcher, asynchronously, so they are counted, not checked (see
`Fuzzer._conflicts`).  When accepted batches have grown the tree past
`MAX_ENTRIES`, the run rolls back to the checkpoint made at the start.

Each command is written in-process with os.open/os.write/os.close (a write
that completes a line runs it; the rest runs at close, whose error shells
ignore but we do not).  The CI run is about 10,000 writes; `scripts/fuzz_control
--writes N` runs longer (same code: `run_fuzz`).
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, seed as hseed, settings, strategies as st

from mountlib import SAMPLE, make_project, mount_source, unmount

# ---------------------------------------------------------------------------- knobs
BOUND = 30.0                  # seconds a single write (or close) may take
WRITES_PER_EXAMPLE = 25
CI_WRITES = 10_000
FULL_READ_EVERY = 2500        # read every .vfs output in full this often
MOUNT_FLAGS: tuple[str, ...] = ()  # `vfs mount` flags of the fuzzed mount (defaults: what users get)
MAX_ENTRIES = 80              # past this many entries in the tree, roll back to the start (`Fuzzer.reset`)
COMMANDS = ("rollback", "checkpoint", "sync", "mode", "batch", "resolve", "rename")
MAX_LINE = 1 << 20            # vfs.control.tree.MAX_LINE_BYTES
CONFLICT_PATH = "fz/conflict.txt"
POOL = ["fz/a.txt", "fz/b.txt", "fz/c.py", "fz/sub/d.txt", "fz/sub", "fz", CONFLICT_PATH,
        "data/notes.txt", "calc/ops.py", "calc/__init__.py", "README.md", "fz/new.txt", "fz/x/y/z.txt"]
PASSWD_MARK = b"root:x:0:0"


# ---------------------------------------------------------------------------- inotify
class Inotify:
    """A minimal inotify watch (ctypes): every event on the watched paths, read without blocking."""

    ALL_EVENTS = 0xFFF  # access, modify, attrib, close, open, moves, create, delete, delete_self, move_self

    def __init__(self, paths) -> None:
        self._libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.names: dict[int, str] = {}
        for p in paths:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(str(p)), self.ALL_EVENTS)
            if wd < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {p}")
            self.names[wd] = str(p)

    def events(self) -> list[tuple[str, int, str]]:
        """(watched path, mask, name) of every event since the last call."""
        out = []
        while True:
            try:
                buf = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                wd, mask, _cookie, size = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + size].rstrip(b"\0").decode("utf-8", "replace")
                out.append((self.names.get(wd, "?"), mask, name))
                i += 16 + size

    def close(self) -> None:
        os.close(self.fd)


# Events that change something (modify, attrib, close-write, moves, create, delete, delete/move self).
WRITE_EVENTS = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800


def _base_follows_symlinks() -> bool:
    """True while vfs.base.WorktreeBase still resolves `link/x` through a symlink `link` on disk.

    Then the base state of a path below a directory that replaced such a symlink in memory is read
    from outside the tree (see test_security.test_base_is_never_read_through_a_symlink): reads of the
    canary are expected and only counted; writes are always fatal.
    """
    from vfs.base import WorktreeBase

    with tempfile.TemporaryDirectory() as d:
        os.mkdir(os.path.join(d, "real"))
        open(os.path.join(d, "real", "x"), "w").close()
        os.symlink("real", os.path.join(d, "link"))
        base = WorktreeBase(d)
        try:
            return base.stat("link/x") is not None
        finally:
            base.close()


BASE_READS_OUTSIDE = _base_follows_symlinks()


# ---------------------------------------------------------------------------- the world
@dataclass
class World:
    """One mount and its surroundings: the source, a canary directory outside the tree, links to it."""

    root: Path
    src: Path
    mnt: Path
    outside: Path
    canary: Path
    secret: bytes
    mount: object
    commands: list[str]
    watch: Inotify
    root_listing: list[str] = field(default_factory=list)
    outside_listing: list[str] = field(default_factory=list)
    canary_hash: str = ""


def make_world(root: Path) -> World:
    """Build the source, mount it (XDG_STATE_HOME must already point inside `root`)."""
    secret = b"CANARY-" + secrets.token_hex(16).encode()
    outside = root / "outside"
    (outside / "sub").mkdir(parents=True)
    canary = outside / "canary.txt"
    canary.write_bytes(secret + b"\n")
    (outside / "sub" / "inner.txt").write_bytes(secret + b" inner\n")
    files = dict(SAMPLE)
    files.update({"fz/a.txt": "alpha\nbeta\n", "fz/b.txt": "one two three\n", "fz/c.py": "def f():\n    return 1\n",
                  "fz/sub/d.txt": "deep\n", CONFLICT_PATH: "base\n", "__pycache__/cached.txt": "passthrough\n"})
    src = make_project(root / "src", files)
    os.symlink(outside, src / "link_out")          # on disk from the start: part of the base
    os.symlink("/etc", src / "link_etc")
    os.symlink("../outside/canary.txt", src / "link_rel")
    mnt = root / "mnt"
    mnt.mkdir()
    m = mount_source(src, mnt, *MOUNT_FLAGS)
    try:
        mp = mnt
        os.symlink(str(outside), mp / "mnt_out")    # made in the mount (memory only)
        os.symlink("/etc", mp / "mnt_etc")
        os.symlink(str(outside), mp / "synced_out")  # made in the mount, then synced to disk
        _command(mp, "sync", b"synced_out\n")
        _command(mp, "checkpoint", b"base1\n")
        commands = [c for c in COMMANDS if os.path.exists(mp / ".vfs" / c)]
        watch = Inotify([outside, outside / "sub", canary])
        world = World(root, src, mnt, outside, canary, secret, m, commands, watch)
        world.root_listing = sorted(os.listdir(root))
        world.outside_listing = _listing(outside)
        world.canary_hash = hashlib.sha256(canary.read_bytes()).hexdigest()
        watch.events()  # our own reads above
        make_conflict(world)
        return world
    except BaseException:
        unmount(m)
        raise


def close_world(world: World) -> None:
    try:
        world.watch.close()
    finally:
        unmount(world.mount)


def _listing(root: Path) -> list[str]:
    return sorted(str(Path(d, n).relative_to(root)) for d, dirs, names in os.walk(root) for n in dirs + names)


def _command(mp: Path, name: str, payload: bytes) -> None:
    fd = os.open(mp / ".vfs" / name, os.O_WRONLY)
    try:
        os.write(fd, payload)
    finally:
        os.close(fd)


def make_conflict(world: World, timeout: float = 30.0) -> bool:
    """Dirty CONFLICT_PATH in memory, change it on disk: the watcher must report a conflict."""
    mp, disk = world.mnt, world.src / CONFLICT_PATH
    if not (mp / "fz").is_dir() or not disk.parent.is_dir() or disk.is_symlink():
        return False
    if _status(mp)["mode"] == "write-through":
        return False  # every change reaches the disk at once: no conflict possible
    try:
        (mp / CONFLICT_PATH).write_bytes(b"mine " + secrets.token_hex(4).encode() + b"\n")
    except OSError:
        return False
    disk.write_bytes(b"theirs " + secrets.token_hex(4).encode() + b"\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if CONFLICT_PATH in _status(mp)["conflicts"]:
            return True
        time.sleep(0.02)
    raise AssertionError(f"the watcher never reported the conflict on {CONFLICT_PATH}")


def _status(mp: Path) -> dict:
    with open(mp / ".vfs" / "status.json", "rb") as f:
        return json.loads(f.read())


# ---------------------------------------------------------------------------- hashes
def disk_hash(root: Path) -> str:
    return TreeHasher(root)()


class TreeHasher:
    """A hash of every entry below a root (path, type, mode, content or target), `.vfs` excluded (never listed).

    Through FUSE every listing and read costs round trips, so a directory is
    listed again only when its (inode, mtime, ctime, nlink, size) moved, and a
    file read (a symlink's target too) only when its (mode, inode, size, mtime,
    ctime) did: adding, removing or renaming an entry moves its directory's
    mtime and ctime, every change of content moves the file's ctime.  Every
    entry is stat-ed each time (the kernel caches attributes until vfs
    invalidates them).  `contents` holds the bytes of every
    regular file, for the generators.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._files: dict[str, tuple[tuple, bytes]] = {}
        self._dirs: dict[str, tuple[tuple, list]] = {}
        self.contents: dict[str, bytes] = {}
        self.entries = 0

    def _listing(self, rel: str, key: tuple) -> list:
        hit = self._dirs.get(rel)
        if hit is not None and hit[0] == key:
            return hit[1]
        names = sorted(os.listdir(self.root / rel if rel else self.root))
        self._dirs[rel] = (key, names)
        return names

    def __call__(self) -> str:
        h = hashlib.sha256()
        contents: dict[str, bytes] = {}
        files: dict[str, tuple[tuple, bytes]] = {}
        dirs: dict[str, tuple[tuple, list]] = {}
        st = os.lstat(self.root)
        stack = [("", (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, st.st_size))]
        self.entries = 0
        while stack:
            rel, key = stack.pop()
            listing = self._listing(rel, key)
            dirs[rel] = self._dirs[rel]
            for name in listing:
                path = f"{rel}/{name}" if rel else name
                full = self.root / path
                st = os.lstat(full)  # (cached by the kernel until something changed it)
                self.entries += 1
                h.update(f"{path}\0{st.st_mode:o}\0".encode("utf-8", "surrogateescape"))
                if stat.S_ISDIR(st.st_mode):
                    stack.append((path, (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_nlink, st.st_size)))
                elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                    fkey = (st.st_mode, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    hit = self._files.get(path)
                    if hit is None or hit[0] != fkey:
                        if stat.S_ISLNK(st.st_mode):
                            data = os.fsencode(os.readlink(full))
                        else:
                            with open(full, "rb") as f:
                                data = f.read()
                        hit = (fkey, data)
                    files[path] = hit
                    if stat.S_ISREG(st.st_mode):
                        contents[path] = hit[1]
                    h.update(hashlib.sha256(hit[1]).digest())
                h.update(b"\n")
        self._files, self._dirs, self.contents = files, dirs, contents
        return h.hexdigest()


# ---------------------------------------------------------------------------- one write
@dataclass
class Write:
    file: str            # a name under .vfs/
    payload: bytes
    chunks: int = 1      # split into this many os.write calls
    label: str = ""      # what the generator meant (for messages)

    def commands_run(self) -> int:
        """How many commands this payload runs at most (0: none; 2 stands for "more than one")."""
        if not self.payload:
            return 0
        if self.file != "batch":
            return self.payload.count(b"\n") + (0 if self.payload.endswith(b"\n") else 1)
        # vfs also runs a small batch at the end of a write that completes a valid JSON document:
        # a chunk boundary there splits the payload into two commands.
        size = max(1, -(-len(self.payload) // max(1, self.chunks)))
        if any(_valid(self.payload[:b]) for b in range(size, len(self.payload), size) if b <= SMALL_JSON):
            return 2
        # vfs runs a batch at a newline that ends a complete JSON document (or clearly no JSON)
        inner, i = [], self.payload.find(b"\n")
        while 0 <= i < len(self.payload) - 1:
            inner.append(i)
            if len(inner) > 200:
                return 2
            i = self.payload.find(b"\n", i + 1)
        return 2 if any(_judged(self.payload[:i + 1]) for i in inner) else 1

    def describe(self) -> str:
        shown = self.payload if len(self.payload) <= 300 else self.payload[:200] + b"..." + self.payload[-50:]
        return f"{self.file} <- {shown!r} ({len(self.payload)} bytes, {self.chunks} chunk(s); {self.label})"


def _short(text: str | None, limit: int = 400) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit // 2] + "..." + text[-limit // 2:]


SMALL_JSON = 64 << 10  # vfs.control.tree.SMALL_JSON


def _valid(raw: bytes) -> bool:
    """True when `raw` is one valid JSON document (vfs runs a small one at the end of a write)."""
    try:
        json.loads(raw)
        return True
    except (ValueError, RecursionError):
        return False


def _judged(raw: bytes) -> bool:
    """True when vfs would run `raw` as a batch now (vfs.control.tree._complete_json)."""
    try:
        json.loads(raw)
        return True
    except RecursionError:
        return True
    except ValueError as exc:
        pos = getattr(exc, "pos", None)
        return pos is not None and pos < len(raw.rstrip())


class Hang(AssertionError):
    pass


class Watchdog:
    """Fails the run when one operation takes longer than BOUND: unmounts so the blocked call returns."""

    def __init__(self, world: World, bound: float | None = None) -> None:
        self.world, self.bound = world, BOUND if bound is None else bound
        self._lock = threading.Lock()
        self._op: tuple[float, str] | None = None
        self.fired: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-watchdog", daemon=True)
        self._thread.start()

    def begin(self, what: str) -> None:
        with self._lock:
            self._op = (time.monotonic(), what)

    def end(self) -> float:
        with self._lock:
            started = self._op[0] if self._op else time.monotonic()
            self._op = None
        if self.fired:
            raise Hang(self.fired)
        return time.monotonic() - started

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                op = self._op
            if op is not None and time.monotonic() - op[0] > self.bound:
                self.fired = f"no answer within {self.bound:.0f} s to: {op[1]}"
                subprocess.run(["fusermount3", "-uz", str(self.world.mnt)], capture_output=True)
                try:
                    os.kill(self.world.mount.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class Stats:
    writes: int = 0
    refused: int = 0
    accepted: int = 0
    lenient: int = 0
    by_file: dict[str, int] = field(default_factory=dict)
    errnos: dict[str, int] = field(default_factory=dict)
    max_latency: float = 0.0
    slowest: str = ""
    conflicts_made: int = 0
    resets: int = 0
    base_reads_outside: int = 0  # canary reads by the unfixed vfs.base (BASE_READS_OUTSIDE)
    entries: int = 0  # summed over writes: the tree's size as the checks saw it
    time_in: dict = field(default_factory=dict)  # (file, accepted) -> seconds spent in the write
    stray_conflicts: set = field(default_factory=set)
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        took = time.monotonic() - self.started
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.errnos.items(), key=lambda kv: -kv[1])[:8])
        files = ", ".join(f"{k} {v}" for k, v in sorted(self.by_file.items()))
        return (f"{self.writes} writes in {took:.1f} s ({self.writes / max(took, 1e-9):.0f}/s): "
                f"{self.accepted} accepted, {self.refused} refused, {self.lenient} multi-command; "
                f"per file: {files}; errnos: {top}; slowest {self.max_latency * 1000:.0f} ms ({self.slowest}); "
                f"canary reads (base bug): {self.base_reads_outside}; "
                f"tree size {self.entries / max(self.writes, 1):.0f} entries on average, resets: {self.resets}; conflicts made: {self.conflicts_made}, stray: {sorted(self.stray_conflicts)}")


class Fuzzer:
    """Performs writes on a World and checks every promise after each (see module docstring)."""

    def __init__(self, world: World, *, full_read_every: int = FULL_READ_EVERY) -> None:
        self.w = world
        self.stats = Stats()
        self.dog = Watchdog(world)
        self.full_read_every = full_read_every
        self.checkpoints = ["base1"]
        self._cp = 0
        # `.vfs` held open: reading a control file then costs one lookup less (they are never cached)
        self.vfs_fd = os.open(world.mnt / ".vfs", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.failure: BaseException | None = None
        self.progress = None  # called with a summary line every 1,000 writes (scripts/fuzz_control)
        self.tree_hash = TreeHasher(world.mnt)
        self.disk_hash = TreeHasher(world.src)
        self.refresh()

    # -------------------------------------------------------------- observed state
    def read_control(self, name: str) -> bytes:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.vfs_fd)
        try:
            chunks = [os.read(fd, 1 << 20)]
            while len(chunks[-1]) == 1 << 20:  # (a short read is the end: views are rendered whole at open)
                chunks.append(os.read(fd, 1 << 20))
            return b"".join(chunks)
        finally:
            os.close(fd)

    def status(self) -> dict:
        return json.loads(self.read_control("status.json"))

    def refresh(self) -> None:
        st = self.status()
        self.head = st["journal_head"]
        self.mode = st["mode"]
        self.conflicts = set(st["conflicts"])
        self.tree = self.tree_hash()
        self.disk = self.disk_hash()

    @property
    def contents(self) -> dict[str, bytes]:
        return self.tree_hash.contents

    def known_checkpoint(self, i: int) -> str:
        """Mostly one of the last few (a rollback replays every entry since its target: the run would
        slow down as the journal grows), now and then any."""
        cps = self.checkpoints
        return cps[i % len(cps)] if i % 10 == 0 else cps[-1 - (i // 10) % min(len(cps), 8)]

    def fresh_checkpoint(self) -> str:
        self._cp += 1
        return f"fz{self._cp}-{secrets.token_hex(2)}"

    # -------------------------------------------------------------- writing
    def _raw_write(self, w: Write) -> tuple[str, int | None]:
        """('ok', None) or (stage, errno); stage is open, write or close."""
        try:
            fd = os.open(w.file, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, dir_fd=self.vfs_fd)
        except OSError as exc:
            return "open", exc.errno
        try:
            data = memoryview(w.payload)
            n = max(1, w.chunks)
            size = max(1, -(-len(data) // n))
            while data:
                piece, data = data[:size], data[size:]
                while piece:
                    piece = piece[os.write(fd, piece):]
        except OSError as exc:
            try:
                os.close(fd)
            except OSError:
                pass
            return "write", exc.errno
        try:
            os.close(fd)
        except OSError as exc:
            return "close", exc.errno
        return "ok", None

    def last_line(self, name: str) -> str:
        text = self.read_control(name)
        self._no_leak(text, f".vfs/{name}")
        lines = text.rstrip(b"\n").split(b"\n")  # (as `tail -1` sees it: only \n ends a line)
        return lines[-1].decode("utf-8", "replace")

    def write(self, w: Write) -> str:
        """Do one write and check everything; returns 'ok' or the errno name."""
        self.dog.begin(w.describe())
        stage, err = self._raw_write(w)
        took = self.dog.end()
        self._alive(w)
        self.stats.writes += 1
        self.stats.by_file[w.file] = self.stats.by_file.get(w.file, 0) + 1
        key = (w.file, err is None)
        self.stats.time_in[key] = self.stats.time_in.get(key, 0.0) + took
        self.stats.entries += self.tree_hash.entries
        if took > self.stats.max_latency:
            self.stats.max_latency, self.stats.slowest = took, w.describe()[:120]
        strict = w.commands_run() <= 1
        outcome = "ok" if err is None else errno.errorcode.get(err, str(err))
        self.stats.errnos[outcome] = self.stats.errnos.get(outcome, 0) + 1
        if w.file not in self.w.commands:
            assert err is not None, f"a write to a file that takes no commands succeeded: {w.describe()}"
            self._unchanged(w, outcome)
            return outcome
        last = self.last_line(w.file) if w.commands_run() else None
        if err is not None:
            assert err != errno.EIO, f"internal error (EIO) for {w.describe()}: {_short(last)}"
            assert last is not None, f"{w.describe()} refused ({outcome}) though no command ran"
            m = re.fullmatch(r"last: error: (.+) \[([A-Z0-9]+)\]", last)
            assert m, f"refused with {outcome} at {stage}, but `cat .vfs/{w.file}` ends with {_short(last)!r}: " \
                      f"{w.describe()}"
            assert m.group(2) == outcome, (f"the writer got {outcome} but .vfs/{w.file} says {m.group(2)}: "
                                          f"{_short(last)!r} for {w.describe()}")
            assert "internal error" not in m.group(1), f"{_short(last)!r} for {w.describe()}"
            assert len(last) < 5000, f"a message of {len(last)} characters for {w.describe()}"
        elif last is not None and strict:
            assert last.startswith("last: ok: "), \
                f"accepted, but .vfs/{w.file} ends with {_short(last)!r}: {w.describe()}"
        if err is not None and strict:
            self.stats.refused += 1
            self._unchanged(w, outcome)
        else:
            if err is None and strict:
                self.stats.accepted += 1
            else:
                self.stats.lenient += 1
            self._moved_on(w)
        self._outside_untouched(w)
        if self.stats.writes % self.full_read_every == 0:
            self.full_read()
        if self.progress is not None and self.stats.writes % 1000 == 0:
            self.progress(self.stats.summary())
        return outcome

    def _alive(self, w: Write) -> None:
        try:
            os.kill(self.w.mount.pid, 0)
        except ProcessLookupError:
            raise AssertionError(f"the daemon died after {w.describe()}") from None

    def _unchanged(self, w: Write, outcome: str) -> None:
        st = self.status()
        tree = self.tree_hash()
        disk = self.disk_hash()
        assert st["journal_head"] == self.head, \
            f"refused ({outcome}) but the journal moved {self.head} -> {st['journal_head']}: {w.describe()}"
        assert tree == self.tree, f"refused ({outcome}) but the tree changed: {w.describe()}"
        assert disk == self.disk, f"refused ({outcome}) but the disk changed: {w.describe()}"
        assert st["mode"] == self.mode, f"refused ({outcome}) but the mode changed: {w.describe()}"
        self._conflicts(st)

    def _moved_on(self, w: Write, files: set[str] | None = None) -> None:
        old_disk, old_mode = self.disk, self.mode
        st = self.status()
        self.head, self.mode = st["journal_head"], st["mode"]
        self.tree = self.tree_hash()
        self.disk = self.disk_hash()
        if self.disk != old_disk:
            assert (files or {w.file}) & {"sync", "mode"} or "write-through" in (old_mode, self.mode), \
                f"the disk changed without a sync: {w.describe()}"
        self._conflicts(st)
        if self.tree_hash.entries > MAX_ENTRIES:
            self.reset()
        if w.file == "checkpoint" and w.payload.strip():
            name = w.payload.decode("utf-8", "replace").strip().splitlines()[-1].strip()
            if name and name not in self.checkpoints:
                self.checkpoints.append(name)

    def _conflicts(self, st: dict) -> None:
        """Conflicts come from the watcher, asynchronously: not the write's doing, only counted.

        Besides the one `make_conflict` makes, a conflict appears when a path is
        changed in memory right after a sync wrote it and the watcher reports
        that write late (vfs takes its own write for an outside edit; see
        test_sync_then_edit_is_no_conflict).
        """
        now = set(st["conflicts"])
        self.stats.stray_conflicts |= now - {CONFLICT_PATH}
        self.conflicts = now

    def _outside_untouched(self, w: Write) -> None:
        events = self.w.watch.events()
        if BASE_READS_OUTSIDE and events and not any(e[1] & WRITE_EVENTS for e in events):
            self.stats.base_reads_outside += 1  # the known vfs.base bug; writes stay fatal
            return
        assert not events, f"something touched the canary directory outside the tree: {events} after {w.describe()}"

    def _no_leak(self, data: bytes, where: str) -> None:
        assert self.w.secret not in data, f"the canary's secret appeared in {where}"
        assert PASSWD_MARK not in data, f"/etc/passwd content appeared in {where}"

    def full_read(self) -> None:
        """Read every .vfs output in full (no secret anywhere); check the surroundings."""
        mp = self.w.mnt / ".vfs"
        names = [n for n in os.listdir(mp) if n != "events"]
        for name in names:
            p = mp / name
            if p.is_dir():
                continue
            with open(p, "rb") as f:
                self._no_leak(f.read(), f".vfs/{name}")
        for sub in ("versions", "diffs"):
            for d, _dirs, files in os.walk(mp / sub):
                for n in files:
                    with open(Path(d) / n, "rb") as f:
                        self._no_leak(f.read(), str(Path(d, n).relative_to(self.w.mnt)))
        assert sorted(os.listdir(self.w.root)) == self.w.root_listing, "something appeared next to the source"
        assert _listing(self.w.outside) == self.w.outside_listing, "the canary directory changed"
        self.w.watch.events()  # (listing it above is our own access)
        self.refresh_links()

    def reset(self) -> None:
        """Back to the checkpoint made at the start: accepted batches may have grown the tree
        (a directory 600 deep), and every check walks all of it."""
        self.dog.begin("rollback @base1 (reset)")
        _command(self.w.mnt, "rollback", b"@base1\n")
        self.dog.end()
        self.stats.resets += 1
        self.refresh()

    def refresh_links(self) -> None:
        """Put back the in-memory symlinks (a rollback to before them removes them), and a conflict."""
        mp = self.w.mnt
        changed = False
        for name, target in (("mnt_out", str(self.w.outside)), ("mnt_etc", "/etc")):
            if not os.path.lexists(mp / name):
                try:
                    os.symlink(target, mp / name)
                    changed = True
                except OSError:
                    pass
        if not self.conflicts and make_conflict(self.w):
            self.stats.conflicts_made += 1
            changed = True
        if changed:
            self.refresh()

    def close(self) -> None:
        self.dog.stop()
        try:
            os.close(self.vfs_fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------- strategies
BAD_PATHS = [
    "..", "../", "../outside/canary.txt", "../../etc/passwd", "data/../../x", "data/../..", "a/./b/../../..",
    "/etc/passwd", "/", "//", "/tmp/evil.txt", "///etc//passwd", "./../x", "fz/../../outside",
    ".vfs", ".vfs/status", "./.vfs/log", ".vfs/../.vfs/batch", "a\0b", "data/notes.txt\0", "\0",
    "~/.bashrc", "$HOME/x", "`id`", "$(id)", "\\..\\..\\etc\\passwd", "..\\x", "C:\\Windows",
    "x" * 300, "/".join(["d"] * 600), "data/notes.txt/", "data//notes.txt", "./data/notes.txt",
    " data/notes.txt", "data/notes.txt ", "data/notes.txt\t2", "data/notes.txt 1 2", "-1", "--help",
    "fz/a.txt\r", "é/ü/ñ.txt", "\u202eevil", "\ufeffbom.txt", "con", "nul", "*", "?", "[a-z]", "%2e%2e/x",
    "link_out/canary.txt", "link_out/sub/inner.txt", "link_out/new.txt", "link_out", "link_out/",
    "link_etc/passwd", "link_etc/shadow", "link_etc", "link_rel", "link_rel/x",
    "mnt_out/canary.txt", "mnt_out/sub/inner.txt", "mnt_etc/passwd", "mnt_etc",
    "synced_out/canary.txt", "synced_out/sub", "link_etc/../etc/passwd", "__pycache__/cached.txt",
    "__pycache__/new.txt", "__pycache__", "calc/__pycache__/x.pyc",
]

_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1,
                 max_size=12)
paths = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(BAD_PATHS),
    st.lists(st.one_of(_names, st.sampled_from(["..", ".", "", "fz", "link_out", "mnt_etc", "data"])),
             min_size=1, max_size=5).map("/".join),
    st.text(max_size=40),
)


def _huge(n: int, unit: bytes) -> bytes:
    return (unit * (n // len(unit) + 1))[:n]


junk = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(1, 3000)),
    st.sampled_from([b"\xff\xfe\n", b"\xc3\n", b"\xed\xa0\x80\n", b"abc\0def\n", b"\0", b"\r\n", b"\r",
                     b"\n\n\n", b"   \n", b"\t\n", b"\x1b[2J\n", b"\xe2\x80\xae\n", b"\xf4\x90\x80\x80\n"]),
)

# Lines around the 1 MiB limit, one time in four (they are slow to push through; junk otherwise).
huge = st.builds(lambda gate, n, unit, nl, other: _huge(n, unit) + (b"\n" if nl else b"") if gate == 2 else other,
                 st.integers(0, 3),
                 st.sampled_from([MAX_LINE - 2, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 5000, 2 * MAX_LINE]),
                 st.sampled_from([b"a", b"0", b"/..", b"\xc3\xa9", b"[", b"link_out/"]), st.booleans(), junk)


def line(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass") + b"\n"


@st.composite
def rollback_payload(draw, fz: Fuzzer) -> bytes:
    # (The draws never depend on the mount's state, only the values made from them:
    # hypothesis requires the same choices to lead to the same draws.)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return line(str(max(0, fz.head - draw(st.integers(-3, 30)))))
    if kind == 1:
        return line(draw(st.sampled_from(["-1", "+1", "1e3", "0x10", " 0", "00", "1.5", "١٢", "9" * 30, "9" * 5000,
                                          str(fz.head + 1), str(2 ** 63), str(-(2 ** 63))])))
    if kind == 2:
        name = draw(st.one_of(st.integers(0, 1 << 20).map(fz.known_checkpoint), _names,
                              st.sampled_from(["", "@", "../x", "a b"])))
        return line("@" + name)
    if kind in (3, 4, 5):
        path = draw(paths)
        version = draw(st.one_of(st.none(), st.integers(-2, 8).map(str), st.sampled_from(["99999999999", "x", "1 2"])))
        return line(path if version is None else f"{path} {version}")
    if kind == 6:
        return draw(junk)
    if kind == 7:
        return draw(huge)
    if kind == 8:
        back = draw(st.lists(st.integers(-2, 5), min_size=2, max_size=3))
        return b"".join(line(str(max(0, fz.head - n))) for n in back)
    return line(draw(st.text(max_size=60)))


@st.composite
def checkpoint_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 7))
    if kind in (0, 1):
        return line(fz.fresh_checkpoint())
    if kind == 2:
        return line(fz.known_checkpoint(draw(st.integers(0, 1 << 20))))
    if kind == 3:
        return line(draw(st.sampled_from(["", " ", "a" * 64 + "b", "bad name", "-lead", ".hidden", "a/b", "../up",
                                          "é", "x\ty", "@x", "a" * 70, "ok.name_1-2 ", "\u0660"])))
    if kind == 4:
        return draw(junk)
    if kind == 5:
        return draw(huge)
    if kind == 6:
        return line(fz.fresh_checkpoint()).rstrip(b"\n")  # runs at close
    return line(draw(st.text(max_size=70)))


@st.composite
def sync_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return b"\n"
    if kind in (1, 2, 3):
        return line(draw(paths))
    if kind == 4:
        return draw(junk)
    if kind == 5:
        return draw(huge)
    return line(draw(st.text(max_size=40)))


@st.composite
def mode_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind in (0, 1):
        return line(draw(st.sampled_from(["on-demand", "write-through", "lazy", " on-demand ", "lazy\r"])))
    if kind == 2:
        return line(draw(st.sampled_from(["ON-DEMAND", "write_through", "lazy lazy", "", "on-demand\0", "eager",
                                          "on-demand\nlazy", "writethrough", "lazy;rm -rf /"])))
    if kind == 3:
        return draw(junk)
    if kind == 4:
        return draw(huge)
    return line(draw(st.text(max_size=30)))


@st.composite
def resolve_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 5))
    how = draw(st.sampled_from(["mine", "theirs", "merge", "MINE", "both", "", "mine theirs", "../x"]))
    which = draw(st.integers(0, 1 << 20))
    if kind in (0, 1):
        pending = sorted(fz.conflicts) or [CONFLICT_PATH]
        return line(f"{pending[which % len(pending)]} {how}")
    if kind == 2:
        return line(f"{draw(paths)} {how}")
    if kind == 3:
        return draw(junk)
    if kind == 4:
        return draw(huge)
    return line(draw(st.text(max_size=50)))


IDENTS = ["add", "mul", "plus", "times", "f", "g", "_x", "class", "1abc", "a.b", "", "é", "None", "x" * 300,
          "a-b", "__init__", "ops", "calc"]


@st.composite
def rename_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 5))
    qual = draw(st.sampled_from(["calc.ops.add", "calc.ops.mul", "calc.add", "fz.c.f", "calc.ops", "calc",
                                 "nope.x", "..", "calc..add", ".calc.add", "calc.ops.add.extra", "link_etc.passwd"]))
    if kind in (0, 1):
        return line(f"{qual} {draw(st.sampled_from(IDENTS))}")
    if kind == 2:
        return line(f"{draw(paths)} {draw(st.sampled_from(IDENTS))}")
    if kind == 3:
        return draw(junk)
    if kind == 4:
        return draw(huge)
    return line(draw(st.text(max_size=50)))


def _json_text(draw) -> str:
    return draw(st.one_of(st.text(max_size=30), st.sampled_from(["", "\n", "\0", "x" * 5000, "é\u202e", "alpha",
                                                                "beta", "one", "def f():\n    return 1\n",
                                                                "def broken(:\n"])))


@st.composite
def edit(draw, fz: Fuzzer) -> dict:
    path = draw(st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), paths))
    kind = draw(st.sampled_from(["old", "old", "content", "content", "delete", "rename_to", "weird"]))
    if kind == "old":
        from_file, at, size, other = draw(st.booleans()), draw(st.integers(0, 1 << 20)), draw(st.integers(1, 8)), \
            _json_text(draw)
        text = fz.contents.get(path, b"").decode("utf-8", "replace")
        old = text[at % len(text):at % len(text) + size] if from_file and text else other
        return {"path": path, "old": old, "new": _json_text(draw)}
    if kind == "content":
        return {"path": path, "content": _json_text(draw)}
    if kind == "delete":
        return {"path": path, "delete": draw(st.sampled_from([True, True, False, 1, "yes", None]))}
    if kind == "rename_to":
        return {"path": path, "rename_to": draw(st.one_of(st.sampled_from(POOL), paths))}
    return draw(st.sampled_from([
        {"path": path}, {"path": path, "old": "a"}, {"path": path, "new": "a"}, {"path": path, "content": 1},
        {"path": path, "content": None}, {"path": 5, "content": "x"}, {"path": "", "content": "x"},
        {"path": path, "content": "x", "delete": True}, {"path": path, "extra": 1}, {"content": "x"},
        {"path": path, "old": "", "new": "x"}, {"path": path, "rename_to": ""}, {"path": path, "rename_to": 3},
        {"path": [path], "content": "x"}, {"path": {"p": path}, "content": "x"},
    ]))


@st.composite
def batch_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 11))
    if kind == 10 and draw(st.integers(0, 30)) != 17:
        kind = 0  # the 64 MiB ones are rare
    if kind <= 4:
        edits = draw(st.lists(edit(fz), min_size=1, max_size=6))
        text = json.dumps(edits, ensure_ascii=draw(st.booleans()))
        return text.encode("utf-8", "surrogatepass") + (b"\n" if draw(st.integers(0, 4)) else b"")
    if kind == 5:  # malformed JSON
        good = json.dumps([{"path": "fz/a.txt", "content": "x"}])
        cut = draw(st.integers(0, len(good) - 1))
        return draw(st.sampled_from([
            good[:cut], good[:cut] + "\n", good.replace("[", "", 1), good + ",", good + "\n" + good, "[" + good,
            "{bad json\n", "[1, 2]\n", "[]\n", "{}\n", "null\n", "true\n", "\"x\"\n", "1e999\n", "NaN\n",
            "[{\"path\": \"fz/a.txt\", \"content\": \"x\",}]\n", "[{'path': 'fz/a.txt'}]\n",
            "[{\"path\": \"fz/a.txt\", \"content\": \"\\ud800\"}]\n", "[{\"path\": \"\\udcff\", \"content\": \"x\"}]\n",
            "[{\"path\": \"fz/a.txt\", \"content\": \"\\udcff\"}]\n", "[{\"path\": \"fz/\\u0000\", \"content\": \"x\"}]\n",
            "[{\"path\": \"fz/a.txt\", \"path\": \"../x\", \"content\": \"x\"}]\n",
        ])).encode()
    if kind == 6:  # deeply nested
        depth = draw(st.sampled_from([100, 1000, 5000, 100_000]))
        opener = draw(st.sampled_from([b"[", b"{\"a\":"]))
        return opener * depth + (b"\n" if draw(st.booleans()) else b"")
    if kind == 7:  # big but valid: content of a pool file
        n = draw(st.sampled_from([70_000, 500_000, 2_000_000]))
        edits = [{"path": draw(st.sampled_from(["fz/a.txt", "fz/b.txt", "fz/big.txt"])), "content": "b" * n}]
        return json.dumps(edits).encode() + b"\n"
    if kind == 8:  # conflicting edits on a few paths
        few = st.sampled_from(["fz/a.txt", "fz/b.txt", "fz/sub", "fz/sub/d.txt", "fz/moved", "fz/moved/d.txt",
                               "link_out", "link_out/x.txt", "fz"])
        ops = st.one_of(
            st.builds(lambda p, q: {"path": p, "rename_to": q}, few, few),
            st.builds(lambda p: {"path": p, "delete": True}, few),
            st.builds(lambda p: {"path": p, "content": "c\n"}, few),
            st.builds(lambda p: {"path": p, "old": "a", "new": "b"}, few),
        )
        return json.dumps(draw(st.lists(ops, min_size=2, max_size=6))).encode() + b"\n"
    if kind == 9:
        return draw(junk)
    if kind == 10:
        return draw(st.sampled_from([_huge(64 << 20, b" ") + b"x", b"[" + _huge((64 << 20) + 10, b" ")]))
    return json.dumps(draw(st.lists(edit(fz), min_size=1, max_size=3)), indent=2).encode() + b"\n"


PAYLOADS = {
    "rollback": rollback_payload, "checkpoint": checkpoint_payload, "sync": sync_payload, "mode": mode_payload,
    "batch": batch_payload, "resolve": resolve_payload, "rename": rename_payload,
}
READ_ONLY = ["status", "status.json", "README", "log", "diff", "changed", "errors", "conflicts", "branch",
             "versions/data/notes.txt/1", "diffs/fz/a.txt", "agents", "versions", "no-such-file", "events",
             "../.vfs/status", "symbols/calc/ops.py", "defs/add", "refs/calc.ops.add"]


@st.composite
def one_write(draw, fz: Fuzzer) -> Write:
    if draw(st.integers(0, 40)) == 23:  # (hypothesis favours small and boundary values)
        return Write(draw(st.sampled_from(READ_ONLY)), line("0"), 1, "not a command file")
    name = draw(st.sampled_from(fz.w.commands))
    payload = draw(PAYLOADS[name](fz))
    chunks = draw(st.sampled_from([1, 1, 1, 2, 3, 7]))  # (drawn always: see rollback_payload)
    return Write(name, payload, min(chunks, max(1, len(payload))), "generated")


def parallel_writes(fz: Fuzzer, writes: list[Write]) -> None:
    """Several writers at once, each on its own descriptor; lenient checks, then the state moves on."""
    results: list[tuple[Write, str, int | None]] = []
    lock = threading.Lock()

    def run(w: Write) -> None:
        stage, err = fz._raw_write(w)
        with lock:
            results.append((w, stage, err))

    fz.dog.begin("parallel: " + " | ".join(w.describe()[:80] for w in writes))
    threads = [threading.Thread(target=run, args=(w,)) for w in writes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(BOUND + 5)
    fz.dog.end()
    assert len(results) == len(writes), "a parallel writer never returned"
    for w, _stage, err in results:
        fz._alive(w)
        assert err != errno.EIO, f"internal error (EIO) for {w.describe()}"
        fz.stats.writes += 1
        fz.stats.lenient += 1
        fz.stats.by_file[w.file] = fz.stats.by_file.get(w.file, 0) + 1
        if w.file in fz.w.commands and w.commands_run():
            last = fz.last_line(w.file)
            assert re.fullmatch(r"last: (ok: .*|error: .+ \[[A-Z0-9]+\])", last), last
    fz._moved_on(writes[-1], {w.file for w in writes})
    fz._outside_untouched(writes[-1])


# ---------------------------------------------------------------------------- the run
def run_fuzz(fz: Fuzzer, writes: int, *, seed: int | None = None, derandomize: bool = False,
             per_example: int = WRITES_PER_EXAMPLE) -> None:
    """Drive at least `writes` writes through hypothesis (no shrinking: the mount's state moves on)."""
    examples = -(-writes // per_example)

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def example(data) -> None:
        if fz.failure is not None:
            raise fz.failure  # (hypothesis replays a failing example: the mount has moved on since)
        try:
            for _ in range(per_example):
                if data.draw(st.integers(0, 60), label="parallel?") == 37:
                    parallel_writes(fz, [data.draw(one_write(fz)) for _ in range(data.draw(st.integers(2, 4)))])
                    continue
                w = data.draw(one_write(fz), label="write")
                fz.write(w)
        except Exception as exc:
            fz.failure = exc
            raise

    if seed is not None:
        example = hseed(seed)(example)
    while fz.stats.writes < writes:  # (hypothesis may end a round early: then another one)
        try:
            example()
        except Exception:
            if fz.failure is not None:
                raise fz.failure from None  # the first failure, not what a replay on a changed mount saw
            raise


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        w = make_world(root)
    try:
        yield w
    finally:
        close_world(w)


def test_fuzz_control_directory(world):
    """≥ 10,000 writes of random and adversarial input; every promise checked after each (module docstring)."""
    fz = Fuzzer(world)
    try:
        run_fuzz(fz, CI_WRITES, derandomize=True)
        fz.full_read()
    finally:
        fz.close()
        print(fz.stats.summary())
    assert fz.stats.writes >= CI_WRITES
    assert fz.stats.refused > CI_WRITES // 4 and fz.stats.accepted > 200, fz.stats.summary()
    assert set(fz.stats.by_file) >= set(world.commands)
    assert hashlib.sha256(world.canary.read_bytes()).hexdigest() == world.canary_hash
    assert _listing(world.outside) == world.outside_listing


# ---------------------------------------------------------------------------- regressions
# Bugs the fuzz found, each pinned down on its own (one shared mount; each test leaves it usable).
def send(mp: Path, name: str, payload: bytes, chunks: list[bytes] | None = None) -> str:
    """Write `payload` (or `chunks`, one write each) to .vfs/NAME; 'ok' or the errno name of the failure."""
    fd = os.open(mp / ".vfs" / name, os.O_WRONLY | os.O_TRUNC)
    try:
        for piece in chunks if chunks is not None else [payload]:
            view = memoryview(piece)
            while view:  # a big write(2) reaches FUSE in pieces: one refused gives a short count, then the error
                view = view[os.write(fd, view):]
    except OSError as exc:
        os.close(fd)
        return errno.errorcode[exc.errno]
    try:
        os.close(fd)
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "ok"


def last(mp: Path, name: str) -> str:
    return (mp / ".vfs" / name).read_bytes().rstrip(b"\n").split(b"\n")[-1].decode()


def head_of(mp: Path) -> int:
    return _status(mp)["journal_head"]


@pytest.fixture(scope="module")
def regress(tmp_path_factory):
    root = tmp_path_factory.mktemp("regress")
    src = make_project(root / "src", {**SAMPLE, "__pycache__/cached.txt": "on disk\n"})
    mnt = root / "mnt"
    mnt.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        m = mount_source(src, mnt)
    try:
        yield m
    finally:
        unmount(m)


def test_deeply_nested_json_is_invalid_not_an_internal_error(regress):
    mp = regress.path
    for payload in (b"[" * 100_000 + b"\n", b'{"a":' * 50_000 + b"\n", b"[" * 100_000):
        assert send(mp, "batch", payload) == "EINVAL"
        assert last(mp, "batch") == "last: error: invalid JSON: nested too deeply [EINVAL]"


def test_big_batch_written_line_by_line_takes_linear_time(regress):
    """Every newline used to re-parse the whole buffer: 2 MB of pretty JSON in 32,000 writes took minutes
    (and the FUSE loop served nobody meanwhile)."""
    mp = regress.path
    edits = [{"path": f"big/f{i % 20}.txt", "content": "x\\\"[{" * 40} for i in range(8000)]
    lines = (json.dumps(edits, indent=2) + "\n").encode().splitlines(keepends=True)
    assert len(lines) > 30_000
    started = time.monotonic()
    assert send(mp, "batch", b"", chunks=lines) == "ok"
    assert time.monotonic() - started < 30
    assert last(mp, "batch").startswith("last: ok: batch applied at seq ")
    assert (mp / "big" / "f3.txt").read_text() == "x\\\"[{" * 40
    assert send(mp, "batch", json.dumps([{"path": "big", "delete": True}]).encode() + b"\n") == "ok"


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{} \n'),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='"\\[]{}x'), inner,
                                                                               max_size=3)),
       st.lists(st.integers(1, 9), min_size=1, max_size=50), st.integers(0, 2))
def test_json_nesting_hint(doc, cuts, indent):
    """The hint that decides when a big batch is worth parsing: closed exactly at the end of a document
    (never before), whatever pieces it arrives in, brackets and escapes inside strings included."""
    from vfs.control.tree import _Nesting

    text = json.dumps([doc], indent=indent or None).encode()
    n, pos = _Nesting(), 0
    for cut in cuts:
        if pos >= len(text) - 1:
            break
        piece = text[pos:min(pos + cut, len(text) - 1)]
        n.feed(piece)
        pos += len(piece)
        assert not n.closed(), (text, pos)
    n.feed(text[pos:])
    assert n.closed() and n.depth == 0


def test_diff_with_a_new_or_deleted_directory(regress):
    mp = regress.path
    (mp / "newdir" / "sub").mkdir(parents=True)
    (mp / "newdir" / "sub" / "f.txt").write_text("f\n")
    try:
        diff = (mp / ".vfs" / "diff").read_text()  # used to fail with EIO (a directory has no diff side)
        assert "diff --git a/newdir/sub/f.txt b/newdir/sub/f.txt" in diff
        assert "A newdir/" in (mp / ".vfs" / "changed").read_text().splitlines()
    finally:
        shutil.rmtree(mp / "newdir")


def test_batch_refuses_passthrough_paths(regress):
    """A batch wrote an empty file to the disk (its content only in memory) and said 'applied'; a batch
    refused later still left the file on disk."""
    mp, src = regress.path, regress.source
    disk = disk_hash(src)
    head = head_of(mp)
    for edits, where in (([{"path": "__pycache__/new.txt", "content": "x"}], "__pycache__/new.txt"),
                         ([{"path": "calc/__pycache__/x.pyc", "content": ""}], "calc/__pycache__/x.pyc"),
                         ([{"path": "__pycache__/cached.txt", "old": "disk", "new": "mem"}], "__pycache__/cached.txt"),
                         ([{"path": "README.md", "rename_to": "__pycache__/R.md"}], "__pycache__/R.md"),
                         ([{"path": "data/notes.txt", "content": "ok"},
                           {"path": "__pycache__/y.txt", "content": "x"}], "__pycache__/y.txt")):
        assert send(mp, "batch", json.dumps(edits).encode() + b"\n") == "EXDEV", edits
        assert last(mp, "batch").endswith(f"{where} is a passthrough path (on disk, not in memory): "
                                          "write it directly [EXDEV]"), last(mp, "batch")
    assert disk_hash(src) == disk and head_of(mp) == head
    assert (mp / "data" / "notes.txt").read_text() == SAMPLE["data/notes.txt"]


def test_rollback_refuses_passthrough_paths(regress):
    """A rollback of a passthrough path recorded it as deleted, and the next sync removed it from the disk."""
    mp, src = regress.path, regress.source
    assert send(mp, "rollback", b"__pycache__/cached.txt\n") == "EXDEV"
    assert last(mp, "rollback") == ("last: error: __pycache__/cached.txt is a passthrough path (on disk, not "
                                    "in memory): it has no versions [EXDEV]")
    assert send(mp, "sync", b"__pycache__/cached.txt\n") == "ok"
    assert (src / "__pycache__" / "cached.txt").read_text() == "on disk\n"
    assert "__pycache__" not in (mp / ".vfs" / "changed").read_text()


def test_batch_strings_with_surrogates(regress):
    mp = regress.path
    head = head_of(mp)
    for edits in ([{"path": "\udcff", "content": "x"}], [{"path": "data/x\ud800.txt", "content": "x"}],
                  [{"path": "data/notes.txt", "content": "\ud800"}], [{"path": "README.md", "rename_to": "\udc80"}]):
        assert send(mp, "batch", json.dumps(edits).encode() + b"\n") == "EINVAL", edits
        assert "holds a lone surrogate (not Unicode text) [EINVAL]" in last(mp, "batch")
    assert head_of(mp) == head
    # In contents, \udc80-\udcff stand for raw bytes (what os.fsdecode makes of them).
    assert send(mp, "batch", json.dumps([{"path": "data/raw.bin", "content": "a\udcffb"}]).encode() + b"\n") == "ok"
    assert (mp / "data" / "raw.bin").read_bytes() == b"a\xffb"
    (mp / "data" / "raw.bin").unlink()


def test_rollback_numbers_and_names_too_long(regress):
    mp = regress.path
    assert send(mp, "rollback", b"9" * 5000 + b"\n") == "ENOENT"
    assert last(mp, "rollback").startswith("last: error: no journal entry 9999999999999999999... (head is ")
    assert send(mp, "rollback", b"data/notes.txt " + b"1" * 5000 + b"\n") == "ENOENT"
    assert last(mp, "rollback") == "last: error: data/notes.txt has no version 1111111111111111111... [ENOENT]"
    assert send(mp, "rollback", b"a" * 300 + b"\n") == "ENAMETOOLONG"
    assert send(mp, "rollback", b"a" * (MAX_LINE - 1) + b"\n") == "ENAMETOOLONG"
    shown = last(mp, "rollback")
    assert shown.endswith("File name too long [ENAMETOOLONG]") and len(shown) < 2200


def test_messages_stay_on_one_line(regress):
    """A path holding a newline (possible in JSON) split the outcome over two lines of `cat FILE`."""
    mp = regress.path
    edits = [{"path": "no\nsuch\x1b[2J\u2028file", "old": "a", "new": "b"}]
    assert send(mp, "batch", json.dumps(edits).encode() + b"\n") == "ENOENT"
    text = (mp / ".vfs" / "batch").read_text()
    assert text.splitlines()[-1] == ("last: error: edit 1 (no\\nsuch\\x1b[2J\\u2028file): no such file [ENOENT]")
    assert text.endswith("[ENOENT]\n") and text.count("\n") == 2  # usage, outcome


def test_resolve_merge_with_overlaps_is_carried_out(regress):
    """An overlapping merge wrote conflict markers (a journal entry) and then failed the writer (EAGAIN):
    a refused command must change nothing, so it is an accepted one that says the conflict stays."""
    mp, src = regress.path, regress.source
    (mp / "data" / "notes.txt").write_text("alpha\nMINE\ngamma\n")
    (src / "data" / "notes.txt").write_text("alpha\nTHEIRS\ngamma\n")
    deadline = time.monotonic() + 10
    while "data/notes.txt" not in _status(mp)["conflicts"]:
        assert time.monotonic() < deadline, "the watcher never reported the conflict"
        time.sleep(0.02)
    head = head_of(mp)
    assert send(mp, "resolve", b"data/notes.txt merge\n") == "ok"
    assert last(mp, "resolve") == ("last: ok: data/notes.txt: overlapping changes; conflict markers written, "
                                   "still in conflict (edit it, then 'merge' again, or 'mine')")
    assert head_of(mp) == head + 1
    merged = (mp / "data" / "notes.txt").read_text()
    assert "<<<<<<<" in merged and "MINE" in merged and "THEIRS" in merged
    assert _status(mp)["conflicts"] == ["data/notes.txt"]
    assert send(mp, "resolve", b"data/notes.txt theirs\n") == "ok"
    assert (mp / "data" / "notes.txt").read_text() == "alpha\nTHEIRS\ngamma\n"
    assert _status(mp)["conflicts"] == []


def test_sync_then_edit_is_no_conflict(regress):
    mp = regress.path
    for i in range(3):
        batch = json.dumps([{"path": "data/notes.txt", "content": f"v{i}\n"}]).encode() + b"\n"
        assert send(mp, "batch", batch) == "ok"
        assert send(mp, "sync", b"data/notes.txt\n") == "ok"
        assert send(mp, "batch", batch.replace(b"v", b"w")) == "ok"
        time.sleep(0.3)  # the watcher's settle time is 50 ms
        assert _status(mp)["conflicts"] == [], f"round {i}"


def test_file_name_not_utf8(regress):
    mp = regress.path
    name = os.fsencode(str(mp)) + b"/data/\xff.txt"
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644)  # EIO: the journal refused the path
        os.close(fd)
        assert b"\xff.txt" in os.listdir(os.fsencode(str(mp / "data")))
        assert (mp / ".vfs" / "status.json").read_bytes()
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass
