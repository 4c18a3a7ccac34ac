"""Where a mount keeps its things: the state directory and the registry of live mounts.

State directory (journal, index cache, daemon log), per mounted source, never
inside the served tree's visible part:
- `<git-dir>/vfs/<name>/` when the source is a git repository (`<name>` is
  `worktree` for a worktree mount, `rev-<hash>` for a mount of a commit);
- `$XDG_STATE_HOME/vfs/<hash of the source path>/` otherwise.
Created with mode 0700.

Registry: one JSON file per live mount under `$XDG_RUNTIME_DIR/vfs/` (or
`/tmp/vfs-<uid>/`), naming the daemon's pid, source and mount point.  Entries
whose daemon is gone or whose mount point is no longer mounted are stale and
are dropped when read.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["MountRecord", "state_dir_for", "registry_dir", "register", "unregister", "live_mounts",
           "is_mounted", "find_mount"]


def _hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def state_dir_for(src: str, name: str = "worktree") -> Path:
    src = os.path.abspath(src)
    git_dir = Path(src) / ".git"
    if git_dir.is_dir():
        return _private_dir(git_dir / "vfs" / name)
    if (Path(src) / "HEAD").is_file() and (Path(src) / "objects").is_dir():
        return _private_dir(Path(src) / "vfs" / name)  # a bare repository
    root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return _private_dir(root / "vfs" / _hash(f"{src}\0{name}"))


def registry_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "vfs" if runtime and os.path.isdir(runtime) else Path(f"/tmp/vfs-{os.getuid()}")
    return _private_dir(base)


@dataclass
class MountRecord:
    pid: int
    source: str
    mountpoint: str
    state_dir: str
    started: float
    rev: str | None = None


def _record_path(mountpoint: str) -> Path:
    return registry_dir() / f"{_hash(os.path.abspath(mountpoint))}.json"


def register(rec: MountRecord) -> None:
    path = _record_path(rec.mountpoint)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(rec)))
    os.replace(tmp, path)


def unregister(mountpoint: str) -> None:
    try:
        _record_path(mountpoint).unlink()
    except FileNotFoundError:
        pass


def _mountinfo_points() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            points.add(fields[4].decode("unicode_escape").encode("latin-1").decode("utf-8", "replace"))
    return points


def is_mounted(path: str) -> bool:
    """True when `path` is a mount point (any file system)."""
    return os.path.abspath(path) in _mountinfo_points()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def live_mounts() -> list[MountRecord]:
    out = []
    points = _mountinfo_points()
    for path in sorted(registry_dir().glob("*.json")):
        try:
            rec = MountRecord(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if _alive(rec.pid) and rec.mountpoint in points:
            out.append(rec)
        elif not _alive(rec.pid):
            path.unlink(missing_ok=True)
    return out


def find_mount(mountpoint: str) -> MountRecord | None:
    mp = os.path.abspath(mountpoint)
    for rec in live_mounts():
        if rec.mountpoint == mp:
            return rec
    return None
