"""POSIX behaviour of a real mount, compared with a local directory.

A differential harness: every test runs the same system calls on a plain
directory on the local disk (`pair.local`) and on the mount (`pair.mnt`) and
compares what came back — values, metadata and errno names.  The calls are
real syscalls either way: `os.*` in this process against the mount path, or a
child process switched to another user (`as_user`) for ownership, umask and
permission checks.

One mount serves the whole module (with `allow_other`, so that other users
can reach it at all); each test gets fresh, empty directories on both sides.
Tests marked `both_kinds` run twice: in the session's memory and in a
passthrough directory (`.git/`), which the daemon serves from the disk on the
caller's behalf.  The last test checks that the backing files were never
written (passthrough `.git` aside).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from mountlib import SAMPLE, Mount, make_project, mount_source, require_fuse, tree_hashes, unmount

USER = 1000  # an unprivileged uid/gid for the other-user tests
# The system interpreter: every user can run it (the venv's may live under root's 0700 home).
USER_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def renameat2(old: Path, new: Path, flags: int = 0) -> None:
    if _libc.renameat2(-100, os.fsencode(old), -100, os.fsencode(new), flags) != 0:  # AT_FDCWD
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(old))


# ---------------------------------------------------------------------- the harness
@dataclass
class Env:
    root: Path
    source: Path
    mount: Mount
    local: Path
    hashes: dict[str, str]
    first_stats: dict[str, os.stat_result]


EXTRA = {"pkg/sub/deep/x.txt": "x\n", "pkg/sub/y.txt": "y\n", "pkg/z.txt": "z\n"}


@pytest.fixture(scope="module")
def env():
    require_fuse()
    # Not under pytest's 0700 tmp dir: the other-user tests must traverse the path.
    root = Path(tempfile.mkdtemp(prefix="vfs-posix-"))
    os.chmod(root, 0o755)
    source = make_project(root / "src", {**SAMPLE, **EXTRA})
    (root / "mnt").mkdir()
    (root / "local").mkdir()
    m = None
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("XDG_STATE_HOME", str(root / "state"))
            m = mount_source(source, root / "mnt", "--allow-other")
        # Before anything lists a directory: link counts must already be right.
        first = {rel: os.stat(m.path / rel) for rel in ("", "pkg", "pkg/sub", "calc")}
        yield Env(root, source, m, root / "local", tree_hashes(source), first)
    finally:
        if m is not None:
            unmount(m)
        subprocess.run(["rm", "-rf", str(root)])  # shutil.rmtree recurses: too deep for it


@dataclass
class Pair:
    local: Path
    mnt: Path

    def roots(self) -> tuple[Path, Path]:
        return self.local, self.mnt

    def same(self, fn):
        """Run fn(root) on both sides; the outcomes (value or errno name) must be equal."""
        a, b = outcome(fn, self.local), outcome(fn, self.mnt)
        assert a == b, f"local: {a!r}\nmount: {b!r}"
        return b


@pytest.fixture
def pair(env, request) -> Pair:
    """Fresh directories: in the session's memory, or (param "disk") in a passthrough `.git` tree."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    mnt = env.mount.path
    if getattr(request, "param", "memory") == "disk":
        mnt = mnt / ".git"  # passthrough: served from the backing directory (tree_hashes skips it)
        mnt.mkdir(exist_ok=True)
        os.chmod(mnt, 0o755)
    p = Pair(env.local / name, mnt / name)
    for root in p.roots():
        root.mkdir()
    return p


both_kinds = pytest.mark.parametrize("pair", ["memory", "disk"], indirect=True)


def outcome(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)


def attempt(fn, *args, **kwargs):
    """fn's result ("ok" for None), or the errno name it failed with."""
    try:
        res = fn(*args, **kwargs)
    except OSError as exc:
        return errno.errorcode.get(exc.errno, exc.errno)
    return "ok" if res is None else res


def opened(path, flags, mode=0o666) -> None:
    os.close(os.open(path, flags, mode))


def write(path: Path, data: bytes | str) -> None:
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def meta(path: Path) -> dict:
    """What a local file system keeps of an entry, minus inode numbers and times."""
    st = os.lstat(path)
    out = {"type": stat.S_IFMT(st.st_mode), "perm": oct(stat.S_IMODE(st.st_mode)), "nlink": st.st_nlink,
           "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size}
    if stat.S_ISREG(st.st_mode):
        out["blocks"] = st.st_blocks
        out["data"] = path.read_bytes()[:64]
    if stat.S_ISLNK(st.st_mode):
        out["target"] = os.readlink(path)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        out["rdev"] = st.st_rdev
    return out


def snapshot(root: Path) -> dict[str, dict]:
    """meta() of root and everything below it, by relative path."""
    out = {".": meta(root)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = meta(p)
    return out


USER_PRELUDE = textwrap.dedent("""\
    import errno, json, os, stat, sys
    root = sys.argv[1]
    def p(*parts):
        return os.path.join(root, *parts)
    def attempt(fn, *a, **k):
        try:
            res = fn(*a, **k)
        except OSError as exc:
            return errno.errorcode.get(exc.errno, exc.errno)
        return "ok" if res is None else res
    def opened(path, flags, mode=0o666):
        os.close(os.open(path, flags, mode))
    def meta(path):
        st = os.lstat(path)
        return [stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, st.st_nlink]
    out = {}
""")


def as_user(root: Path, code: str, *, uid: int = USER, gid: int = USER, umask: int = 0o022,
            groups: tuple[int, ...] = ()) -> dict:
    """Run `code` (which fills `out`) as uid/gid with `umask` in a child process; returns `out`."""
    def drop() -> None:
        os.setgroups(list(groups))
        os.setgid(gid)
        os.setuid(uid)
        os.umask(umask)

    script = USER_PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"
    res = subprocess.run([USER_PYTHON, "-c", script, str(root)], capture_output=True, text=True,
                         preexec_fn=drop, cwd="/", timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def user_same(pair: Pair, code: str, **kw) -> dict:
    a, b = as_user(pair.local, code, **kw), as_user(pair.mnt, code, **kw)
    assert a == b, f"local: {a!r}\nmount: {b!r}"
    return b


def assert_same_tree(pair: Pair) -> None:
    a, b = snapshot(pair.local), snapshot(pair.mnt)
    assert a == b


# ---------------------------------------------------------------------- lookup, getattr, errno
def test_link_counts_and_sizes_before_listing(env):
    """A directory's nlink counts its subdirectories from the first stat, as on disk."""
    for rel, st in env.first_stats.items():
        disk = os.stat(env.source / rel)
        assert (rel, st.st_nlink, st.st_size, stat.S_IMODE(st.st_mode)) == \
               (rel, disk.st_nlink, disk.st_size, stat.S_IMODE(disk.st_mode))
    st = os.stat(env.mount.path / "pkg" / "sub" / "deep")
    assert st.st_nlink == 2 and st.st_size == 4096


def _basic(root: Path) -> None:
    write(root / "f", "hello\n")
    (root / "d").mkdir()
    write(root / "d" / "x", "x")
    (root / "e").mkdir()


ERRNO_CASES = {
    "stat missing": lambda r: os.stat(r / "missing"),
    "stat through a file": lambda r: os.stat(r / "f" / "x"),
    "stat file with trailing slash": lambda r: os.stat(str(r / "f") + "/"),
    "open missing": lambda r: opened(r / "missing", os.O_RDONLY),
    "open dir for writing": lambda r: opened(r / "d", os.O_WRONLY),
    "O_CREAT on a dir": lambda r: opened(r / "d", os.O_WRONLY | os.O_CREAT),
    "O_DIRECTORY on a file": lambda r: opened(r / "f", os.O_RDONLY | os.O_DIRECTORY),
    "O_EXCL existing": lambda r: opened(r / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
    "O_CREAT in missing dir": lambda r: opened(r / "missing" / "x", os.O_WRONLY | os.O_CREAT),
    "mkdir existing": lambda r: os.mkdir(r / "d"),
    "mkdir over a file": lambda r: os.mkdir(r / "f"),
    "mkdir in missing": lambda r: os.mkdir(r / "missing" / "x"),
    "mkdir under a file": lambda r: os.mkdir(r / "f" / "x"),
    "rmdir a file": lambda r: os.rmdir(r / "f"),
    "rmdir non-empty": lambda r: os.rmdir(r / "d"),
    "rmdir missing": lambda r: os.rmdir(r / "missing"),
    "rmdir dot": lambda r: os.rmdir(r / "e" / "."),
    "unlink a dir": lambda r: os.unlink(r / "d"),
    "unlink missing": lambda r: os.unlink(r / "missing"),
    "listdir a file": lambda r: os.listdir(r / "f"),
    "readlink a file": lambda r: os.readlink(r / "f"),
    "link a dir": lambda r: os.link(r / "d", r / "d2"),
    "link onto existing": lambda r: os.link(r / "f", r / "d" / "x"),
    "link missing": lambda r: os.link(r / "missing", r / "m2"),
    "symlink onto existing": lambda r: os.symlink("t", r / "f"),
    "mkfifo onto existing": lambda r: os.mkfifo(r / "f"),
    "truncate a dir": lambda r: os.truncate(r / "d", 0),
    "truncate negative": lambda r: os.truncate(r / "f", -1),
    "rename missing": lambda r: os.rename(r / "missing", r / "m2"),
    "rename into missing dir": lambda r: os.rename(r / "f", r / "missing" / "f"),
    "rename onto dot": lambda r: os.rename(r / "e", r / "d" / "."),
    "chmod missing": lambda r: os.chmod(r / "missing", 0o644),
    "utime missing": lambda r: os.utime(r / "missing"),
}


@both_kinds
def test_errno_cases(pair):
    for root in pair.roots():
        _basic(root)
    results = pair.same(lambda r: {label: attempt(fn, r) for label, fn in ERRNO_CASES.items()})
    assert results["rmdir non-empty"] == "ENOTEMPTY"
    assert results["stat missing"] == "ENOENT"
    assert_same_tree(pair)


@both_kinds
def test_metadata_of_new_entries(pair):
    def make(r: Path) -> None:
        write(r / "f", "12345")
        (r / "d").mkdir()
        (r / "d" / "a").mkdir()
        (r / "d" / "b").mkdir(mode=0o700)
        opened(r / "d" / "g", os.O_CREAT | os.O_WRONLY, 0o640)
        os.symlink("f", r / "l")
        os.mkfifo(r / "fifo", 0o600)
        os.mknod(r / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        write(r / "big", b"x" * 10000)

    pair.same(make)
    assert_same_tree(pair)
    assert meta(pair.mnt / "d")["nlink"] == 4 and meta(pair.mnt / "d")["size"] == 4096


# ---------------------------------------------------------------------- open flags, offsets, sync points
@both_kinds
def test_open_flags(pair):
    def ops(r: Path) -> dict:
        out = {}
        f = r / "f"
        write(f, "0123456789")
        out["excl existing"] = attempt(opened, f, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        out["excl new"] = attempt(opened, r / "n", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        out["creat keeps content"] = attempt(opened, f, os.O_WRONLY | os.O_CREAT)
        out["content"] = f.read_bytes()
        fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
        out["size after O_TRUNC"] = os.fstat(fd).st_size
        os.write(fd, b"ab")
        os.close(fd)
        fd = os.open(f, os.O_WRONLY | os.O_APPEND)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"cd")
        os.pwrite(fd, b"ef", 0)  # Linux: pwrite on O_APPEND appends
        out["read on O_WRONLY"] = attempt(os.read, fd, 1)
        os.close(fd)
        out["appended"] = f.read_bytes()
        fd = os.open(f, os.O_RDONLY)
        out["write on O_RDONLY"] = attempt(os.write, fd, b"x")
        os.close(fd)
        fd = os.open(f, os.O_RDWR | os.O_APPEND)
        os.write(fd, b"gh")
        os.lseek(fd, 0, os.SEEK_SET)
        out["O_RDWR|O_APPEND read"] = os.read(fd, 100)
        os.close(fd)
        fd = os.open(f, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        out["O_CREAT|O_TRUNC existing"] = (os.fstat(fd).st_size, oct(stat.S_IMODE(os.fstat(fd).st_mode)))
        os.close(fd)
        write(f, "again")
        opened(f, os.O_RDONLY | os.O_TRUNC)  # Linux truncates even for O_RDONLY
        out["O_RDONLY|O_TRUNC"] = f.read_bytes()
        fd = os.open(r / "new", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o604)
        os.write(fd, b"xyz")
        os.close(fd)
        out["new with O_TRUNC"] = (r / "new").read_bytes()
        return out

    pair.same(ops)
    assert_same_tree(pair)


@both_kinds
def test_offsets_and_sparse_files(pair):
    def ops(r: Path) -> dict:
        out = {}
        fd = os.open(r / "s", os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(fd, b"abc", 10)
        out["hole then data"] = os.pread(fd, 20, 0)
        out["read past EOF"] = os.pread(fd, 5, 100)
        os.ftruncate(fd, 5)
        os.ftruncate(fd, 8)
        out["shrink then grow reads zeros"] = os.pread(fd, 20, 0)
        os.truncate(r / "s", 3 * 4096 + 1)
        out["size after truncate"] = os.fstat(fd).st_size
        os.pwrite(fd, b"Z", 8192)
        out["around a write in the hole"] = os.pread(fd, 4, 8190)
        out["seek end"] = os.lseek(fd, 0, os.SEEK_END)
        os.pwrite(fd, b"tail", 1 << 20)
        out["size after far write"] = os.fstat(fd).st_size
        out["far read"] = os.pread(fd, 8, (1 << 20) - 4)
        os.close(fd)
        data = (r / "s").read_bytes()
        out["whole"] = (len(data), data.count(0), data.rstrip(b"\0")[-4:])
        with open(r / "t", "wb") as f:
            f.seek(5000)
            f.write(b"!")
        out["python seek past end"] = (r / "t").read_bytes() == b"\0" * 5000 + b"!"
        return out

    pair.same(ops)


@both_kinds
def test_sync_points_and_visibility(pair):
    """flush/fsync/fdatasync/release succeed; another descriptor sees writes at once."""
    def ops(r: Path) -> dict:
        out = {}
        fd = os.open(r / "f", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"one\n")
        other = os.open(r / "f", os.O_RDONLY)
        out["seen before close"] = os.read(other, 100)
        out["fsync"] = attempt(os.fsync, fd)
        out["fdatasync"] = attempt(os.fdatasync, fd)
        dup = os.dup(fd)
        os.close(dup)  # a flush while another descriptor stays open
        os.write(fd, b"two\n")
        out["seen after flush"] = os.pread(other, 100, 0)
        os.close(fd)
        os.close(other)
        dfd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
        out["fsync dir"] = attempt(os.fsync, dfd)
        os.close(dfd)
        out["final"] = (r / "f").read_bytes()
        return out

    pair.same(ops)


# ---------------------------------------------------------------------- rename
def _w(*names):
    def make(r: Path) -> None:
        for n in names:
            if n.endswith("/"):
                (r / n).mkdir(parents=True, exist_ok=True)
            else:
                (r / n).parent.mkdir(parents=True, exist_ok=True)
                write(r / n, n.upper())
    return make


def _hardlinked(r: Path) -> None:
    write(r / "a", "A")
    os.link(r / "a", r / "b")
    write(r / "c", "C")


RENAME_CASES = {
    "file over file": (_w("a", "b"), "a", "b", 0),
    "file to other dir": (_w("a", "d/"), "a", "d/a2", 0),
    "dir over empty dir": (_w("a/x", "a/s/", "b/"), "a", "b", 0),
    "dir over non-empty dir": (_w("a/x", "b/y"), "a", "b", 0),
    "file over dir": (_w("a", "b/"), "a", "b", 0),
    "dir over file": (_w("a/", "b"), "a", "b", 0),
    "dir into itself": (_w("a/x"), "a", "a/sub", 0),
    "dir into its descendant": (_w("a/b/c/"), "a", "a/b/c/a", 0),
    "dir onto its ancestor": (_w("a/b/x"), "a/b", "a", 0),
    "dir to other parent": (_w("p/a/s/", "q/"), "p/a", "q/a", 0),
    "onto itself": (_w("a"), "a", "a", 0),
    "missing source": (_w("a"), "nope", "b", 0),
    "into missing dir": (_w("a"), "a", "nope/a", 0),
    "symlink": (lambda r: os.symlink("target", r / "l"), "l", "l2", 0),
    "hard link onto its sibling": (_hardlinked, "a", "b", 0),
    "hard link to new name": (_hardlinked, "a", "n", 0),
    "exchange hard links": (_hardlinked, "a", "b", RENAME_EXCHANGE),
    "hard link over other file": (_hardlinked, "a", "c", 0),
    "file over hard link": (_hardlinked, "c", "a", 0),
    "noreplace onto existing": (_w("a", "b"), "a", "b", RENAME_NOREPLACE),
    "noreplace to new name": (_w("a"), "a", "b", RENAME_NOREPLACE),
    "exchange files": (_w("a", "b"), "a", "b", RENAME_EXCHANGE),
    "exchange file and dir": (_w("a", "d/x", "e/"), "a", "d", RENAME_EXCHANGE),
    "exchange dirs across parents": (_w("p/a/s/", "q/b/"), "p/a", "q/b", RENAME_EXCHANGE),
    "exchange with missing": (_w("a"), "a", "b", RENAME_EXCHANGE),
    "exchange dir with its child": (_w("a/b/"), "a", "a/b", RENAME_EXCHANGE),
    "noreplace|exchange": (_w("a", "b"), "a", "b", RENAME_NOREPLACE | RENAME_EXCHANGE),
    "unknown flag": (_w("a"), "a", "b", 8),
    "whiteout": (_w("a"), "a", "b", RENAME_WHITEOUT),
}


@pytest.mark.parametrize("case", list(RENAME_CASES))
@both_kinds
def test_rename(pair, case):
    setup, old, new, flags = RENAME_CASES[case]

    def ops(r: Path):
        setup(r)
        res = attempt(renameat2, r / old, r / new, flags)
        dotdot = {str(d.relative_to(r)): os.stat(d / "..").st_ino == os.stat(d.parent).st_ino
                  for d in r.rglob("*") if d.is_dir() and not d.is_symlink()}
        return res, snapshot(r), dotdot

    res, _, dotdot = pair.same(ops)
    assert all(dotdot.values())
    expected = {"dir over non-empty dir": "ENOTEMPTY", "file over dir": "EISDIR", "dir over file": "ENOTDIR",
                "dir into itself": "EINVAL", "noreplace onto existing": "EEXIST", "unknown flag": "EINVAL",
                "noreplace|exchange": "EINVAL", "exchange with missing": "ENOENT"}
    assert res == expected.get(case, res)


@both_kinds
def test_rename_keeps_open_handles_and_content(pair):
    def ops(r: Path) -> dict:
        write(r / "a", "old")
        write(r / "b", "victim")
        fa = os.open(r / "a", os.O_RDWR)
        fb = os.open(r / "b", os.O_RDONLY)
        os.rename(r / "a", r / "b")
        os.pwrite(fa, b"new", 0)
        out = {"victim still readable": os.pread(fb, 10, 0), "renamed": (r / "b").read_bytes(),
               "victim nlink": os.fstat(fb).st_nlink}
        os.close(fa)
        os.close(fb)
        return out

    pair.same(ops)


# ---------------------------------------------------------------------- unlink, links, symlinks, specials
@both_kinds
def test_unlink_of_an_open_file(pair):
    def ops(r: Path) -> dict:
        write(r / "f", "content")
        fd = os.open(r / "f", os.O_RDWR)
        os.unlink(r / "f")
        out = {"name gone": attempt(os.stat, r / "f")}
        os.pwrite(fd, b"MORE", 7)
        out["read"] = os.pread(fd, 100, 0)
        st = os.fstat(fd)
        out["fstat"] = (st.st_nlink, st.st_size)
        write(r / "f", "fresh")
        out["new file independent"] = ((r / "f").read_bytes(), os.pread(fd, 100, 0))
        os.ftruncate(fd, 2)
        out["truncated"] = os.pread(fd, 100, 0)
        out["link it back"] = attempt(os.link, f"/proc/self/fd/{fd}", r / "back", follow_symlinks=True)
        os.close(fd)
        out["listing"] = sorted(os.listdir(r))
        return out

    pair.same(ops)


@both_kinds
def test_hard_links(pair):
    def ops(r: Path) -> dict:
        out = {}
        write(r / "a", "shared")
        (r / "d").mkdir()
        os.link(r / "a", r / "b")
        os.link(r / "b", r / "d" / "c")
        out["nlink"] = [os.stat(r / n).st_nlink for n in ("a", "b", "d/c")]
        out["same inode"] = os.stat(r / "a").st_ino == os.stat(r / "d" / "c").st_ino
        with open(r / "b", "ab") as f:
            f.write(b" content")
        os.chmod(r / "d" / "c", 0o600)
        out["through a"] = ((r / "a").read_bytes(), oct(os.stat(r / "a").st_mode))
        os.unlink(r / "a")
        out["after unlink"] = [os.stat(r / n).st_nlink for n in ("b", "d/c")]
        os.rename(r / "b", r / "d" / "c")  # two names of one inode: nothing happens
        out["rename onto sibling"] = sorted(os.listdir(r)), sorted(os.listdir(r / "d"))
        os.rename(r / "b", r / "e")
        out["after rename"] = [os.stat(r / n).st_nlink for n in ("e", "d/c")]
        write(r / "e", "rewritten")  # O_TRUNC through one name
        out["via other name"] = (r / "d" / "c").read_bytes()
        os.link(r / "e", r / "x")
        os.rename(r / "x", r / "d" / "c")
        out["link over link"] = [os.stat(r / n).st_nlink for n in ("e", "d/c")]
        return out

    pair.same(ops)
    assert_same_tree(pair)


@both_kinds
def test_symlinks(pair):
    def ops(r: Path) -> dict:
        out = {}
        write(r / "f", "data")
        (r / "d").mkdir()
        write(r / "d" / "in", "inside")
        os.symlink("f", r / "l")
        os.symlink("d", r / "ld")
        os.symlink("nowhere", r / "dangling")
        os.symlink("../f", r / "d" / "up")
        out["readlink"] = [os.readlink(r / n) for n in ("l", "ld", "dangling", "d/up")]
        out["lstat size"] = os.lstat(r / "dangling").st_size
        out["follow"] = (r / "l").read_bytes(), (r / "d" / "up").read_bytes(), sorted(os.listdir(r / "ld"))
        out["dangling stat"] = attempt(os.stat, r / "dangling")
        out["open O_NOFOLLOW"] = attempt(opened, r / "l", os.O_RDONLY | os.O_NOFOLLOW)
        out["write through"] = attempt(write, r / "dangling", "created")
        out["target created"] = (r / "nowhere").read_bytes()
        os.utime(r / "l", ns=(10**18, 2 * 10**18), follow_symlinks=False)
        out["lutime"] = os.lstat(r / "l").st_mtime_ns, os.stat(r / "l").st_mtime_ns == 2 * 10**18
        os.chown(r / "l", 5, 6, follow_symlinks=False)
        out["lchown"] = os.lstat(r / "l")[4:6], os.stat(r / "l")[4:6]
        os.symlink("x" * 4000, r / "long")
        out["long target"] = len(os.readlink(r / "long"))
        return out

    pair.same(ops)
    assert_same_tree(pair)


@both_kinds
def test_fifo_and_socket(pair):
    def ops(r: Path) -> dict:
        os.mkfifo(r / "fifo", 0o644)
        writer = subprocess.Popen(["sh", "-c", f"printf 'through the fifo' > '{r / 'fifo'}'"])
        with open(r / "fifo", "rb") as f:
            got = f.read()
        writer.wait(10)
        out = {"fifo": got, "mode": stat.S_ISFIFO(os.stat(r / "fifo").st_mode)}
        path = str(r / "sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)
        cli = socket.socket(socket.AF_UNIX)
        cli.connect(path)
        conn, _ = srv.accept()
        cli.sendall(b"ping")
        out["socket"] = conn.recv(4), stat.S_ISSOCK(os.stat(path).st_mode)
        for s in (conn, cli, srv):
            s.close()
        return out

    pair.same(ops)
    assert_same_tree(pair)


@both_kinds
def test_chmod_x_then_execute(pair):
    def ops(r: Path) -> dict:
        out = {}
        write(r / "script", "#!/bin/sh\necho \"hello from $(basename \"$0\")\"\n")
        out["before chmod"] = attempt(lambda: subprocess.run([str(r / "script")]).returncode)
        os.chmod(r / "script", 0o755)
        out["after chmod"] = subprocess.run([str(r / "script")], capture_output=True).stdout
        shutil.copy2("/bin/echo", r / "echo")
        out["binary"] = subprocess.run([str(r / "echo"), "elf"], capture_output=True).stdout
        return out

    assert pair.same(ops)["after chmod"] == b"hello from script\n"


@both_kinds
def test_chown_as_root(pair):
    def ops(r: Path) -> dict:
        write(r / "f", "x")
        (r / "d").mkdir()
        os.symlink("f", r / "l")
        os.chown(r / "f", USER, USER)
        os.chown(r / "d", USER + 1, -1)
        os.chown(r / "l", 7, 8, follow_symlinks=False)
        return snapshot(r)

    pair.same(ops)


@both_kinds
def test_utimens(pair):
    def ops(r: Path) -> dict:
        out = {}
        write(r / "f", "x")
        (r / "d").mkdir()
        os.utime(r / "f", ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
        st = os.stat(r / "f")
        out["exact"] = st.st_atime_ns, st.st_mtime_ns
        os.utime(r / "d", ns=(5, 7))
        out["dir"] = os.stat(r / "d").st_atime_ns, os.stat(r / "d").st_mtime_ns
        before = time.time_ns()
        os.utime(r / "f")
        st = os.stat(r / "f")
        out["now"] = before - 10**9 < st.st_mtime_ns <= time.time_ns() + 10**9
        out["now atime"] = abs(st.st_atime_ns - st.st_mtime_ns) < 10**8
        fd = os.open(r / "f", os.O_RDONLY)
        os.utime(fd, ns=(3, 4))
        out["futimens"] = os.fstat(fd).st_mtime_ns
        os.close(fd)
        return out

    pair.same(ops)


def test_statfs(pair):
    def ops(r: Path) -> dict:
        st = os.statvfs(r)
        return {"namemax": st.f_namemax, "sane": st.f_bsize > 0 and st.f_blocks >= st.f_bfree >= st.f_bavail}

    assert pair.same(ops)["namemax"] == 255


@both_kinds
def test_enametoolong(pair):
    long, ok = "a" * 256, "b" * 255
    wide, wide_ok = "é" * 128, "é" * 127  # 256 and 254 bytes in UTF-8

    def ops(r: Path) -> dict:
        write(r / "f", "x")
        out = {}
        for name in (long, wide):
            out[len(name)] = [
                attempt(opened, r / name, os.O_CREAT | os.O_WRONLY),
                attempt(os.stat, r / name),
                attempt(os.mkdir, r / name),
                attempt(os.symlink, "f", r / name),
                attempt(os.link, r / "f", r / name),
                attempt(os.rename, r / "f", r / name),
                attempt(os.mkfifo, r / name),
                attempt(os.unlink, r / name),
            ]
        for name in (ok, wide_ok):
            out[name] = attempt(write, r / name, name), (r / name).read_text() == name
        return out

    res = pair.same(ops)
    assert set(res[256]) == {"ENAMETOOLONG"}


NAMES = ["with space", " leading", "trailing ", "ünïcødé ✓", "日本語のファイル", "new\nline", "tab\tx",
         "-dash", "emoji 😀", "back\\slash", "quote'\"", "*glob?[x]", "$HOME", ".hidden", "..dots", "%s%n"]


@both_kinds
def test_names_with_spaces_unicode_and_newlines(pair):
    def ops(r: Path) -> dict:
        out = {}
        for i, name in enumerate(NAMES):
            write(r / name, f"{i}:{name}")
            (r / f"dir {name}").mkdir()
            os.symlink(name, r / f"dir {name}" / name)
        out["listing"] = sorted(os.listdir(r))
        out["read"] = [(r / f"dir {n}" / n).read_text() for n in NAMES]
        for name in NAMES:
            os.rename(r / name, r / f"dir {name}" / f"moved {name}")
        out["after rename"] = sorted(os.listdir(r)), sorted(os.listdir(r / f"dir {NAMES[5]}"))
        out["find"] = sorted(subprocess.run(["find", ".", "-print0"], cwd=r, capture_output=True)
                             .stdout.split(b"\0"))
        raw = os.fsencode(r) + b"/not utf-8 \xff\xfe"  # names are bytes; not every name is UTF-8
        fd = os.open(raw, os.O_CREAT | os.O_WRONLY, 0o644)
        os.write(fd, b"latin")
        os.close(fd)
        os.rename(raw, raw + b" \xe9")
        out["bytes names"] = sorted(n for n in os.listdir(os.fsencode(r)) if b"utf-8" in n), \
            open(raw + b" \xe9", "rb").read()
        return out

    pair.same(ops)
    assert_same_tree(pair)


# ---------------------------------------------------------------------- readdir
def test_readdir_stable_while_entries_come_and_go(pair):
    names = [f"entry-{i:05d}-{'x' * 40}" for i in range(2000)]  # ~450 fit one getdents buffer

    def ops(r: Path) -> dict:
        for name in names:
            opened(r / name, os.O_CREAT | os.O_WRONLY)
        seen: list[str] = []
        deleted, created = set(), set()
        with os.scandir(r) as it:
            for entry in it:
                seen.append(entry.name)
                if len(seen) in (1, 700, 1400):
                    # Delete entries not seen yet and create new ones, mid-iteration.
                    seen_set = set(seen)
                    victims = [n for n in names if n not in seen_set and n not in deleted][::3][:200]
                    for n in victims:
                        os.unlink(r / n)
                        deleted.add(n)
                    for i in range(200):
                        new = f"new-{len(seen)}-{i:04d}-{'y' * 30}"
                        opened(r / new, os.O_CREAT | os.O_WRONLY)
                        created.add(new)
        untouched = set(names) - deleted
        return {"dupes": len(seen) - len(set(seen)),
                "untouched missed": sorted(untouched - set(seen)),
                "deleted seen": sorted(deleted & set(seen) - set(seen[:1])) == sorted(deleted & set(seen)),
                "count after": len(os.listdir(r)) == len(names) - len(deleted) + len(created)}

    res = pair.same(ops)
    assert res["dupes"] == 0 and res["untouched missed"] == []


@both_kinds
def test_readdir_dot_entries(pair):
    def ops(r: Path) -> dict:
        (r / "sub").mkdir()
        write(r / "sub" / "f", "x")
        os.symlink("f", r / "sub" / "l")
        listing = subprocess.run(["ls", "-ai1"], cwd=r / "sub", capture_output=True, text=True).stdout.split()
        pairs = dict(zip(listing[1::2], (int(i) for i in listing[0::2])))
        types = {e.name: (e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False), e.is_symlink())
                 for e in os.scandir(r / "sub")}
        return {"names": sorted(pairs), "dot": pairs["."] == os.stat(r / "sub").st_ino,
                "dotdot": pairs[".."] == os.stat(r).st_ino, "types": types}

    pair.same(ops)


# ---------------------------------------------------------------------- other users: ownership, umask, permissions
@both_kinds
def test_new_entries_belong_to_the_caller_with_its_umask(pair):
    for root in pair.roots():
        os.chmod(root, 0o777)
        (root / "g").mkdir()
        os.chown(root / "g", 0, 2000)
        os.chmod(root / "g", 0o2777)
    user_same(pair, """
        opened(p("f"), os.O_CREAT | os.O_WRONLY, 0o666)
        os.mkdir(p("d"), 0o777)
        os.mkfifo(p("fifo"), 0o666)
        os.symlink("f", p("l"))
        opened(p("x"), os.O_CREAT | os.O_WRONLY, 0o777)
        opened(p("g", "f"), os.O_CREAT | os.O_WRONLY, 0o2775)
        os.mkdir(p("g", "d"), 0o775)
        os.symlink("f", p("g", "l"))
        os.mkfifo(p("g", "fifo"))
        os.mkdir(p("d", "sub"))
        for name in ["f", "d", "fifo", "l", "x", "g/f", "g/d", "g/l", "g/fifo", "d/sub"]:
            out[name] = meta(p(name))
    """, umask=0o027)


@both_kinds
def test_permission_denied_for_another_user(pair):
    for root in pair.roots():
        write(root / "secret", "root only")
        os.chmod(root / "secret", 0o600)
        (root / "private").mkdir(mode=0o700)
        write(root / "private" / "f", "x")
        write(root / "readable", "r")
        (root / "sticky").mkdir()
        os.chmod(root / "sticky", 0o1777)
        write(root / "sticky" / "roots", "r")
        os.chmod(root / "sticky" / "roots", 0o666)
    user_same(pair, """
        out["read 0600"] = attempt(opened, p("secret"), os.O_RDONLY)
        out["write 0600"] = attempt(opened, p("secret"), os.O_WRONLY)
        out["list 0700"] = attempt(os.listdir, p("private"))
        out["stat in 0700"] = attempt(os.stat, p("private", "f"))
        out["create in 0755"] = attempt(opened, p("new"), os.O_CREAT | os.O_WRONLY)
        out["mkdir in 0755"] = attempt(os.mkdir, p("newdir"))
        out["unlink in 0755"] = attempt(os.unlink, p("readable"))
        out["write 0644"] = attempt(opened, p("readable"), os.O_WRONLY)
        out["read 0644"] = attempt(lambda: open(p("readable")).read())
        out["chmod other's"] = attempt(os.chmod, p("readable"), 0o777)
        out["chown other's"] = attempt(os.chown, p("readable"), os.getuid(), -1)
        out["utime explicit"] = attempt(os.utime, p("readable"), ns=(1, 2))
        out["utime now on 0666"] = attempt(os.utime, p("sticky", "roots"))
        out["write 0666 in sticky"] = attempt(lambda: open(p("sticky", "roots"), "a").write("u"))
        out["unlink in sticky"] = attempt(os.unlink, p("sticky", "roots"))
        out["rename in sticky"] = attempt(os.rename, p("sticky", "roots"), p("sticky", "mine"))
        out["truncate 0644"] = attempt(os.truncate, p("readable"), 0)
        opened(p("sticky", "own"), os.O_CREAT | os.O_WRONLY, 0o600)
        out["chown own to root"] = attempt(os.chown, p("sticky", "own"), 0, -1)
        out["chgrp own to foreign group"] = attempt(os.chown, p("sticky", "own"), -1, 0)
        out["unlink own in sticky"] = attempt(os.unlink, p("sticky", "own"))
    """)
    assert_same_tree(pair)


@both_kinds
def test_setuid_and_setgid_cleared_where_posix_clears_them(pair):
    for root in pair.roots():
        for name, mode in (("w", 0o6777), ("t", 0o4777), ("tg", 0o2666), ("c", 0o6755), ("r", 0o6755),
                           ("rw", 0o4777), ("m", 0o644), ("r0", 0o6755), ("r1", 0o6755),
                           ("ts", 0o6666), ("c2", 0o2644)):
            write(root / name, "data")
            if name in ("c", "c2"):
                os.chown(root / name, USER, 0)
            os.chmod(root / name, mode)
        os.chown(root / "r", USER, USER)  # root's chown clears setuid too, even to the same owner
        os.chown(root / "r0", 0, 0)
        os.chown(root / "r1", -1, -1)
        with open(root / "rw", "a") as f:  # root keeps them (CAP_FSETID)
            f.write("root")
    user_same(pair, """
        with open(p("w"), "a") as f:
            f.write("user")
        os.truncate(p("t"), 1)
        os.truncate(p("tg"), 1)  # setgid without group-exec: cleared, the user is not in group 0
        os.truncate(p("ts"), 2)
        os.chown(p("c2"), -1, os.getgid())  # not in the old group: setgid goes
        os.chown(p("c"), -1, os.getgid())
        out["chmod g+s foreign group"] = attempt(os.chmod, p("c"), 0o2755)
        for name in ["w", "t", "tg", "ts", "c", "c2", "r", "rw"]:
            out[name] = meta(p(name))
        out["setgid on own file, group not ours"] = attempt(os.chmod, p("m"), 0o2644)
    """)
    assert_same_tree(pair)
    assert stat.S_IMODE(os.stat(pair.mnt / "w").st_mode) == 0o777
    assert stat.S_IMODE(os.stat(pair.mnt / "r0").st_mode) == 0o755


def test_setgid_without_group_exec_cleared_by_a_non_member_write(pair):
    for root in pair.roots():
        write(root / "wg", "data")
        os.chmod(root / "wg", 0o2666)
    user_same(pair, """
        with open(p("wg"), "a") as f:
            f.write("user")
        out["wg"] = meta(p("wg"))
    """)


def test_setuid_cleared_by_a_non_root_open_with_o_trunc(pair):
    for root in pair.roots():
        write(root / "s", "data")
        os.chmod(root / "s", 0o4777)
    user_same(pair, """
        opened(p("s"), os.O_WRONLY | os.O_TRUNC)
        out["s"] = meta(p("s"))
    """)


# ---------------------------------------------------------------------- timestamps
@both_kinds
def test_ctime_and_mtime(pair):
    def ops(r: Path) -> dict:
        out = {}
        write(r / "f", "x")
        (r / "d").mkdir()
        tick = lambda: time.sleep(0.02)  # noqa: E731

        def step(label, fn, path):
            before = os.lstat(path)
            tick()
            fn()
            after = os.lstat(path)
            out[label] = (after.st_mtime_ns > before.st_mtime_ns, after.st_ctime_ns > before.st_ctime_ns)

        f, d = r / "f", r / "d"
        step("write", lambda: open(f, "a").write("y"), f)
        step("chmod", lambda: os.chmod(f, 0o600), f)
        step("chmod same mode", lambda: os.chmod(f, 0o600), f)
        step("chown", lambda: os.chown(f, 0, 0), f)
        step("utime", lambda: os.utime(f, ns=(os.stat(f).st_atime_ns, os.stat(f).st_mtime_ns)), f)
        step("truncate", lambda: os.truncate(f, 0), f)
        step("truncate same size", lambda: os.truncate(f, 0), f)
        step("O_TRUNC of empty", lambda: opened(f, os.O_WRONLY | os.O_TRUNC), f)
        step("link", lambda: os.link(f, r / "f2"), f)
        step("rename", lambda: os.rename(r / "f2", r / "f3"), f)  # f2 is a link of f
        step("unlink other link", lambda: os.unlink(r / "f3"), f)
        step("create in dir", lambda: write(d / "n", "n"), d)
        step("mkdir in dir", lambda: os.mkdir(d / "sub"), d)
        step("unlink in dir", lambda: os.unlink(d / "n"), d)
        step("rename within dir", lambda: os.rename(d / "sub", d / "sub2"), d)
        step("rename out of dir", lambda: os.rename(d / "sub2", r / "sub2"), d)
        step("rename into dir", lambda: os.rename(r / "sub2", d / "sub3"), d)
        step("chmod dir", lambda: os.chmod(d, 0o700), d)
        step("write into file in dir", lambda: write(d / "sub3" / "q", "q"), d)
        step("read", lambda: f.read_bytes(), f)
        step("symlink in dir", lambda: os.symlink("x", d / "l"), d)
        fd = os.open(f, os.O_RDWR)
        step("pwrite", lambda: os.pwrite(fd, b"abc", 100), f)
        step("ftruncate", lambda: os.ftruncate(fd, 1), f)
        os.close(fd)
        return out

    res = pair.same(ops)
    assert res["write"] == (True, True) and res["chmod"] == (False, True)


def test_atime_relatime(pair):
    def ops(r: Path) -> dict:
        out = {}
        write(r / "f", "some content")
        old = time.time_ns() - 3600 * 10**9  # recent: relatime also refreshes atimes older than a day
        os.utime(r / "f", ns=(old, old + 10**9))
        (r / "f").read_bytes()
        first = os.stat(r / "f").st_atime_ns
        out["read moves atime older than mtime"] = first > old
        (r / "f").read_bytes()
        out["second read keeps it (relatime)"] = os.stat(r / "f").st_atime_ns == first
        os.utime(r / "f", ns=(old + 2 * 10**9, old + 10**9))  # also moves ctime past atime
        (r / "f").read_bytes()
        out["ctime newer than atime: moved"] = os.stat(r / "f").st_atime_ns > old + 2 * 10**9
        before = os.stat(r / "f").st_atime_ns
        time.sleep(0.01)
        with open(r / "f", "a") as f:
            f.write("more")
        (r / "f").read_bytes()
        out["read after a write moves it"] = os.stat(r / "f").st_atime_ns > before
        before = os.stat(r / "f").st_atime_ns
        time.sleep(0.01)
        (r / "f").read_bytes()
        out["then kept"] = os.stat(r / "f").st_atime_ns == before
        return out

    pair.same(ops)


def test_listing_a_directory_moves_its_atime(pair):
    def ops(r: Path) -> dict:
        (r / "d").mkdir()
        write(r / "d" / "f", "x")
        old = time.time_ns() - 3600 * 10**9
        os.utime(r / "d", ns=(old, old))
        os.listdir(r / "d")
        return {"moved": os.stat(r / "d").st_atime_ns > old}

    assert pair.same(ops) == {"moved": True}


# ---------------------------------------------------------------------- deep trees
def test_deep_tree_rename_and_rm_rf(pair):
    depth = 1200  # deeper than Python's recursion limit

    def ops(r: Path) -> dict:
        fd = os.open(r, os.O_RDONLY | os.O_DIRECTORY)
        for i in range(depth):
            os.mkdir("d", dir_fd=fd)
            if i % 100 == 0:
                os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
            nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        os.close(fd)
        os.rename(r / "d", r / "top")
        count, here = 0, r / "top"
        while here.is_dir():  # os.walk recurses; this does not
            count, here = count + 1, here / "d"
        rm = subprocess.run(["rm", "-rf", str(r / "top")], capture_output=True, text=True)
        return {"dirs": count, "rm": (rm.returncode, rm.stderr), "left": os.listdir(r)}

    assert pair.same(ops) == {"dirs": depth, "rm": (0, ""), "left": ["f"]}


# ---------------------------------------------------------------------- last: disk untouched
def test_zz_backing_files_untouched(env):
    assert tree_hashes(env.source) == env.hashes
