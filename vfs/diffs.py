"""What changed: the `changed` listing and unified diffs against the base.

Both are computed from the session's overlay (path -> current state for every
path that differs from the base), so they cost time proportional to the
number of changed paths, not to the tree.  Diffs are git-style and apply with
`git apply` to the base (see `gitsync.patch`).  Directories appear in
`changed` but not in diffs (git does not track directories).
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from gitsync.patch import file_patch

from .errors import FsError
from .session import check_rel_path
from .states import State

if TYPE_CHECKING:
    from .session import Session

__all__ = ["changed_lines", "session_diff", "path_diff"]


def changed_lines(session: "Session") -> list[str]:
    """One line per changed path: `M path`, `A path`, `D path`, `R old -> new`.

    A rename is reported when a deleted path and an added path hold the same content.
    """
    with session.lock:
        items = []
        for path, state in sorted(session.overlay.items()):
            base = session.base_states.state(path)
            items.append((path, base, state))
    added = {p: s for p, b, s in items if b is None and s is not None}
    deleted = {p: b for p, b, s in items if s is None and b is not None}
    by_blob: dict[str, list[str]] = {}
    for p, s in added.items():
        if s.get("blob"):
            by_blob.setdefault(s["blob"], []).append(p)
    renamed_from: dict[str, str] = {}
    for p, b in sorted(deleted.items()):
        candidates = by_blob.get(b.get("blob") or "", [])
        if candidates:
            renamed_from[candidates.pop(0)] = p
    gone = set(renamed_from.values())
    lines = []
    for path, base, state in items:
        if path in gone:
            continue
        if path in renamed_from:
            lines.append(f"R {_q(renamed_from[path])} -> {_q(path)}")
        elif base is None:
            lines.append(f"A {_q(path)}" + ("/" if state["kind"] == "dir" else ""))
        elif state is None:
            lines.append(f"D {_q(path)}" + ("/" if base["kind"] == "dir" else ""))
        else:
            lines.append(f"M {_q(path)}" + ("/" if state["kind"] == "dir" else ""))
    return lines


def _q(path: str) -> str:
    return path.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def _side(session: "Session", path: str, state: State, base: bool) -> tuple[int, bytes] | None:
    if state is None or state["kind"] not in ("file", "symlink"):
        return None
    mode = 0o120000 if state["kind"] == "symlink" else state["mode"]
    if base:
        return mode, session.base_states.content(path, state)
    return mode, session.state_content(path, state)


def path_diff(session: "Session", path: str) -> bytes:
    path = check_rel_path(path)
    with session.lock:
        if path not in session.overlay:
            if not session.exists(path):
                raise FsError(errno.ENOENT, f"no such path: {path}")
            return b""
        base = session.base_states.state(path)
        old, new = _side(session, path, base, True), _side(session, path, session.overlay[path], False)
        if old is None and new is None:
            return b""  # a directory or special file on both sides: git has nothing to say
        return file_patch(path, old, new)


def session_diff(session: "Session", prefix: str = "") -> bytes:
    """The whole session's diff (or the part under `prefix`), paths in sorted order."""
    with session.lock:
        paths = [p for p in sorted(session.overlay) if not prefix or p == prefix or p.startswith(prefix + "/")]
        return b"".join(path_diff(session, p) for p in paths)
