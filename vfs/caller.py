"""Who asks, and what POSIX takes from them: `Caller` (a request's credentials),
`privs_to_kill` (the setid bits a write, truncation or chown clears), and `join`
for relative paths.  Plain functions and data; no state."""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

__all__ = ["API_CALLER", "Caller", "join", "privs_to_kill"]


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


@dataclass
class Caller:
    """Who asks: the credentials the kernel reports for a request.

    `groups` (supplementary groups) is read from /proc only when a check needs it.
    """

    uid: int = 0
    gid: int = 0
    pid: int = 0
    umask: int = 0o022
    groups: tuple[int, ...] | None = field(default=None)

    def in_group(self, gid: int) -> bool:
        if self.uid == 0 or gid == self.gid:
            return True
        if self.groups is None:
            self.groups = _sup_groups(self.pid)
        return gid in self.groups


def _sup_groups(pid: int) -> tuple[int, ...]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return tuple(int(g) for g in line.split()[1:])
    except OSError:
        pass
    return ()


def privs_to_kill(mode: int, gid: int, caller: Caller | None, *, chown: bool) -> int:
    """The setuid/setgid bits Linux clears on a write, truncation or chown of a non-directory.

    setuid always goes; setgid goes when the file is group-executable or the
    caller is not in the file's group.  Writes and truncation by a caller with
    CAP_FSETID (taken to be uid 0) keep both; chown clears them for everyone.
    """
    if stat.S_ISDIR(mode) or not mode & (stat.S_ISUID | stat.S_ISGID):
        return 0
    if not chown and caller is not None and caller.uid == 0:
        return 0
    kill = stat.S_ISUID
    if mode & stat.S_IXGRP or (caller is not None and not caller.in_group(gid)):
        kill |= stat.S_ISGID
    return kill & mode


# Changes made through the API and control commands act as the daemon's user.
API_CALLER = Caller(uid=os.getuid(), gid=os.getgid(), pid=0, umask=0o022)
