"""fsx harness, part 2: one run (mount and local side in lockstep, checks), replay and shrinking.

See test_fsx.py for what the differential test checks.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fsx_model import (
    Generator, MODE_ARG, Op, READ_ONLY, SLOTS, SLOT_OPS, Side, _diff_dicts,
    git_tracked, git_view, initial_tree, materialize, snapshot, states_of)
from mountlib import VFS, Mount, require_fuse, unmount
from mountlib import _daemon_pid as daemon_pid
from mountlib import run as run_cmd


# ---------------------------------------------------------------------- one run
@dataclass
class Failure:
    step: int          # index of the operation after which it showed (len(ops) for the final checks)
    kind: str          # "step", "tree", "final", "error"
    what: str          # the operation's name, or the check's
    detail: str

    def __str__(self) -> str:
        where = "final checks" if self.kind == "final" else f"step {self.step}"
        return f"{where} ({self.what}): {self.detail}"


@dataclass
class Stats:
    ops: int = 0
    op_seconds: float = 0.0
    tree_checks: int = 0
    remounts: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)  # "ok" or errno name -> how often


class Run:
    """A fresh initial tree mounted by a real daemon, a local copy, and the checks between them.

    Use as a context manager: everything (descriptors, mount, daemon, files) is gone afterwards.
    """

    HANG_SECONDS = 60.0

    def __init__(self, seed: int, *, check_every: int = 50, keep: bool = False, fast_exit: bool = False,
                 passthrough: bool = False) -> None:
        self.seed = seed
        # Passthrough flavour: everything happens in `pt/`, which the mount serves from the disk.
        self.passthrough = passthrough
        self.sub = "pt" if passthrough else ""
        self.fast_exit = fast_exit  # replays: SIGKILL and a lazy unmount instead of a clean (slow) one
        self.check_every = check_every
        self.keep = keep
        self.tree = initial_tree(seed)
        self.stats = Stats()
        self.mount: Mount | None = None

    def __enter__(self) -> "Run":
        require_fuse()
        self.dir = Path(tempfile.mkdtemp(prefix=f"vfs-fsx-{self.seed}-"))
        self.source, self.mnt = self.dir / "src", self.dir / "mnt"
        materialize(self.tree, self.source / self.sub)
        materialize(self.tree, self.dir / "local" / self.sub)
        self.mnt.mkdir()
        self.initial = snapshot(self.source / self.sub)
        self.initial_states = states_of(self.initial)
        self.local = Side("local", self.dir / "local" / self.sub)
        self.remote = Side("mount", self.mnt / self.sub)
        self._old_state = os.environ.get("XDG_STATE_HOME")
        os.environ["XDG_STATE_HOME"] = str(self.dir / "state")
        self._busy_since: float | None = None
        self._hung = False
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, daemon=True)
        try:
            self._mount()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._watchdog.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for side in (getattr(self, "local", None), getattr(self, "remote", None)):
            if side is not None:
                for fd in side.fds.values():
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                side.fds.clear()
        if self.mount is not None:
            if self.fast_exit:
                self._kill_daemon()
            else:
                unmount(self.mount)
            self.mount = None
        if self._old_state is None:
            os.environ.pop("XDG_STATE_HOME", None)
        else:
            os.environ["XDG_STATE_HOME"] = self._old_state
        if not self.keep:
            subprocess.run(["rm", "-rf", str(self.dir)])

    def _mount(self) -> None:
        require_fuse()
        extra = ["--passthrough", "/pt/"] if self.passthrough else []
        out = run_cmd([*VFS, "mount", str(self.source), str(self.mnt), *extra]).stdout
        found = re.search(r"\(pid (\d+)\)", out)
        self.mount = Mount(self.source, self.mnt, int(found.group(1)) if found else daemon_pid(self.mnt))

    def _kill_daemon(self) -> None:
        os.kill(self.mount.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(self.mount.pid):
            time.sleep(0.01)
        subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)

    def _watch(self) -> None:
        """A daemon that stops answering would hang this process: unmount it lazily instead."""
        while not self._stop.wait(1.0):
            since = self._busy_since
            if since is not None and time.monotonic() - since > self.HANG_SECONDS and self.mount:
                self._hung = True
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)
                try:
                    os.kill(self.mount.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    def drive(self, ops) -> Failure | None:
        """Apply the operations, checking the trees every `check_every` steps, then the final checks.

        An exception of the harness (say, EIO reading a control file) is a failure too.
        """
        i = -1
        try:
            for i, op in enumerate(ops):
                fail = self.step(i, op)
                if fail is None and (i + 1) % self.check_every == 0:
                    fail = self.check_tree(i)
                if fail is not None:
                    return self._with_log(fail)
            return self._with_log(self.final_checks(i + 1))
        except Exception as exc:  # reported with the seed and shrunk like any other failure
            return self._with_log(Failure(max(i, 0), "error", type(exc).__name__,
                                          "".join(traceback.format_exception(exc)[-3:])))

    def _with_log(self, fail: Failure | None) -> Failure | None:
        """Add what the daemon logged about internal errors."""
        if fail is None:
            return None
        logs = list((self.dir / "state").rglob("daemon.log"))
        text = logs[0].read_text(errors="replace") if logs else ""
        if "Traceback" in text:
            fail.detail += "\ndaemon log:\n" + text[max(0, text.index("Traceback") - 300):][:4000]
        return fail

    # -- steps
    def step(self, i: int, op: Op) -> Failure | None:
        self.stats.counts[op[0]] = self.stats.counts.get(op[0], 0) + 1
        if op[0] == "remount":
            return self.remount(i, op[1])
        a = self.local.apply(op)
        t0 = time.monotonic()
        self._busy_since = t0
        b = self.remote.apply(op)
        self._busy_since = None
        self.stats.op_seconds += time.monotonic() - t0
        self.stats.ops += 1
        key = a if isinstance(a, str) and a.isupper() and a.startswith("E") else "ok"
        self.stats.outcomes[key] = self.stats.outcomes.get(key, 0) + 1
        if self._hung:
            return Failure(i, "error", op[0], f"the daemon hung for {self.HANG_SECONDS:.0f} s")
        if a != b:
            return Failure(i, "step", op[0], f"{fmt_op(op)}\n  local: {_short(a)}\n  mount: {_short(b)}")
        return None

    def check_tree(self, i: int) -> Failure | None:
        """The trees must be equal; with no descriptor open, `.vfs/changed` must agree too."""
        self.stats.tree_checks += 1
        self._busy_since = time.monotonic()
        try:
            a, b = snapshot(self.local.root), snapshot(self.remote.root)
            if a != b:
                return Failure(i, "tree", "tree", "the trees differ:\n" + _diff_dicts(a, b))
            if not self.local.fds and not self.remote.fds:  # every write reached a close
                changed = (self.mnt / ".vfs" / "changed").read_text()
                if self.passthrough:  # never journaled
                    problem = "passthrough entries listed as changed" if changed else None
                else:
                    problem = check_changed(changed, self.initial_states, states_of(b))
                if problem:
                    return Failure(i, "tree", "changed", problem + "\n.vfs/changed:\n" + changed)
        except OSError as exc:
            return Failure(i, "tree", "snapshot", f"reading a tree failed: {exc}")
        finally:
            self._busy_since = None
        return None

    def remount(self, i: int, how: str) -> Failure | None:
        """Close every descriptor, take the daemon down and mount again: "clean" (vfs unmount),
        "kill" (SIGKILL after one more request) or "kill-now" (SIGKILL right after the closes).

        The kernel sends RELEASE after close(2) has returned, and a handle that only truncated
        (open with O_TRUNC, and nothing written) is journaled at its release, by design (see
        `Session.flush`).  "kill" lets such queued releases through with one more request,
        "kill-now" does not: what close(2) acknowledged must survive it all the same.
        """
        self.stats.remounts += 1
        self.local.close_all()
        self.remote.close_all()
        if how == "kill":
            (self.mnt / ".vfs" / "status").read_bytes()
        if how in ("kill", "kill-now"):
            self._kill_daemon()
        else:
            unmount(self.mount)
        self.mount = None
        try:
            self._mount()
        except AssertionError as exc:
            return Failure(i, "error", "remount", str(exc))
        return self.check_tree(i)

    def final_checks(self, i: int) -> Failure | None:
        """Descriptors closed, then: trees and `.vfs/changed` (`check_tree`), `.vfs/diff` with git apply,
        the backing directory."""
        self.local.close_all()
        self.remote.close_all()
        fail = self.check_tree(i)
        if fail is not None:
            return fail
        if self.passthrough:
            if (self.mnt / ".vfs" / "diff").read_bytes():
                return Failure(i, "final", "diff", "passthrough entries in .vfs/diff")
            disk, local = snapshot(self.source / self.sub), snapshot(self.local.root)
            if disk != local:
                return Failure(i, "final", "source", "the backing directory differs (local=local, mount=disk):\n"
                               + _diff_dicts(local, disk))
            return None
        # .vfs/diff applied to a fresh copy of the initial tree gives the mount's tree.
        diff = (self.mnt / ".vfs" / "diff").read_bytes()
        copy = self.dir / "applied"
        materialize(git_tracked(self.tree), copy)
        env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(self.dir)}
        res = subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=copy, input=diff,
                             capture_output=True, env=env) if diff else None
        if res is not None and res.returncode != 0:
            return Failure(i, "final", "diff", "git apply refused .vfs/diff: "
                           + res.stderr.decode(errors="replace")[:2000])
        want, got = git_view(self.mnt), git_view(copy)
        if want != got:
            return Failure(i, "final", "diff", "the patched copy differs from the mount (local=mount, "
                           "mount=patched):\n" + _diff_dicts(want, got))
        if snapshot(self.source) != self.initial:
            return Failure(i, "final", "source", "the backing directory was written:\n"
                           + _diff_dicts(self.initial, snapshot(self.source)))
        return None


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone: it serves nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def check_changed(text: str, initial: dict, final: dict) -> str | None:
    """Is `.vfs/changed` exactly the difference of the two states maps?  A problem, or None."""
    expect = {}
    for p in sorted(set(initial) | set(final)):
        a, b = initial.get(p), final.get(p)
        if a != b:
            letter = "A" if a is None else "D" if b is None else "M"
            expect[p] = letter + ("/" if (b if b is not None else a)[0] == "dir" else "")
    got: dict[str, str] = {}
    for line in text.splitlines():
        letter, _, rest = line.partition(" ")
        if letter == "R":
            old, _, new = rest.partition(" -> ")
            got[old], got[new] = "D", "A"
            if initial.get(old) is None or final.get(new) is None or initial[old][2] != final[new][2]:
                return f"rename {old} -> {new} pairs different contents"
        elif letter in ("A", "D", "M"):
            path, slash = (rest[:-1], "/") if rest.endswith("/") else (rest, "")
            if path in got:
                return f"{path} listed twice"
            got[path] = letter + slash
        else:
            return f"unreadable line {line!r}"
    renamed = {p for p, v in got.items() if v in ("A", "D")}  # R halves carry no slash
    norm = {p: (v[0] if p in renamed else v) for p, v in expect.items()}
    if norm != got:
        return "expected vs listed:\n" + _diff_dicts(norm, got)
    return None


def _short(value, limit: int = 300) -> str:
    text = repr(value)
    if isinstance(value, bytes) and len(value) > 60:
        text = f"<{len(value)} bytes sha1 {hashlib.sha1(value).hexdigest()[:12]}> {value[:40]!r}..."
    return text if len(text) <= limit else text[:limit] + "..."


def fmt_op(op: Op) -> str:
    parts = []
    for i, v in enumerate(op):
        parts.append(f"0o{v:o}" if MODE_ARG.get(op[0]) == i else repr(v))
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


# ---------------------------------------------------------------------- driving, replay, shrinking
def run_seed(seed: int, n_ops: int, *, check_every: int = 50, remount_rate: float = 0.0,
             passthrough: bool = False, on_progress: Callable[[int, Stats], None] | None = None) -> tuple[list[Op], Failure | None, Stats]:
    """Generate and apply `n_ops` operations; the operations (up to a failure), the failure, stats."""
    gen = Generator(seed, remount_rate)
    ops: list[Op] = []

    def source():
        for i in range(n_ops):
            op = gen.next(run.local.root)
            ops.append(op)
            yield op
            if op[0] == "open" and op[1] not in run.local.fds:
                gen.opened.pop(op[1], None)  # the open failed: the slot is empty
            if on_progress is not None and (i + 1) % 1000 == 0:
                on_progress(i + 1, run.stats)

    with Run(seed, check_every=check_every, passthrough=passthrough) as run:
        fail = run.drive(source())
        return ops, fail, run.stats


def replay(seed: int, ops: list[Op], *, check_every: int | None = None, passthrough: bool = False) -> Failure | None:
    """Apply `ops` to a fresh mount and directory; the first failure (the final checks included).

    The trees are compared after every step (every few steps for long lists).
    """
    if check_every is None:
        check_every = max(1, len(ops) // 300)
    with Run(seed, check_every=check_every, fast_exit=True, passthrough=passthrough) as run:
        return run.drive(iter(ops))


def _same_failure(a: Failure, b: Failure) -> bool:
    """A candidate still fails "the same way": a mismatch stays a mismatch, a hang a hang."""
    return (a.kind == "error") == (b.kind == "error")


def _groups(ops: list[Op]) -> list[Callable[[Op], bool]]:
    """Ways to pick many operations at once that often do not matter together: all reads, all
    operations of one name, of one descriptor slot, or under one top-level name."""
    out: list[Callable[[Op], bool]] = [lambda op: op[0] in READ_ONLY]
    for name in sorted({op[0] for op in ops}):
        out.append(lambda op, name=name: op[0] == name)
    for slot in range(SLOTS):
        out.append(lambda op, slot=slot: op[0] in SLOT_OPS and op[1] == slot)
    tops = sorted({op[1].split("/")[0] for op in ops if len(op) > 1 and isinstance(op[1], str)})
    for top in tops:
        out.append(lambda op, top=top: len(op) > 1 and isinstance(op[1], str) and op[1].split("/")[0] == top)
    return out


def shrink(seed: int, ops: list[Op], failure: Failure, *, budget: float = 300.0, passthrough: bool = False,
           log: Callable[[str], None] = lambda s: None) -> tuple[list[Op], Failure, int]:
    """Shrink a failing sequence; each candidate is replayed on a fresh mount and directory.

    1. the failing prefix; 2. groups (`_groups`) dropped whole; 3. chunks dropped from the end,
    halving the chunk size down to single operations (as delta debugging and creduce do), until
    a pass drops nothing; 4. a replay that checks after every step pins the failing operation.
    Returns (ops, its failure, number of replays); on running out of `budget`, the best so far.
    """
    deadline = time.monotonic() + budget
    replays = 0

    def fails(cand: list[Op], check_every: int | None = None) -> Failure | None:
        # Comparing whole trees after every step is what makes a replay slow: long candidates
        # are checked about 20 times (a failure found late still cuts the list there).
        nonlocal replays
        replays += 1
        every = check_every or (1 if len(cand) <= 40 else len(cand) // 20)
        f = replay(seed, cand, check_every=every, passthrough=passthrough)
        return f if f is not None and _same_failure(f, failure) else None

    f = fails(ops)
    if f is None:
        log("the failure does not reproduce on a fresh replay (timing-dependent?)")
        return ops, failure, replays
    ops, failure = ops[:f.step + 1], f
    log(f"  {len(ops)} ops: the failing prefix")

    def attempt(cand: list[Op], how: str) -> bool:
        nonlocal ops, failure
        if not cand or len(cand) >= len(ops) or time.monotonic() > deadline:
            return False
        f = fails(cand)
        if f is None:
            return False
        ops, failure = cand[:f.step + 1], f
        log(f"  {len(ops)} ops ({how}, {replays} replays)")
        return True

    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for pick in _groups(ops):
            last = ops[-1]
            progress |= attempt([op for op in ops if not pick(op) or op is last], "group")
    while time.monotonic() < deadline:
        before = len(ops)
        k = max(1, len(ops) // 2)
        while k >= 1 and time.monotonic() < deadline:
            i = len(ops) - k
            while i >= 0 and time.monotonic() < deadline:
                attempt(ops[:i] + ops[i + k:], f"chunks of {k}")
                i = min(i, len(ops)) - k
            k //= 2
        if len(ops) == before:
            break
    if time.monotonic() > deadline:
        log("  out of time: the best so far")
    f = fails(ops, check_every=1)  # pin the failure to its operation
    if f is not None:
        ops, failure = ops[:f.step + 1], f
    return ops, failure, replays


def repro_code(seed: int, ops: list[Op], failure: Failure, *, passthrough: bool = False) -> str:
    body = "\n".join(f"        {fmt_op(op)}," for op in ops)
    what = str(failure).splitlines()[0]
    flavour = ", passthrough=True" if passthrough else ""
    return (f"def test_fsx_seed{seed}_regression():\n"
            f"    \"\"\"{what}\"\"\"\n"
            f"    check_ops({seed}, [\n{body}\n    ]{flavour})\n")


def check_ops(seed: int, ops: list[Op], *, passthrough: bool = False, check_every: int | None = None) -> None:
    """Replay a fixed sequence on the initial tree of `seed`; fail with the first difference.

    The trees are compared after every step unless `check_every` says otherwise (reading a
    file through the mount is itself an open and a release, which can hide a race).
    """
    fail = replay(seed, ops, passthrough=passthrough, check_every=check_every)
    assert fail is None, str(fail)


def report(seed: int, ops: list[Op], failure: Failure, *, budget: float, passthrough: bool = False,
           log: Callable[[str], None]) -> str:
    log(f"fsx: seed {seed} failed after {len(ops)} ops, {failure}")
    log("shrinking ...")
    t0 = time.monotonic()
    small, small_fail, replays = shrink(seed, ops, failure, budget=budget, passthrough=passthrough, log=log)
    text = (f"fsx: seed {seed} failed: {failure}\n"
            f"shrunk to {len(small)} ops in {replays} replays ({time.monotonic() - t0:.0f} s): {small_fail}\n"
            f"as a regression test for tests/vfs/test_fsx.py:\n\n"
            f"{repro_code(seed, small, small_fail, passthrough=passthrough)}")
    return text
