"""`vfs demo`: the main job in one command.

Copies the bundled sample project to a temporary directory, mounts it, shows
a failing test, fixes the code through the mount, runs pytest inside the
mount (it sees the in-memory edit), shows that the backing file did not
change, prints the control files, and unmounts — also when a step fails.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["run_demo"]

SAMPLE = Path(__file__).with_name("demo_project")
OLD = "    return target - count\n"
NEW = "    return max(0, target - count)\n"


def _say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def _sh(cmd: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", VFS_AGENT="demo")
    res = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    out = (res.stdout + res.stderr).rstrip()
    if out:
        print(out, flush=True)
    if check and res.returncode != 0:
        raise SystemExit(f"vfs demo: step failed: {' '.join(cmd)}")
    return res


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_demo() -> int:
    work = Path(tempfile.mkdtemp(prefix="vfs-demo-"))
    src, mnt = work / "project", work / "mnt"
    shutil.copytree(SAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    mnt.mkdir()
    vfs = [sys.executable, "-m", "vfs"]
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    mounted = False
    try:
        _say(f"mount {src} at {mnt}")
        _sh([*vfs, "mount", str(src), str(mnt)])
        mounted = True
        target = mnt / "inventory" / "stock.py"
        backing = src / "inventory" / "stock.py"
        before = _sha(backing)

        _say("run the tests inside the mount: one fails")
        failed = _sh(pytest, cwd=mnt, check=False)
        if failed.returncode == 0:
            raise SystemExit("vfs demo: expected a failing test before the edit")

        _say("fix the code through the mount (in memory only)")
        text = target.read_text()
        target.write_text(text.replace(OLD, NEW))
        _sh(["grep", "-n", "max(0", str(target)])

        _say("run the tests again inside the mount: they see the edit")
        _sh(pytest, cwd=mnt)

        _say("the backing file on disk is unchanged")
        after = _sha(backing)
        print(f"sha256 before {before}, after {after}: {'unchanged' if before == after else 'CHANGED'}")
        if before != after:
            raise SystemExit("vfs demo: the backing file changed")
        _sh(["diff", "-u", str(backing), str(target)], check=False)

        control = mnt / ".vfs"
        if control.is_dir():
            for name in ("status", "changed", "diff", "log"):
                _say(f"cat .vfs/{name}")
                _sh(["cat", str(control / name)], check=False)
        _say("unmount")
        _sh([*vfs, "unmount", str(mnt)])
        mounted = False
        print("\nvfs demo: done")
        return 0
    finally:
        if mounted:
            subprocess.run([*vfs, "unmount", str(mnt)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
