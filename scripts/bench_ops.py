#!/usr/bin/env python3
"""Operation benchmarks on real vfs mounts: journal, control API, crash recovery, rename,
hot reload, memory, and mounting a commit.

Each measure is a function `measure_NAME(work: Path, quick: bool) -> dict` that builds what it
needs under `work`, mounts with the real `vfs mount` (through `benchlib.vfs_mount`, which always
unmounts in `finally`), and returns plain JSON-able numbers (seconds, bytes) plus the parameters
it used.  Baselines are measured in the same run, interleaved where they can be:

- journal      1,000 small-file creates on a mount with the journal vs one with `--no-journal`
               (and native disk, for scale); interleaved repeats, median.
- edit         edit->visible: `CodeAgent.mounted(mp).edit_file` then reading the file through the
               mount; a raw write of a one-edit batch to `.vfs/batch` then the read (also on a
               mount with the index off); a plain read-replace-write through the mount; in-process
               `CodeAgent.local` edit then read.  Baseline: the same edit done the file-based way
               on native disk (read, replace, write, read back).  Interleaved; median ms.
- batch        a 30-file batch (`{path, old, new}` each) written to `.vfs/batch`, then all 30
               files read back through the mount and checked; baseline: 30 read-replace-write
               edits on native disk, then the reads.
- crash        remount after `kill -9`: N journal entries made through the mount (creates and
               rewrites of small files), `kill -9` of the daemon, `fusermount3 -uz`, then the
               time from `vfs mount` until `.vfs/status.json` answers and shows every change
               recovered.  Baseline: a clean first mount of the same source.
- rename       `.vfs/rename pkg.core.compute calculate` in a generated package where 30 modules
               use the function (plus 30 that don't), vs the file-based way: `rg -l -w`, one
               `sed -i` per file, then the test suite; repeats alternate the direction.
- hotreload    edit on the mount (a plain file write) -> the patched function returns the new value
               in this live process (`vfs.hotreload.watch_mount`); baseline: restarting a process
               that imports the module from native disk.
- memory       daemon RSS while serving a generated 100,000-file tree (`--set index=false`): mount
               ready time, RSS after mount, after reading 1 % of the files (10 whole directories),
               then 1 % at random over the tree, then up to 10 %; with the index on too unless
               quick.  The generated tree is kept in the bench cache (~/.cache/vfs-bench).
- rev          `vfs mount --rev main` of a 3,000-file repository (built with `git fast-import`):
               time until the mount answers, and the first `cat`; baseline: `git worktree add`
               of the same commit and the same `cat`.

Usage: python scripts/bench_ops.py [--quick] [--only NAME ...] [--json PATH] [--workdir DIR]
Prints the JSON on stdout (and writes it to --json).  Nothing is left mounted.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import benchlib as bl  # noqa: E402

PY = sys.executable


# --------------------------------------------------------------------------- helpers
def stats(samples: list[float]) -> dict:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))]
    return {"median": statistics.median(s), "p95": p95, "min": s[0], "max": s[-1], "n": len(s)}


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def status(mnt: Path) -> dict:
    return json.loads((mnt / ".vfs" / "status.json").read_text())


def wait_index(mnt: Path, timeout: float) -> float:
    """Seconds until `.vfs/status.json` reports the initial index build done, nothing pending.

    "ready" alone can be read before the build began (the build starts from a listing thread),
    so the build must also have a total (every tree measured here has Python files) and have
    done all of it.
    """
    t0 = time.monotonic()
    while True:
        ix = status(mnt).get("index") or {}
        built = ix.get("total", 0) > 0 and ix.get("done", 0) >= ix.get("total", 0)
        if ix.get("state") == "ready" and built and not ix.get("pending"):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"index not ready after {timeout:.0f}s: {ix}")
        time.sleep(0.2)


def write_small(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def edit_native(path: Path, old: str, new: str) -> None:
    """An edit the file-based way: read, replace the one occurrence, write back."""
    text = path.read_text()
    if text.count(old) != 1:
        raise RuntimeError(f"{path}: {old!r} occurs {text.count(old)} times")
    path.write_text(text.replace(old, new))


def control(mnt: Path, name: str, text: str) -> None:
    """Run a control command the way any tool can: one write(2) to `.vfs/NAME`, then close."""
    fd = os.open(mnt / ".vfs" / name, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def mount(src: Path, mnt: Path, *extra: str):
    return bl.vfs_mount(src, mnt, python=PY, extra_args=extra)


# --------------------------------------------------------------------------- journal overhead
def _create_files(d: Path, n: int) -> float:
    d.mkdir(parents=True)
    payloads = [(f"file {i}: " + "x" * 90 + "\n").encode() for i in range(n)]
    names = [str(d / f"f{i:04d}.txt") for i in range(n)]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    t0 = time.perf_counter()
    for name, data in zip(names, payloads):
        fd = os.open(name, flags, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


def measure_journal(work: Path, quick: bool) -> dict:
    n, repeats = 1000, (3 if quick else 7)
    roots = {"native": work / "native"}
    roots["native"].mkdir()
    out: dict = {"files": n, "repeats": repeats}
    samples: dict[str, list[float]] = {"journal": [], "no-journal": [], "native": []}
    (work / "src-j").mkdir()
    (work / "src-nj").mkdir()
    with mount(work / "src-j", work / "mnt-j"), mount(work / "src-nj", work / "mnt-nj", "--no-journal"):
        roots["journal"], roots["no-journal"] = work / "mnt-j", work / "mnt-nj"
        order = ["journal", "no-journal", "native"]
        for rep in range(-1, repeats):  # rep -1: untimed warm-up
            for kind in order[rep % 3:] + order[:rep % 3]:
                d = roots[kind] / f"run{rep + 1}"
                dt = _create_files(d, n)
                shutil.rmtree(d)
                if rep >= 0:
                    samples[kind].append(dt)
        out["journal_entries"] = status(work / "mnt-j")["journal"]["head"]
    for k, v in samples.items():
        out[k] = stats(v)
    pairs = [a / b for a, b in zip(samples["journal"], samples["no-journal"])]
    out["ratio"] = out["journal"]["median"] / out["no-journal"]["median"]
    out["ratio_paired"] = statistics.median(pairs)
    return out


# --------------------------------------------------------------------------- edit -> visible
def _edit_project(root: Path, names: list[str]) -> Path:
    body = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(40))
    return write_tree(root, {"app/__init__.py": "", **{f"app/{n}.py": f"VALUE = 0\n\n\n{body}" for n in names}})


def _raw_batch(mnt: Path, path: str, old: str, new: str) -> None:
    """The control-file protocol by hand: a one-edit batch written to .vfs/batch."""
    control(mnt, "batch", json.dumps([{"path": path, "old": old, "new": new}]) + "\n")


# Pause after each timed edit, so that the background work an edit starts (reindexing) is not
# charged to the next edit: the latency of one edit on an idle workspace is what is measured.
SETTLE_S = 0.02


def measure_edit(work: Path, quick: bool) -> dict:
    """Edit->visible latency of six ways to edit, interleaved (one edit of each per round).

    `raw_batch_index_off` is the raw batch on a second mount with `--set index=false`: what the
    live reindexing of each edit costs the editor.
    """
    from vfs.api import CodeAgent

    n = 60 if quick else 400
    kinds = ["native", "mounted_agent", "raw_batch", "raw_batch_index_off", "mount_file_edit", "local_agent"]
    native = _edit_project(work / "native", kinds)
    src = _edit_project(work / "src", kinds)
    src_off = _edit_project(work / "src-index-off", kinds)
    local = CodeAgent.local(_edit_project(work / "src-local", kinds))
    out: dict = {"edits": n}
    samples: dict[str, list[float]] = {k: [] for k in kinds}
    commands: dict[str, list[float]] = {k: [] for k in kinds}  # the edit call alone, without the read
    try:
        with mount(src, work / "mnt"), mount(src_off, work / "mnt-off", "--set", "index=false"):
            mnt, mnt_off = work / "mnt", work / "mnt-off"
            wait_index(mnt, 120)
            agent = CodeAgent.mounted(mnt)
            # kind -> (edit(path, old, new), read(path) -> text)
            ways: dict[str, tuple[Callable[[str, str, str], object], Callable[[str], str]]] = {
                "native": (lambda p, o, w: edit_native(native / p, o, w), lambda p: (native / p).read_text()),
                "mounted_agent": (agent.edit_file, lambda p: (mnt / p).read_text()),
                "raw_batch": (lambda p, o, w: _raw_batch(mnt, p, o, w), lambda p: (mnt / p).read_text()),
                "raw_batch_index_off": (lambda p, o, w: _raw_batch(mnt_off, p, o, w),
                                        lambda p: (mnt_off / p).read_text()),
                "mount_file_edit": (lambda p, o, w: edit_native(mnt / p, o, w), lambda p: (mnt / p).read_text()),
                "local_agent": (local.edit_file, local.read_file),
            }
            for i in range(-5, n):  # 5 untimed warm-up rounds
                for kind in kinds[i % len(kinds):] + kinds[:i % len(kinds)]:
                    edit, read = ways[kind]
                    path, old, new = f"app/{kind}.py", f"VALUE = {i + 5}\n", f"VALUE = {i + 6}\n"
                    t0 = time.perf_counter()
                    edit(path, old, new)
                    t1 = time.perf_counter()
                    text = read(path)
                    dt = time.perf_counter() - t0
                    if new not in text:
                        raise RuntimeError(f"{kind}: edit {i} not visible")
                    if i >= 0:
                        samples[kind].append(dt)
                        commands[kind].append(t1 - t0)
                    time.sleep(SETTLE_S)
    finally:
        local.close()
    for k, v in samples.items():
        out[k] = stats(v)
        out[k]["edit_call_median"] = statistics.median(commands[k])
    return out


# --------------------------------------------------------------------------- 30-file batch
def _batch_project(root: Path, files: int) -> Path:
    return write_tree(root, {"pkg/__init__.py": "", **{
        f"pkg/mod{i:02d}.py": f"LIMIT = 0\n\n\ndef check(x):\n    return x < LIMIT + {i}\n" for i in range(files)}})


def measure_batch(work: Path, quick: bool) -> dict:
    files, repeats = 30, (10 if quick else 40)
    paths = [f"pkg/mod{i:02d}.py" for i in range(files)]
    out: dict = {"files": files, "repeats": repeats}
    native = _batch_project(work / "native", files)
    src = _batch_project(work / "src", files)

    def check(root: Path, k: int) -> None:
        for p in paths:
            if not (root / p).read_text().startswith(f"LIMIT = {k}\n"):
                raise RuntimeError(f"{p}: batch {k} not visible")

    times = []
    for k in range(-2, repeats):
        t0 = time.perf_counter()
        for p in paths:
            edit_native(native / p, f"LIMIT = {k + 2}\n", f"LIMIT = {k + 3}\n")
        check(native, k + 3)
        if k >= 0:
            times.append(time.perf_counter() - t0)
    out["native"] = stats(times)
    with mount(src, work / "mnt"):
        mnt = work / "mnt"
        wait_index(mnt, 120)
        times = []
        for k in range(-2, repeats):
            edits = [{"path": p, "old": f"LIMIT = {k + 2}\n", "new": f"LIMIT = {k + 3}\n"} for p in paths]
            text = json.dumps(edits) + "\n"
            t0 = time.perf_counter()
            control(mnt, "batch", text)
            check(mnt, k + 3)
            if k >= 0:
                times.append(time.perf_counter() - t0)
        out["vfs"] = stats(times)
    out["ratio"] = out["vfs"]["median"] / out["native"]["median"]
    return out


# --------------------------------------------------------------------------- remount after crash
def measure_crash(work: Path, quick: bool) -> dict:
    entries = 3000 if quick else 10_000
    nfiles = entries // 10  # each create = 2 entries (create, write); the rest are rewrites (1 each)
    src, mnt = work / "src", work / "mnt"
    write_tree(src, {"README": "crash test\n"})
    out: dict = {"entries_target": entries, "files": nfiles}
    # Baseline: a clean first mount of the same source (nothing to recover).
    t0 = time.perf_counter()
    with mount(src, mnt):
        status(mnt)
        out["clean_mount_s"] = time.perf_counter() - t0
    expected: dict[str, bytes] = {}
    with mount(src, mnt) as m:
        t0 = time.perf_counter()
        for i in range(nfiles):
            data = f"file {i} v0\n".encode()
            write_small(mnt / f"f{i:05d}.txt", data)
            expected[f"f{i:05d}.txt"] = data
        made = status(mnt)["journal"]["head"]
        k = 0
        while made + k < entries:
            i = k % nfiles
            data = f"file {i} v{k // nfiles + 1}\n".encode()
            write_small(mnt / f"f{i:05d}.txt", data)
            expected[f"f{i:05d}.txt"] = data
            k += 1
        st = status(mnt)
        out["edit_s"] = time.perf_counter() - t0
        out["entries"] = head = st["journal"]["head"]
        changed = st["changed"]
        os.kill(m.pid, signal.SIGKILL)
        subprocess.run(["fusermount3", "-uz", str(mnt)], check=True)
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{m.pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
    out["changed_paths"] = changed
    t0 = time.perf_counter()
    with mount(src, mnt):
        out["mount_cmd_s"] = time.perf_counter() - t0
        while True:
            try:
                st = status(mnt)
            except OSError:
                st = None
            if st and st["recovered"] >= changed and st["journal"]["head"] >= head:
                break
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"remount did not show the edits: {st and (st['recovered'], st['journal'])}")
            time.sleep(0.005)
        out["remount_s"] = time.perf_counter() - t0
        out["recovered"] = st["recovered"]
        out["unclean_shutdown_recovered"] = st.get("unclean_shutdown_recovered")
        bad = [p for p, data in expected.items() if (mnt / p).read_bytes() != data]
        out["content_mismatches"] = len(bad)
        if bad:
            raise RuntimeError(f"{len(bad)} file(s) lost their edits after the crash, e.g. {bad[:3]}")
    out["ratio"] = out["remount_s"] / out["clean_mount_s"]
    return out


# --------------------------------------------------------------------------- rename
RENAME_FILES = 30


def _rename_project(root: Path) -> Path:
    files = {"pkg/__init__.py": "", "pkg/core.py": (
        '"""Core."""\n\n\ndef compute(values, factor=1):\n    total = 0\n    for v in values:\n'
        '        total += v * factor\n    return total\n\n\ndef twice(values):\n    return compute(values, 2)\n')}
    for i in range(RENAME_FILES):
        files[f"pkg/user{i:02d}.py"] = (
            f'"""User {i}."""\nimport pkg.core\nfrom pkg import core\nfrom pkg.core import compute\n\n\n'
            f"class Widget{i}:\n    def __init__(self, values):\n        self.values = list(values)\n\n"
            f"    def total(self):\n        return compute(self.values)\n\n"
            f"    def scaled(self, k):\n        return pkg.core.compute(self.values, k)\n\n\n"
            f"def run(values):\n    return compute(values) + core.compute(values, {i})\n")
        files[f"pkg/plain{i:02d}.py"] = f'"""Plain {i}."""\n\n\ndef measure(values):\n    return len(values) + {i}\n'
    files["tests/__init__.py"] = ""
    files["tests/test_users.py"] = (
        "import importlib\n\nimport pytest\n\nfrom pkg.core import compute\n\n\n"
        f"@pytest.mark.parametrize('i', range({RENAME_FILES}))\n"
        "def test_user(i):\n    m = importlib.import_module(f'pkg.user{i:02d}')\n"
        "    w = getattr(m, f'Widget{i}')([1, 2, 3])\n"
        "    assert w.total() == compute([1, 2, 3]) == 6\n    assert w.scaled(2) == 12\n"
        "    assert m.run([1, 2]) == 3 + 3 * i\n")
    return write_tree(root, files)


def _pytest(cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # same work on every run and both sides
    dt, _ = bl.time_command([PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=cwd, env=env)
    return dt


def _sed_rename(root: Path, old: str, new: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    listed = subprocess.run(["rg", "--no-config", "-l", "-w", old, "."], cwd=root, capture_output=True,
                            text=True, check=True).stdout.split()
    for path in listed:
        subprocess.run(["sed", "-i", rf"s/\b{old}\b/{new}/g", path], cwd=root, check=True)
    return time.perf_counter() - t0, len(listed)


def measure_rename(work: Path, quick: bool) -> dict:
    repeats = 3 if quick else 5
    native = _rename_project(work / "native")
    src = _rename_project(work / "src")
    names = ("compute", "calculate")
    out: dict = {"files_using": RENAME_FILES, "python_files": len(list(src.rglob("*.py"))), "repeats": repeats}
    samples: dict[str, list[float]] = {"vfs_rename": [], "vfs_pytest": [], "sed": [], "sed_pytest": []}
    _pytest(native)  # warm-up (page cache, interpreter)
    with mount(src, work / "mnt"):
        mnt = work / "mnt"
        wait_index(mnt, 120)
        _pytest(mnt)
        for rep in range(repeats):
            old, new = names[rep % 2], names[1 - rep % 2]
            t0 = time.perf_counter()
            control(mnt, "rename", f"pkg.core.{old} {new}\n")
            samples["vfs_rename"].append(time.perf_counter() - t0)
            if f"def {new}(" not in (mnt / "pkg/core.py").read_text():
                raise RuntimeError("rename not visible in pkg/core.py")
            samples["vfs_pytest"].append(_pytest(mnt))
            last = (mnt / ".vfs" / "rename").read_text().strip().splitlines()[-1]
            dt, listed = _sed_rename(native, old, new)
            samples["sed"].append(dt)
            samples["sed_pytest"].append(_pytest(native))
            out["sed_files"] = listed
            bl.log(f"rename rep {rep + 1}/{repeats}: vfs {samples['vfs_rename'][-1]:.3f}s, "
                   f"rg+sed {dt:.3f}s ({listed} files)")
        out["vfs_last_outcome"] = last[:300]
    for k, v in samples.items():
        out[k] = stats(v)
    with_tests = [a + b for a, b in zip(samples["sed"], samples["sed_pytest"])]
    out["sed_with_tests"] = stats(with_tests)
    out["vfs_with_tests"] = stats([a + b for a, b in zip(samples["vfs_rename"], samples["vfs_pytest"])])
    out["ratio"] = out["vfs_rename"]["median"] / out["sed_with_tests"]["median"]
    return out


# --------------------------------------------------------------------------- hot reload
HOT = "hotmod_bench/mod.py"


def _hot_source(n: int) -> str:
    return f"STATE = []\n\n\ndef value():\n    return {n}\n"


def measure_hotreload(work: Path, quick: bool) -> dict:
    from vfs.hotreload import watch_mount

    n = 20 if quick else 60
    native = write_tree(work / "native", {"hotmod_bench/__init__.py": "", HOT: _hot_source(0)})
    src = write_tree(work / "src", {"hotmod_bench/__init__.py": "", HOT: _hot_source(0)})
    out: dict = {"edits": n}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    restart = []
    for i in range(-1, n):
        (native / HOT).write_text(_hot_source(i + 1))
        dt, got = bl.time_command([PY, "-c", "import hotmod_bench.mod as m; print(m.value())"], cwd=native, env=env)
        if int(got) != i + 1:
            raise RuntimeError("restarted process did not see the edit")
        if i >= 0:
            restart.append(dt)
    out["restart_process"] = stats(restart)
    with mount(src, work / "mnt"):
        mnt = work / "mnt"
        sys.path.insert(0, str(mnt))
        try:
            import hotmod_bench.mod as mod  # noqa: PLC0415 - imported from the mount on purpose

            done = threading.Event()
            reports = []

            def on_reload(report) -> None:
                reports.append(report)
                if report.module == "hotmod_bench.mod":
                    done.set()

            watcher = watch_mount(mnt, on_reload)
            keep = mod.value  # a reference held elsewhere: must run the new code
            times = []
            try:
                for i in range(-2, n):
                    done.clear()
                    t0 = time.perf_counter()
                    write_small(mnt / HOT, _hot_source(i + 100).encode())
                    if not done.wait(10):
                        raise RuntimeError(f"no reload within 10 s (reports: {reports[-3:]})")
                    got = keep()
                    dt = time.perf_counter() - t0
                    if got != i + 100:
                        raise RuntimeError(f"reloaded function returned {got}, expected {i + 100}: {reports[-1]}")
                    if i >= 0:
                        times.append(dt)
            finally:
                watcher.stop()
            out["hot_reload"] = stats(times)
            out["reload_seconds"] = stats([r.seconds for r in reports if r.module == "hotmod_bench.mod"])
        finally:
            sys.path.remove(str(mnt))
            for name in [m for m in sys.modules if m.startswith("hotmod_bench")]:
                del sys.modules[name]
    out["ratio"] = out["hot_reload"]["median"] / out["restart_process"]["median"]
    return out


# --------------------------------------------------------------------------- memory on a 100k-file tree
def _big_tree(root: Path, files: int) -> list[str]:
    """`files` small Python modules, 100 per directory, two directory levels."""
    rels = []
    for i in range(files):
        rel = f"pkg{i // 10000:02d}/sub{(i // 100) % 100:02d}/mod{i % 100:02d}.py"
        rels.append(rel)
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == str(files):
        return rels
    for i, rel in enumerate(rels):
        p = root / rel
        if i % 100 == 0:
            p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f'"""Module {i}."""\n\n\ndef f{i}(x):\n    return x + {i}\n\n\nclass C{i}:\n    pass\n')
    marker.write_text(str(files))
    return rels


def _touch(mnt: Path, rels: list[str]) -> float:
    t0 = time.perf_counter()
    for rel in rels:
        with open(mnt / rel, "rb") as f:
            f.read()
    return time.perf_counter() - t0


def _memory_run(src: Path, mnt: Path, rels: list[str], index: bool, index_timeout: float) -> dict:
    """Mount `src`, then read files in three steps, taking the daemon's RSS after each:
    a clustered 1 % (every file of the first directories, as an agent working in one package
    would), then a random 1 % spread over the whole tree, then more random files up to 10 %."""
    rng = random.Random(7)
    one = len(rels) // 100
    clustered = rels[:one]
    spread = rng.sample(rels[one:], len(rels) // 10)
    steps = [("clustered_1pct", clustered), ("random_1pct", spread[:one]), ("random_10pct", spread[one:])]
    t0 = time.perf_counter()
    with mount(src, mnt, "--set", f"index={'true' if index else 'false'}") as m:
        out = {"mount_ready_s": time.perf_counter() - t0}
        status(mnt)
        out["status_after_s"] = time.perf_counter() - t0
        if index:
            out["index_ready_s"] = wait_index(mnt, index_timeout) + out["status_after_s"]
            out["index"] = {k: status(mnt)["index"].get(k) for k in ("files", "lines", "definitions", "state")}
        time.sleep(0.5)
        out["rss_mount"] = prev = rss_bytes(m.pid)
        touched = 0
        for name, files in steps:
            out[f"touch_{name}_s"] = _touch(mnt, files)
            touched += len(files)
            out[f"rss_{name}"] = rss = rss_bytes(m.pid)
            out[f"files_after_{name}"] = touched
            out[f"kb_per_file_{name}"] = (rss - prev) / len(files) / 1024
            out[f"memory_status_{name}"] = status(mnt).get("memory")
            prev = rss
    return out


def measure_memory(work: Path, quick: bool) -> dict:
    files = 100_000
    # The generated tree is kept in the bench cache: writing 100k files takes a while.
    src = bl.cache_dir() / f"tree-{files}"
    t0 = time.perf_counter()
    rels = _big_tree(src, files)
    out: dict = {"files": files, "generate_s": time.perf_counter() - t0, "files_per_directory": 100}
    # Separate state per run: no index cache carried over, no journal from an earlier run.
    os.environ["XDG_STATE_HOME"] = str(work / "state-noindex")
    out["index_off"] = _memory_run(src, work / "mnt", rels, False, 0)
    bl.log(f"memory, index off: {out['index_off']}")
    if not quick:
        os.environ["XDG_STATE_HOME"] = str(work / "state-index")
        try:
            out["index_on"] = _memory_run(src, work / "mnt", rels, True, 900)
            bl.log(f"memory, index on: {out['index_on']}")
        except Exception as exc:  # report, keep the index-off numbers
            out["index_on"] = {"error": str(exc)[:2000]}
    return out


# --------------------------------------------------------------------------- mount a commit
def measure_rev(work: Path, quick: bool) -> dict:
    from bench_gitsync import build_repo, generate_paths

    files, repeats = 3000, (3 if quick else 7)
    repo = work / "repo"
    build_repo(repo, files)
    probe = generate_paths(files)[files // 2]
    out: dict = {"files": files, "repeats": repeats, "probe": probe}
    samples: dict[str, list[float]] = {"mount": [], "first_cat": [], "worktree": [], "worktree_cat": []}
    expected = None
    for rep in range(repeats):
        mnt = work / f"mnt{rep}"
        t0 = time.perf_counter()
        with mount(repo, mnt, "--rev", "main"):
            t1 = time.perf_counter()
            dt, data = bl.time_command(["cat", str(mnt / probe)])
            samples["mount"].append(t1 - t0)
            samples["first_cat"].append(dt)
            expected = expected or data
            if data != expected or not data:
                raise RuntimeError("cat through the --rev mount returned something else")
        wt = work / f"wt{rep}"
        t0 = time.perf_counter()
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(wt), "main"], cwd=repo, check=True,
                       capture_output=True)
        t1 = time.perf_counter()
        dt, data = bl.time_command(["cat", str(wt / probe)])
        samples["worktree"].append(t1 - t0)
        samples["worktree_cat"].append(dt)
        if data != expected:
            raise RuntimeError("the worktree's file differs from the mount's")
        subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=repo, check=True, capture_output=True)
    for k, v in samples.items():
        out[k] = stats(v)
    out["ready_and_cat"] = stats([a + b for a, b in zip(samples["mount"], samples["first_cat"])])
    out["worktree_and_cat"] = stats([a + b for a, b in zip(samples["worktree"], samples["worktree_cat"])])
    out["ratio"] = out["ready_and_cat"]["median"] / out["worktree_and_cat"]["median"]
    return out


MEASURES: dict[str, Callable[[Path, bool], dict]] = {
    "journal": measure_journal, "edit": measure_edit, "batch": measure_batch, "crash": measure_crash,
    "rename": measure_rename, "hotreload": measure_hotreload, "memory": measure_memory, "rev": measure_rev,
}


def run(names: list[str], quick: bool, workdir: Path | None = None) -> dict:
    """Run the named measures, each in its own work directory; errors are recorded, not raised."""
    work = Path(tempfile.mkdtemp(prefix="vfs-bench-ops-", dir=workdir))
    results: dict = {}
    try:
        for name in names:
            d = work / name
            d.mkdir()
            os.environ["XDG_STATE_HOME"] = str(d / "state")  # private journals and index caches
            load0 = os.getloadavg()
            t0 = time.monotonic()
            bl.log(f"ops: {name}")
            try:
                results[name] = MEASURES[name](d, quick)
            except Exception as exc:
                bl.log(f"ERROR in {name}: {exc!r}")
                results[name] = {"error": f"{type(exc).__name__}: {exc}"[:4000]}
            finally:
                bl.unmount_everything()
            results[name]["wall_s"] = time.monotonic() - t0
            results[name]["loadavg"] = {"start": load0, "end": os.getloadavg()}
            bl.log(f"ops: {name} done in {results[name]['wall_s']:.1f}s")
    finally:
        bl.unmount_everything()
        shutil.rmtree(work, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer repeats and entries; memory without the index")
    p.add_argument("--only", nargs="+", choices=list(MEASURES), metavar="NAME",
                   help=f"run only these measures ({', '.join(MEASURES)})")
    p.add_argument("--json", type=Path, help="also write the JSON here")
    p.add_argument("--workdir", type=Path, help="where the trees and mounts go (default: system temp)")
    args = p.parse_args(argv)
    bl.install_signal_handlers()
    meta = {"command": "scripts/bench_ops.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": args.quick, "machine": bl.machine_facts(),
            "loadavg_start": os.getloadavg()}
    results = run(args.only or list(MEASURES), args.quick, args.workdir)
    data = {**meta, "loadavg_end": os.getloadavg(), "measures": results}
    text = json.dumps(data, indent=2)
    if args.json:
        bl.write_json(args.json, data)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
