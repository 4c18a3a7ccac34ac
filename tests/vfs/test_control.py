"""The `.vfs/` control directory, driven by real processes on real mounts.

Every action goes through the same paths a user's shell takes: `sh -c 'echo
... > .vfs/FILE'`, `cat`, `git apply`, `tail -f`.  Each test mounts its own
project (a mount takes a fraction of a second) except the bad-input tests,
which share one mount: each of them proves it changed nothing.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mountlib import SAMPLE, make_project, mount_source, run, tree_hashes, unmount

BASE_NOTES = SAMPLE["data/notes.txt"]
BASE_OPS = SAMPLE["calc/ops.py"]


# ---------------------------------------------------------------------------- helpers
def sh(mp: Path, script: str, *, agent: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if agent is not None:
        env["VFS_AGENT"] = agent
    return run(["sh", "-c", script], cwd=mp, check=check, env=env)


def cat(mp: Path, rel: str) -> str:
    return run(["cat", rel], cwd=mp).stdout


def raw_cat(mp: Path, rel: str) -> bytes:
    return subprocess.run(["cat", rel], cwd=mp, capture_output=True, check=True).stdout


def status(mp: Path) -> dict:
    return json.loads(cat(mp, ".vfs/status.json"))


def journal_head(mp: Path) -> int:
    return status(mp)["journal_head"]


LOG_LINE = re.compile(r"^(\d+) \S+ agent=(\S+) (\S+)(?: (.*))?$")


def log_entries(mp: Path, rel: str = ".vfs/log") -> list[tuple[int, str, str, str]]:
    """(seq, agent, op, rest) of every line of a log view."""
    out = []
    for line in cat(mp, rel).splitlines():
        m = LOG_LINE.match(line)
        assert m, f"bad log line: {line!r}"
        out.append((int(m.group(1)), m.group(2), m.group(3), m.group(4) or ""))
    return out


def contents(root: Path) -> dict[str, bytes | str]:
    """Every file's bytes (symlinks: their target), read through the kernel like `cat` does."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        for name in filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            out[rel] = "->" + os.readlink(p) if p.is_symlink() else p.read_bytes()
    return out


def wait_opened(pid: int, target: str, timeout: float = 10.0) -> None:
    """Wait until process `pid` holds `target` open (so it is subscribed before we edit)."""
    deadline = time.monotonic() + timeout
    target = os.path.realpath(target)  # `.vfs` may be a symlink to the control mount
    while time.monotonic() < deadline:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return
                except OSError:
                    continue
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never opened {target}")


class LineReader:
    """Read a subprocess's stdout lines on a thread, so the test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.put(raw.decode("utf-8", "replace"))

    def next(self, timeout: float = 10.0) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        finally:
            self.thread.join(timeout=5)


@pytest.fixture
def lazy_mount(project, tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(project, mp, "--mode", "lazy")
    try:
        yield m
    finally:
        unmount(m)


# ---------------------------------------------------------------------------- visibility
def test_vfs_hidden_from_listings_but_reachable(mounted):
    mp = mounted.path
    assert ".vfs" not in run(["ls", "-a"], cwd=mp).stdout.split()
    readme = cat(mp, ".vfs/README")
    assert readme.startswith(".vfs/ — the workspace explains itself.")
    for name in ("status", "log", "diff", "rollback", "batch", "events"):
        assert f"\n{name} " in readme
    listing = run(["ls", ".vfs"], cwd=mp).stdout.split()
    assert {"README", "status", "status.json", "log", "rollback", "batch", "agents"} <= set(listing)
    assert [p for p in run(["find", "."], cwd=mp).stdout.splitlines() if ".vfs" in p] == []
    for args in (["rg", "--files"], ["rg", "--files", "--hidden", "--no-ignore"]):
        files = run(args, cwd=mp).stdout.split()
        assert sorted(files) == sorted(SAMPLE), args
    assert ".vfs" not in run(["rg", "-l", "--hidden", "workspace explains itself", "."], cwd=mp,
                             check=False).stdout


# ---------------------------------------------------------------------------- rollback
def test_rollback_single_file(mounted):
    mp = mounted.path
    for i in (1, 2, 3):
        sh(mp, f"printf 'v{i}\\n' > data/notes.txt")
    assert run(["ls", ".vfs/versions/data/notes.txt"], cwd=mp).stdout.split() == ["1", "2", "3", "4"]
    assert cat(mp, ".vfs/versions/data/notes.txt/1") == BASE_NOTES
    assert cat(mp, ".vfs/versions/data/notes.txt/3") == "v2\n"

    assert cat(mp, "data/notes.txt") == "v3\n"  # warm the page cache
    sh(mp, "echo data/notes.txt > .vfs/rollback")
    assert cat(mp, "data/notes.txt") == "v2\n"
    assert "last: ok: rolled back data/notes.txt at seq" in cat(mp, ".vfs/rollback")

    sh(mp, "echo 'data/notes.txt 1' > .vfs/rollback")
    assert cat(mp, "data/notes.txt") == BASE_NOTES
    assert "last: ok: rolled back data/notes.txt to version 1 at seq" in cat(mp, ".vfs/rollback")
    assert run(["wc", "-c", "data/notes.txt"], cwd=mp).stdout.split()[0] == str(len(BASE_NOTES))

    # A deleted file comes back with its last content.
    assert cat(mp, "calc/ops.py") == BASE_OPS
    sh(mp, "rm calc/ops.py")
    assert run(["cat", "calc/ops.py"], cwd=mp, check=False).returncode != 0
    sh(mp, "echo calc/ops.py > .vfs/rollback")
    assert cat(mp, "calc/ops.py") == BASE_OPS
    assert "ops.py" in run(["ls", "calc"], cwd=mp).stdout

    # A renamed file: rolling back its old name brings it back (the new name stays).
    sh(mp, "mv README.md README.rst")
    sh(mp, "echo README.md > .vfs/rollback")
    assert cat(mp, "README.md") == SAMPLE["README.md"]
    assert cat(mp, "README.rst") == SAMPLE["README.md"]
    assert cat(mp, ".vfs/changed") == "A README.rst\n"  # everything else is back at its base content


def test_rollback_session_to_seq_and_rollback_of_rollback(mounted):
    mp, src = mounted.path, mounted.source
    sh(mp, "printf 'def add(a, b):\\n    return b + a\\n' > calc/ops.py")
    seq1 = journal_head(mp)
    at_seq1 = tree_hashes(mp)

    sh(mp, "rm data/notes.txt && mv README.md docs.md && mkdir -p new/sub && echo fresh > new/sub/x.txt"
           " && echo more >> calc/ops.py && chmod +x tests/test_ops.py && rm -r tests/__pycache__ 2>/dev/null;"
           " true")
    after_edits = tree_hashes(mp)
    before_rollback = journal_head(mp)
    seen = contents(mp)  # warm every page cache and dentry
    assert "data/notes.txt" not in seen and seen["new/sub/x.txt"] == b"fresh\n"

    sh(mp, f"echo {seq1} > .vfs/rollback")
    assert tree_hashes(mp) == at_seq1
    assert cat(mp, "data/notes.txt") == BASE_NOTES and cat(mp, "README.md") == SAMPLE["README.md"]
    assert run(["cat", "docs.md"], cwd=mp, check=False).returncode != 0
    assert not (mp / "new").exists()
    assert cat(mp, "calc/ops.py") == "def add(a, b):\n    return b + a\n"
    assert stat.S_IMODE(os.stat(mp / "tests" / "test_ops.py").st_mode) == 0o644
    assert journal_head(mp) == before_rollback + 1
    assert log_entries(mp)[-1][2] == "rollback"
    assert f"last: ok: rolled back to entry {seq1} at seq {before_rollback + 1}" in cat(mp, ".vfs/rollback")

    # Roll the rollback back: everything as it was before it.
    sh(mp, f"echo {before_rollback} > .vfs/rollback")
    assert tree_hashes(mp) == after_edits
    assert cat(mp, "docs.md") == SAMPLE["README.md"]
    assert cat(mp, "new/sub/x.txt") == "fresh\n"

    # Back to the very beginning: the base, which is what the (untouched) disk holds.
    sh(mp, "echo 0 > .vfs/rollback")
    assert tree_hashes(mp) == tree_hashes(src)
    assert cat(mp, ".vfs/changed") == ""


def test_rollback_to_checkpoint(mounted):
    mp = mounted.path
    sh(mp, "echo 'v1' > data/notes.txt && echo new > added.txt")
    sh(mp, "echo first > .vfs/checkpoint")
    cp_seq = journal_head(mp)
    assert re.search(rf"^first {cp_seq} \d", cat(mp, ".vfs/checkpoint"), re.M)
    at_checkpoint = tree_hashes(mp)

    sh(mp, "echo v2 > data/notes.txt && rm added.txt && mv calc/ops.py calc/operations.py"
           " && ln -s calc/operations.py ops_link && chmod 600 README.md")
    after = tree_hashes(mp)
    contents(mp)  # warm caches
    head = journal_head(mp)

    sh(mp, "echo @first > .vfs/rollback")
    assert tree_hashes(mp) == at_checkpoint
    assert cat(mp, "data/notes.txt") == "v1\n" and cat(mp, "added.txt") == "new\n"
    assert cat(mp, "calc/ops.py") == BASE_OPS
    assert not os.path.lexists(mp / "ops_link") and not (mp / "calc" / "operations.py").exists()
    last = log_entries(mp)[-1]
    assert last[2] == "rollback" and "target=@first" in last[3]
    assert "last: ok: rolled back to checkpoint first" in cat(mp, ".vfs/rollback")

    sh(mp, f"echo {head} > .vfs/rollback")  # the rollback of the rollback
    assert tree_hashes(mp) == after
    assert os.readlink(mp / "ops_link") == "calc/operations.py"
    assert cat(mp, "ops_link") == BASE_OPS


def test_versions_see_renames_batches_and_session_rollbacks(mounted):
    """Entries that change many paths (directory renames, batches, rollbacks) are
    versions of every path they changed, and `PATH` rollbacks can use them."""
    mp = mounted.path
    sh(mp, "mv calc lib")
    sh(mp, "echo '# edited' >> lib/ops.py")
    assert run(["ls", ".vfs/versions/lib/ops.py"], cwd=mp).stdout.split() == ["1", "2"]
    assert cat(mp, ".vfs/versions/lib/ops.py/1") == BASE_OPS
    sh(mp, "echo lib/ops.py > .vfs/rollback")
    assert cat(mp, "lib/ops.py") == BASE_OPS
    batch = [{"path": "README.md", "content": "readme v2\n"}, {"path": "lib/ops.py", "old": "a * b", "new": "b * a"}]
    sh(mp, f"printf '%s\\n' {shlex.quote(json.dumps(batch))} > .vfs/batch")
    assert cat(mp, "lib/ops.py") == BASE_OPS.replace("a * b", "b * a")
    sh(mp, "echo lib/ops.py > .vfs/rollback")  # undo the batch's edit of this one path only
    assert cat(mp, "lib/ops.py") == BASE_OPS and cat(mp, "README.md") == "readme v2\n"
    sh(mp, "echo 0 > .vfs/rollback")  # the whole session back to the base
    assert not (mp / "lib").exists() and cat(mp, "calc/ops.py") == BASE_OPS
    assert cat(mp, "README.md") == SAMPLE["README.md"]
    sh(mp, "echo README.md > .vfs/rollback")  # the session rollback is README.md's latest version
    assert cat(mp, "README.md") == "readme v2\n"


def test_version_numbers_survive_journal_trimming(tmp_path):
    """Regression (crash suite, seed 969379374): with a journal that keeps 4
    entries, trimming must not renumber versions.  A version keeps its number
    while listed; once its entry is trimmed it is gone (ENOENT), never another
    content under the old number -- also after a remount."""
    src = make_project(tmp_path / "src", SAMPLE)
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(src, mp, "--set", "max_journal_entries=4")
    try:
        for i in range(1, 9):
            (mp / "data/notes.txt").write_text(f"v{i}\n")
            sh(mp, f"echo 'x = {i}' > data/other.py")  # other paths' entries trim it too
        listed = run(["ls", ".vfs/versions/data/notes.txt"], cwd=mp).stdout.split()
        numbers = sorted(int(n) for n in listed)
        assert numbers[-1] == 9 and len(numbers) < 9  # base + 8 writes; the oldest trimmed away
        for n in numbers:
            assert cat(mp, f".vfs/versions/data/notes.txt/{n}") == (BASE_NOTES if n == 1 else f"v{n - 1}\n")
        bad = sh(mp, "echo 'data/notes.txt 2' > .vfs/rollback", check=False)
        assert bad.returncode != 0
        assert f"data/notes.txt has no version 2 (versions {numbers[0]}..9) [ENOENT]" in cat(mp, ".vfs/rollback")
        assert cat(mp, "data/notes.txt") == "v8\n"
        sh(mp, f"echo 'data/notes.txt {numbers[0]}' > .vfs/rollback")  # its content becomes version 10
        assert cat(mp, "data/notes.txt") == f"v{numbers[0] - 1}\n"
    finally:
        unmount(m)
    m = mount_source(src, mp, "--set", "max_journal_entries=4")
    try:
        listed = sorted(int(n) for n in run(["ls", ".vfs/versions/data/notes.txt"], cwd=mp).stdout.split())
        assert listed[-1] == 10 and listed[0] >= numbers[0]
        for n in listed:
            want = f"v{numbers[0] - 1}\n" if n == 10 else f"v{n - 1}\n"
            assert cat(mp, f".vfs/versions/data/notes.txt/{n}") == want
    finally:
        unmount(m)


def test_file_names_that_are_not_utf8(tmp_path):
    """A name of raw bytes (Linux allows any but '/' and NUL) is journaled,
    shown by the control files, survives a remount and syncs to the same bytes."""
    src = make_project(tmp_path / "src", SAMPLE)
    mp = tmp_path / "mnt"
    mp.mkdir()
    raw = b"caf\xe9 \xff.txt"  # Latin-1, not UTF-8
    m = mount_source(src, mp)
    try:
        (Path(os.fsdecode(os.fsencode(mp) + b"/data/" + raw))).write_bytes(b"latin\n")
        assert raw in os.listdir(os.fsencode(mp / "data"))
        assert os.fsencode("data/") + raw in raw_cat(mp, ".vfs/changed")
        assert b"+latin" in raw_cat(mp, ".vfs/diff")
        assert b"create" in raw_cat(mp, ".vfs/log")
        assert status(mp)["journal_head"] >= 1
    finally:
        unmount(m)
    assert raw not in os.listdir(os.fsencode(src / "data"))  # nothing reached the disk
    m = mount_source(src, mp)
    try:
        assert (Path(os.fsdecode(os.fsencode(mp) + b"/data/" + raw))).read_bytes() == b"latin\n"
        sh(mp, "echo > .vfs/sync")
        assert (Path(os.fsdecode(os.fsencode(src) + b"/data/" + raw))).read_bytes() == b"latin\n"
    finally:
        unmount(m)


# ---------------------------------------------------------------------------- diff
DIFF_PROJECT = {
    **SAMPLE,
    "data/old.txt": "to be deleted\n",
    "docs/guide.md": "# Guide\n\nRead me.\n",
    "bin/run.sh": "#!/bin/sh\necho run\n",
    "data/keep.txt": "line one\nline two\n",
}
BINARY = bytes(range(256)) * 4
BINARY2 = bytes(reversed(range(256))) * 3 + b"\0tail"


def test_diff_applies_with_git_apply(tmp_path):
    src = make_project(tmp_path / "src", DIFF_PROJECT)
    (src / "assets").mkdir()
    (src / "assets" / "logo.bin").write_bytes(BINARY)
    (src / "assets" / "gone.bin").write_bytes(BINARY2)
    fresh = tmp_path / "fresh"
    shutil.copytree(src, fresh, symlinks=True)
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(src, mp)
    try:
        (tmp_path / "new.bin").write_bytes(BINARY2 + b"\x00\xff")
        sh(mp, "echo 'def sub(a, b):\n    return a - b' >> calc/ops.py"
               " && printf 'x = 1\\n' > calc/extra.py"
               " && rm data/old.txt"
               " && mv docs/guide.md docs/manual.md"
               " && chmod +x bin/run.sh"
               f" && cp {tmp_path / 'new.bin'} assets/new.bin"
               " && printf 'changed' >> assets/logo.bin"
               " && rm assets/gone.bin"
               " && printf 'no newline at the end' > data/keep.txt"
               " && printf 'x' > nonl.txt"
               " && printf '#!/bin/sh\\necho tool\\n' > tool.sh && chmod 755 tool.sh"
               " && ln -s calc/ops.py link_to_ops"
               " && : > empty.txt")
        changed = cat(mp, ".vfs/changed").splitlines()
        assert "D data/old.txt" in changed and "A link_to_ops" in changed and "M bin/run.sh" in changed
        assert "R docs/guide.md -> docs/manual.md" in changed
        diff = run(["cat", ".vfs/diff"], cwd=mp).stdout
        assert "GIT binary patch" in diff and "\\ No newline at end of file" in diff
        res = run(["sh", "-c", f"cat {mp}/.vfs/diff | git apply --verbose"], cwd=fresh, check=False)
        assert res.returncode == 0, res.stderr + diff
        assert tree_hashes(fresh) == tree_hashes(mp)
        assert contents(fresh) == contents(mp)
        assert os.readlink(fresh / "link_to_ops") == "calc/ops.py"
        # One file's diff on its own.
        one = cat(mp, ".vfs/diffs/calc/ops.py")
        assert one.startswith("diff --git a/calc/ops.py b/calc/ops.py\n") and "+def sub(a, b):" in one
        assert tree_hashes(src) != tree_hashes(mp)  # the disk was never touched
    finally:
        unmount(m)


# ---------------------------------------------------------------------------- sync modes
def test_on_demand_sync(mounted):
    mp, src = mounted.path, mounted.source
    disk_before = tree_hashes(src)
    sh(mp, "echo 'def sub(a, b):\n    return a - b' >> calc/ops.py"
           " && mkdir bin && printf '#!/bin/sh\\necho hi\\n' > bin/tool.sh && chmod 755 bin/tool.sh"
           " && rm data/notes.txt && mv README.md README.rst && rm -r tests"
           " && mkdir -p pkg/inner && printf 'X = 1' > pkg/inner/mod.py")
    assert tree_hashes(src) == disk_before  # nothing reaches the disk by itself
    assert cat(mp, ".vfs/status").count("mode: on-demand") == 1

    sh(mp, "mv calc calc2 && chmod 750 pkg")  # a directory rename; nothing below it was read yet
    sh(mp, "echo calc2/ops.py > .vfs/sync")
    assert (src / "calc2" / "ops.py").read_bytes() == (mp / "calc2" / "ops.py").read_bytes()
    assert (src / "calc" / "ops.py").read_text() == BASE_OPS  # the old name is another path
    sh(mp, "echo pkg/inner/mod.py > .vfs/sync")  # its new parents go along, with their modes
    assert stat.S_IMODE(os.stat(src / "pkg").st_mode) == 0o750
    assert not any(line.startswith("A pkg") for line in cat(mp, ".vfs/changed").splitlines())
    assert (src / "README.md").exists() and (src / "data" / "notes.txt").exists()
    assert "synced 3 path(s)" in cat(mp, ".vfs/sync")

    sh(mp, "echo > .vfs/sync")
    assert tree_hashes(src) == tree_hashes(mp)
    assert contents(src) == contents(mp)
    assert stat.S_IMODE(os.stat(src / "bin" / "tool.sh").st_mode) == 0o755
    assert not (src / "tests").exists() and not (src / "README.md").exists() and not (src / "calc").exists()
    assert cat(mp, "calc2/__init__.py") == SAMPLE["calc/__init__.py"]  # still served after its disk name went
    assert (src / "pkg" / "inner" / "mod.py").read_bytes() == b"X = 1"
    assert cat(mp, ".vfs/changed") == ""
    assert [n for n in os.listdir(src) if "vfs-sync" in n] == []
    assert log_entries(mp)[-1][2] == "sync"


def test_write_through_follows_every_close(mounted):
    mp, src = mounted.path, mounted.source
    sh(mp, "echo dirty > data/notes.txt")
    assert (src / "data" / "notes.txt").read_text() == BASE_NOTES
    sh(mp, "echo write-through > .vfs/mode")
    assert "mode: write-through" in cat(mp, ".vfs/mode")
    assert status(mp)["mode"] == "write-through"
    assert (src / "data" / "notes.txt").read_text() == "dirty\n"  # switching wrote what was dirty

    sh(mp, "echo one >> data/notes.txt")
    assert (src / "data" / "notes.txt").read_text() == "dirty\none\n"
    sh(mp, "printf '#!/bin/sh\\n' > run.sh && chmod 750 run.sh")
    assert (src / "run.sh").read_bytes() == b"#!/bin/sh\n"
    assert stat.S_IMODE(os.stat(src / "run.sh").st_mode) == 0o750
    sh(mp, "mv README.md README.txt")
    assert not (src / "README.md").exists() and (src / "README.txt").read_text() == SAMPLE["README.md"]
    sh(mp, "rm calc/ops.py")
    assert not (src / "calc" / "ops.py").exists()
    sh(mp, "mkdir -p deep/er && echo x > deep/er/f.txt")
    assert (src / "deep" / "er" / "f.txt").read_text() == "x\n"
    sh(mp, "mv tests checks")  # nothing below it was read yet: it must still be served afterwards
    assert not (src / "tests").exists()
    assert (src / "checks" / "test_ops.py").read_text() == SAMPLE["tests/test_ops.py"]
    assert cat(mp, "checks/test_ops.py") == SAMPLE["tests/test_ops.py"]
    assert tree_hashes(src) == tree_hashes(mp)
    assert cat(mp, ".vfs/changed") == ""


def test_lazy_mode_writes_at_unmount(lazy_mount):
    mp, src = lazy_mount.path, lazy_mount.source
    disk_before = tree_hashes(src)
    assert "mode: lazy" in cat(mp, ".vfs/mode")
    sh(mp, "echo lazy >> data/notes.txt && rm README.md && mv calc/ops.py calc/o.py"
           " && printf 'y\\n' > new.txt && chmod 700 new.txt")
    time.sleep(0.2)
    assert tree_hashes(src) == disk_before
    expected = tree_hashes(mp)
    unmount(lazy_mount)
    assert tree_hashes(src) == expected
    assert (src / "data" / "notes.txt").read_text() == BASE_NOTES + "lazy\n"
    assert stat.S_IMODE(os.stat(src / "new.txt").st_mode) == 0o700


def test_sync_carries_times_and_group(mounted):
    """Regression: `touch -d` was not carried to disk, a renamed file got a new mtime there,
    and a `chgrp` was lost (the daemon wrote the file as itself)."""
    mp, src = mounted.path, mounted.source
    before = os.stat(src / "data" / "notes.txt").st_mtime_ns
    sh(mp, "echo new > stamped.txt && touch -d 2000-01-01T00:00:00Z stamped.txt && chgrp 1 stamped.txt"
           " && mv data/notes.txt data/moved.txt && echo > .vfs/sync")
    st = os.stat(src / "stamped.txt")
    assert st.st_mtime_ns == 946684800 * 10**9 and st.st_gid == 1
    assert os.stat(src / "data" / "moved.txt").st_mtime_ns == before


def test_sync_keeps_hard_links(mounted):
    """Regression: hard links made in memory reached the disk as separate copies."""
    mp, src = mounted.path, mounted.source
    sh(mp, "mkdir -p hl/a hl/b && echo f > hl/a/f && ln hl/a/f hl/b/g && ln data/notes.txt data/again.txt"
           " && echo > .vfs/sync")
    a, b = os.stat(src / "hl" / "a" / "f"), os.stat(src / "hl" / "b" / "g")
    assert a.st_ino == b.st_ino and a.st_nlink == 2
    n, again = os.stat(src / "data" / "notes.txt"), os.stat(src / "data" / "again.txt")
    assert n.st_ino == again.st_ino and n.st_nlink == 2  # linked to the clean file already on disk
    assert cat(mp, ".vfs/changed") == ""


def test_sync_refuses_broken_python(mounted):
    mp, src = mounted.path, mounted.source
    disk_before = tree_hashes(src)
    sh(mp, "printf 'def add(a, b:\\n    return a + b\\n' > calc/ops.py && echo ok > data/notes.txt")
    try:
        compile("def add(a, b:\n    return a + b\n", "calc/ops.py", "exec")
    except SyntaxError as exc:
        expected = f"calc/ops.py:{exc.lineno}:{exc.offset}: {exc.msg}"
    assert cat(mp, ".vfs/errors") == expected + "\n"
    assert re.fullmatch(r"calc/ops\.py:\d+:\d+: .+", expected)

    res = sh(mp, "echo > .vfs/sync", check=False)
    assert res.returncode != 0
    assert f"last: error: refused: syntax error in {expected} [EINVAL]" in cat(mp, ".vfs/sync")
    assert sh(mp, "echo calc/ops.py > .vfs/sync", check=False).returncode != 0
    assert tree_hashes(src) == disk_before
    assert sh(mp, "echo broken > .vfs/checkpoint", check=False).returncode != 0
    assert "refused: syntax error in calc/ops.py" in cat(mp, ".vfs/checkpoint")
    # Switching to write-through would write the broken file: refused, and the mode stays.
    assert sh(mp, "echo write-through > .vfs/mode", check=False).returncode != 0
    assert "mode: on-demand" in cat(mp, ".vfs/mode") and status(mp)["mode"] == "on-demand"
    assert tree_hashes(src) == disk_before

    sh(mp, "printf 'def add(a, b):\\n    return a + b\\n' > calc/ops.py")
    assert cat(mp, ".vfs/errors") == ""
    sh(mp, "echo > .vfs/sync")
    assert tree_hashes(src) == tree_hashes(mp)


# ---------------------------------------------------------------------------- agents
def test_agents_have_their_own_logs(mounted):
    mp = mounted.path
    sh(mp, "echo a1 > a.txt", agent="a")
    sh(mp, "echo b1 > b.txt", agent="b")
    sh(mp, "echo a2 >> data/notes.txt", agent="a")
    sh(mp, "echo cp-a > .vfs/checkpoint", agent="a")
    sh(mp, "rm README.md", agent="b")
    assert {"a", "b"} <= set(run(["ls", ".vfs/agents"], cwd=mp).stdout.split())
    a_log = log_entries(mp, ".vfs/agents/a/log")
    b_log = log_entries(mp, ".vfs/agents/b/log")
    assert {agent for _, agent, _, _ in a_log} == {"a"} and {agent for _, agent, _, _ in b_log} == {"b"}
    a_paths = [e[3].split()[0] for e in a_log if e[2] != "checkpoint"]
    assert set(a_paths) == {"a.txt", "data/notes.txt"} and a_paths[-1] == "data/notes.txt"
    assert any(e[2] == "checkpoint" for e in a_log)
    assert [e[2] for e in b_log][-1] == "unlink" and all("a.txt" not in e[3] for e in b_log)
    whole = log_entries(mp)
    assert sorted(e[0] for e in whole if e[1] in ("a", "b")) == sorted(e[0] for e in a_log + b_log)


# ---------------------------------------------------------------------------- batch
def test_batch_applies_atomically(mounted):
    mp = mounted.path
    contents(mp)  # warm every cache
    head = journal_head(mp)
    batch = [
        {"path": "calc/ops.py", "old": "return a * b", "new": "return b * a"},
        {"path": "calc/new.py", "content": "X = 1\n"},
        {"path": "data/notes.txt", "delete": True},
        {"path": "README.md", "rename_to": "docs/README.md"},
    ]
    # printf, not echo: dash's echo would turn the JSON escape \n into a raw newline.
    sh(mp, f"printf '%s\\n' {shlex.quote(json.dumps(batch))} > .vfs/batch")
    assert journal_head(mp) == head + 1
    last = log_entries(mp)[-1]
    assert last[2] == "batch" and "edits=4" in last[3]
    assert cat(mp, "calc/ops.py") == BASE_OPS.replace("return a * b", "return b * a")
    assert cat(mp, "calc/new.py") == "X = 1\n"
    assert run(["cat", "data/notes.txt"], cwd=mp, check=False).returncode != 0
    assert run(["ls", "data"], cwd=mp).stdout == ""
    assert cat(mp, "docs/README.md") == SAMPLE["README.md"] and not (mp / "README.md").exists()
    assert f"last: ok: batch applied at seq {head + 1}:" in cat(mp, ".vfs/batch")
    # The batch is a version of each path it changed, not only of its first one.
    assert run(["ls", ".vfs/versions/calc/ops.py"], cwd=mp).stdout.split() == ["1", "2"]
    assert cat(mp, ".vfs/versions/docs/README.md/1") == SAMPLE["README.md"]

    # A pretty-printed batch written in several writes (a shell group) works the same way.
    head = journal_head(mp)
    pretty = json.dumps([{"path": "calc/new.py", "old": "X = 1", "new": "X = 2"},
                         {"path": "calc/more.py", "content": "Y = 2\n"}], indent=2)
    lines = " ; ".join(f"printf '%s\\n' {shlex.quote(line)}" for line in pretty.splitlines())
    sh(mp, f"{{ {lines} ; }} > .vfs/batch")
    assert journal_head(mp) == head + 1
    assert cat(mp, "calc/new.py") == "X = 2\n" and cat(mp, "calc/more.py") == "Y = 2\n"

    # Later edits see what earlier ones did, also inside a directory an earlier edit moved.
    head = journal_head(mp)
    moves = [{"path": "calc/more.py", "content": "Z = 3\n"}, {"path": "calc", "rename_to": "lib"},
             {"path": "lib/more.py", "old": "Z = 3", "new": "Z = 4"}, {"path": "lib/new.py", "delete": True},
             {"path": "lib/__init__.py", "old": "from .ops", "new": "from lib.ops"}]
    sh(mp, f"printf '%s\\n' {shlex.quote(json.dumps(moves))} > .vfs/batch")
    assert journal_head(mp) == head + 1
    assert not (mp / "calc").exists() and sorted(os.listdir(mp / "lib")) == ["__init__.py", "more.py", "ops.py"]
    assert cat(mp, "lib/more.py") == "Z = 4\n"
    assert cat(mp, "lib/__init__.py").startswith("from lib.ops import add, mul")


# ---------------------------------------------------------------------------- streams
def test_events_stream_one_json_object_per_change(mounted):
    mp = mounted.path
    proc = subprocess.Popen(["cat", ".vfs/events"], cwd=mp, stdout=subprocess.PIPE)
    reader = LineReader(proc)
    try:
        wait_opened(proc.pid, str(mp / ".vfs" / "events"))
        head = journal_head(mp)
        sh(mp, "echo changed > data/notes.txt")
        sh(mp, "mv README.md README.txt")
        sh(mp, "echo x > .vfs/checkpoint")
        events = [json.loads(reader.next()) for _ in range(3)]
        assert [e["seq"] for e in events] == [head + 1, head + 2, head + 3]
        assert [e["op"] for e in events] == ["write", "rename", "checkpoint"]
        assert events[0]["paths"] == ["data/notes.txt"] and events[0]["agent"] == "sh"
        assert sorted(events[1]["paths"]) == ["README.md", "README.txt"]
        assert all(set(e) >= {"seq", "op", "paths", "agent", "time"} for e in events)
    finally:
        reader.stop()  # a blocked reader must be killable (the daemon answers its read)
    assert proc.returncode == -signal.SIGKILL
    assert cat(mp, "data/notes.txt") == "changed\n"


def test_unmount_ends_a_blocked_events_reader(project, tmp_path):
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mount_source(project, mp)
    proc = subprocess.Popen(["cat", ".vfs/events"], cwd=mp, stdout=subprocess.PIPE)
    try:
        wait_opened(proc.pid, str(mp / ".vfs" / "events"))
        res = run([sys.executable, "-m", "vfs", "unmount", str(mp), "--timeout", "5"], check=False)
        assert res.returncode == 0, res.stderr
        assert proc.wait(timeout=5) == 0  # the reader saw the end of the stream
    finally:
        if proc.poll() is None:
            proc.kill()  # answered at once even when the daemon does not stop (see control.tree)
            proc.wait(timeout=10)
        unmount(m)


def test_log_names_the_old_path_of_a_rename(mounted):
    """Regression: a rename's log line named the first of its paths in sorted order
    (`rename a.txt -> a.txt` for `mv b.txt a.txt`), not the old name."""
    mp = mounted.path
    sh(mp, "mv data/notes.txt data/a_notes.txt && mv calc zcalc")
    entries = log_entries(mp)[-2:]
    assert [(op, rest.split(" ")[:3]) for _seq, _agent, op, rest in entries] == [
        ("rename", ["data/notes.txt", "->", "data/a_notes.txt"]), ("rename", ["calc", "->", "zcalc"])]


def test_batch_without_newline_fails_the_writer(mounted):
    """Regression: `printf '%s' JSON > .vfs/batch` ran the batch only at close(2), whose error
    shells ignore: a refused batch exited 0.  A complete small document runs on its write."""
    mp = mounted.path
    head = journal_head(mp)
    bad = json.dumps([{"path": "nope.txt", "old": "a", "new": "b"}])
    res = sh(mp, f"printf '%s' {shlex.quote(bad)} > .vfs/batch", check=False)
    assert res.returncode != 0 and journal_head(mp) == head
    assert cat(mp, ".vfs/batch").endswith("last: error: edit 1 (nope.txt): no such file [ENOENT]\n")
    good = json.dumps([{"path": "data/notes.txt", "content": "no newline\n"}])
    sh(mp, f"printf '%s' {shlex.quote(good)} > .vfs/batch")
    assert cat(mp, "data/notes.txt") == "no newline\n" and journal_head(mp) == head + 1


def test_rollback_keeps_ignored_entries_of_a_new_package(mounted):
    """Make a package, run it (Python writes its `__pycache__/`, a passthrough entry, to disk),
    roll back to before it: the memory files go, the ignored entries stay on disk with their
    directory, as git leaves ignored files (regression: ENOTEMPTY, the rollback refused)."""
    mp, src = mounted.path, mounted.source
    sh(mp, "echo c0 > .vfs/checkpoint")
    sh(mp, "mkdir np && echo 'y = 2' > np/m.py && python3 -m compileall -q np")
    assert (src / "np" / "__pycache__").is_dir()
    sh(mp, "echo @c0 > .vfs/rollback")
    assert not (mp / "np" / "m.py").exists()
    assert os.listdir(mp / "np") == ["__pycache__"] and (src / "np" / "__pycache__").is_dir()
    assert "np" not in cat(mp, ".vfs/changed")
    assert "last: ok" in cat(mp, ".vfs/rollback")


def test_control_directories_list_dot_and_dotdot(mounted):
    mp = mounted.path
    for d in (".vfs", ".vfs/agents", ".vfs/versions/data"):
        names = sh(mp, f"ls -a {d}").stdout.split()
        assert names[:2] == [".", ".."], d
    entries = {line.split()[1]: int(line.split()[0]) for line in sh(mp, "ls -ai .vfs").stdout.splitlines()}
    assert entries["."] == os.stat(mp / ".vfs").st_ino
    # `.vfs` is the mount's root (with the patched pyfuse3 a mount of its own that `.vfs` links to)
    assert entries[".."] == os.stat(os.path.join(os.path.realpath(mp / ".vfs"), "..")).st_ino
    sub = {line.split()[1]: int(line.split()[0]) for line in sh(mp, "ls -ai .vfs/versions/data").stdout.splitlines()}
    assert sub[".."] == os.stat(mp / ".vfs" / "versions").st_ino


def test_appended_and_fsynced_file_costs_its_changes_in_the_journal(mounted):
    """A log appended to and fsynced line by line is journaled at each fsync; its versions are
    stored as deltas (was: a full copy per fsync, 2 GB after 2,000 lines of 1 KB), and each
    version still reads back whole."""
    mp = mounted.path
    before = json.loads(cat(mp, ".vfs/status.json"))["journal"]["blob_bytes"]
    script = ("import os\n"
              "fd = os.open('app.log', os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
              "os.write(fd, b'h' * 200_000); os.fsync(fd)\n"
              "for i in range(60):\n"
              "    os.write(fd, b'line %03d\\n' % i); os.fsync(fd)\n"
              "os.close(fd)\n")
    subprocess.run([sys.executable, "-c", script], cwd=mp, check=True)
    grown = json.loads(cat(mp, ".vfs/status.json"))["journal"]["blob_bytes"] - before
    assert grown < 2 * 200_000 + 60 * 4096, grown  # not 61 copies of 200 KB (12 MB)
    versions = sorted(int(v) for v in os.listdir(mp / ".vfs" / "versions" / "app.log"))
    middle = (mp / ".vfs" / "versions" / "app.log" / str(versions[len(versions) // 2])).read_bytes()
    assert middle.startswith(b"h" * 200_000) and (mp / "app.log").read_bytes().startswith(middle)
    assert middle.count(b"\n") == len(middle[200_000:].splitlines())


def test_rollback_of_paths_that_look_like_seq_or_checkpoint(mounted):
    """`@name` and digits are checkpoint and SEQ on .vfs/rollback; `./PATH` names such a file."""
    mp = mounted.path
    sh(mp, "echo one > @at.txt && echo two > @at.txt && echo one > 123 && echo two > 123")
    sh(mp, "echo ./@at.txt > .vfs/rollback && echo ./123 > .vfs/rollback")
    assert cat(mp, "@at.txt") == "one\n" and cat(mp, "123") == "one\n"


def test_tail_f_log_follows_new_entries(mounted):
    mp = mounted.path
    sh(mp, "echo before > data/notes.txt")
    proc = subprocess.Popen(["tail", "-n", "1", "-f", ".vfs/log"], cwd=mp, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    reader = LineReader(proc)
    try:
        first = reader.next()
        assert " write data/notes.txt " in first
        sh(mp, "echo after > calc/new.txt")
        line = reader.next(timeout=10)
        assert re.match(r"^\d+ \S+ agent=sh create calc/new\.txt", line), line
        line = reader.next(timeout=10)
        assert re.match(r"^\d+ \S+ agent=sh write calc/new\.txt", line), line
        sh(mp, "rm calc/new.txt")
        assert " unlink calc/new.txt" in reader.next(timeout=10)
    finally:
        reader.stop()


# ---------------------------------------------------------------------------- bad input
WRITER = r"""
import errno, os, sys
path, payload = sys.argv[1], open(sys.argv[2], "rb").read()
fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
stage = "write"
try:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]
    stage = "close"
    fd, closing = None, fd
    os.close(closing)
except OSError as exc:
    print(stage, errno.errorcode[exc.errno])
    sys.exit(1)
finally:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
print("ok")
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One mount with some history, shared by the bad-input tests (each changes nothing)."""
    root = tmp_path_factory.mktemp("bad")
    src = make_project(root / "src")
    mp = root / "mnt"
    mp.mkdir()
    with pytest.MonkeyPatch.context() as mpatch:
        mpatch.setenv("XDG_STATE_HOME", str(root / "state"))
        m = mount_source(src, mp)
    try:
        sh(mp, "echo v1 > data/notes.txt && echo v2 > data/notes.txt && echo base1 > .vfs/checkpoint"
               " && echo 'x = 1' > calc/extra.py")
        yield m
    finally:
        unmount(m)


def refused(m, cmd_file: str, payload: bytes, errno_name: str, reason: str, tmp_path: Path,
            *, via_sh: str | None = None, at: str = "write") -> None:
    """Write `payload` to `.vfs/<cmd_file>` twice (a shell, then a writer that reports errno):
    both are refused, `cat` shows why, and nothing changed."""
    mp = m.path
    tree = tree_hashes(mp)
    head = journal_head(mp)
    data = tmp_path / "payload"
    data.write_bytes(payload)
    script = via_sh or f"cat {data} > .vfs/{cmd_file}"
    if at == "write":  # a shell only notices failed writes (it ignores close errors)
        res = sh(mp, script, check=False)
        assert res.returncode != 0, f"{script!r} succeeded: {res.stdout}{res.stderr}"
    res = run([sys.executable, "-c", WRITER, str(mp / ".vfs" / cmd_file), str(data)], check=False)
    assert res.stdout.strip() == f"{at} {errno_name}", res.stdout + res.stderr
    shown = cat(mp, f".vfs/{cmd_file}")
    assert shown.startswith("usage: ")
    assert f"last: error: {reason}" in shown and f"[{errno_name}]" in shown, shown
    assert journal_head(mp) == head
    assert tree_hashes(mp) == tree
    assert cat(mp, "data/notes.txt") == "v2\n"  # still serving
    assert cat(mp, ".vfs/README").startswith(".vfs/")


@pytest.mark.parametrize("cmd_file,line,reason", [
    ("rollback", "", "empty rollback command"),
    ("mode", "sometimes", "unknown sync mode 'sometimes'"),
    ("checkpoint", "bad name!", "bad checkpoint name 'bad name!'"),
    ("checkpoint", "base1", "checkpoint 'base1' exists"),
])
def test_malformed_command(shared, tmp_path, cmd_file, line, reason):
    errno_name = "EEXIST" if "exists" in reason else "EINVAL"
    refused(shared, cmd_file, line.encode() + b"\n", errno_name, reason, tmp_path,
            via_sh=f"echo {shlex.quote(line)} > .vfs/{cmd_file}")


@pytest.mark.parametrize("cmd_file,line,reason", [
    ("rollback", "nope/missing.py", "no versions of nope/missing.py"),
    ("rollback", "data/notes.txt 99", "data/notes.txt has no version 99 (versions 1..3)"),
    ("rollback", "data/notes.txt 0", "data/notes.txt has no version 0"),
    ("sync", "nope/missing.py", "no such path: nope/missing.py"),
])
def test_unknown_path_or_version(shared, tmp_path, cmd_file, line, reason):
    refused(shared, cmd_file, line.encode() + b"\n", "ENOENT", reason, tmp_path,
            via_sh=f"echo {shlex.quote(line)} > .vfs/{cmd_file}")
    assert run(["cat", ".vfs/versions/data/notes.txt/99"], cwd=shared.path, check=False).returncode != 0
    assert run(["ls", ".vfs/versions/nope"], cwd=shared.path, check=False).returncode != 0


@pytest.mark.parametrize("line,reason", [
    ("999999", "no journal entry 999999"),
    ("@nope", "no checkpoint named 'nope'"),
])
def test_rollback_target_missing(shared, tmp_path, line, reason):
    refused(shared, "rollback", line.encode() + b"\n", "ENOENT", reason, tmp_path,
            via_sh=f"echo {shlex.quote(line)} > .vfs/rollback")


def test_invalid_json(shared, tmp_path):
    refused(shared, "batch", b"{bad json\n", "EINVAL", "invalid JSON: Expecting property name", tmp_path,
            via_sh="echo '{bad json' > .vfs/batch")
    refused(shared, "batch", b"[1, 2]\n", "EINVAL", "edit 1: must be an object", tmp_path,
            via_sh="echo '[1, 2]' > .vfs/batch")
    # A document cut short can only be judged at close(); the close fails.
    refused(shared, "batch", b'[{"path": "data/notes.txt", "content": \n', "EINVAL",
            "invalid JSON: Expecting value", tmp_path, at="close")


@pytest.mark.parametrize("count", [0, 2])
def test_batch_old_must_occur_once(shared, tmp_path, count):
    old = {0: "not in the file", 2: "return a"}[count]
    batch = [{"path": "calc/extra.py", "content": "x = 2\n"},
             {"path": "calc/ops.py", "old": old, "new": "return 0"}]
    text = json.dumps(batch)
    refused(shared, "batch", text.encode() + b"\n", "EINVAL",
            f"edit 2 (calc/ops.py): 'old' occurs {count} times (must be exactly once)", tmp_path,
            via_sh=f"printf '%s\\n' {shlex.quote(text)} > .vfs/batch")
    assert cat(shared.path, "calc/extra.py") == "x = 1\n"  # edit 1 was not applied either


@pytest.mark.parametrize("cmd_file,line,reason", [
    ("rollback", "../outside.txt", "path leaves the tree: ../outside.txt"),
    ("rollback", "/etc/passwd", "absolute path refused: /etc/passwd"),
    ("rollback", "data/../../x 1", "path leaves the tree: data/../../x"),
    ("sync", "../src", "path leaves the tree: ../src"),
    ("sync", "/etc", "absolute path refused: /etc"),
    ("batch", json.dumps([{"path": "../evil.txt", "content": "x"}]),
     "edit 1 (../evil.txt): path leaves the tree: ../evil.txt"),
    ("batch", json.dumps([{"path": "/tmp/evil.txt", "content": "x"}]),
     "edit 1 (/tmp/evil.txt): absolute path refused: /tmp/evil.txt"),
    ("batch", json.dumps([{"path": "README.md", "rename_to": "../README.md"}]),
     "edit 1 (README.md): path leaves the tree: ../README.md"),
])
def test_path_leaving_the_tree(shared, tmp_path, cmd_file, line, reason):
    refused(shared, cmd_file, line.encode() + b"\n", "EINVAL", reason, tmp_path,
            via_sh=f"echo {shlex.quote(line)} > .vfs/{cmd_file}")
    assert not (shared.path.parent / "outside.txt").exists() and not (shared.path.parent / "evil.txt").exists()


@pytest.mark.parametrize("cmd_file", ["rollback", "batch"])
def test_huge_write_to_command_file(shared, tmp_path, cmd_file):
    size = 100_000_000
    limit = {"rollback": "command line too large", "batch": "command too large"}[cmd_file]
    mp = shared.path
    tree, head = tree_hashes(mp), journal_head(mp)
    res = sh(mp, f"head -c {size} /dev/zero | tr '\\0' a > .vfs/{cmd_file}", check=False)
    assert res.returncode != 0
    assert f"last: error: {limit}" in cat(mp, f".vfs/{cmd_file}")
    # The same through a writer that reports the errno: EFBIG, on the write.
    payload = tmp_path / "payload"
    try:
        payload.write_bytes(b"[" + b" " * (size - 1))
        res = run([sys.executable, "-c", WRITER, str(mp / ".vfs" / cmd_file), str(payload)], check=False)
    finally:
        payload.unlink()
    assert res.stdout.strip() == "write EFBIG", res.stdout + res.stderr
    assert journal_head(mp) == head and tree_hashes(mp) == tree
    assert cat(mp, "data/notes.txt") == "v2\n"


@pytest.mark.parametrize("cmd_file", ["rollback", "batch", "checkpoint"])
def test_binary_garbage(shared, tmp_path, cmd_file):
    garbage = bytes((i * 167 + 13) % 256 for i in range(4096))  # every byte value, NUL and \xff included
    assert b"\0" in garbage and b"\n" in garbage
    refused(shared, cmd_file, garbage, "EINVAL", "command is not UTF-8 text", tmp_path)
    # Without a newline (nothing would run before close) it is refused on the write all the same.
    refused(shared, cmd_file, garbage.replace(b"\n", b"?"), "EINVAL", "command is not UTF-8 text", tmp_path)
    refused(shared, cmd_file, b"data/notes.txt\0 1", "EINVAL", "command contains NUL", tmp_path)


def test_refused_write_spends_the_handle(shared, tmp_path):
    """After a refused line, later lines written through the same descriptor do not run."""
    mp = shared.path
    head, tree = journal_head(mp), tree_hashes(mp)
    res = sh(mp, "{ echo nope/missing.py; echo 'data/notes.txt 1'; } > .vfs/rollback", check=False)
    assert res.returncode != 0
    assert "last: error: no versions of nope/missing.py" in cat(mp, ".vfs/rollback")
    assert journal_head(mp) == head and tree_hashes(mp) == tree
