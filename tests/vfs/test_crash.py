"""`kill -9` of the daemon loses nothing acknowledged.

Real processes edit a real mount, the daemon is killed with SIGKILL, the
stale FUSE mount is released with `fusermount3 -uz`, and `vfs mount` of the
same source restores everything from the journal: every file closed before
the kill holds its last content, the journal's seqs are contiguous, and
`.vfs/status` says it recovered after an unclean shutdown.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mountlib import SAMPLE, mount_source, run, tree_hashes, unmount

WRITERS = 4
ROUNDS = 40
SLOTS = 5  # each writer cycles over this many files of its own


def cat(mp: Path, rel: str) -> str:
    return run(["cat", rel], cwd=mp).stdout


def status(mp: Path) -> dict:
    return json.loads(cat(mp, ".vfs/status.json"))


def log_seqs(mp: Path) -> list[int]:
    seqs = []
    for line in cat(mp, ".vfs/log").splitlines():
        m = re.match(r"^(\d+) ", line)
        assert m, f"bad log line {line!r}"
        seqs.append(int(m.group(1)))
    return seqs


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def kill_daemon(m, timeout: float = 10.0) -> None:
    """SIGKILL the daemon, wait until it is dead, release the stale mount."""
    os.kill(m.pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while not gone(m.pid):
        assert time.monotonic() < deadline, f"daemon {m.pid} survived SIGKILL"
        time.sleep(0.02)
    res = subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


class Mounts:
    """The mounts one test made, all released in teardown (also after a kill or a failure)."""

    def __init__(self) -> None:
        self.live: list = []

    def mount(self, source: Path, mp: Path, *extra: str):
        m = mount_source(source, mp, *extra)
        self.live.append(m)
        return m

    def release(self) -> None:
        for m in reversed(self.live):
            if not gone(m.pid):
                unmount(m)
        for m in self.live:
            with open("/proc/mounts") as f:
                if f" {m.path} " in f.read():
                    subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True)


@pytest.fixture
def mounts():
    ms = Mounts()
    try:
        yield ms
    finally:
        ms.release()


def writer_script(k: int, ack: Path | None = None) -> str:
    """Writer k: ROUNDS rounds of overwrite + append + (every 10th round) rename and delete.

    With `ack`, each completed close is acknowledged on a file outside the mount,
    and the first failure (the daemon died) ends the writer.  The writes then
    come from coreutils' printf, which checks its final close(2): the shell's
    builtin writes through a descriptor the shell closes with dup2(2), which
    drops the close's error, so a builtin's success does not prove a close.
    """
    done = f" && echo \"$f $i\" >> {ack}" if ack else ""
    stop = " || exit 0" if ack else " || exit 1"
    printf = "/usr/bin/printf" if ack else "printf"
    return (
        f"i=0; while [ $i -lt {ROUNDS} ]; do i=$((i+1)); "
        f"f=storm/w{k}_$((i % {SLOTS})).txt; "
        f"{{ {printf} 'writer {k} round %s\\n' $i > $f{done}; }}{stop}; "
        f"{{ {printf} '%s\\n' $i >> storm/shared_{k}.log{done.replace('$f', f'storm/shared_{k}.log')}; }}{stop}; "
        f"if [ $((i % 10)) -eq 0 ]; then "
        f"{{ printf 'moved %s\\n' $i > storm/tmp_{k} && mv storm/tmp_{k} storm/moved_{k}_$i.txt"
        f" && rm -f storm/moved_{k}_$((i - 10)).txt; }}{stop}; fi; "
        f"done"
    )


def expected_storm() -> dict[str, bytes]:
    out = {}
    for k in range(1, WRITERS + 1):
        for slot in range(SLOTS):
            last = max(i for i in range(1, ROUNDS + 1) if i % SLOTS == slot)
            out[f"storm/w{k}_{slot}.txt"] = f"writer {k} round {last}\n".encode()
        out[f"storm/shared_{k}.log"] = "".join(f"{i}\n" for i in range(1, ROUNDS + 1)).encode()
        out[f"storm/moved_{k}_{ROUNDS}.txt"] = f"moved {ROUNDS}\n".encode()
    return out


def storm_files(mp: Path) -> dict[str, bytes]:
    return {f"storm/{n}": (mp / "storm" / n).read_bytes() for n in os.listdir(mp / "storm")}


def test_edit_storm_kill9_remount_restores_everything(project, tmp_path, mounts):
    mp = tmp_path / "mnt"
    mp.mkdir()
    disk_before = tree_hashes(project)
    m = mounts.mount(project, mp)
    run(["sh", "-c", "mkdir storm && echo edited >> data/notes.txt && rm README.md"
                     " && mv calc/ops.py calc/operations.py && chmod +x tests/test_ops.py"
                     " && ln -s calc/operations.py ops_link"], cwd=mp)
    procs = [subprocess.Popen(["sh", "-c", writer_script(k)], cwd=mp, stderr=subprocess.PIPE)
             for k in range(1, WRITERS + 1)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert storm_files(mp) == expected_storm()
    expected_tree = tree_hashes(mp)
    head = status(mp)["journal_head"]
    assert log_seqs(mp) == list(range(1, head + 1))

    kill_daemon(m)
    m2 = mounts.mount(project, mp)
    assert tree_hashes(mp) == expected_tree
    assert storm_files(mp) == expected_storm()
    assert cat(mp, "data/notes.txt") == SAMPLE["data/notes.txt"] + "edited\n"
    assert os.readlink(mp / "ops_link") == "calc/operations.py"
    st = status(mp)
    assert st["journal_head"] == head
    assert log_seqs(mp) == list(range(1, head + 1))
    assert st["unclean_shutdown_recovered"] is True and st["recovered"] == st["changed"] > 0
    text = cat(mp, ".vfs/status")
    assert f"recovered: {st['recovered']} changed path(s) restored from the journal (after an unclean shutdown)" \
        in text
    assert tree_hashes(project) == disk_before  # on-demand: the disk never saw any of it

    # The recovered session goes on: new entries continue the seqs, a clean remount is not "unclean".
    run(["sh", "-c", "echo after > storm/after.txt"], cwd=mp)
    assert log_seqs(mp) == list(range(1, status(mp)["journal_head"] + 1))
    final = tree_hashes(mp)
    assert set(final) - set(expected_tree) == {"storm/after.txt"}
    unmount(m2)
    m3 = mounts.mount(project, mp)
    assert status(mp)["unclean_shutdown_recovered"] is False
    assert "changed path(s) restored from the journal (unsynced)" in cat(mp, ".vfs/status")
    assert tree_hashes(mp) == final
    unmount(m3)


def test_kill9_during_storm_keeps_every_acknowledged_close(project, tmp_path, mounts):
    """Writers still running when the daemon dies: every close that returned survives."""
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mounts.mount(project, mp)
    run(["mkdir", "storm"], cwd=mp)
    acks = [tmp_path / f"ack{k}" for k in range(1, WRITERS + 1)]
    procs = [subprocess.Popen(["sh", "-c", writer_script(k, ack)], cwd=mp, stderr=subprocess.DEVNULL)
             for k, ack in zip(range(1, WRITERS + 1), acks)]
    deadline = time.monotonic() + 30
    while sum(a.exists() and len(a.read_text().splitlines()) for a in acks) < WRITERS * 15:
        assert time.monotonic() < deadline and any(p.poll() is None for p in procs), "writers made no progress"
        time.sleep(0.01)
    kill_daemon(m)
    for p in procs:
        p.wait(timeout=30)

    mounts.mount(project, mp)
    head = status(mp)["journal_head"]
    assert log_seqs(mp) == list(range(1, head + 1))
    assert status(mp)["unclean_shutdown_recovered"] is True
    checked = 0
    for k, ack in enumerate(acks, 1):
        last: dict[str, int] = {}
        for line in ack.read_text().splitlines() if ack.exists() else []:
            path, i = line.split()
            last[path] = int(i)
        for path, i in last.items():
            if path.endswith(".log"):
                text = (mp / path).read_text()
                # Every acknowledged append is there, in order; at most the one in flight follows.
                assert text.startswith("".join(f"{n}\n" for n in range(1, i + 1))), (path, text)
                assert text in ("".join(f"{n}\n" for n in range(1, i + 1)),
                                "".join(f"{n}\n" for n in range(1, i + 2))), (path, text)
            else:
                text = (mp / path).read_text()
                # The last acknowledged content, or the next one if its close completed
                # but the acknowledgement did not (the writer was killed in between).
                assert text in (f"writer {k} round {i}\n", f"writer {k} round {i + SLOTS}\n"), (path, text)
            checked += 1
    assert checked >= WRITERS * 2
