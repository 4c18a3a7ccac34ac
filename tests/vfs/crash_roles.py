"""The roles of test_crash_random.py: worker and controller processes on the mount.

Run as `python crash_roles.py worker|controller JSON`; they need the standard library only (they
start before pytest would be imported).  See test_crash_random.py for the workload and the checks.
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
