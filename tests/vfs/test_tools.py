"""Real tools inside a real mount: they see the in-memory state; the disk never changes.

One mount of a git repository serves the module.  Each test drives ordinary
programs (`cat`, `grep`, `rg`, `sed -i`, `vim`, `cp -a`, `mv`, `rm -rf`,
`mkdir -p`, `tar`, `git`) as child processes with the mount as their working
directory, and checks what they saw and did.  After every test the backing
files (`tree_hashes`, which skips `.git`) must be exactly what they were.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from mountlib import SAMPLE, Mount, make_project, mount_source, require_fuse, run, tree_hashes, unmount

EXTRA = {
    "vendor/lib/a.py": "A = 1\n",
    "vendor/lib/b.py": "B = 2\n",
    "vendor/lib/deep/c.txt": "c\n",
    "vendor/README": "vendored\n",
    "docs/guide.md": "# guide\n\nuse the calc package\n",
}
GIT = ["git", "-c", "user.name=vfs-test", "-c", "user.email=vfs@test", "-c", "init.defaultBranch=main"]


@dataclass
class Repo:
    mount: Mount
    hashes: dict[str, str]
    scratch: Path  # outside the mount


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    require_fuse()
    root = tmp_path_factory.mktemp("tools")
    source = make_project(root / "src", {**SAMPLE, **EXTRA})
    run([*GIT, "init", "-q"], cwd=source)
    run([*GIT, "add", "-A"], cwd=source)
    run([*GIT, "commit", "-qm", "initial"], cwd=source)
    (root / "mnt").mkdir()
    (root / "scratch").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        m = mount_source(source, root / "mnt")
    try:
        yield Repo(m, tree_hashes(source), root / "scratch")
    finally:
        unmount(m)


@pytest.fixture
def mnt(repo) -> Path:
    yield repo.mount.path
    assert tree_hashes(repo.mount.source) == repo.hashes, "a tool's change reached the backing files"


def sh(cmd: str, cwd: Path, **kw) -> str:
    return run(cmd, cwd=cwd, **kw).stdout


def files_under(root: Path, skip=(".git",)) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip)
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
    return out


def tree_meta(root: Path) -> dict[str, tuple]:
    """Type, permissions, owner, link count, size, mtime and content of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            st = os.lstat(p)
            content = p.read_bytes() if stat.S_ISREG(st.st_mode) else \
                os.readlink(p) if stat.S_ISLNK(st.st_mode) else None
            mtime = st.st_mtime_ns if not stat.S_ISLNK(st.st_mode) else None
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), oct(stat.S_IMODE(st.st_mode)), st.st_uid,
                                             st.st_gid, st.st_nlink if not stat.S_ISDIR(st.st_mode) else None,
                                             mtime, content)
    return out


def make_fixture_tree(root: Path) -> Path:
    """Files of many kinds: modes, a symlink, hard links, an empty dir, a private dir, old mtimes."""
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "private").mkdir(mode=0o700)
    (root / "pkg" / "mod.py").write_text("print('mod')\n")
    (root / "pkg" / "sub" / "data.bin").write_bytes(bytes(range(256)) * 40)
    (root / "pkg" / "run.sh").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "pkg" / "run.sh", 0o755)
    (root / "private" / "key").write_text("secret\n")
    os.chmod(root / "private" / "key", 0o600)
    os.symlink("sub/data.bin", root / "pkg" / "link")
    os.link(root / "pkg" / "mod.py", root / "pkg" / "hardlink.py")
    (root / "with space & ünïcode").write_text("odd name\n")
    os.chown(root / "pkg" / "mod.py", 1000, 1000)
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames + dirnames:
            os.utime(Path(dirpath) / name, ns=(1_500_000_000_123_456_789, 1_600_000_000_987_654_321),
                     follow_symlinks=False)
    return root


# ---------------------------------------------------------------------- readers
def test_cat_grep_and_rg_see_memory(mnt, repo):
    (mnt / "data" / "notes.txt").write_text("alpha\nBETA-in-memory\ngamma\n")
    (mnt / "docs" / "new.md").write_text("fresh BETA-in-memory doc\n")
    assert sh("cat data/notes.txt", mnt) == "alpha\nBETA-in-memory\ngamma\n"
    grep = sh("grep -rn --exclude-dir=.git BETA-in-memory .", mnt)
    assert sorted(grep.splitlines()) == ["./data/notes.txt:2:BETA-in-memory", "./docs/new.md:1:fresh BETA-in-memory doc"]
    rg = sh("rg -n --sort path BETA-in-memory", mnt)
    assert rg.splitlines() == ["data/notes.txt:2:BETA-in-memory", "docs/new.md:1:fresh BETA-in-memory doc"]
    listed = sorted(sh("rg --files", mnt).splitlines())
    assert listed == sorted(files_under(mnt))
    assert ".vfs" not in os.listdir(mnt)
    assert (repo.mount.source / "data" / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"


# ---------------------------------------------------------------------- editors
def test_sed_in_place(mnt):
    before = sorted(os.listdir(mnt / "calc"))
    sh("sed -i 's/return a + b/return b + a  # sed/' calc/ops.py", mnt)
    text = (mnt / "calc" / "ops.py").read_text()
    assert "return b + a  # sed" in text and "return a + b" not in text
    assert sorted(os.listdir(mnt / "calc")) == before  # sed's temp file was renamed over
    assert stat.S_IMODE(os.stat(mnt / "calc" / "ops.py").st_mode) == 0o644
    assert "return b + a" in sh("python3 -c 'import calc.ops, inspect; print(inspect.getsource(calc.ops))'", mnt)


def test_editor_save_by_rename(mnt):
    target = mnt / "calc" / "__init__.py"
    old = target.read_bytes()
    reader = open(target, "rb")  # a process that had the old version open keeps it
    mode = os.stat(target).st_mode
    tmp = target.with_name(".__init__.py.swp123")
    with open(tmp, "wb") as f:
        f.write(b"from .ops import add\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, stat.S_IMODE(mode))
    os.rename(tmp, target)
    assert target.read_bytes() == b"from .ops import add\n"
    assert reader.read() == old
    reader.close()
    assert sorted(os.listdir(mnt / "calc")) == ["__init__.py", "ops.py"]


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_vim_save(mnt):
    path = mnt / "docs" / "guide.md"
    before = sorted(os.listdir(mnt / "docs"))
    run(["vim", "-Es", "-u", "NONE", "-i", "NONE", "-c", "set writebackup backupcopy=auto",
         "-c", "%s/calc/CALC/", "-c", "wq", str(path)], cwd=mnt, timeout=30)
    assert path.read_text() == "# guide\n\nuse the CALC package\n"
    assert sorted(os.listdir(mnt / "docs")) == before  # no backup or swap file left behind


# ---------------------------------------------------------------------- copy, move, remove, create
def test_cp_a(mnt, repo):
    sh("cp -a calc calc_copy", mnt)
    for name in ("__init__.py", "ops.py"):
        a, b = os.stat(mnt / "calc" / name), os.stat(mnt / "calc_copy" / name)
        assert (a.st_mode, a.st_mtime_ns, a.st_size) == (b.st_mode, b.st_mtime_ns, b.st_size)
        assert (mnt / "calc" / name).read_bytes() == (mnt / "calc_copy" / name).read_bytes()
    # A tree of every kind copied in from outside keeps what a local copy keeps.
    src = make_fixture_tree(repo.scratch / "cp-src")
    run(["cp", "-a", str(src), str(repo.scratch / "cp-local")])
    run(["cp", "-a", str(src), str(mnt / "cp-mount")])
    assert tree_meta(mnt / "cp-mount") == tree_meta(repo.scratch / "cp-local")
    run(["cp", "-a", str(mnt / "cp-mount"), str(repo.scratch / "cp-back")])
    assert tree_meta(repo.scratch / "cp-back") == tree_meta(repo.scratch / "cp-local")


def test_mv(mnt, repo):
    sh("mkdir mvdir && printf one > mvdir/a && printf two > mvdir/b", mnt)
    sh("mv mvdir/a mvdir/b", mnt)  # over an existing file
    assert os.listdir(mnt / "mvdir") == ["b"] and (mnt / "mvdir" / "b").read_text() == "one"
    sh("mkdir mvdir/sub && mv mvdir/b mvdir/sub/ && mv mvdir mvdir2", mnt)
    assert (mnt / "mvdir2" / "sub" / "b").read_text() == "one"
    outside = repo.scratch / "mv-out"
    outside.mkdir()
    run(["mv", str(mnt / "mvdir2"), str(outside)])  # across file systems: copy, then remove
    assert not (mnt / "mvdir2").exists() and (outside / "mvdir2" / "sub" / "b").read_text() == "one"
    run(["mv", str(outside / "mvdir2"), str(mnt / "mvdir3")])
    assert (mnt / "mvdir3" / "sub" / "b").read_text() == "one"


def test_rm_rf(mnt):
    sh("rm -rf vendor", mnt)  # a directory of the base, never listed before
    assert not (mnt / "vendor").exists()
    deep = mnt / "deeptree"
    p = deep
    for i in range(150):
        p = p / f"level {i}"
        p.mkdir(parents=True)
        (p / "file.txt").write_text(str(i))
        if i % 10 == 0:
            os.symlink("file.txt", p / "link")
            os.mkfifo(p / "fifo")
            os.chmod(p / "file.txt", 0o400)
    sh("chmod -R a-w deeptree/'level 0'/'level 1'", mnt)
    sh("rm -rf deeptree", mnt)
    assert not deep.exists()
    assert "vendor" not in os.listdir(mnt) and "deeptree" not in os.listdir(mnt)


def test_mkdir_p(mnt):
    sh("mkdir -p a/b/c/d && mkdir -p a/b/c/d && mkdir -p -m 700 a/b/x/y", mnt)
    assert (mnt / "a" / "b" / "c" / "d").is_dir()
    assert stat.S_IMODE(os.stat(mnt / "a" / "b" / "x" / "y").st_mode) == 0o700
    assert os.stat(mnt / "a" / "b").st_nlink == 4
    (mnt / "a" / "file").write_text("x")
    res = run("mkdir -p a/file/sub", cwd=mnt, check=False)
    assert res.returncode != 0 and "Not a directory" in res.stderr


# ---------------------------------------------------------------------- archives
def test_tar_create_and_extract(mnt, repo):
    (mnt / "data" / "tarred.txt").write_text("in memory only\n")
    out = repo.scratch / "from-mount.tar"
    sh(f"tar cf {out} calc data tests", mnt)
    extracted = repo.scratch / "from-mount"
    extracted.mkdir()
    run(["tar", "xf", str(out), "-C", str(extracted)])
    assert files_under(extracted) == {k: v for k, v in files_under(mnt).items()
                                      if k.split("/")[0] in ("calc", "data", "tests")}
    assert sh("tar cf - calc | tar tf - | sort", mnt).split() == ["calc/", "calc/__init__.py", "calc/ops.py"]
    # Extracting into the mount keeps what extracting onto the local disk keeps.
    src = make_fixture_tree(repo.scratch / "tar-src")
    archive = repo.scratch / "fixture.tar"
    run(["tar", "cf", str(archive), "-C", str(src), "."])
    for dest in (repo.scratch / "tar-local", mnt / "tar-mount"):
        dest.mkdir()
        run(["tar", "xpf", str(archive), "-C", str(dest)])
    assert tree_meta(mnt / "tar-mount") == tree_meta(repo.scratch / "tar-local")


# ---------------------------------------------------------------------- git
def test_git_status_and_diff(mnt):
    with open(mnt / "tests" / "test_ops.py", "a") as f:
        f.write("# changed in memory\n")
    (mnt / "tests" / "test_new.py").write_text("def test_new():\n    pass\n")
    os.unlink(mnt / "README.md")
    status = sh("git status --porcelain -- tests README.md", mnt)
    assert sorted(status.splitlines()) == [" D README.md", " M tests/test_ops.py", "?? tests/test_new.py"]
    diff = sh("git diff -- tests/test_ops.py", mnt)
    assert "+# changed in memory" in diff and diff.startswith("diff --git a/tests/test_ops.py b/tests/test_ops.py")
    assert sh("git diff --numstat -- tests", mnt).split() == ["1", "0", "tests/test_ops.py"]
    assert sh("git log --oneline", mnt).strip().endswith("initial")
    assert "calc/ops.py" in sh("git ls-files", mnt).split()
    # Put things back: status is clean for those paths again.
    sh("git checkout -- tests/test_ops.py README.md && rm tests/test_new.py", mnt)
    assert sh("git status --porcelain -- tests README.md", mnt) == ""


# ---------------------------------------------------------------------- mmap, big files, concurrency
def test_mmap_read(mnt, repo):
    data = os.urandom(3 * mmap.PAGESIZE + 123)
    (mnt / "data" / "blob.bin").write_bytes(data)
    with open(mnt / "data" / "blob.bin", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[:] == data and m[mmap.PAGESIZE:mmap.PAGESIZE + 10] == data[mmap.PAGESIZE:mmap.PAGESIZE + 10]
    with open(mnt / "docs" / "guide.md", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        assert m[:] == (mnt / "docs" / "guide.md").read_bytes()


def test_50mb_file_round_trip(mnt):
    chunk = os.urandom(1 << 20)
    digest = hashlib.sha256()
    path = mnt / "data" / "big.bin"
    with open(path, "wb") as f:
        for i in range(50):
            piece = chunk[i:] + chunk[:i]
            digest.update(piece)
            f.write(piece)
    assert os.stat(path).st_size == 50 << 20
    got = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            got.update(block)
    assert got.hexdigest() == digest.hexdigest()
    assert sh("sha256sum data/big.bin", mnt).split()[0] == digest.hexdigest()
    os.unlink(path)


WRITER = textwrap.dedent("""\
    import os, sys
    path, k = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for i in range(400):
        os.write(fd, f"writer {k} line {i:05d} {'x' * (i % 50)}\\n".encode())
    os.close(fd)
""")

READER = textwrap.dedent("""\
    import os, sys, time
    paths, expected, done = sys.argv[1:5], [open(p).read() for p in sys.argv[5:9]], sys.argv[9]
    reads = bad = 0
    while True:
        finished = os.path.exists(done)
        for path, want in zip(paths, expected):
            try:
                with open(path) as f:
                    got = f.read()
            except FileNotFoundError:
                continue
            reads += 1
            if not want.startswith(got):
                bad += 1
        if finished:
            break
    print(reads, bad)
""")


def test_concurrent_writers_and_readers(mnt, repo):
    work = mnt / "concurrent"
    work.mkdir()
    paths = [work / f"w{k}.txt" for k in range(4)]
    expected = []
    for k in range(4):
        exp = repo.scratch / f"expected{k}.txt"
        exp.write_text("".join(f"writer {k} line {i:05d} {'x' * (i % 50)}\n" for i in range(400)))
        expected.append(exp)
    done = repo.scratch / "writers-done"
    readers = [subprocess.Popen([sys.executable, "-c", READER, *map(str, paths), *map(str, expected), str(done)],
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(p), str(k)]) for k, p in enumerate(paths)]
    try:
        assert [w.wait(60) for w in writers] == [0, 0, 0, 0]
    finally:
        done.touch()
    results = [r.communicate(timeout=60)[0].split() for r in readers]
    assert all(r.returncode == 0 for r in readers)
    assert all(int(bad) == 0 and int(reads) > 0 for reads, bad in results), results
    for p, exp in zip(paths, expected):
        assert p.read_text() == exp.read_text()


def test_ignored_entries_below_directories_made_in_memory(tmp_path):
    """Ignored paths go to disk also below a directory that exists only in memory: Python's
    compileall writes `newpkg/__pycache__`, `mkdir -p pkg/build` works, and a rename of the
    package takes its `__pycache__` along on disk (regression: ENOENT, then a lost entry)."""
    source = make_project(tmp_path / "src", {"a.txt": "a\n", ".gitignore": "build/\n*.log\n"})
    run([*GIT, "init", "-q"], cwd=source)
    run([*GIT, "add", "-A"], cwd=source)
    run([*GIT, "commit", "-qm", "initial"], cwd=source)
    (tmp_path / "mnt").mkdir()
    m = mount_source(source, tmp_path / "mnt")
    try:
        mp = m.path
        # vfs made pkg/ on disk for build/: at once, not only once the outside watcher has
        # noticed, pkg/ is no change (regression: "M pkg/" until then; flaky under load)
        assert sh("mkdir -p pkg/build && cat .vfs/changed", mp) == ""
        sh("echo hi > pkg/out.log", mp)
        assert (source / "pkg" / "out.log").read_text() == "hi\n" and (source / "pkg" / "build").is_dir()
        sh("mkdir newpkg && echo 'x = 1' > newpkg/m.py", mp)
        sh(f"{sys.executable} -m compileall -q newpkg", mp)
        pyc = f"m.cpython-{sys.version_info.major}{sys.version_info.minor}.pyc"
        assert (source / "newpkg" / "__pycache__" / pyc).is_file()
        assert not (source / "newpkg" / "m.py").exists()  # the source itself stays in memory
        sh("mv newpkg pkgz", mp)
        assert os.listdir(mp / "pkgz" / "__pycache__") == [pyc]
        assert (source / "pkgz" / "__pycache__" / pyc).is_file() and not (source / "newpkg").exists()
        assert run(["cat", ".vfs/changed"], cwd=mp).stdout.splitlines() == ["A pkgz/m.py"]
        assert sh(f"{sys.executable} -c 'import pkgz.m; print(pkgz.m.x)'", mp) == "1\n"
    finally:
        unmount(m)
