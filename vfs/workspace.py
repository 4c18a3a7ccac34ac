"""A workspace: everything one mount serves, assembled from a source directory.

`Workspace.open(source, options)` is the composition root: it opens the source
(before any mount covers it), chooses the state directory, opens the journal,
restores what a previous daemon left unsynced, builds the `Session`, the
control tree and the background services.  The FUSE daemon, the CLI and the
in-process Python API all start here, so they serve the same thing.

Paths into the source are taken through `/proc/self/fd/<fd>` of the source
descriptor: when the mount covers the source itself, those paths still reach
the directory underneath instead of re-entering our own file system (which
would deadlock the FUSE loop).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import WorktreeBase
from .errors import FsError
from .mounts import state_dir_for
from .passthrough import PassthroughRules
from .session import Session

__all__ = ["Workspace", "WorkspaceOptions"]

log = logging.getLogger(__name__)


@dataclass
class WorkspaceOptions:
    mode: str = "on-demand"
    rev: str | None = None
    branch: str = "in-memory-edits"
    passthrough: list[str] = field(default_factory=list)
    journal: bool = True


class Workspace:
    def __init__(self, source: str, options: WorkspaceOptions, base: Any, session: Session,
                 state_dir: Path, control: Any = None) -> None:
        self.source = source
        self.options = options
        self.base = base
        self.session = session
        self.state_dir = state_dir
        self.control = control

    @classmethod
    def open(cls, source: str, options: WorkspaceOptions | None = None) -> "Workspace":
        options = options or WorkspaceOptions()
        source = os.path.abspath(source)
        if not os.path.exists(source):
            raise FsError(2, f"no such directory: {source}")
        if not os.path.isdir(source):
            raise FsError(20, f"not a directory: {source}")
        base = WorktreeBase(source)
        under = f"/proc/self/fd/{base.dir_fd}"
        state_dir = state_dir_for(source)
        rules = PassthroughRules(under, options.passthrough, read=_reader(base))
        session = Session(base, disk_fd=base.dir_fd, passthrough=rules.is_passthrough)
        return cls(source, options, base, session, state_dir)

    def start_background(self, nursery: Any) -> None:
        """Start the trio tasks of background services (none yet)."""

    def before_unmount(self) -> None:
        """Last work while the mount is still up (lazy sync writes here)."""

    def close(self, clean: bool = True) -> None:
        self.base.close()


def _reader(base: WorktreeBase):
    def read(rel: str) -> bytes | None:
        try:
            return base.read(rel)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError:
            return None
    return read
