"""The session's git diff branch: base commit + the session's changes, as commits.

The changes are the overlay (what differs from the disk) and the paths synced to
the disk since (`Session.synced`), so the branch head always holds the mount's
content, before and after a sync.

`BranchKeeper` turns the session's overlay into `gitsync.DiffBranch.commit`
calls: on every checkpoint, after each batch and, with `auto_commit` on,
after a quiet period following edits (debounced).  Each commit's message
names the journal seq range it covers and the agents in it.  Commits run on
a worker thread (dulwich I/O never runs on the FUSE loop); the session lock
is held only while the changed contents are collected.

Only new objects and the branch's own ref are written (see gitsync.branch).
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from gitsync import DiffBranch, GitSyncError

if TYPE_CHECKING:
    from .session import Change, Session

__all__ = ["BranchKeeper"]

log = logging.getLogger(__name__)


class BranchKeeper:
    """Keeps one diff branch in step with one session. Thread-safe."""

    def __init__(self, session: "Session", branch: DiffBranch, *, auto_commit: bool = True,
                 quiet_seconds: float = 2.0) -> None:
        self.session = session
        self.branch = branch
        self.auto_commit = auto_commit
        self.quiet_seconds = quiet_seconds
        self.last_seq = session.head()
        self.last_error: str | None = None
        self._agents: set[str] = set()
        self._lock = threading.Lock()  # serialises commits
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._closed = False
        session.subscribe(self._on_change)

    @property
    def name(self) -> str:
        return self.branch.name

    def head(self) -> str | None:
        return self.branch.head()

    def _on_change(self, change: "Change") -> None:
        if change.paths:
            self._agents.add(change.agent)
        if change.op == "batch" and self.auto_commit:
            self._schedule(0.0)
        elif change.paths and self.auto_commit:
            self._schedule(self.quiet_seconds)

    def _schedule(self, delay: float) -> None:
        with self._timer_lock:
            if self._closed:
                return
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(delay, self._commit_quietly)
            self._timer.daemon = True
            self._timer.start()

    def _commit_quietly(self) -> None:
        try:
            self.commit()
        except Exception as exc:  # background: keep the reason for status, never crash
            log.warning("diff branch commit failed: %s", exc)

    def commit(self, label: str | None = None) -> str | None:
        """Write a commit for the current overlay (no commit when the tree is unchanged)."""
        with self._lock:
            changes, head = self._collect()
            first = self.last_seq + 1
            agents = ", ".join(sorted(self._agents)) or "none"
            what = f"vfs: {label}" if label else "vfs: session edits"
            rng = f"journal seq {first}..{head}" if head >= first else f"journal seq {head}"
            message = f"{what} ({rng})\n\nagents: {agents}\nchanged paths: {len(changes)}\n"
            try:
                sha = self.branch.commit(changes, message)
            except (GitSyncError, ValueError) as exc:
                self.last_error = str(exc)
                raise
            self.last_error = None
            self.last_seq = head
            self._agents.clear()
            return sha

    def _collect(self) -> tuple[dict, int]:
        s = self.session
        with s.lock:
            changes: dict[str, tuple[int, bytes] | None] = {}
            states = {p: s.current_state(p) for p in s.synced if p not in s.overlay}
            states.update(s.overlay)  # the mount's state of every path changed since the base commit
            for path, state in states.items():
                if state is None:
                    changes[path] = None
                elif state["kind"] == "file":
                    changes[path] = (state["mode"], s.state_content(path, state))
                elif state["kind"] == "symlink":
                    changes[path] = (0o120000, s.state_content(path, state))
                else:
                    base = s.base_states.state(path)
                    if base is not None and base["kind"] != "dir":
                        changes[path] = None  # a file replaced by a directory
            return changes, s.head()

    def close(self) -> None:
        with self._timer_lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
        try:
            if self.auto_commit and self.session.head() > self.last_seq:
                self.commit("at unmount")
        except Exception as exc:
            log.warning("final diff branch commit failed: %s", exc)
        self.branch.close()
