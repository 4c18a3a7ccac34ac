"""Helpers for tests over real FUSE mounts driven by real processes.

`mounted` starts a real daemon with `vfs mount` (the same command users run)
and always unmounts in teardown, also when the test failed: `vfs unmount`,
then `fusermount3 -uz`, then SIGKILL of the daemon it started.

FUSE tests skip outside CI only when /dev/fuse is missing; with CI=true they
never skip.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

VFS = [sys.executable, "-m", "vfs"]


def fuse_ok() -> tuple[bool, str]:
    if not os.path.exists("/dev/fuse"):
        return False, "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return False, "fusermount3 is not installed (Debian package fuse3)"
    return True, ""


def require_fuse() -> None:
    ok, why = fuse_ok()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"FUSE tests must run in CI: {why}")
        pytest.skip(why)


def run(cmd, cwd=None, check=True, env=None, input=None, timeout=120) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=isinstance(input, str) or input is None,
                         env=env, input=input, timeout=timeout, shell=isinstance(cmd, str))
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd!r} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def tree_hashes(root: Path, skip=(".git",)) -> dict[str, str]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() + f":{p.stat().st_mode:o}"
        for name in dirnames:
            out[str((Path(dirpath) / name).relative_to(root)) + "/"] = "dir"
    return out


SAMPLE = {
    "README.md": "# sample\n",
    "calc/__init__.py": "from .ops import add, mul\n\n__all__ = ['add', 'mul']\n",
    "calc/ops.py": "def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n",
    "tests/test_ops.py": ("from calc import add, mul\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
                          "def test_mul():\n    assert mul(2, 3) == 6\n"),
    "data/notes.txt": "alpha\nbeta\ngamma\n",
}


def make_project(root: Path, files: dict[str, str] = SAMPLE) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


@dataclass
class Mount:
    source: Path
    path: Path
    pid: int

    def vfs(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run([*VFS, *args], check=check)


def _daemon_pid(mountpoint: Path) -> int:
    res = run([*VFS, "status", "--json"])
    import json

    for rec in json.loads(res.stdout):
        if rec["mountpoint"] == str(mountpoint):
            return rec["pid"]
    raise AssertionError(f"no daemon registered for {mountpoint}")


def mount_source(source: Path, mountpoint: Path | None, *extra: str) -> Mount:
    require_fuse()
    mode = os.environ.get("VFS_TEST_KERNEL_OPENS")  # "1"/"0": the whole suite in one mode of opens
    if mode in ("0", "1"):
        extra = ("--set", f"kernel_opens={'true' if mode == '1' else 'false'}", *extra)
    args = [*VFS, "mount", str(source)] + ([str(mountpoint)] if mountpoint else []) + list(extra)
    run(args)
    mp = mountpoint or source
    return Mount(source, mp, _daemon_pid(mp))


@contextlib.contextmanager
def mounted_at(source: Path, mountpoint: Path, *extra: str) -> Iterator[Mount]:
    """`mount_source` for the length of a `with` block, unmounted however it ends."""
    m = mount_source(source, mountpoint, *extra)
    try:
        yield m
    finally:
        unmount(m)


def unmount(m: Mount) -> None:
    res = run([*VFS, "unmount", str(m.path), "--timeout", "20"], check=False)
    if res.returncode != 0:
        subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(m.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(m.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


