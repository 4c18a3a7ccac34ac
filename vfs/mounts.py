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

Both are private: directories 0700, files 0600, and a directory we did not
create must be a real directory owned by us, or we refuse to use it (in
`/tmp` another user could have made `/tmp/vfs-<uid>` first and planted
records naming a pid for `vfs unmount` to signal).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import FsError

# In a state directory: what went wrong while unmounting, for `vfs unmount` to tell.
UNMOUNT_NOTE = "unmount-note"

__all__ = ["UNMOUNT_NOTE", "MountRecord", "UnsafeDirectory", "state_dir_for", "registry_dir", "register", "unregister", "live_mounts",
           "is_mounted", "find_mount"]


def _hash(text: str) -> str:
    return hashlib.sha1(os.fsencode(text)).hexdigest()[:16]


class UnsafeDirectory(FsError):
    """A state or registry directory that is not ours alone (EPERM; see module docstring)."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EPERM, reason)


def _private_dir(path: Path, levels: int = 1) -> Path:
    """Make `path` (and its `levels - 1` parents) mode 0700, after checking they are ours.

    mkdir's mode goes through the umask, hence the chmod; the check is on the
    descriptor opened without following a symlink, so what is checked is what
    is chmod-ed.
    """
    chain = [path, *list(path.parents)[:levels - 1]]
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for d in reversed(chain):
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise UnsafeDirectory(f"{d} is not a directory of ours ({exc.strerror})") from None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid():
                raise UnsafeDirectory(f"{d} belongs to uid {st.st_uid}, not to us (uid {os.getuid()}): refusing it")
            if st.st_mode & 0o7777 != 0o700:
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)
    return path


def state_dir_for(src: str, name: str = "worktree") -> Path:
    src = os.path.abspath(src)
    git_dir = Path(src) / ".git"
    if git_dir.is_dir():
        return _private_dir(git_dir / "vfs" / name, levels=2)
    if (Path(src) / "HEAD").is_file() and (Path(src) / "objects").is_dir():
        return _private_dir(Path(src) / "vfs" / name, levels=2)  # a bare repository
    root = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return _private_dir(root / "vfs" / _hash(f"{src}\0{name}"), levels=2)


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
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(asdict(rec)))
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
