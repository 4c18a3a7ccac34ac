"""`vfs mount` / `unmount` / `status` as a user runs them."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest

from mountlib import VFS, mount_source, mounted_at, run, tree_hashes, unmount


def test_mount_serves_source_and_disk_stays(mounted):
    before = tree_hashes(mounted.source)
    assert (mounted.path / "calc" / "ops.py").read_text() == (mounted.source / "calc" / "ops.py").read_text()
    run(["sh", "-c", "echo 'def sub(a, b):\n    return a - b' >> calc/ops.py"], cwd=mounted.path)
    assert "def sub" in run(["cat", "calc/ops.py"], cwd=mounted.path).stdout
    assert "def sub" not in (mounted.source / "calc" / "ops.py").read_text()
    assert tree_hashes(mounted.source) == before


def test_status_lists_live_mount(mounted):
    out = run([*VFS, "status"]).stdout
    assert str(mounted.path) in out and f"pid={mounted.pid}" in out


def test_mount_over_source_itself(project):
    before = tree_hashes(project)
    m = mount_source(project, None)
    try:
        # The agent's existing paths keep working, and now show the in-memory view.
        (project / "data" / "notes.txt").write_text("changed in memory\n")
        assert run(["cat", str(project / "data" / "notes.txt")]).stdout == "changed in memory\n"
        assert run(["grep", "-r", "changed in memory", "."], cwd=project).stdout.strip() == \
            "./data/notes.txt:changed in memory"
    finally:
        unmount(m)
    assert tree_hashes(project) == before  # unmounted: the disk never changed


def test_mount_errors_are_one_line(project, tmp_path, mounted):
    other = tmp_path / "other"
    other.mkdir()
    cases = [
        ([str(tmp_path / "nope")], "does not exist"),
        ([str(project / "README.md")], "is not a directory"),
        ([str(project), str(mounted.path)], "already mounted"),
        # The same source at a second mount point would share its journal (regression).
        ([str(project), str(other)], f"{project} is already mounted or open"),
    ]
    for args, needle in cases:
        res = run([*VFS, "mount", *args], check=False)
        assert res.returncode != 0
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], res.stderr


def test_unmount_of_something_else_fails(tmp_path):
    res = run([*VFS, "unmount", str(tmp_path)], check=False)
    assert res.returncode != 0 and "not a vfs mount" in res.stderr


def test_pytest_inside_mount_sees_memory_only_edit(mounted):
    """A test fails before the edit and passes after it, while the disk never changes."""
    test = mounted.path / "tests" / "test_ops.py"
    test.write_text(test.read_text() + "\n\ndef test_sub():\n    from calc.ops import sub\n    assert sub(5, 3) == 2\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    disk_before = hashlib.sha256((mounted.source / "calc" / "ops.py").read_bytes()).hexdigest()
    first = subprocess.run(cmd, cwd=mounted.path, capture_output=True, text=True, env=env)
    assert first.returncode == 1 and "1 failed, 2 passed" in first.stdout, first.stdout
    ops = mounted.path / "calc" / "ops.py"
    ops.write_text(ops.read_text() + "\n\ndef sub(a, b):\n    return a - b\n")
    second = subprocess.run(cmd, cwd=mounted.path, capture_output=True, text=True, env=env)
    assert second.returncode == 0 and "3 passed" in second.stdout, second.stdout
    assert hashlib.sha256((mounted.source / "calc" / "ops.py").read_bytes()).hexdigest() == disk_before
    assert "test_sub" not in (mounted.source / "tests" / "test_ops.py").read_text()


def test_demo_command_runs():
    res = run([*VFS, "demo"], timeout=180)
    assert "4 passed" in res.stdout and "unchanged" in res.stdout and "vfs demo: done" in res.stdout


def test_unmount_tells_when_the_lazy_sync_was_refused(tmp_path):
    """Regression: in lazy mode a sync refused at unmount (a syntax error) was only in the
    daemon's log; `vfs unmount` said "unmounted" and exited 0."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(src, mp, "--mode", "lazy")
    try:
        (mp / "a.py").write_text("def (\n")
    finally:
        res = run([*VFS, "unmount", str(mp)], check=False)
        unmount(m)
    assert res.returncode == 1 and res.stdout.strip() == f"unmounted {mp}"
    assert "the lazy sync at unmount was refused: refused: syntax error in a.py:1:5" in res.stderr
    assert (src / "a.py").read_text() == "x = 1\n"
    m = mount_source(src, mp, "--mode", "lazy")  # the edit is still there, and syncs once fixed
    try:
        assert (mp / "a.py").read_text() == "def (\n"
        (mp / "a.py").write_text("x = 2\n")
    finally:
        res = run([*VFS, "unmount", str(mp)], check=False)
        unmount(m)
    assert res.returncode == 0 and (src / "a.py").read_text() == "x = 2\n"


def test_unmount_keeps_what_open_files_wrote(project, tmp_path):
    """`vfs unmount` while a process still holds a file open for writing: the bytes its write()
    calls wrote are kept (journaled at shutdown; the close never comes), as data written to a
    local file system survives a lazy umount (regression: the file came back empty)."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    with mounted_at(project, mp):
        writer = subprocess.Popen([sys.executable, "-c",
                                   "import sys, time\n"
                                   "f = open(sys.argv[1], 'w'); f.write('first\\n'); f.flush()\n"
                                   "print('ready', flush=True); time.sleep(30)\n", str(mp / "open.txt")],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert writer.stdout.readline().strip() == "ready"
            run([*VFS, "unmount", str(mp)])
        finally:
            writer.kill()
            writer.wait()
    with mounted_at(project, mp):
        assert (mp / "open.txt").read_text() == "first\n"
        assert not (project / "open.txt").exists()


def test_file_times_survive_a_remount(project, tmp_path):
    """`make` and `rsync` judge by mtime: the times a file showed come back after an unmount and
    a mount (regression: every changed file got the remount's time, `touch -d` was undone)."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    with mounted_at(project, mp):
        run(["sh", "-c", "echo edit > data/notes.txt && touch -d 2002-01-01T00:00:00 data/notes.txt"
                         " && echo new > fresh.txt && touch -d 2003-03-03T03:03:03 README.md"], cwd=mp)
        before = {p: (os.stat(mp / p).st_mtime_ns, os.stat(mp / p).st_atime_ns)
                  for p in ("data/notes.txt", "fresh.txt", "README.md", "calc/ops.py")}
    with mounted_at(project, mp):
        after = {p: (os.stat(mp / p).st_mtime_ns, os.stat(mp / p).st_atime_ns) for p in before}
        assert after == before
        assert (mp / "data" / "notes.txt").read_text() == "edit\n"
    # an unchanged file edited on disk while unmounted keeps the disk's (newer) time
    with mounted_at(project, mp):
        run(["touch", "-d", "2004-04-04", str(mp / "calc" / "ops.py")])
    (project / "calc" / "ops.py").write_text("def add(a, b):\n    return a + b\n")
    with mounted_at(project, mp):
        assert os.stat(mp / "calc" / "ops.py").st_mtime_ns == os.stat(project / "calc" / "ops.py").st_mtime_ns


def test_hard_links_survive_a_remount(project, tmp_path):
    """Names of one file come back as one file after an unmount and a mount (regression: they
    came back as separate copies, and a write to one no longer showed in the other)."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    with mounted_at(project, mp):
        run(["sh", "-c", "echo one > h1 && ln h1 h2 && mkdir d && ln h1 d/h3 && ln README.md readme2"], cwd=mp)
    with mounted_at(project, mp):
        st = [os.stat(mp / p) for p in ("h1", "h2", "d/h3")]
        assert len({s.st_ino for s in st}) == 1 and all(s.st_nlink == 3 for s in st)
        assert os.stat(mp / "README.md").st_ino == os.stat(mp / "readme2").st_ino
        run(["sh", "-c", "echo two >> h2"], cwd=mp)
        assert (mp / "h1").read_text() == (mp / "d" / "h3").read_text() == "one\ntwo\n"
        assert run(["cat", ".vfs/changed"], cwd=mp).stdout.split("\n").count("A h1") == 1


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_owners_survive_a_remount(project, tmp_path):
    """A file's owner set in memory (chown of a new file and of an unchanged one) comes back after
    an unmount and a mount (regression: new files came back as the daemon's, chown was undone)."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    with mounted_at(project, mp):
        run(["sh", "-c", "echo x > owned.txt && chown 1234:2345 owned.txt README.md"], cwd=mp)
    with mounted_at(project, mp):
        for name in ("owned.txt", "README.md"):
            st = os.stat(mp / name)
            assert (st.st_uid, st.st_gid) == (1234, 2345), name
        assert os.stat(project / "README.md").st_uid == 0  # the disk is untouched
