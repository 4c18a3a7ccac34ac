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
  one entry: all or nothing), and one begun after the kill left nothing;
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

The roles run as `python test_crash_random.py worker|controller JSON` and
need the standard library only: they start before pytest would be imported.
VFS_CRASH_SEED and VFS_CRASH_KILLS override the seed and the number of kills;
`scripts/crash_long --kills N` runs the same cycles for longer.
"""
from __future__ import annotations

import errno
import json
import os
import random
import stat
import sys
import time

# The daemon is gone: the operation may or may not have landed.
DEAD = frozenset({errno.ENOTCONN, errno.ECONNABORTED})
WORKERS = 4
AREA_FILES = 10  # names f0.txt .. f9.txt per directory


class Role:
    """What the worker and the controller share: the mount (through a directory
    descriptor, so that after the kill and `fusermount3 -uz` nothing reaches the
    directory underneath), the operation log, the stop and pause files."""

    def __init__(self, args: dict) -> None:
        self.args = args
        self.root = os.open(args["mp"], os.O_RDONLY | os.O_DIRECTORY)
        self.ctl = args["ctl"]
        self.rng = random.Random(args["seed"])
        self.tag = args["agent"]
        self._log = open(args["log"], "a", buffering=1)
        self.n = 0

    def log(self, **rec) -> None:
        self._log.write(json.dumps(rec, sort_keys=True) + "\n")

    def stopping(self) -> bool:
        return os.path.exists(os.path.join(self.ctl, "stop"))

    def read(self, rel: str) -> bytes:
        fd = os.open(rel, os.O_RDONLY, dir_fd=self.root)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def command(self, name: str, text: str) -> None:
        """One control command; acknowledged when its write(2) returned."""
        fd = os.open(f".vfs/{name}", os.O_WRONLY, dir_fd=self.root)
        try:
            data = text.encode()
            assert os.write(fd, data) == len(data)
        finally:
            try:
                os.close(fd)
            except OSError:
                pass  # the command ran when write returned; close adds nothing

    def perform(self, op: dict, act) -> bool:
        """Log, run and log `op`; False when the daemon is gone."""
        self.n += 1
        t0 = time.monotonic()
        self.log(i=self.n, s="start", t=round(t0, 4), **op)
        try:
            act()
        except OSError as exc:
            self.log(i=self.n, s="err", errno=exc.errno, dt=round(time.monotonic() - t0, 4))
            return exc.errno not in DEAD
        self.log(i=self.n, s="ok", dt=round(time.monotonic() - t0, 4))
        return True

    def main(self) -> None:
        try:
            self.log(s="ready")
            self.run()
        except OSError as exc:
            if exc.errno not in DEAD:
                raise
        finally:
            with open(os.path.join(self.ctl, f"exited.{self.tag}"), "w"):
                pass


def token(rng: random.Random) -> str:
    return "%016x" % rng.getrandbits(64)


class _Worker(Role):
    """A random sequence of operations on its own area (see module docstring)."""

    def __init__(self, args: dict) -> None:
        super().__init__(args)
        self.area = args["area"]
        self.gone: set[str] = set()  # deleted or renamed away: rollback can bring them back

    def run(self) -> None:
        kinds = ["write"] * 22 + ["append"] * 12 + ["save"] * 14 + ["rename"] * 8 + ["unlink"] * 7 + \
                ["mkdir"] * 3 + ["mvdir"] * 3 + ["batch"] * 18 + ["rollback"] * 9 + ["chunks"] * 4 + \
                ["chmod"] * 4 + ["symlink"] * 3
        while not self.stopping():
            self.barrier()
            try:
                planned = getattr(self, "plan_" + self.rng.choice(kinds))()
            except OSError as exc:
                if exc.errno in DEAD:
                    return
                continue  # planning only reads; a failed read plans nothing
            if planned is not None and not self.perform(*planned):
                return

    def barrier(self) -> None:
        """Wait while the controller asks every worker to (a whole-session rollback runs)."""
        pause = os.path.join(self.ctl, "pause")
        try:
            with open(pause) as f:
                gen = f.read()
        except FileNotFoundError:
            return
        if not gen:
            return
        tmp = os.path.join(self.ctl, f".paused.{self.tag}")
        with open(tmp, "w") as f:
            f.write(gen)
        os.replace(tmp, os.path.join(self.ctl, f"paused.{self.tag}"))
        while not self.stopping():
            try:
                with open(pause) as f:
                    if f.read() != gen:
                        return
            except FileNotFoundError:
                return
            time.sleep(0.002)

    # -- the area as it is now
    def scan(self) -> tuple[list[str], list[str]]:
        """The regular files and directories of the area (its symlinks go to `self.links`)."""
        files, dirs, links, stack = [], [], [], [self.area]
        while stack:
            d = stack.pop()
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.root)
            try:
                names = os.listdir(fd)
            finally:
                os.close(fd)
            for name in names:
                p = f"{d}/{name}"
                st = os.stat(p, dir_fd=self.root, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    dirs.append(p)
                    stack.append(p)
                elif stat.S_ISLNK(st.st_mode):
                    links.append(p)
                else:
                    files.append(p)
        self.links = sorted(links)
        return sorted(files), sorted(dirs)

    def new_name(self, dirs: list[str], files: list[str]) -> str:
        where = self.rng.choice([self.area] * 3 + dirs)
        for _ in range(20):
            p = f"{where}/f{self.rng.randrange(AREA_FILES)}.txt"
            if p not in files and p not in dirs:
                return p
        return f"{where}/x{token(self.rng)}.txt"

    def any_name(self, dirs: list[str], files: list[str]) -> str:
        return self.rng.choice(files) if files and self.rng.random() < 0.6 else self.new_name(dirs, files)

    def content(self) -> str:
        filler = "".join(f"{self.tag} line {j} {token(self.rng)}\n"
                         for j in range(self.rng.choice([0, 1, 3, 10, 60])))
        return f"tok={self.tag}n{self.n + 1}t{token(self.rng)}\n{filler}"

    # -- operations: each returns (the logged record, the action) or None
    def plan_write(self, chunks: bool = False):
        files, dirs = self.scan()
        path, data = self.any_name(dirs, files), self.content()

        def act() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=self.root)
            try:
                raw = data.encode()
                cut = len(raw) // 2 if chunks else len(raw)
                os.write(fd, raw[:cut])
                if cut < len(raw):
                    time.sleep(0.001)
                    os.write(fd, raw[cut:])
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # acknowledged when this returns
        return {"op": "write", "path": path, "data": data}, act

    def plan_chunks(self):
        return self.plan_write(chunks=True)

    def plan_append(self):
        files, dirs = self.scan()
        path, line = self.any_name(dirs, files), f"tok={self.tag}n{self.n + 1}a{token(self.rng)}\n"

        def act() -> None:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644, dir_fd=self.root)
            try:
                os.write(fd, line.encode())
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        return {"op": "append", "path": path, "data": line}, act

    def plan_save(self):
        files, dirs = self.scan()
        path, data = self.any_name(dirs, files), self.content()
        tmp = f"{self.area}/.t{self.n + 1}"

        def act() -> None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=self.root)
            try:
                os.write(fd, data.encode())
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
            os.rename(tmp, path, src_dir_fd=self.root, dst_dir_fd=self.root)
        return {"op": "save", "path": path, "tmp": tmp, "data": data}, act

    def plan_rename(self):
        files, dirs = self.scan()
        if not files:
            return None
        src = self.rng.choice(files)
        dest = self.rng.choice(files) if self.rng.random() < 0.3 else self.new_name(dirs, files)
        if dest == src:
            return None
        self.gone.add(src)
        return {"op": "rename", "path": src, "dest": dest}, \
            lambda: os.rename(src, dest, src_dir_fd=self.root, dst_dir_fd=self.root)

    def plan_unlink(self):
        files, _ = self.scan()
        if not files + self.links:
            return None
        path = self.rng.choice(files + self.links)
        if path in files:
            self.gone.add(path)
        return {"op": "unlink", "path": path}, lambda: os.unlink(path, dir_fd=self.root)

    def plan_symlink(self):
        _, dirs = self.scan()
        path = f"{self.rng.choice([self.area] + dirs)}/l{token(self.rng)[:6]}"
        target = self.rng.choice(["f0.txt", "../f1.txt", "nowhere", f"x/{token(self.rng)}"])
        return {"op": "symlink", "path": path, "target": target}, \
            lambda: os.symlink(target, path, dir_fd=self.root)

    def plan_chmod(self):
        files, _ = self.scan()
        if not files:
            return None
        path = self.rng.choice(files)
        mode = 0o644 if os.stat(path, dir_fd=self.root).st_mode & 0o100 else 0o755  # a change
        return {"op": "chmod", "path": path, "mode": mode}, \
            lambda: os.chmod(path, mode, dir_fd=self.root, follow_symlinks=False)

    def plan_mkdir(self):
        _, dirs = self.scan()
        if len(dirs) >= 4:
            return None
        path = f"{self.area}/d{token(self.rng)[:6]}"
        return {"op": "mkdir", "path": path}, lambda: os.mkdir(path, 0o755, dir_fd=self.root)

    def plan_mvdir(self):
        _, dirs = self.scan()
        if not dirs:
            return None
        src = self.rng.choice(dirs)
        dest = f"{self.area}/d{token(self.rng)[:6]}"
        return {"op": "mvdir", "path": src, "dest": dest}, \
            lambda: os.rename(src, dest, src_dir_fd=self.root, dst_dir_fd=self.root)

    def plan_batch(self):
        files, dirs = self.scan()
        edits: list[dict] = []
        used: set[str] = set()
        for _ in range(self.rng.randint(1, 4)):
            kind = self.rng.choice(["content", "content", "old", "old", "delete", "rename", "rmdir"])
            free = [f for f in files if f not in used and not any(f.startswith(u + "/") for u in used)]
            if kind == "content":
                path = self.new_name(dirs, files) if self.rng.random() < 0.4 or not free else self.rng.choice(free)
                if self.rng.random() < 0.2:
                    path = f"{self.area}/b{token(self.rng)[:4]}/f0.txt"  # parents made by the batch
                if path in used:
                    continue
                edits.append({"path": path, "content": self.content()})
            elif kind == "old" and free:
                path = self.rng.choice(free)
                toks = [ln for ln in self.read(path).decode().splitlines() if ln.startswith("tok=")]
                if not toks:
                    continue
                edits.append({"path": path, "old": self.rng.choice(toks),
                              "new": f"tok={self.tag}n{self.n + 1}e{len(edits)}t{token(self.rng)}"})
            elif kind == "delete" and free:
                path = self.rng.choice(free)
                edits.append({"path": path, "delete": True})
            elif kind == "rename" and free:
                path = self.rng.choice(free)
                dest = self.new_name(dirs, files)
                if dest in used:
                    continue
                edits.append({"path": path, "rename_to": dest})
                used.add(dest)
            elif kind == "rmdir" and dirs and self.rng.random() < 0.3:
                path = self.rng.choice(dirs)
                if any(path.startswith(u + "/") or u.startswith(path + "/") or u == path for u in used):
                    continue
                edits.append({"path": path, "delete": True})
            else:
                continue
            used.add(edits[-1]["path"])
        if not edits:
            return None
        text = json.dumps(edits) + "\n"
        return {"op": "batch", "edits": edits}, lambda: self.command("batch", text)

    def plan_rollback(self):
        files, _ = self.scan()
        candidates = files + sorted(self.gone - set(files))
        if not candidates:
            return None
        path = self.rng.choice(candidates)
        try:
            fd = os.open(f".vfs/versions/{path}", os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.root)
        except FileNotFoundError:
            return None
        try:
            versions = sorted(int(v) for v in os.listdir(fd))
        finally:
            os.close(fd)
        if not versions:
            return None
        n = self.rng.choice(versions[-4:])
        data = self.read(f".vfs/versions/{path}/{n}").decode()
        return {"op": "rollback_path", "path": path, "version": n, "data": data}, \
            lambda: self.command("rollback", f"{path} {n}\n")


class _Controller(Role):
    """Checkpoints, and whole-session rollbacks while the workers wait."""

    def __init__(self, args: dict) -> None:
        super().__init__(args)
        self.workers = args["workers"]
        self.checkpoints = list(args["checkpoints"])
        self.gen = 0

    def run(self) -> None:
        while not self.stopping():
            time.sleep(self.rng.uniform(0.02, 0.15))
            if self.rng.random() < 0.35:
                name = f"{self.tag}k{self.n + 1}"
                if not self.perform({"op": "checkpoint", "name": name},
                                    lambda: self.command("checkpoint", name + "\n")):
                    return
                self.checkpoints.append(name)
            elif self.pause():
                try:
                    head = json.loads(self.read(".vfs/status.json"))["journal_head"]
                    if self.checkpoints and self.rng.random() < 0.3:
                        target = "@" + self.rng.choice(self.checkpoints[-5:])
                    else:
                        target = str(max(0, head - self.rng.choice([0, 1, 2, 3, 5, 8, 13, 30, 100])))
                    if not self.perform({"op": "rollback", "target": target, "head": head},
                                        lambda: self.command("rollback", target + "\n")):
                        return
                finally:
                    self.resume()

    def pause(self) -> bool:
        """Ask every worker to wait; True once each waits (or has exited)."""
        self.gen += 1
        gen = f"{self.tag}g{self.gen}"
        tmp = os.path.join(self.ctl, ".pause")
        with open(tmp, "w") as f:
            f.write(gen)
        os.replace(tmp, os.path.join(self.ctl, "pause"))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and not self.stopping():
            waiting = 0
            for w in self.workers:
                if os.path.exists(os.path.join(self.ctl, f"exited.{w}")):
                    waiting += 1
                    continue
                try:
                    with open(os.path.join(self.ctl, f"paused.{w}")) as f:
                        waiting += f.read() == gen
                except FileNotFoundError:
                    pass
            if waiting == len(self.workers):
                return True
            time.sleep(0.002)
        self.resume()
        return False

    def resume(self) -> None:
        try:
            os.unlink(os.path.join(self.ctl, "pause"))
        except FileNotFoundError:
            pass


def _role_main(argv: list[str]) -> int:
    role, raw = argv
    os.umask(0o022)
    {"worker": _Worker, "controller": _Controller}[role](json.loads(raw)).main()
    return 0


if __name__ == "__main__":
    sys.exit(_role_main(sys.argv[1:]))

# ---------------------------------------------------------------------------
# The harness and the checker (pytest side; imported below the role entry
# point so that role processes start with the standard library only).

import shutil  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from mountlib import SAMPLE, make_project, mount_source, unmount  # noqa: E402
from test_crash import gone, kill_daemon, log_seqs  # noqa: E402
from vfs.journal import Journal  # noqa: E402
from vfs.mounts import state_dir_for  # noqa: E402
from vfs.states import blob_id  # noqa: E402

HERE = Path(__file__).resolve()
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
            steps = self._steps(op)
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

    def _steps(self, op: dict) -> list[tuple[bool, callable]]:
        """The entries `op` makes, in order: (optional, predicate)."""
        kind, path = op["op"], op.get("path")

        def created(e) -> bool:
            return e.op == "create" and _deltas(e) == {path: (None, _file(blob_id(b"")))}

        def wrote(blob: str):
            def match(e) -> bool:
                d = _deltas(e)
                return e.op == "write" and d.keys() == {path} and d[path][0] is not None and \
                    d[path][1] == {**d[path][0], "blob": blob}
            return match

        if kind == "write":
            return [(True, created), (False, wrote(blob_id(op["data"].encode())))]
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
                if after != {**before, "blob": after["blob"]}:
                    return False
                return self.content(after["blob"]) == self.content(before["blob"]) + op["data"].encode()
            return [(True, created), (False, appended)]
        if kind == "save":
            tmp, final = op["tmp"], _file(blob_id(op["data"].encode()))

            def tmp_created(e) -> bool:
                return e.op == "create" and _deltas(e) == {tmp: (None, _file(blob_id(b"")))}

            def moved(e) -> bool:
                d = _deltas(e)
                return e.op == "rename" and d.keys() == {tmp, path} and d[tmp] == (final, None) \
                    and d[path][1] == final
            return [(False, tmp_created),
                    (False, lambda e: e.op == "write" and _deltas(e) == {tmp: (_file(blob_id(b"")), final)}),
                    (False, moved)]
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
                    [sys.executable, str(HERE), role, json.dumps(args)], stdout=err, stderr=err,
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
