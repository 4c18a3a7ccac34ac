"""Resolving conflicts between the buffer and an outside edit of the backing file.

A conflict exists when a path's backing file changed outside the mount while
its buffer was dirty (`Session.base_changed`).  `sync` refuses such a path
until it is resolved:
- `mine`: keep the buffer; the next sync overwrites the outside edit knowingly;
- `theirs`: take the disk's content into the buffer (the path becomes clean);
- `merge`: three-way merge of the ancestor (the base the buffer started from),
  the disk and the buffer.  Without overlapping changes the merge succeeds and
  the conflict is resolved; otherwise the buffer gets conflict markers and the
  conflict stays until `mine`/`theirs` or another `merge` after editing.  That
  is still a command carried out (it changed the buffer and is journaled), so
  it is not refused: its message says the conflict stays.  A refused command
  changes nothing.
"""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from gitsync import merge3

from .errors import FsError
from .session import check_rel_path

if TYPE_CHECKING:
    from .session import Session

__all__ = ["resolve", "HOW"]

HOW = ("mine", "theirs", "merge")


def resolve(session: "Session", path: str, how: str, *, agent: str = "api") -> str:
    path = check_rel_path(path)
    if how not in HOW:
        raise FsError(errno.EINVAL, f"unknown resolution {how!r}: use mine, theirs or merge")
    with session.lock:
        conflict = session.conflicts.get(path)
        if conflict is None:
            raise FsError(errno.ENOENT, f"no conflict on {path}")
        theirs = conflict["theirs"]
        if how == "mine":
            with session.compound("resolve", agent, info={"path": path, "how": how}):
                session.conflicts.pop(path)
            return f"{path}: kept the buffer; the next sync overwrites the outside edit"
        if how == "theirs":
            with session.compound("resolve", agent, info={"path": path, "how": how}):
                session.apply_states({path: theirs}, session.state_content)
                session.conflicts.pop(path)
            return f"{path}: took the disk's content"
        ancestor = conflict.get("ancestor")
        mine_state = session.current_state(path)
        if not _is_file(mine_state) or not _is_file(theirs):
            raise FsError(errno.EINVAL, f"{path}: merge needs a file on both sides; use mine or theirs")
        base_bytes = session.state_content(path, ancestor) if _is_file(ancestor) and ancestor.get("blob") else b""
        merged, conflicted = merge3(base_bytes, session.read_file(path),
                                    session.base_states.content(path, theirs))
        with session.compound("resolve", agent, info={"path": path, "how": how, "clean": not conflicted}):
            # The disk's content is the ancestor of the next conflict on this path: keep it,
            # the disk may change again (regression: a second merge found it "no longer stored").
            session._store(path, theirs, None)
            session._put_file(path, merged)
            if conflicted:
                conflict["ancestor"] = theirs
            else:
                session.conflicts.pop(path)
        if conflicted:
            return (f"{path}: overlapping changes; conflict markers written, still in conflict "
                    "(edit it, then 'merge' again, or 'mine')")
        return f"{path}: merged cleanly"


def _is_file(state) -> bool:
    return state is not None and state.get("kind") == "file"
