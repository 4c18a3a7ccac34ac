"""`kernel_opens=true`: the kernel opens the mount's files without asking the daemon.

With the pyfuse3 that scripts/setup builds (patch level 2) the main mount then
answers OPEN and CREATE with ENOSYS (no OPEN/FLUSH/RELEASE per file), each
writer's writes are recorded as a version at its close, seen by fanotify
(vfs.close_watch, vfs.settler), and `.vfs` is a symlink to a FUSE mount of its
own (vfs.control_mount).  Everything here runs real tools on a real mount.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import pyfuse3

from mountlib import SAMPLE, make_project, mount_source, mounted_at, run, tree_hashes, unmount
from vfs.close_watch import can_watch

pytestmark = pytest.mark.skipif(getattr(pyfuse3, "__vfs_patch__", 0) < 2,
                                reason="needs the patched pyfuse3 (level 2) that scripts/setup builds")

KO = ("--set", "kernel_opens=true")


def sh(mp: Path, script: str, agent: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, **({"VFS_AGENT": agent} if agent else {}))
    return run(["sh", "-c", script], cwd=mp, env=env, check=check)


def fuse_mounts() -> list[str]:
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[2].startswith("fuse")]


def git_project(root: Path) -> Path:
    make_project(root, SAMPLE)
    run(["git", "init", "-q"], cwd=root)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], cwd=root)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base"], cwd=root)
    return root


def project_and_mountpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A committed sample project under `tmp_path` and an empty directory to mount it on."""
    (tmp_path / "mnt").mkdir()
    return git_project(tmp_path / "src"), tmp_path / "mnt"


@pytest.fixture
def ko(tmp_path):
    src, mp = project_and_mountpoint(tmp_path)
    m = mount_source(src, mp, *KO)
    try:
        yield m
    finally:
        unmount(m)


def test_tools_see_memory_edits_and_the_disk_stays(ko):
    mp, src = ko.path, ko.source
    before = tree_hashes(src)
    ctl = os.readlink(mp / ".vfs")
    assert ctl in fuse_mounts() and (mp / ".vfs").is_dir()
    assert ".vfs" not in os.listdir(mp)
    sh(mp, "sed -i 's/a + b/b + a/' calc/ops.py")
    sh(mp, "echo delta >> data/notes.txt")
    (mp / "new.txt").write_text("fresh\n")
    assert sh(mp, "cat calc/ops.py").stdout.count("b + a") == 1
    assert (mp / "data/notes.txt").read_text() == SAMPLE["data/notes.txt"] + "delta\n"
    assert sh(mp, "rg -l 'b \\+ a'").stdout.split() == ["calc/ops.py"]
    assert sorted(sh(mp, "git status --short").stdout.split()) == sorted(
        ["M", "calc/ops.py", "M", "data/notes.txt", "??", "new.txt"])
    assert "+delta" in sh(mp, "git diff").stdout
    assert sh(mp, "cat .vfs/changed").stdout.split() == ["M", "calc/ops.py", "M", "data/notes.txt", "A", "new.txt"]
    assert "+delta" in sh(mp, "cat .vfs/diff").stdout
    assert sh(mp, "python3 -m pytest -q -p no:cacheprovider tests").returncode == 0
    assert tree_hashes(src) == before


def test_each_process_write_is_a_version_with_its_agent(ko):
    mp = ko.path
    for i in (1, 2, 3):
        sh(mp, f"printf 'v{i}\\n' > data/notes.txt", agent=f"agent{i}")
    assert sh(mp, "ls .vfs/versions/data/notes.txt").stdout.split() == ["1", "2", "3", "4"]
    assert sh(mp, "cat .vfs/versions/data/notes.txt/3").stdout == "v2\n"
    log = [line.split() for line in sh(mp, "cat .vfs/log").stdout.splitlines()]
    writes = [(e[2], e[4]) for e in log if e[3] == "write"]
    assert writes == [("agent=agent1", "data/notes.txt"), ("agent=agent2", "data/notes.txt"),
                      ("agent=agent3", "data/notes.txt")]
    sh(mp, "echo data/notes.txt > .vfs/rollback")
    assert (mp / "data/notes.txt").read_text() == "v2\n"


def test_bad_control_command_fails_the_writer_with_a_reason(ko):
    mp = ko.path
    res = sh(mp, "echo 'no/such/file 3' > .vfs/rollback", check=False)
    assert res.returncode != 0
    assert "last: error:" in sh(mp, "cat .vfs/rollback").stdout
    res = sh(mp, "echo x > .vfs/nothing-here", check=False)
    assert res.returncode != 0
    assert sh(mp, "rm .vfs", check=False).returncode != 0 and os.path.islink(mp / ".vfs")


def test_open_unlinked_file_and_append_and_truncate(ko):
    mp = ko.path
    code = (
        "import os\n"
        "fd = os.open('data/notes.txt', os.O_RDWR)\n"
        "os.unlink('data/notes.txt')\n"
        "os.lseek(fd, 0, 2); os.write(fd, b'more\\n'); os.lseek(fd, 0, 0)\n"
        "print(os.read(fd, 100).decode(), end='')\n"
        "a = os.open('log.txt', os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)\n"
        "[os.write(a, b'%d\\n' % i) for i in range(3)]\n"
        "os.close(a)\n"
        "os.truncate('calc/ops.py', 3)\n"
    )
    out = run(["python3", "-c", code], cwd=mp).stdout
    assert out == SAMPLE["data/notes.txt"] + "more\n"
    assert not (mp / "data/notes.txt").exists()
    assert (mp / "log.txt").read_text() == "0\n1\n2\n"
    assert (mp / "calc/ops.py").read_text() == SAMPLE["calc/ops.py"][:3]
    assert sorted(sh(mp, "cat .vfs/changed").stdout.split()) == sorted(
        ["D", "data/notes.txt", "A", "log.txt", "M", "calc/ops.py"])


def test_dirty_file_edited_outside_is_a_conflict(ko):
    mp, src = ko.path, ko.source
    (mp / "data/notes.txt").write_text("mine\n")
    (src / "data/notes.txt").write_text("theirs\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (mp / ".vfs/conflicts").read_text() != "data/notes.txt\n":
        time.sleep(0.05)
    assert (mp / ".vfs/conflicts").read_text() == "data/notes.txt\n"
    assert (mp / "data/notes.txt").read_text() == "mine\n"


def test_writes_survive_a_remount_and_nothing_is_left_mounted(tmp_path):
    src, mp = project_and_mountpoint(tmp_path)
    with mounted_at(src, mp, *KO):
        ctl = os.readlink(mp / ".vfs")
        sh(mp, "echo again >> README.md")
    assert str(mp) not in fuse_mounts() and ctl not in fuse_mounts() and not os.path.exists(ctl)
    with mounted_at(src, mp, *KO):
        assert (mp / "README.md").read_text() == SAMPLE["README.md"] + "again\n"
        assert sh(mp, "cat .vfs/changed").stdout.split() == ["M", "README.md"]
    assert (src / "README.md").read_text() == SAMPLE["README.md"]


def test_control_mount_goes_with_a_killed_daemon(tmp_path):
    src, mp = project_and_mountpoint(tmp_path)
    m = mount_source(src, mp, *KO)
    try:
        ctl = os.readlink(mp / ".vfs")
        os.kill(m.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and ctl in fuse_mounts():
            time.sleep(0.05)
        assert ctl not in fuse_mounts()  # auto_unmount: fusermount3 removed it
    finally:
        unmount(m)
    assert str(mp) not in fuse_mounts()


def test_kill9_right_after_a_write_loses_nothing(tmp_path):
    """Writes are journaled when they settle; until then the pending log holds them, so a
    daemon killed right after `write(2)` returned still has them at the next mount."""
    src, mp = project_and_mountpoint(tmp_path)
    with mounted_at(src, mp, *KO) as m:
        code = ("import os, signal, sys\n"
                "open('data/notes.txt', 'w').write('rewritten\\n')\n"
                "with open('README.md', 'a') as f: f.write('tail\\n')\n"
                "os.kill(int(sys.argv[1]), signal.SIGKILL)\n")
        run(["python3", "-c", code, str(m.pid)], cwd=mp)
    with mounted_at(src, mp, *KO):
        assert (mp / "data/notes.txt").read_text() == "rewritten\n"
        assert (mp / "README.md").read_text() == SAMPLE["README.md"] + "tail\n"
        log = sh(mp, "cat .vfs/log").stdout
        assert "write data/notes.txt" in log and "write README.md" in log
    assert (src / "data/notes.txt").read_text() == SAMPLE["data/notes.txt"]


def test_views_show_each_version_at_its_close(ko):
    """A writer that goes on running (this test process) closes files the daemon never hears
    of: each version reaches `.vfs` at its close (as a handle's would), also a write that ends
    on a page boundary (which the kernel may send in parts); a file still open for writing is
    not a version yet, though every reader sees its bytes."""
    mp = ko.path
    (mp / "page.bin").write_bytes(b"x" * 4096)
    (mp / "data/notes.txt").write_text("short\n")
    with open(mp / "README.md", "a") as f:
        f.write("more\n")
        f.flush()
        assert sh(mp, "cat .vfs/changed").stdout.split() == ["M", "data/notes.txt", "A", "page.bin"]
        assert sh(mp, "tail -n1 README.md").stdout == "more\n"
    assert sh(mp, "cat .vfs/changed").stdout.split() == [
        "M", "README.md", "M", "data/notes.txt", "A", "page.bin"]
    assert "+more" in sh(mp, "cat .vfs/diff").stdout


def test_each_close_of_one_thread_ends_a_version(ko):
    """This thread writes a file and closes it, then appends and closes, three times within a few
    milliseconds: the daemon hears of no close, fanotify does, so there are six versions, as with
    handles (and one more for a file made with MKNOD: CREATE answers ENOSYS too)."""
    if not can_watch(str(ko.path)):
        assert not os.environ.get("CI"), "CI runs as root: fanotify must be allowed"
        pytest.skip("fanotify needs CAP_SYS_ADMIN: versions end by the /proc checks alone here")
    mp = ko.path
    assert "opens: kernel (closes watched with fanotify)" in sh(mp, "cat .vfs/status").stdout
    for i in range(3):
        with open(mp / "data/notes.txt", "w") as f:
            f.write(f"w{i}\n")
        with open(mp / "data/notes.txt", "a") as f:
            f.write(f"a{i}\n")
    with open(mp / "data/new.txt", "x") as f:
        f.write("new\n")
    assert sh(mp, "ls .vfs/versions/data/notes.txt").stdout.split() == [str(n) for n in range(1, 8)]
    assert [sh(mp, f"cat .vfs/versions/data/notes.txt/{n}").stdout for n in range(2, 8)] == [
        "w0\n", "w0\na0\n", "w1\n", "w1\na1\n", "w2\n", "w2\na2\n"]
    log = sh(mp, "cat .vfs/log").stdout
    assert " create data/new.txt" in log and " write data/new.txt" in log
