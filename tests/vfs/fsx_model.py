"""fsx harness, part 1: the operations, how a side applies them, trees and the generator.

See test_fsx.py for what the differential test checks.
"""
from __future__ import annotations

import errno
import hashlib
import os
import random
import stat
from pathlib import Path

from test_posix import renameat2

Op = tuple

# ---------------------------------------------------------------------- operations
NAMES = ("a", "b", "c", "d", "m.py", "t.txt")  # few names: collisions (EEXIST, rename over) are the point
MAX_DEPTH = 4
SLOTS = 4
# Open flags by short name (kept symbolic so printed sequences stay readable).
FLAGS = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY,
    "rw": os.O_RDWR,
    "wa": os.O_WRONLY | os.O_APPEND,
    "rwa": os.O_RDWR | os.O_APPEND,
    "rwc": os.O_RDWR | os.O_CREAT,
    "rwt": os.O_RDWR | os.O_TRUNC,
    "wct": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "rwcx": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}
FILE_MODES = (0o644, 0o644, 0o600, 0o755, 0o640, 0o444, 0o000, 0o4755, 0o2755, 0o2745, 0o1644)
DIR_MODES = (0o755, 0o755, 0o700, 0o555, 0o1777, 0o2775)

# Relative weights of the generated operations.
OP_MIX = {
    "write": 12, "append": 3, "create": 4, "truncate": 4, "read": 7, "stat": 5, "statf": 2,
    "readdir": 4, "readlink": 2, "rename": 9, "rename2": 2, "unlink": 5, "mkdir": 5, "rmdir": 4,
    "chmod": 3, "chown": 1, "symlink": 3, "link": 3,
    "open": 5, "fwrite": 7, "fread": 5, "ftruncate": 2, "fstat": 3, "fchmod": 1, "fsync": 1, "close": 3,
}
SLOT_OPS = frozenset({"open", "fwrite", "fread", "ftruncate", "fstat", "fchmod", "fsync", "close"})
READ_ONLY = frozenset({"read", "stat", "statf", "readdir", "readlink", "fread", "fstat"})
MODE_ARG = {"create": 2, "mkdir": 2, "chmod": 2, "fchmod": 2}  # which argument prints in octal


def _make_pattern() -> bytes:
    rnd = random.Random(20240607)
    words = [b"alpha", b"beta", b"gamma", b"def", b"return", b"import", b"x", b"  ", b"\t", b"0123456789"]
    out = bytearray()
    n = 0
    while len(out) < 1 << 20:
        out += b" ".join(rnd.choice(words) for _ in range(rnd.randint(0, 12))) + b" %d\n" % n
        n += 1
    return bytes(out)


PATTERN = _make_pattern()


def data(n: int, salt: int) -> bytes:
    """n deterministic bytes (text lines; `salt` picks where in the pattern)."""
    start = (salt * 7919) % (len(PATTERN) - n) if n < len(PATTERN) else 0
    chunk = PATTERN[start:start + n]
    if salt % 13 == 0 and chunk:  # now and then binary content, for binary patches
        chunk = bytes([salt % 256]) + b"\0" + chunk[2:]
    return chunk[:n]


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno, str(exc.errno))


def stat_summary(st: os.stat_result) -> tuple:
    """What must agree between the sides: no inode numbers, no times, no block counts."""
    return (stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_nlink, st.st_size, st.st_uid,
            st.st_gid, st.st_rdev)


_OPENS_PATH = frozenset({"write", "append", "read"})


class Side:
    """One side of the comparison: a directory, and descriptors in numbered slots."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.fds: dict[int, int] = {}

    def p(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else str(self.root)

    def apply(self, op: Op):
        """Run one operation; its value, "ok", or the errno name."""
        fn = getattr(self, "op_" + op[0])
        try:
            res = fn(*op[1:])
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.EACCES) and op[0] in _OPENS_PATH and self._is_device(op[1]):
                # FUSE mounts are `nodev` (EACCES), the local disk is not (ENXIO for a 0/0 whiteout).
                return "device"
            return _errname(exc)
        return "ok" if res is None else res

    def _is_device(self, path: str) -> bool:
        try:
            mode = os.stat(self.p(path)).st_mode
        except OSError:
            return False
        return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)

    def close_all(self) -> None:
        for slot in list(self.fds):
            os.close(self.fds.pop(slot))

    # -- by path
    def op_create(self, path, mode):
        os.close(os.open(self.p(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))

    def op_write(self, path, off, n, salt):
        fd = os.open(self.p(path), os.O_WRONLY)
        try:
            return os.pwrite(fd, data(n, salt), off)
        finally:
            os.close(fd)

    def op_append(self, path, n, salt):
        fd = os.open(self.p(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            return os.write(fd, data(n, salt))
        finally:
            os.close(fd)

    def op_truncate(self, path, size):
        os.truncate(self.p(path), size)

    def op_read(self, path, off, n):
        fd = os.open(self.p(path), os.O_RDONLY)
        try:
            return os.pread(fd, n, off)
        finally:
            os.close(fd)

    def op_stat(self, path):
        return stat_summary(os.lstat(self.p(path)))

    def op_statf(self, path):
        return stat_summary(os.stat(self.p(path)))

    def op_readdir(self, path):
        return sorted(os.listdir(self.p(path)))

    def op_readlink(self, path):
        return os.readlink(self.p(path))

    def op_rename(self, old, new):
        os.rename(self.p(old), self.p(new))

    def op_rename2(self, old, new, flags):
        renameat2(Path(self.p(old)), Path(self.p(new)), flags)

    def op_unlink(self, path):
        os.unlink(self.p(path))

    def op_mkdir(self, path, mode):
        os.mkdir(self.p(path), mode)

    def op_rmdir(self, path):
        os.rmdir(self.p(path))

    def op_chmod(self, path, mode):
        os.chmod(self.p(path), mode)

    def op_chown(self, path, uid, gid, follow):
        os.chown(self.p(path), uid, gid, follow_symlinks=follow)

    def op_symlink(self, target, path):
        os.symlink(target, self.p(path))

    def op_link(self, old, new):
        os.link(self.p(old), self.p(new))

    # -- through descriptors
    def _fd(self, slot) -> int:
        if slot not in self.fds:
            raise OSError(errno.EBADF, "empty slot")
        return self.fds[slot]

    def op_open(self, slot, path, flags):
        if slot in self.fds:
            os.close(self.fds.pop(slot))
        try:
            self.fds[slot] = os.open(self.p(path), FLAGS[flags], 0o644)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.EACCES) and self._is_device(path):
                return "device"
            raise

    def op_fwrite(self, slot, off, n, salt):
        return os.pwrite(self._fd(slot), data(n, salt), off)

    def op_fread(self, slot, off, n):
        return os.pread(self._fd(slot), n, off)

    def op_ftruncate(self, slot, size):
        os.ftruncate(self._fd(slot), size)

    def op_fstat(self, slot):
        return stat_summary(os.fstat(self._fd(slot)))

    def op_fchmod(self, slot, mode):
        os.fchmod(self._fd(slot), mode)

    def op_fsync(self, slot):
        os.fsync(self._fd(slot))

    def op_close(self, slot):
        os.close(self.fds.pop(slot) if slot in self.fds else self._fd(slot))


# ---------------------------------------------------------------------- trees
def initial_tree(seed: int) -> dict[str, tuple]:
    """The starting tree of `seed`: path -> ("dir", mode) | ("file", bytes, mode) | ("symlink", target).

    Keep it stable: regression tests name their initial tree by seed.
    """
    rnd = random.Random(seed * 1000003 + 7)
    tree: dict[str, tuple] = {}
    dirs = [""]
    for _ in range(rnd.randint(3, 6)):
        parent = rnd.choice([d for d in dirs if d.count("/") < 2])
        path = os.path.join(parent, rnd.choice(NAMES)) if parent else rnd.choice(NAMES)
        if path not in tree:
            tree[path] = ("dir", rnd.choice((0o755, 0o755, 0o700, 0o775)))
            dirs.append(path)
    for _ in range(rnd.randint(6, 14)):
        parent = rnd.choice(dirs)
        path = os.path.join(parent, rnd.choice(NAMES)) if parent else rnd.choice(NAMES)
        if path in tree:
            continue
        size = rnd.choice((0, 5, 100, 4096, 5000, 70000))
        tree[path] = ("file", data(size, rnd.randrange(1 << 20)), rnd.choice((0o644, 0o644, 0o755, 0o600)))
    files = [p for p, v in tree.items() if v[0] == "file"]
    for _ in range(rnd.randint(1, 3)):
        parent = rnd.choice(dirs)
        path = os.path.join(parent, rnd.choice(NAMES)) if parent else rnd.choice(NAMES)
        if path in tree:
            continue
        below = [p[len(parent) + 1:] if parent else p for p in list(files) + dirs[1:]
                 if p.startswith(parent + "/" if parent else "") and p != parent]
        tree[path] = ("symlink", rnd.choice(below + ["missing"]))
    return dict(sorted(tree.items()))


def materialize(tree: dict[str, tuple], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for path, spec in tree.items():  # sorted: parents first
        p = root / path
        if spec[0] == "dir":
            p.mkdir()
        elif spec[0] == "file":
            p.write_bytes(spec[1])
        else:
            os.symlink(spec[1], p)
    for path, spec in sorted(tree.items(), reverse=True):  # modes last: 0o555 dirs
        if spec[0] != "symlink":
            os.chmod(root / path, spec[-1])


def git_tracked(tree: dict[str, tuple]) -> dict[str, tuple]:
    """The tree as a git checkout has it: without directories that hold no file or symlink."""
    keep = {os.path.dirname(p) for p, spec in tree.items() if spec[0] != "dir"}
    for d in list(keep):
        while d:
            d = os.path.dirname(d)
            keep.add(d)
    return {p: spec for p, spec in tree.items() if spec[0] != "dir" or p in keep}


def scan(root: Path) -> list[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything below root, without following symlinks."""
    out = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel) if rel else root) as it:
            for entry in it:
                sub = f"{rel}/{entry.name}" if rel else entry.name
                st = entry.stat(follow_symlinks=False)
                out.append((sub, st))
                if stat.S_ISDIR(st.st_mode):
                    stack.append(sub)
    return sorted(out)


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything both sides must agree on, by path (the root is "")."""
    out = {"": (*stat_summary(os.lstat(root)), None)}
    for rel, st in scan(root):
        extra = None
        if stat.S_ISREG(st.st_mode):
            with open(os.path.join(root, rel), "rb") as f:
                extra = hashlib.sha1(f.read()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            extra = os.readlink(os.path.join(root, rel))
        out[rel] = (*stat_summary(st), extra)
    return out


def states_of(snap: dict[str, tuple]) -> dict[str, tuple]:
    """Path -> state as the session's overlay sees it (kind, mode, content id), from a snapshot."""
    out = {}
    for rel, (ftype, perm, _nlink, _size, _uid, _gid, rdev, extra) in snap.items():
        mode = ftype | int(perm, 8)
        if stat.S_ISDIR(mode):
            out[rel] = ("dir", mode, None)
        elif stat.S_ISREG(mode):
            out[rel] = ("file", mode, extra)
        elif stat.S_ISLNK(mode):
            out[rel] = ("symlink", None, hashlib.sha1(os.fsencode(extra)).hexdigest())
        else:
            out[rel] = ("special", mode, rdev)
    return out


def path_states(root: Path) -> dict[str, tuple]:
    return states_of(snapshot(root))


def git_view(root: Path) -> dict[str, tuple]:
    """The tree as git records it: files (exec bit, content) and symlinks; directories are implied."""
    out = {}
    for rel, (kind, mode, blob) in path_states(root).items():
        if kind == "file":
            out[rel] = (0o100755 if mode & 0o100 else 0o100644, blob)
        elif kind == "symlink":
            out[rel] = (0o120000, blob)
    return out


def _diff_dicts(a: dict, b: dict, limit: int = 8) -> str:
    lines = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            lines.append(f"  {k!r}: local={a.get(k, '<missing>')!r} mount={b.get(k, '<missing>')!r}")
    more = f"\n  ... {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n".join(lines[:limit]) + more


# ---------------------------------------------------------------------- generation
class Generator:
    """Random operations for the current state of the local side (which it reads to pick paths)."""

    # Above this many entries, creations get rarer and removals likelier: the trees stay small
    # enough to be compared often.
    CROWDED = 80
    _shrink_bias = {"create": 0.3, "mkdir": 0.3, "link": 0.3, "symlink": 0.3, "unlink": 3, "rmdir": 3}

    def __init__(self, seed: int, remount_rate: float = 0.0) -> None:
        self.rnd = random.Random(seed)
        self.remount_rate = remount_rate
        self.opened: dict[int, str] = {}  # slot -> path it was opened by
        # Owners are not part of the journal's path states: a remount gives entries back to the
        # daemon's user (a known limitation, see the module docstring), so no chown with remounts.
        mix = {op: w for op, w in OP_MIX.items() if not (remount_rate and op == "chown")}
        self._ops, self._weights = list(mix), list(mix.values())

    def next(self, root: Path) -> Op:
        rnd = self.rnd
        if self.remount_rate and rnd.random() < self.remount_rate:
            self.opened.clear()
            return ("remount", rnd.choice(("clean", "kill")))
        entries = scan(root)
        self.files = [p for p, st in entries if stat.S_ISREG(st.st_mode)]
        self.dirs = [""] + [p for p, st in entries if stat.S_ISDIR(st.st_mode)]
        self.links = [p for p, st in entries if stat.S_ISLNK(st.st_mode)]
        self.all = [p for p, _ in entries]
        self.sizes = {p: st.st_size for p, st in entries}
        self.dir_links = [p for p in self.links if os.path.isdir(os.path.join(root, p))]
        weights = self._weights
        if len(entries) > self.CROWDED:
            weights = [w * self._shrink_bias.get(op, 1) for op, w in zip(self._ops, weights)]
        name = rnd.choices(self._ops, weights)[0]
        return getattr(self, "gen_" + name)()

    # -- path choices
    def _odd_path(self) -> str:
        rnd = self.rnd
        kind = rnd.randrange(5)
        if kind == 0 and self.files:
            return rnd.choice(self.files) + "/" + rnd.choice(NAMES)  # ENOTDIR
        if kind == 1 and self.dir_links:
            return rnd.choice(self.dir_links) + "/" + rnd.choice(NAMES)  # through a symlink
        if kind == 2:
            return os.path.join(rnd.choice(self.dirs), "n" * 256)  # ENAMETOOLONG
        if kind == 3:
            return os.path.join(rnd.choice(self.dirs), "missing", rnd.choice(NAMES))
        return os.path.join(rnd.choice(self.dirs), rnd.choice(NAMES))

    def any_path(self) -> str:
        if not self.all or self.rnd.random() < 0.12:
            return self._odd_path()
        if self.opened and self.rnd.random() < 0.25:
            return self.rnd.choice(list(self.opened.values()))
        return self.rnd.choice(self.all)

    def file_path(self) -> str:
        if self.files and self.rnd.random() < 0.8:
            if self.opened and self.rnd.random() < 0.25:
                return self.rnd.choice(list(self.opened.values()))
            return self.rnd.choice(self.files)
        return self.any_path()

    def dir_path(self) -> str:
        r = self.rnd.random()
        if r < 0.1:
            return self._odd_path()
        if r < 0.15 and self.dir_links:
            return self.rnd.choice(self.dir_links)
        return self.rnd.choice(self.dirs)

    def new_path(self) -> str:
        rnd = self.rnd
        if rnd.random() < 0.08:
            return self._odd_path()
        if self.dir_links and rnd.random() < 0.08:
            parent = rnd.choice(self.dir_links)
        else:
            parent = rnd.choice([d for d in self.dirs if d.count("/") < MAX_DEPTH - 1] or [""])
        return os.path.join(parent, rnd.choice(NAMES)) if parent else rnd.choice(NAMES)

    def size(self) -> int:
        r = self.rnd.random()
        if r < 0.7:
            return self.rnd.randint(0, 200)
        if r < 0.92:
            return self.rnd.randint(200, 9000)
        return self.rnd.randint(9000, 200_000)

    def offset(self, path: str | None) -> int:
        rnd = self.rnd
        cur = self.sizes.get(path, 0) if path else rnd.randint(0, 5000)
        r = rnd.random()
        if r < 0.55:
            return rnd.randint(0, cur)
        if r < 0.8:
            return cur + rnd.randint(0, 100)
        if r < 0.9:
            return rnd.choice((4095, 4096, 4097, 65536, 131071, 131072))
        return rnd.randint(0, cur + 300_000)

    def slot_path(self, slot: int) -> str | None:
        return self.opened.get(slot)

    # -- one builder per operation
    def gen_write(self):
        p = self.file_path()
        return ("write", p, self.offset(p), self.size(), self.rnd.randrange(1 << 20))

    def gen_append(self):
        return ("append", self.file_path(), self.size(), self.rnd.randrange(1 << 20))

    def gen_create(self):
        return ("create", self.new_path(), self.rnd.choice(FILE_MODES))

    def gen_truncate(self):
        p = self.file_path()
        return ("truncate", p, self.rnd.choice((0, 1, self.offset(p), self.offset(p))))

    def gen_read(self):
        p = self.file_path()
        return ("read", p, self.offset(p) if self.rnd.random() < 0.5 else 0, self.rnd.choice((100, 5000, 300_000)))

    def gen_stat(self):
        return ("stat", self.any_path())

    def gen_statf(self):
        return ("statf", self.rnd.choice(self.links) if self.links and self.rnd.random() < 0.6 else self.any_path())

    def gen_readdir(self):
        return ("readdir", self.dir_path())

    def gen_readlink(self):
        return ("readlink", self.rnd.choice(self.links) if self.links and self.rnd.random() < 0.8 else self.any_path())

    def _rename_target(self, src: str) -> str:
        rnd = self.rnd
        r = rnd.random()
        if r < 0.35:
            return self.new_path()
        if r < 0.45 and src in self.dirs:
            return os.path.join(src, rnd.choice(NAMES))  # into itself: EINVAL
        return self.any_path()

    def gen_rename(self):
        src = self.any_path()
        return ("rename", src, self._rename_target(src))

    def gen_rename2(self):
        src = self.any_path()
        return ("rename2", src, self._rename_target(src), self.rnd.choice((1, 2, 2, 4, 3)))

    def gen_unlink(self):
        return ("unlink", self.file_path() if self.rnd.random() < 0.7 else self.any_path())

    def gen_mkdir(self):
        return ("mkdir", self.new_path(), self.rnd.choice(DIR_MODES))

    def gen_rmdir(self):
        r = self.rnd.random()
        if r < 0.4 and len(self.dirs) > 1:  # empty directories first, or it mostly fails
            parents = {os.path.dirname(p) for p in self.all}
            leaves = [d for d in self.dirs if d and d not in parents]
            path = self.rnd.choice(leaves or self.dirs)
        else:
            path = self.dir_path() if r < 0.85 else self.any_path()
        return ("rmdir", path or self.any_path())  # never the root: the mount's is a mount point

    def gen_chmod(self):
        p = self.any_path()
        return ("chmod", p, self.rnd.choice(DIR_MODES if p in self.dirs else FILE_MODES))

    def gen_chown(self):
        ids = (0, 1000)
        return ("chown", self.any_path(), self.rnd.choice(ids), self.rnd.choice(ids), self.rnd.random() < 0.7)

    def gen_symlink(self):
        rnd = self.rnd
        path = self.new_path()
        parent = os.path.dirname(path)
        below = [p[len(parent) + 1:] if parent else p for p in self.all
                 if p.startswith(parent + "/" if parent else "")]
        # Targets never hold "..": a symlink moved elsewhere must not point outside the tree.
        target = rnd.choice(below) if below and rnd.random() < 0.7 else \
            rnd.choice(("missing", "a/b", "x" * 100, "d/", "."))
        return ("symlink", target, path)

    def gen_link(self):
        src = self.rnd.choice(self.files + self.links) if (self.files or self.links) and \
            self.rnd.random() < 0.85 else self.any_path()
        return ("link", src, self.new_path() if self.rnd.random() < 0.85 else self.any_path())

    def gen_open(self):
        slot = self.rnd.randrange(SLOTS)
        flags = self.rnd.choice(list(FLAGS))
        path = self.new_path() if "c" in flags and self.rnd.random() < 0.5 else self.file_path()
        self.opened[slot] = path
        return ("open", slot, path, flags)

    def _slot(self) -> int:
        if self.opened and self.rnd.random() < 0.9:
            return self.rnd.choice(list(self.opened))
        return self.rnd.randrange(SLOTS)

    def gen_fwrite(self):
        slot = self._slot()
        return ("fwrite", slot, self.offset(self.slot_path(slot)), self.size(), self.rnd.randrange(1 << 20))

    def gen_fread(self):
        slot = self._slot()
        return ("fread", slot, self.offset(self.slot_path(slot)) if self.rnd.random() < 0.5 else 0,
                self.rnd.choice((100, 5000, 300_000)))

    def gen_ftruncate(self):
        slot = self._slot()
        return ("ftruncate", slot, self.offset(self.slot_path(slot)))

    def gen_fstat(self):
        return ("fstat", self._slot())

    def gen_fchmod(self):
        return ("fchmod", self._slot(), self.rnd.choice(FILE_MODES))

    def gen_fsync(self):
        return ("fsync", self._slot())

    def gen_close(self):
        slot = self._slot()
        self.opened.pop(slot, None)
        return ("close", slot)
