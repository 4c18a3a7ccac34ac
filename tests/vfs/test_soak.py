"""Concurrency soak: many writers, readers, batches and rollbacks at once, for a bounded time.

WRITERS writer processes replace whole self-checking records (write a new
temporary file, close, rename it over the target; some targets, in
`soak/shared/`, are shared by all writers) and append records to their own
logs with one write(2) each; READERS reader processes list the directories
and read files whole, verifying every record; one process applies batches
through `.vfs/batch` (whole records: contents, renames, deletes) and one
records checkpoints and rolls back through `.vfs/rollback` (one path to a
version, or the whole session to a recent entry or a checkpoint).  A record is `REC <length> <sha256 prefix>\\n`
then its payload; a file holds whole records only, or nothing (an empty file is
a legitimate past state: a rollback may restore a temporary file between its
create and its write).

Checked:
- no deadlock: every process reports each request it completed (or that was
  refused) to a progress file; a watchdog fails the test when one makes no
  progress for STALL seconds, with the kernel stacks (and, with py-spy, the
  Python stacks) of the daemon and of the stuck process;
- readers never see a torn record;
- afterwards, the journal explains the tree: contiguous seqs, each entry's
  `before` equal to the replayed state (crash_check.Checker), the
  replay equal to the mount's tree, `.vfs/diff` applying to the base, and the
  last version of every file (`.vfs/versions/PATH/N`) equal to its content;
  a clean unmount and mount keep the same tree.

VFS_SOAK_SECONDS and VFS_SOAK_SEED override the duration (20 s) and the seed;
`scripts/soak --seconds N` runs it for longer.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from crash_roles import DEAD, Role, token  # noqa: E402

WRITERS = 8
READERS = 8
STALL = 10.0  # seconds without progress that count as a hang
TARGETS = 4  # own targets per writer, and shared targets
BATCH_FILES = 6


# Writers in groups of two share a directory: all of them in one made every request in it
# wait on its lock (`ls` of it took up to 9 s on two loaded CPUs, even without control commands).
DIRS = ["soak/d0", "soak/d1", "soak/d2", "soak/d3", "soak/shared", "soak/batch"]


def own_dir(k: int) -> str:
    return DIRS[k % 4]


def shared_file(j: int) -> str:
    """Targets every writer replaces, batches rename onto, rollbacks restore."""
    return f"soak/shared/s{j}.rec"


def batch_file(j: int) -> str:
    return f"soak/batch/b{j}.rec"


def record(payload: bytes) -> bytes:
    return b"REC %d %s\n" % (len(payload), hashlib.sha256(payload).hexdigest()[:16].encode()) + payload


def torn(data: bytes) -> str | None:
    """Why `data` is not a sequence of whole records, or None when it is."""
    at = 0
    while at < len(data):
        end = data.find(b"\n", at)
        head = data[at:end].split() if end >= 0 else []
        if len(head) != 3 or head[0] != b"REC" or not head[1].isdigit():
            return f"bad header at byte {at}: {data[at:at + 40]!r}"
        size = int(head[1])
        payload = data[end + 1:end + 1 + size]
        if len(payload) != size:
            return f"record at byte {at} cut at {len(payload)} of {size} bytes"
        if hashlib.sha256(payload).hexdigest()[:16].encode() != head[2]:
            return f"record at byte {at}: hash mismatch"
        at = end + 1 + size
    return None


class _SoakRole(Role):
    """A soak process: counts its requests in `progress.NAME` (count, slowest seconds)."""

    def __init__(self, args: dict) -> None:
        super().__init__(args)
        self.done = 0
        self.slowest = 0.0
        self.counts: dict[str, int] = {}
        self.slowest_by: dict[str, float] = {}
        self._progress = os.open(os.path.join(self.ctl, f"progress.{self.tag}"),
                                 os.O_WRONLY | os.O_CREAT, 0o644)
        os.pwrite(self._progress, b"%12d %9.3f\n" % (0, 0.0), 0)

    def step(self, kind: str, act) -> None:
        """Run one request (or a few that belong together) and report it; a refusal counts
        as progress, the daemon's death ends the process."""
        t0 = time.monotonic()
        try:
            act()
            outcome = kind
        except OSError as exc:
            if exc.errno in DEAD:
                raise
            outcome = f"{kind}:{errno.errorcode.get(exc.errno, exc.errno)}"
        took = time.monotonic() - t0
        self.slowest = max(self.slowest, took)
        self.slowest_by[kind] = max(self.slowest_by.get(kind, 0.0), took)
        self.done += 1
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        os.pwrite(self._progress, b"%12d %9.3f\n" % (self.done, self.slowest), 0)

    def payload(self, what: str) -> bytes:
        size = self.rng.choice([0, 10, 100, 1000, 4000, 5000, 9000])
        body = f"{self.tag} {what} {self.done} {token(self.rng)}\n"
        return (body * (size // len(body) + 1))[:max(size, len(body))].encode()

    def replace(self, path: str, data: bytes) -> None:
        tmp = f"{path.rsplit('/', 1)[0]}/.{self.tag}.{self.done}.tmp"  # beside the target
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=self.root)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, path, src_dir_fd=self.root, dst_dir_fd=self.root)

    def main(self) -> None:
        try:
            # Start together, once every process is up (startup is not part of the latencies).
            while not os.path.exists(os.path.join(self.ctl, "go")) and not self.stopping():
                time.sleep(0.005)
            self.run()
        except OSError as exc:
            if exc.errno not in DEAD:
                raise
        finally:
            with open(os.path.join(self.ctl, f"counts.{self.tag}"), "w") as f:
                json.dump({"done": self.done, "slowest": self.slowest_by, "counts": self.counts}, f)


class _Writer(_SoakRole):
    def run(self) -> None:
        k = self.args["k"]
        log = f"{own_dir(k)}/log{k}.rec"
        while not self.stopping():
            r = self.rng.random()
            if r < 0.55:
                path = f"{own_dir(k)}/w{k}_{self.rng.randrange(TARGETS)}.rec"
                self.step("replace", lambda: self.replace(path, record(self.payload("own"))))
            elif r < 0.8:
                path = shared_file(self.rng.randrange(TARGETS))
                self.step("replace-shared", lambda: self.replace(path, record(self.payload("shared"))))
            else:
                self.step("append", lambda: self.append(log))

    def append(self, log: str) -> None:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644, dir_fd=self.root)
        try:
            if os.fstat(fd).st_size > 64 << 10:
                os.close(fd)
                fd = -1
                self.replace(log, record(self.payload("restart")))
                return
            os.write(fd, record(self.payload("log")))
        finally:
            if fd >= 0:
                os.close(fd)


class _Reader(_SoakRole):
    def run(self) -> None:
        while not self.stopping():
            names: list[str] = []
            where = self.rng.choice(DIRS)
            self.step("list", lambda: names.extend(self.listdir(where)))
            for name in self.rng.sample(names, min(len(names), 5)):
                if name.endswith(".rec"):
                    self.step("read", lambda: self.verify(f"{where}/{name}"))

    def listdir(self, rel: str) -> list[str]:
        fd = os.open(rel, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.root)
        try:
            return sorted(os.listdir(fd))
        finally:
            os.close(fd)

    def verify(self, path: str) -> None:
        data = self.read(path)
        why = torn(data)
        if not data:
            self.counts["empty"] = self.counts.get("empty", 0) + 1
        if why is not None:
            with open(os.path.join(self.ctl, f"torn.{self.tag}"), "a") as f:
                f.write(json.dumps({"path": path, "why": why, "size": len(data),
                                    "head": data[:80].decode("utf-8", "replace")}) + "\n")


class _Batcher(_SoakRole):
    def run(self) -> None:
        while not self.stopping():
            edits = []
            for _ in range(self.rng.randint(1, 4)):
                path = batch_file(self.rng.randrange(BATCH_FILES))
                r = self.rng.random()
                if r < 0.6:
                    edits.append({"path": path, "content": record(self.payload("batch")).decode()})
                elif r < 0.85:
                    dest = self.rng.choice([shared_file(self.rng.randrange(TARGETS)),
                                            batch_file(self.rng.randrange(BATCH_FILES))])
                    edits.append({"path": path, "rename_to": dest})
                else:
                    edits.append({"path": path, "delete": True})
            self.step("batch", lambda: self.command("batch", json.dumps(edits) + "\n"))
            time.sleep(self.rng.uniform(0, 0.02))


class _Rollbacker(_SoakRole):
    def run(self) -> None:
        names: list[str] = []
        while not self.stopping():
            time.sleep(self.rng.uniform(0.02, 0.2))
            r = self.rng.random()
            if r < 0.2:
                name = f"k{self.done}"
                self.step("checkpoint", lambda: self.command("checkpoint", name + "\n"))
                names.append(name)
            elif r < 0.7:
                self.step("rollback-path", self.rollback_path)
            elif names and r < 0.8:
                self.step("rollback-checkpoint",
                          lambda: self.command("rollback", "@" + self.rng.choice(names[-3:]) + "\n"))
            else:
                self.step("rollback-seq", self.rollback_seq)

    def rollback_path(self) -> None:
        k = self.rng.randrange(WRITERS)
        path = self.rng.choice([shared_file(self.rng.randrange(TARGETS)),
                                f"{own_dir(k)}/w{k}_{self.rng.randrange(TARGETS)}.rec",
                                batch_file(self.rng.randrange(BATCH_FILES))])
        fd = os.open(f".vfs/versions/{path}", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.root)
        try:
            versions = sorted(int(v) for v in os.listdir(fd))
        finally:
            os.close(fd)
        if versions:
            self.command("rollback", f"{path} {self.rng.choice(versions[-10:])}\n")

    def rollback_seq(self) -> None:
        head = json.loads(self.read(".vfs/status.json"))["journal_head"]
        self.command("rollback", f"{max(1, head - self.rng.choice([1, 2, 5, 20, 60]))}\n")


def _role_main(argv: list[str]) -> int:
    role, raw = argv
    os.umask(0o022)
    roles = {"writer": _Writer, "reader": _Reader, "batcher": _Batcher, "rollbacker": _Rollbacker}
    roles[role](json.loads(raw)).main()
    return 0


if __name__ == "__main__":
    sys.exit(_role_main(sys.argv[1:]))

# ---------------------------------------------------------------------------
# The harness

import shutil  # noqa: E402
import subprocess  # noqa: E402

from mountlib import SAMPLE, make_project, mount_source, unmount  # noqa: E402
from test_crash import gone, log_seqs  # noqa: E402
from crash_check import CheckFailed, Checker, check_diff_applies, thread_stacks  # noqa: E402
from vfs.mounts import state_dir_for  # noqa: E402

HERE = Path(__file__).resolve()


def soak_base() -> dict[str, str]:
    files = dict(SAMPLE)
    for j in range(TARGETS):
        files[shared_file(j)] = record(f"base shared {j}\n".encode()).decode()
    for k in range(WRITERS):
        files[f"{own_dir(k)}/w{k}_0.rec"] = record(f"base {k}\n".encode()).decode()
    files[batch_file(0)] = record(b"base batch\n").decode()
    return files


class Soak:
    """Run the soak (see module docstring) below `work` for `seconds`; returns statistics.
    The mount and every process are always released."""

    def __init__(self, work: Path, seconds: float, seed: int, report=None) -> None:
        self.work, self.seconds, self.seed, self.report = work, seconds, seed, report
        self.procs: dict[str, subprocess.Popen] = {}
        self.mount = None
        self.ctl = work / "ctl"

    def run(self) -> dict:
        rng = random.Random(self.seed)
        source = make_project(self.work / "src", soak_base())
        base = self.work / "base"
        shutil.copytree(source, base, symlinks=True)
        mp = self.work / "mnt"
        mp.mkdir()
        self.ctl.mkdir()
        try:
            self.mount = mount_source(source, mp)
            roles = [("writer", f"writer{k}", {"k": k}) for k in range(WRITERS)] + \
                    [("reader", f"reader{k}", {}) for k in range(READERS)] + \
                    [("batcher", "batcher", {}), ("rollbacker", "rollbacker", {})]
            for role, name, extra in roles:
                args = {"mp": str(mp), "ctl": str(self.ctl), "agent": name, "seed": rng.getrandbits(32),
                        "log": os.devnull, **extra}
                with open(self.ctl / f"{name}.err", "wb") as err:
                    self.procs[name] = subprocess.Popen(
                        [sys.executable, str(HERE), role, json.dumps(args)], stdout=err, stderr=err,
                        env={**os.environ, "VFS_AGENT": name})
            self._start()
            started = time.monotonic()
            self._watch(started)
            (self.ctl / "stop").touch()
            self._join()
            stats = self._collect()
            stats["seconds"] = round(time.monotonic() - started, 1)
            self._check(source, base, mp, stats)
            unmount(self.mount)
            self.mount = mount_source(source, mp)
            self._check(source, base, mp, stats, versions=False)
        finally:
            self.release()
        return stats

    def _start(self) -> None:
        """Wait until every process is up, then let them go."""
        deadline = time.monotonic() + 60
        while min(self._progress().values()) < 0:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise CheckFailed(f"{name} exited at start: {(self.ctl / f'{name}.err').read_text()}")
            assert time.monotonic() < deadline, "the soak processes did not start"
            time.sleep(0.02)
        (self.ctl / "go").touch()

    def _progress(self) -> dict[str, int]:
        out = {}
        for name in self.procs:
            try:
                out[name] = int((self.ctl / f"progress.{name}").read_text().split()[0])
            except (FileNotFoundError, IndexError, ValueError):
                out[name] = -1
        return out

    def _watch(self, started: float) -> None:
        """Until the time is up: every process makes progress within STALL seconds."""
        last = self._progress()
        moved = {name: time.monotonic() for name in self.procs}
        next_report = started + 5
        while time.monotonic() < started + self.seconds:
            time.sleep(0.25)
            now, seen = time.monotonic(), self._progress()
            for name, count in seen.items():
                if count != last[name]:
                    last[name], moved[name] = count, now
                elif self.procs[name].poll() is not None:
                    raise CheckFailed(f"{name} exited early: {(self.ctl / f'{name}.err').read_text()}")
                elif now - moved[name] > STALL:
                    self._hang(name, now - moved[name])
            if self.report and now >= next_report:
                next_report += 5
                self.report(f"{now - started:5.1f} s: " + " ".join(f"{n}={c}" for n, c in sorted(seen.items())))

    def _hang(self, name: str, idle: float) -> None:
        daemon = self.mount.pid
        raise CheckFailed(
            f"{name} made no progress for {idle:.1f} s (a request is not answered).\n"
            f"=== daemon {daemon}\n{thread_stacks(daemon)}\n"
            f"=== {name} {self.procs[name].pid}\n{thread_stacks(self.procs[name].pid)}")

    def _join(self) -> None:
        deadline = time.monotonic() + 30
        for name, p in self.procs.items():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._hang(name, 30)
            if p.returncode != 0:
                raise CheckFailed(f"{name} failed: {(self.ctl / f'{name}.err').read_text()}")

    def _collect(self) -> dict:
        stats: dict = {"requests": 0, "slowest": {}, "by_kind": {}}
        for name in self.procs:
            c = json.loads((self.ctl / f"counts.{name}").read_text())
            stats["requests"] += c["done"]
            for kind, took in c["slowest"].items():
                stats["slowest"][kind] = round(max(stats["slowest"].get(kind, 0.0), took), 3)
            for kind, n in c["counts"].items():
                stats["by_kind"][kind] = stats["by_kind"].get(kind, 0) + n
        torn_lines = []
        for path in sorted(self.ctl.glob("torn.*")):
            torn_lines += path.read_text().splitlines()
        if torn_lines:
            raise CheckFailed(f"{len(torn_lines)} torn reads, e.g.:\n" + "\n".join(torn_lines[:10]))
        return stats

    def _check(self, source: Path, base: Path, mp: Path, stats: dict, versions: bool = True) -> None:
        head = json.loads((mp / ".vfs" / "status.json").read_text())["journal_head"]
        assert log_seqs(mp) == list(range(1, head + 1)), "the journal has gaps"
        checker = Checker(source, state_dir_for(str(source)) / "journal.db")
        checker.advance()
        assert len(checker.entries) == head
        checker.check_tree(mp)
        check_diff_applies(mp, base, self.work)
        stats["entries"] = head
        if not versions:
            return
        checked, changed = 0, _changed(mp)
        for rel, state in sorted(checker.state.items()):
            if state["kind"] != "file" or rel not in changed:
                continue
            numbers = sorted(int(v) for v in os.listdir(mp / ".vfs" / "versions" / rel))
            last = (mp / ".vfs" / "versions" / rel / str(numbers[-1])).read_bytes()
            assert last == (mp / rel).read_bytes(), f"{rel}: last version {numbers[-1]} != content"
            checked += 1
        stats["versions_checked"] = checked

    def release(self) -> None:
        """Stop the processes, unmount; after a hang too (a process stuck in a request
        cannot die before the daemon answers or dies: `unmount` ends with SIGKILL)."""
        (self.ctl / "stop").touch()
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        m = self.mount
        if m is not None and not gone(m.pid):
            unmount(m)
        for p in self.procs.values():
            p.wait(timeout=30)
        with open("/proc/mounts") as f:
            if f" {self.work / 'mnt'} " in f.read():
                subprocess.run(["fusermount3", "-uz", str(self.work / "mnt")], capture_output=True)


def _changed(mp: Path) -> set[str]:
    """Paths `.vfs/changed` lists as modified or added (files with versions in the journal)."""
    out = set()
    for line in (mp / ".vfs" / "changed").read_text().splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("M", "A"):
            out.add(rest)
        elif kind == "R":
            out.add(rest.split(" -> ", 1)[1])
    return out


def test_soak_writers_readers_batches_rollbacks(tmp_path):
    seed = int(os.environ.get("VFS_SOAK_SEED", random.randrange(1 << 30)))
    seconds = float(os.environ.get("VFS_SOAK_SECONDS", 20))
    stats = Soak(tmp_path, seconds, seed, report=print).run()
    print(f"seed {seed}: {json.dumps(stats, sort_keys=True)}")
    assert stats["by_kind"].get("read", 0) > 0 and stats["by_kind"].get("batch", 0) > 0
