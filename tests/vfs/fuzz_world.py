"""The fuzz of the control directory, part 1: knobs, the world (a mount and its backing tree),
inotify, tree hashes, the judge of a single write, the watchdog.  See test_fuzz_control.py."""
from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import secrets
import signal
import stat
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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
