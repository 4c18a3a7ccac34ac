"""The checker of test_crash_random.py (also used by test_soak.py): replays the journal and
holds every acknowledged operation against it.  See test_crash_random.py for the rules."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

from crash_roles import DEAD
from vfs.journal import Journal
from vfs.states import blob_id

FILE_MODE = stat.S_IFREG | 0o644
DIR_MODE = stat.S_IFDIR | 0o755


class CheckFailed(AssertionError):
    pass


def path_states(root: Path) -> dict[str, dict]:
    """The journal's state record (see `vfs.states`) of every path below `root`."""
    out: dict[str, dict] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[rel] = {"kind": "dir", "mode": st.st_mode}
            elif stat.S_ISLNK(st.st_mode):
                out[rel] = {"kind": "symlink", "blob": blob_id(os.fsencode(os.readlink(p)))}
            elif stat.S_ISREG(st.st_mode):
                out[rel] = {"kind": "file", "mode": st.st_mode, "blob": blob_id(p.read_bytes())}
            else:
                out[rel] = {"kind": "special", "mode": st.st_mode, "rdev": st.st_rdev}
        dirnames[:] = [d for d in dirnames if d != ".git"]
    return out


def git_files(root: Path) -> dict[str, tuple]:
    """What git tracks of a tree: (kind, executable, blob) per file or symlink."""
    out = {}
    for rel, st in path_states(root).items():
        if st["kind"] == "file":
            out[rel] = ("file", bool(st["mode"] & 0o100), st["blob"])
        elif st["kind"] == "symlink":
            out[rel] = ("symlink", False, st["blob"])
    return out


def check_diff_applies(mp: Path, base: Path, work: Path) -> None:
    """`.vfs/diff` applied with `git apply` to a copy of `base` gives the mount's files."""
    patch = (mp / ".vfs" / "diff").read_bytes()
    copy = work / "applied"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(base, copy, symlinks=True)
    (work / "session.diff").write_bytes(patch)
    if patch:
        res = subprocess.run(["git", "apply", "--whitespace=nowarn", str(work / "session.diff")],
                             cwd=copy, capture_output=True, text=True)
        if res.returncode != 0:
            raise CheckFailed(f"git apply of .vfs/diff failed: {res.stderr}")
    got, want = git_files(copy), git_files(mp)
    if got != want:
        diff = sorted(p for p in set(got) | set(want) if got.get(p) != want.get(p))
        raise CheckFailed(f"base + .vfs/diff != mount tree at {diff[:10]}")


def _deltas(entry) -> dict[str, tuple]:
    return {p: (b, a) for p, b, a in entry.info.get("d", [])}


def _file(blob: str) -> dict:
    return {"kind": "file", "mode": FILE_MODE, "blob": blob}


class Checker:
    """Replays the journal over the base and matches it with the processes' logs.

    `state` is the replayed tree (path -> state record; absent paths missing),
    `entries` every entry replayed so far; for the entries of the last
    `advance()`, `before` holds the replayed tree before each batch and
    rollback (their effects are checked as a whole) and `dest_before` the
    state of each rename's destination.

    A journal that trims can drop entries (and their blobs) before a cycle
    ends, so `tail()` runs in a thread during the workload and copies each new
    entry and the blobs it names as soon as it is committed.
    """

    def __init__(self, source: Path, journal_path: Path) -> None:
        self.source = source
        self.journal_path = journal_path
        self.state = path_states(source)
        self.entries: list = []
        self.before: dict[int, dict] = {}
        self.dest_before: dict[int, dict | None] = {}
        self.checkpoint_seq: dict[str, int] = {}
        self._blobs: dict[str, bytes] = {}
        self._copy_lock = threading.Lock()
        self._copied: dict[int, object] = {}  # seq -> entry copied and not yet replayed
        self._copied_upto = 0

    # -- the journal
    def _copy(self, journal: Journal) -> None:
        """Copy the entries committed since the last copy, with their blobs."""
        with self._copy_lock:
            for e in journal.entries(since=self._copied_upto):
                self._copied[e.seq] = e
                self._copied_upto = e.seq
                blobs = {b for b in (e.before, e.after) if b}
                blobs.update(a["blob"] for _p, *states in e.info.get("d", []) for a in states
                             if a is not None and a.get("blob"))
                for blob in blobs - self._blobs.keys():
                    try:
                        self._blobs[blob] = journal.get_blob(blob)
                    except KeyError:
                        pass  # collected already: a check that needs it will say so

    def tail(self, stop: threading.Event) -> threading.Thread:
        """A thread that copies new entries every few ms until `stop` is set."""
        def loop() -> None:
            with Journal(self.journal_path) as journal:
                while not stop.wait(0.005):
                    self._copy(journal)
        thread = threading.Thread(target=loop, name="journal-tail", daemon=True)
        thread.start()
        return thread

    def advance(self) -> list:
        """Replay the entries appended since the last call; return them."""
        with Journal(self.journal_path) as journal:
            journal.check_invariants()
            self._copy(journal)
            new = [self._copied.pop(seq) for seq in sorted(self._copied) if seq > len(self.entries)]
        self.before.clear()  # only the entries checked next need them
        self.dest_before.clear()
        for e in new:
            if e.seq != len(self.entries) + 1:
                raise CheckFailed(f"journal gap: entry {e.seq} after {len(self.entries)} (if the "
                                  f"journal trims, it trimmed entries this checker had not read)")
            if e.op in ("batch", "rollback"):
                self.before[e.seq] = dict(self.state)
            elif e.op == "rename":
                self.dest_before[e.seq] = self.state.get(e.path2)
            for p, before, after in e.info.get("d", []):
                if self.state.get(p) != before:
                    raise CheckFailed(f"entry {e.seq} ({e.op} by {e.agent}): {p} was "
                                      f"{self.state.get(p)}, the entry says {before}")
                if after is None:
                    self.state.pop(p, None)
                else:
                    self.state[p] = after
            if e.op == "checkpoint":
                self.checkpoint_seq[e.info.get("name")] = e.seq
            self.entries.append(e)
        return new

    def content(self, blob: str | None) -> bytes:
        if blob is None:
            return b""
        if blob not in self._blobs:
            with Journal(self.journal_path) as journal:
                self._blobs[blob] = journal.get_blob(blob)
        return self._blobs[blob]

    def check_tree(self, mp: Path) -> None:
        tree = path_states(mp)
        if tree != self.state:
            bad = sorted(p for p in set(tree) | set(self.state) if tree.get(p) != self.state.get(p))
            raise CheckFailed("mount tree != journal replay at " + "; ".join(
                f"{p}: tree {tree.get(p)} replay {self.state.get(p)}" for p in bad[:5]))

    def state_at(self, seq: int, upto: int) -> dict:
        """The replayed tree right after entry `seq`, given the one before entry `upto`."""
        state = dict(self.before[upto])
        for e in reversed(self.entries[seq:upto - 1]):
            for p, before, _after in e.info.get("d", []):
                if before is None:
                    state.pop(p, None)
                else:
                    state[p] = before
        return state

    # -- one process's log against the journal
    def check_process(self, log: Path, agent: str, stats: dict, killed_at: float = float("inf")) -> None:
        """Every acknowledged operation of `log` is in the journal with its effect, in order;
        a refused one left nothing, an interrupted one nothing or a prefix; nothing else
        carries `agent`."""
        ops = _read_log(log)
        mine = [e for e in self.entries if e.agent == agent]
        at = 0
        for op in ops:
            if op["status"] == "refused":  # nothing to match: an entry it left explains nothing
                stats[f"{op['op']}:refused"] = stats.get(f"{op['op']}:refused", 0) + 1
                continue
            steps = self._steps(op, interrupted=op["status"] == "inflight")
            taken, complete = 0, True
            for optional, match in steps:
                if at < len(mine) and match(mine[at]):
                    at += 1
                    taken += 1
                elif not optional:
                    complete = False
                    break
            status = op["status"]
            if status == "ok" and not complete:
                raise CheckFailed(f"{agent}: acknowledged {op['op']} #{op['i']} {_brief(op)} is missing "
                                  f"from the journal (matched {taken} of {len(steps)} steps; next entry "
                                  f"{_line(mine[at]) if at < len(mine) else 'none'})")
            if status == "ok":
                slow = stats.setdefault("slowest", {})
                slow[op["op"]] = max(slow.get(op["op"], 0), op["dt"])
            if status == "inflight" and op["t"] > killed_at:
                status = "after-kill"  # started after the kill: it cannot have landed
                if taken:
                    raise CheckFailed(f"{agent}: {op['op']} #{op['i']}, started after the kill, "
                                      f"left {taken} entries")
            key = f"{op['op']}:{status}" + (":landed" if status == "inflight" and complete else
                                            ":partial" if status == "inflight" and taken else "")
            stats[key] = stats.get(key, 0) + 1
        if at != len(mine):
            raise CheckFailed(f"{agent}: journal entries no operation explains, from {_line(mine[at])}")

    def _steps(self, op: dict, interrupted: bool = False) -> list[tuple[bool, callable]]:
        """The entries `op` makes, in order: (optional, predicate).  `interrupted`: it was in
        flight at the kill, so the bytes it wrote may be there in part."""
        kind, path = op["op"], op.get("path")

        def created(e) -> bool:
            return e.op == "create" and _deltas(e) == {path: (None, _file(blob_id(b"")))}

        def wrote(data: bytes, at: str | None = None):
            def match(e) -> bool:
                d = _deltas(e)
                if e.op != "write" or d.keys() != {at or path} or d[at or path][0] is None:
                    return False
                before, after = d[at or path]
                if after is None or after != {**before, "blob": after["blob"]}:
                    return False
                got = self.content(after["blob"])
                return got == data or (interrupted and data.startswith(got))
            return match

        if kind == "write":
            return [(True, created), (False, wrote(op["data"].encode()))]
        if kind == "chmod":
            def chmodded(e) -> bool:
                d = _deltas(e)
                return e.op == "chmod" and d.keys() == {path} and d[path][0]["kind"] == "file" and \
                    d[path][1] == {**d[path][0], "mode": stat.S_IFREG | op["mode"]}
            return [(False, chmodded)]
        if kind == "append":
            def appended(e) -> bool:
                d = _deltas(e)
                if e.op != "write" or d.keys() != {path} or d[path][0] is None:
                    return False
                before, after = d[path]
                if after is None or after != {**before, "blob": after["blob"]}:
                    return False
                old, got, data = self.content(before["blob"]), self.content(after["blob"]), op["data"].encode()
                return got == old + data or (interrupted and got.startswith(old) and data.startswith(got[len(old):]))
            return [(True, created), (False, appended)]
        if kind == "save":
            tmp, final = op["tmp"], _file(blob_id(op["data"].encode()))

            def tmp_created(e) -> bool:
                return e.op == "create" and _deltas(e) == {tmp: (None, _file(blob_id(b"")))}

            def moved(e) -> bool:
                d = _deltas(e)
                return e.op == "rename" and d.keys() == {tmp, path} and d[tmp] == (final, None) \
                    and d[path][1] == final
            return [(False, tmp_created), (False, wrote(op["data"].encode(), tmp)), (False, moved)]
        if kind == "rename":
            dest = op["dest"]

            def renamed(e) -> bool:
                d = _deltas(e)
                if e.op != "rename" or e.path2 != dest or path not in d or not d.keys() <= {path, dest}:
                    return False
                moved, gone = d[path]
                # No delta for `dest` when it already held the same state.
                landed = d[dest][1] if dest in d else self.dest_before[e.seq]
                return gone is None and moved is not None and moved["kind"] == "file" and landed == moved
            return [(False, renamed)]
        if kind == "unlink":
            return [(False, lambda e: e.op == "unlink" and _deltas(e).keys() == {path}
                     and _deltas(e)[path][0] is not None and _deltas(e)[path][1] is None)]
        if kind == "symlink":
            link = {"kind": "symlink", "blob": blob_id(op["target"].encode())}
            return [(False, lambda e: e.op == "symlink" and _deltas(e) == {path: (None, link)})]
        if kind == "mkdir":
            return [(False, lambda e: e.op == "mkdir" and _deltas(e) == {path: (None, {"kind": "dir",
                                                                                    "mode": DIR_MODE})})]
        if kind == "mvdir":
            dest = op["dest"]

            def moved_dir(e) -> bool:
                d = _deltas(e)
                if e.op != "rename" or d.get(path, (None, 1))[1] is not None:
                    return False
                olds = {p: b for p, (b, a) in d.items() if p == path or p.startswith(path + "/")}
                news = {p: a for p, (b, a) in d.items() if p == dest or p.startswith(dest + "/")}
                return len(olds) + len(news) == len(d) and all(
                    d[p][1] is None for p in olds) and all(d[p][0] is None for p in news) and \
                    {dest + p[len(path):]: s for p, s in olds.items()} == news
            return [(False, moved_dir)]
        if kind == "batch":
            return [(False, lambda e: e.op == "batch" and self._batch_matches(e, op["edits"]))]
        if kind == "rollback_path":
            blob = blob_id(op["data"].encode())

            def rolled(e) -> bool:
                if e.op != "rollback" or e.info.get("target") != f"{path}@{op['version']}":
                    return False
                after = dict(self.before[e.seq])
                for p, (_b, a) in _deltas(e).items():
                    after[p] = a
                return (after.get(path) or {}).get("blob") == blob and \
                    all(p == path or path.startswith(p + "/") for p in _deltas(e))
            return [(False, rolled)]
        if kind == "checkpoint":
            return [(False, lambda e: e.op == "checkpoint" and e.info.get("name") == op["name"])]
        if kind == "rollback":
            return [(False, lambda e: e.op == "rollback" and e.info.get("target") == op["target"]
                     and self._rollback_matches(e, op))]
        raise AssertionError(f"unknown operation {kind}")

    def _batch_matches(self, e, edits: list[dict]) -> bool:
        state = dict(self.before[e.seq])
        want = simulate_batch(state, edits, self.content)
        got = dict(self.before[e.seq])
        for p, (_b, a) in _deltas(e).items():
            if a is None:
                got.pop(p, None)
            else:
                got[p] = a
        return want == got

    def _rollback_matches(self, e, op: dict) -> bool:
        target = op["target"]
        seq = self.checkpoint_seq[target[1:]] if target.startswith("@") else int(target)
        if seq == e.seq - 1:
            return not _deltas(e)
        want = self.state_at(seq, e.seq)
        got = dict(self.before[e.seq])
        for p, (_b, a) in _deltas(e).items():
            if a is None:
                got.pop(p, None)
            else:
                got[p] = a
        return want == got


def simulate_batch(state: dict, edits: list[dict], content) -> dict:
    """The tree `state` after `edits` (see `vfs.batch`), as the journal would record it."""

    def ensure_parents(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            state.setdefault("/".join(parts[:i]), {"kind": "dir", "mode": DIR_MODE})

    def subtree(path: str) -> list[str]:
        return [p for p in state if p == path or p.startswith(path + "/")]

    for e in edits:
        path = e["path"]
        if "content" in e or "old" in e:
            if "content" in e:
                data = e["content"].encode()
            else:
                data = content(state[path]["blob"]).replace(e["old"].encode(), e["new"].encode(), 1)
            ensure_parents(path)
            old = state.get(path)
            state[path] = {"kind": "file", "mode": old["mode"] if old else FILE_MODE, "blob": blob_id(data)}
        elif "delete" in e:
            for p in subtree(path):
                del state[p]
        else:
            dest = e["rename_to"]
            moved = {dest + p[len(path):]: state.pop(p) for p in subtree(path)}
            for p in subtree(dest):
                del state[p]
            ensure_parents(dest)
            state.update(moved)
    return state


def _read_log(log: Path) -> list[dict]:
    """The operations of one process log, each with its status: ok, refused (errno),
    interrupted (the daemon died: errno in DEAD), or inflight (never finished)."""
    ops: dict[int, dict] = {}
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "i" not in rec:
            continue
        if rec["s"] == "start":
            ops[rec["i"]] = {**rec, "status": "inflight"}
        elif rec["s"] == "ok":
            ops[rec["i"]]["status"] = "ok"
            ops[rec["i"]]["dt"] = rec["dt"]
        else:
            ops[rec["i"]]["errno"] = rec["errno"]
            ops[rec["i"]]["status"] = "inflight" if rec["errno"] in DEAD else "refused"
    return [ops[i] for i in sorted(ops)]


def _brief(op: dict) -> str:
    return json.dumps({k: v for k, v in op.items() if k not in ("s", "data", "status")}, sort_keys=True)[:300]


def _line(e) -> str:
    return f"{e.seq} {e.op} {e.agent} {e.path} d={json.dumps(e.info.get('d'))[:300]}"




def thread_stacks(pid: int) -> str:
    """Kernel stacks and wait channels of every thread of `pid`, and its Python stacks
    when `py-spy` is installed: what a hung process is waiting for."""
    out = []
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    if spy:
        # --nonblocking: stopping a daemon whose threads wait in the kernel for FUSE
        # replies can itself hang.
        try:
            res = subprocess.run([spy, "dump", "--nonblocking", "--pid", str(pid)], capture_output=True,
                                 text=True, timeout=30)
            out.append(res.stdout + res.stderr)
        except subprocess.TimeoutExpired:
            out.append("py-spy dump timed out")
    try:
        tids = sorted(os.listdir(f"/proc/{pid}/task"), key=int)
    except OSError:
        return f"process {pid} is gone"
    for tid in tids:
        parts = [f"--- {pid}/{tid}"]
        for name in ("comm", "wchan", "stack"):
            try:
                with open(f"/proc/{pid}/task/{tid}/{name}") as f:
                    parts.append(f"{name}: {f.read().strip()}")
            except OSError as exc:
                parts.append(f"{name}: ({exc.strerror})")
        out.append("\n".join(parts))
    return "\n".join(out)
