"""Git through real mounts: the diff branch, mounts of a commit, outside edits."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mountlib import VFS, make_project, mount_source, run, unmount

FILES = {
    "app/__init__.py": "",
    "app/core.py": "def value():\n    return 1\n",
    "tests/test_core.py": "from app.core import value\n\n\ndef test_value():\n    assert value() == 1\n",
    "tests/test_other.py": "def test_other():\n    assert True\n",
    "notes.txt": "one\ntwo\nthree\nfour\nfive\n",
}


def git(*args, cwd, check=True):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e")
    return run(["git", *args], cwd=cwd, check=check, env=env)


@pytest.fixture
def repo(tmp_path):
    src = make_project(tmp_path / "repo", FILES)
    git("init", "-q", "-b", "main", cwd=src)
    git("add", "-A", cwd=src)
    git("commit", "-qm", "base", cwd=src)
    return src


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_checkpoint_writes_the_diff_branch_and_nothing_else(repo, tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    index_before, head_before = _digest(repo / ".git" / "index"), (repo / ".git" / "HEAD").read_text()
    status_before = git("status", "--porcelain", cwd=repo).stdout
    m = mount_source(repo, mp, "--set", "auto_commit=false")
    try:
        (mp / "app" / "core.py").write_text("def value():\n    return 2\n")
        (mp / "app" / "new.py").write_text("X = 1\n")
        os.unlink(mp / "notes.txt")
        run(["sh", "-c", "echo first > .vfs/checkpoint"], cwd=mp)
        branch = (mp / ".vfs" / "branch").read_text().split()
        assert branch[0] == "in-memory-edits" and len(branch[1]) == 40
        session_diff = (mp / ".vfs" / "diff").read_text()
    finally:
        unmount(m)
    git_diff = git("diff", "main", "in-memory-edits", cwd=repo).stdout
    assert git_diff == session_diff
    log = git("log", "--format=%s", "in-memory-edits", cwd=repo).stdout.splitlines()
    assert log[0].startswith("vfs: checkpoint first (journal seq") and log[1] == "base"
    assert git("status", "--porcelain", cwd=repo).stdout == status_before
    assert _digest(repo / ".git" / "index") == index_before
    assert (repo / ".git" / "HEAD").read_text() == head_before
    assert (repo / "notes.txt").exists()


def test_two_rev_mounts_make_two_branches(repo, tmp_path):
    mounts = []
    try:
        for name, text in (("a", "A\n"), ("b", "B\n")):
            mp = tmp_path / name
            mp.mkdir()
            mounts.append(mount_source(repo, mp, "--rev", "main", "--branch", f"agent-{name}"))
            (mp / "notes.txt").write_text(text)
            run(["sh", "-c", "echo > .vfs/sync"], cwd=mp)  # no worktree: sync commits the branch
        for mnt, name, text in zip(mounts, "ab", ("A\n", "B\n")):
            assert git("show", f"agent-{name}:notes.txt", cwd=repo).stdout == text
    finally:
        for mnt in mounts:
            unmount(mnt)
    assert (repo / "notes.txt").read_text() == FILES["notes.txt"]
    assert git("status", "--porcelain", cwd=repo).stdout == ""


def test_bad_rev_and_bare_repo_fail_clearly(repo, tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = run([*VFS, "mount", "--rev", "nope", str(repo), str(mp)], check=False)
    assert res.returncode != 0 and "unknown revision 'nope'" in res.stderr
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(repo), str(bare), cwd=tmp_path)
    res = run([*VFS, "mount", str(bare), str(mp)], check=False)
    assert res.returncode != 0 and "bare repository" in res.stderr
    res = run([*VFS, "mount", "--branch", "bad..name", str(repo), str(mp)], check=False)
    assert res.returncode != 0 and "not a valid branch name" in res.stderr


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_outside_edits_clean_dirty_and_merge(repo, tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(repo, mp)
    try:
        assert (mp / "app" / "core.py").read_text() == FILES["app/core.py"]  # warm the cache
        (repo / "app" / "core.py").write_text("def value():\n    return 3\n")  # outside, clean path
        assert _wait(lambda: run(["cat", str(mp / "app" / "core.py")]).stdout.endswith("return 3\n"), 1.5)
        assert " external app/core.py" in (mp / ".vfs" / "log").read_text()
        # Dirty path + outside edit = conflict; sync refuses it.
        (mp / "notes.txt").write_text("one\ntwo\nthree\nfour\nFIVE\n")
        (repo / "notes.txt").write_text("ONE\ntwo\nthree\nfour\nfive\n")
        assert _wait(lambda: (mp / ".vfs" / "conflicts").read_text() == "notes.txt\n")
        assert run(["sh", "-c", "echo notes.txt > .vfs/sync"], cwd=mp, check=False).returncode != 0
        assert (repo / "notes.txt").read_text() == "ONE\ntwo\nthree\nfour\nfive\n"
        run(["sh", "-c", "echo 'notes.txt merge' > .vfs/resolve"], cwd=mp)
        assert (mp / "notes.txt").read_text() == "ONE\ntwo\nthree\nfour\nFIVE\n"
        assert (mp / ".vfs" / "conflicts").read_text() == ""
        run(["sh", "-c", "echo notes.txt > .vfs/sync"], cwd=mp)
        assert (repo / "notes.txt").read_text() == "ONE\ntwo\nthree\nfour\nFIVE\n"
        # Files created and deleted outside appear and disappear.
        (repo / "app" / "fresh.py").write_text("Y = 2\n")
        os.unlink(repo / "tests" / "test_other.py")
        assert _wait(lambda: (mp / "app" / "fresh.py").exists() and not (mp / "tests" / "test_other.py").exists())
    finally:
        unmount(m)


def test_second_merge_on_the_same_file(repo, tmp_path):
    """Regression: after a clean merge the disk's content (the next conflict's ancestor) was not
    kept, so a second conflict on the file could only be settled by mine or theirs."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    (repo / "cb.txt").write_text("l1\nl2\nl3\nl4\nl5\n")
    m = mount_source(repo, mp)
    try:
        for mine, theirs in (("l1", "l5"), ("l2", "l4")):
            text = (mp / "cb.txt").read_text()
            (mp / "cb.txt").write_text(text.replace(mine, mine.upper()))
            disk = (repo / "cb.txt").read_text()
            (repo / "cb.txt").write_text(disk.replace(theirs, theirs.upper()))
            assert _wait(lambda: (mp / ".vfs" / "conflicts").read_text() == "cb.txt\n")
            run(["sh", "-c", "echo 'cb.txt merge' > .vfs/resolve"], cwd=mp)
            assert (mp / ".vfs" / "resolve").read_text().endswith("last: ok: cb.txt: merged cleanly\n")
        assert (mp / "cb.txt").read_text() == "L1\nL2\nl3\nL4\nL5\n"
    finally:
        unmount(m)


def test_outside_delete_of_files_the_kernel_caches(repo, tmp_path):
    """Regression: deleting clean files outside the mount, one read through it (its content
    and name in the kernel's caches) and one never read, failed in the watcher (the journal
    wanted the old content from the deleted file): the read one stayed visible with its old
    content, and no `external` entry was written."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(repo, mp)
    try:
        assert run(["cat", "app/core.py"], cwd=mp).stdout == FILES["app/core.py"]
        assert "test_other.py" in run(["ls", "tests"], cwd=mp).stdout.split()
        os.unlink(repo / "app" / "core.py")
        os.unlink(repo / "tests" / "test_other.py")
        assert _wait(lambda: "core.py" not in run(["ls", "app"], cwd=mp).stdout.split()
                     and "test_other.py" not in run(["ls", "tests"], cwd=mp).stdout.split())
        assert run(["cat", "app/core.py"], cwd=mp, check=False).returncode != 0
        log = (mp / ".vfs" / "log").read_text()
        assert " external app/core.py" in log and " external tests/test_other.py" in log
        assert (mp / ".vfs" / "changed").read_text() == ""  # memory agrees with the disk again
        run(["sh", "-c", "echo app/core.py > .vfs/rollback"], cwd=mp)  # the content read before
        assert run(["cat", "app/core.py"], cwd=mp).stdout == FILES["app/core.py"]
    finally:
        unmount(m)
        git("checkout", "--", "app/core.py", "tests/test_other.py", cwd=repo)


def test_outside_rename_chmod_and_new_directory(repo, tmp_path):
    """The watcher asks inotify for changes only (not every open/close): renames, mode
    changes and files in new directories made outside still reach the mount."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(repo, mp)
    try:
        assert run(["cat", "app/core.py"], cwd=mp).stdout == FILES["app/core.py"]
        os.rename(repo / "app" / "core.py", repo / "app" / "renamed.py")
        os.chmod(repo / "notes.txt", 0o600)
        (repo / "newdir").mkdir()
        (repo / "newdir" / "made.txt").write_text("outside\n")
        assert _wait(lambda: (mp / "app" / "renamed.py").exists() and not (mp / "app" / "core.py").exists()
                     and (mp / "notes.txt").stat().st_mode & 0o777 == 0o600
                     and (mp / "newdir" / "made.txt").exists())
        assert run(["cat", "app/renamed.py"], cwd=mp).stdout == FILES["app/core.py"]
        assert run(["cat", "newdir/made.txt"], cwd=mp).stdout == "outside\n"
        # A top-level directory made after the mount gets its own watch: later edits show too.
        (repo / "newdir" / "made.txt").write_text("outside, again\n")
        assert _wait(lambda: run(["cat", "newdir/made.txt"], cwd=mp).stdout == "outside, again\n")
    finally:
        unmount(m)


def test_diff_branch_keeps_synced_edits(repo, tmp_path):
    """Regression: after a sync the synced paths left the overlay, and the next diff-branch
    commit reverted them to the base commit.  The branch head holds the mount's content
    before and after a sync, also after a remount."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    sh = lambda script: run(["sh", "-c", script], cwd=mp)  # noqa: E731
    m = mount_source(repo, mp)
    try:
        (mp / "app" / "core.py").write_text("def value():\n    return 2\n")
        os.unlink(mp / "tests" / "test_other.py")
        sh("echo > .vfs/sync && echo one > .vfs/checkpoint")
        (mp / "notes.txt").write_text("after the sync\n")
        sh("echo two > .vfs/checkpoint")
        assert git("show", "in-memory-edits:app/core.py", cwd=repo).stdout == "def value():\n    return 2\n"
        assert git("show", "in-memory-edits:notes.txt", cwd=repo).stdout == "after the sync\n"
        assert "tests/test_other.py" not in git("ls-tree", "-r", "--name-only", "in-memory-edits", cwd=repo).stdout
    finally:
        unmount(m)
    m = mount_source(repo, mp)
    try:
        (mp / "notes.txt").write_text("after the remount\n")
        sh("echo three > .vfs/checkpoint")
        assert git("show", "in-memory-edits:app/core.py", cwd=repo).stdout == "def value():\n    return 2\n"
        tree = git("ls-tree", "-r", "--name-only", "in-memory-edits", cwd=repo).stdout
        assert "tests/test_other.py" not in tree and "notes.txt" in tree
    finally:
        unmount(m)


def test_tracked_files_are_never_ignored(repo, tmp_path):
    """Regression: a tracked file that an ignore pattern matches (`git add -f`) was passed
    through, so editing it changed the disk with no journal entry.  As in git, a tracked
    path is not ignored: it stays in memory, as does a directory with tracked files below."""
    (repo / ".gitignore").write_text("*.log\nbuild/\n")
    (repo / "keep.log").write_text("tracked\n")
    (repo / "build").mkdir()
    (repo / "build" / "kept.txt").write_text("tracked too\n")
    git("add", ".gitignore", cwd=repo)
    git("add", "-f", "keep.log", "build/kept.txt", cwd=repo)
    git("commit", "-qm", "tracked but ignored", cwd=repo)
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(repo, mp)
    try:
        run(["sh", "-c", "echo edited >> keep.log && echo edited >> build/kept.txt && echo x > build/new.txt "
                         "&& echo y > other.log"], cwd=mp)
        assert (repo / "keep.log").read_text() == "tracked\n"
        assert (repo / "build" / "kept.txt").read_text() == "tracked too\n"
        assert (mp / ".vfs" / "changed").read_text().splitlines() == ["M build/kept.txt", "M keep.log"]
        assert (repo / "build" / "new.txt").read_text() == "x\n" and (repo / "other.log").exists()  # ignored
        assert git("status", "--short", cwd=mp).stdout.split("\n")[:2] == [" M build/kept.txt", " M keep.log"]
    finally:
        unmount(m)


def test_pytest_on_impact_runs_exactly_the_affected_tests(repo, tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(repo, mp)
    try:
        (mp / "app" / "core.py").write_text("def value():\n    return 1  # touched\n")
        impact = (mp / ".vfs" / "impact").read_text().split()
        assert impact == ["tests/test_core.py"]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *impact],
                             cwd=mp, capture_output=True, text=True, env=env)
        assert res.returncode == 0 and "1 passed" in res.stdout, res.stdout
    finally:
        unmount(m)
