"""`kill -9` of the daemon at random moments of a mixed, multi-process workload.

Each cycle mounts the source, starts WORKERS worker processes and one
controller (real processes on the mount), kills the daemon with SIGKILL after
a random delay, releases the stale mount (`fusermount3 -uz`), mounts again
(`vfs mount`) and checks, against everything the processes had acknowledged:

- the journal is contiguous (`.vfs/log` seqs are first..head, 1..head unless
  it trims) and explains the tree: replaying every entry's deltas over the
  base, each delta's `before` is the replayed state of its path, and the
  replay equals the mount's tree;
- every acknowledged operation is in the journal, in its process's program
  order, with exactly its effect (`Checker.check_process`); the one in flight
  at the kill left nothing or a prefix of its steps (a batch or a rollback is
  one entry: all or nothing; a write or append may have left its bytes in
  part: with `kernel_opens` every write(2) that returned survives the kill,
  as on a local disk), and one begun after the kill left nothing;
- `.vfs/diff` applied with `git apply` to a copy of the base gives the tree.

*Acknowledged* is the README's definition ("Journal, versions, crash
safety"): a close(2) that returned, a rename/unlink/mkdir/symlink/chmod that
returned, a control-command write(2) that returned.  Every process logs
`start` before and `ok`/`err` after each operation to a file outside the
mount, so the checker knows what was acknowledged, refused, or in flight.

Workers own disjoint areas (`wK/`, with a few files in the base): writes
(open, write, close; sometimes in two write(2)s), appends, saves by rename,
renames, deletes, chmod, symlinks, mkdir and directory renames, batches
through `.vfs/batch` and per-path rollbacks through `.vfs/rollback`.  The
controller records checkpoints and rolls the whole session back (`SEQ` or
`@CHECKPOINT`) while the workers wait between two operations: a whole-session
rollback in the middle of a worker's write(2)...close(2) would legitimately
turn that acknowledged close into a write to an unlinked file, which the
journal cannot show; between operations, every operation stays whole.

The roles (crash_roles.py) run as `python crash_roles.py worker|controller JSON`
and need the standard library only; the checker is crash_check.py.
VFS_CRASH_SEED and VFS_CRASH_KILLS override the seed and the number of kills;
`scripts/crash_long --kills N` runs the same cycles for longer.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from crash_check import CheckFailed, Checker, check_diff_applies, thread_stacks
from crash_roles import WORKERS
from mountlib import SAMPLE, make_project, mount_source, unmount
from test_crash import gone, kill_daemon, log_seqs
from vfs.mounts import state_dir_for

ROLES = Path(__file__).resolve().with_name("crash_roles.py")

# ---------------------------------------------------------------------------
# The harness


def base_files(workers: int) -> dict[str, str]:
    """The sample project plus a few files in each worker's area, so that the
    workload also changes, deletes and restores content of the base."""
    files = dict(SAMPLE)
    for k in range(workers):
        for i in range(4):
            files[f"w{k}/f{i}.txt"] = f"tok=base{k}f{i}\nbase content {k} {i}\n"
        files[f"w{k}/dbase/f0.txt"] = f"tok=base{k}d\n"
    return files


def _status(mp: Path) -> dict:
    return json.loads((mp / ".vfs" / "status.json").read_text())


@dataclass
class CrashRun:
    """`kills` cycles of workload, `kill -9`, remount and checks (see module docstring).

    Everything lives below `work`; `report(line)` receives one line per cycle.
    The mount is always released, also when a check fails.
    """

    work: Path
    kills: int
    seed: int
    workers: int = WORKERS
    max_delay: float = 1.0
    report: object = None
    mount_args: tuple = ()  # extra `vfs mount` arguments (e.g. journal limits)
    min_entries: int = 0  # go on past `kills` (up to 3 times as many) until the journal has this many
    log_every: int = 1  # read all of `.vfs/log` after every N-th kill (it grows with the journal)
    stats: dict = field(default_factory=dict)
    mount: object = None
    procs: list = field(default_factory=list)
    killed_at: float = 0.0

    def run(self) -> dict:
        started = time.monotonic()
        rng = random.Random(self.seed)
        source = make_project(self.work / "src", base_files(self.workers))
        base = self.work / "base"
        shutil.copytree(source, base, symlinks=True)
        mp = self.work / "mnt"
        mp.mkdir()
        try:
            self.mount = mount_source(source, mp, *self.mount_args)
            checker = Checker(source, state_dir_for(str(source)) / "journal.db")
            checker.advance()
            checker.check_tree(mp)
            cycle = 0
            while cycle < self.kills or (len(checker.entries) < self.min_entries and cycle < 3 * self.kills):
                cycle += 1
                delay = rng.uniform(0, self.max_delay)
                t0 = time.monotonic()
                agents = self._workload(cycle, mp, rng, delay, checker)
                t1 = time.monotonic()
                self.mount = mount_source(source, mp, *self.mount_args)
                t2 = time.monotonic()
                try:
                    self._check(cycle, mp, base, checker, agents)
                except AssertionError as exc:
                    raise CheckFailed(f"cycle {cycle} (seed {self.seed}, kill after {delay:.3f} s): "
                                      f"{exc}\nworkload logs in {self.work / f'c{cycle}'}") from None
                if self.report:
                    self.report(f"cycle {cycle}/{self.kills}: kill after {delay:.2f} s, head "
                                f"{len(checker.entries)}, {time.monotonic() - t0:.2f} s (workload "
                                f"{t1 - t0:.2f}, mount {t2 - t1:.2f}, checks {time.monotonic() - t2:.2f})")
            # A clean unmount and mount keep the same tree.
            unmount(self.mount)
            self.mount = mount_source(source, mp, *self.mount_args)
            checker.advance()
            checker.check_tree(mp)
            assert _status(mp)["unclean_shutdown_recovered"] is False
        finally:
            self.release()
        self.stats.update(kills=cycle, entries=len(checker.entries),
                          seconds=round(time.monotonic() - started, 1))
        return self.stats

    def _workload(self, cycle: int, mp: Path, rng: random.Random, delay: float,
                  checker: Checker) -> list[tuple[str, Path]]:
        """Start the processes, kill the daemon after `delay`, wait for the processes."""
        ctl = self.work / f"c{cycle}"
        ctl.mkdir()
        names = [f"c{cycle}w{k}" for k in range(self.workers)]
        roles = [("worker", name, {"area": f"w{k}"}) for k, name in enumerate(names)]
        roles.append(("controller", f"c{cycle}ctl", {
            "workers": names, "checkpoints": list(checker.checkpoint_seq)}))
        agents = []
        self.procs = []
        stop_tail = threading.Event()
        tail = checker.tail(stop_tail)
        try:
            self._start_and_kill(mp, ctl, roles, agents, rng, delay)
        finally:
            stop_tail.set()
            tail.join()
        return agents

    def _start_and_kill(self, mp: Path, ctl: Path, roles: list, agents: list, rng: random.Random,
                        delay: float) -> None:
        for role, agent, extra in roles:
            log = ctl / f"{agent}.log"
            args = {"mp": str(mp), "ctl": str(ctl), "agent": agent, "log": str(log),
                    "seed": rng.getrandbits(32), **extra}
            with open(ctl / f"{agent}.err", "wb") as err:
                self.procs.append(subprocess.Popen(
                    [sys.executable, str(ROLES), role, json.dumps(args)], stdout=err, stderr=err,
                    env={**os.environ, "VFS_AGENT": agent}))
            agents.append((agent, log))
        deadline = time.monotonic() + 20
        for agent, log in agents:
            while not (log.exists() and log.read_text()):
                assert time.monotonic() < deadline, f"{agent} did not start"
                assert all(p.poll() is None for p in self.procs), f"{agent} died: see {ctl}"
                time.sleep(0.005)
        time.sleep(delay)
        self.killed_at = time.monotonic()
        kill_daemon(self.mount)
        (ctl / "stop").touch()
        for p, (agent, _) in zip(self.procs, agents):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                raise CheckFailed(f"{agent} hangs after the kill:\n{thread_stacks(p.pid)}") from None
            assert p.returncode == 0, f"{agent} failed: {(ctl / f'{agent}.err').read_text()}"

    def _check(self, cycle: int, mp: Path, base: Path, checker: Checker,
               agents: list[tuple[str, Path]]) -> None:
        st = _status(mp)
        assert st["unclean_shutdown_recovered"] is True, st
        head, first = st["journal_head"], st["journal"]["first_seq"]
        if cycle % self.log_every == 0 or cycle == self.kills:
            assert log_seqs(mp) == list(range(first, head + 1)), "the journal has gaps"
        checker.advance()
        assert len(checker.entries) == head, (len(checker.entries), head)
        checker.check_tree(mp)
        for agent, log in agents:
            checker.check_process(log, agent, self.stats, self.killed_at)
        check_diff_applies(mp, base, self.work)

    def release(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        m = self.mount
        if m is not None and not gone(m.pid):
            unmount(m)
        with open("/proc/mounts") as f:
            if f" {self.work / 'mnt'} " in f.read():
                subprocess.run(["fusermount3", "-uz", str(self.work / "mnt")], capture_output=True)


def summary(stats: dict) -> str:
    """One paragraph: kills, entries, acknowledged operations, the ones in flight at a kill
    (`landed`: all their entries are in the journal, `partial`: a prefix), slowest latencies."""
    acked = sum(v for k, v in stats.items() if k.endswith(":ok"))
    inflight = {k.replace(":inflight", ""): v for k, v in sorted(stats.items()) if ":inflight" in k}
    slow = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in sorted(stats.get("slowest", {}).items()))
    return (f"{stats['kills']} kills, {stats['entries']} journal entries, {acked} acknowledged "
            f"operations; in flight at a kill ({sum(inflight.values())}): {inflight}; "
            f"slowest acknowledged: {slow}; {stats['seconds']} s")


def test_random_kill9_with_journal_trimming(tmp_path):
    """The same with a journal that keeps only its last 300 entries: once it is full,
    every commit trims entries and collects blobs while the daemon may be killed.
    (Cycles stay short: the checker must see each entry before it is trimmed.)"""
    seed = int(os.environ.get("VFS_CRASH_SEED", random.randrange(1 << 30)))
    stats = CrashRun(tmp_path, kills=5, seed=seed, report=print, max_delay=0.6, min_entries=450,
                     mount_args=("--set", "max_journal_entries=300")).run()
    print(f"seed {seed}: {summary(stats)}")
    assert stats["entries"] > 300 and stats.get("batch:ok")


def test_random_kill9_loses_nothing_acknowledged(tmp_path):
    """≈20 kills at random moments; every check of the module docstring after each."""
    seed = int(os.environ.get("VFS_CRASH_SEED", random.randrange(1 << 30)))
    stats = CrashRun(tmp_path, kills=int(os.environ.get("VFS_CRASH_KILLS", 20)), seed=seed,
                     report=print).run()
    print(f"seed {seed}: {summary(stats)}")
    for kind in ("write", "save", "batch", "rollback_path", "rollback", "checkpoint"):
        assert stats.get(f"{kind}:ok"), f"the workload made no acknowledged {kind}: {stats}"
