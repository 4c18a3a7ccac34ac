"""A workspace: everything one mount serves, assembled from a source directory.

`Workspace.open(source, options)` is the composition root: it opens the source
(before any mount covers it), chooses the state directory, opens the journal,
restores what a previous daemon left unsynced, and builds the `Session`, the
syncer, the validator and the control tree.  The FUSE daemon, the CLI and the
Python API all start here, and the methods below are the workspace-level
operations that the control files and `vfs.api` both call — one
implementation, several faces.

Paths into the source are taken through `/proc/self/fd/<fd>` of the source
descriptor: when the mount covers the source itself, those paths still reach
the directory underneath instead of re-entering our own file system (which
would deadlock the FUSE loop).

What is acknowledged (survives `kill -9` of the daemon): every change whose
close(2), fsync(2), or control command returned, and every rename, unlink,
mkdir, rmdir, symlink, link and chmod whose system call returned.  Bytes
written by write(2) to a file that was not yet closed or fsynced are not.
With `kernel_opens` the daemon never sees a close: every write(2) that
returned is kept in the pending-write log (vfs.pending_log) until its version
is journaled at its writer's close (vfs.settler, vfs.close_watch).
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hashlib

from gitsync import DiffBranch, GitBase, GitSyncError, open_source

from . import conflicts, history
from .base import WorktreeBase
from .audit import Auditor
from .batch import apply_batch
from .checks import validate
from .config import Settings, load_settings
from .diffbranch import BranchKeeper
from .control.files import build_root, event_stream
from .control.tree import ControlTree
from .diffs import changed_lines, path_diff, session_diff
from .errors import FsError
from .journal import Journal
from .mounts import UNMOUNT_NOTE, state_dir_for
from .outside import OutsideWatcher
from .pending_log import PendingLog, replay
from .passthrough import PassthroughRules
from .semantic import Semantics
from .session import Session, check_rel_path
from .syncer import MODES, Syncer
from .validation import Validator

__all__ = ["Workspace", "WorkspaceOptions"]

log = logging.getLogger(__name__)


@dataclass
class WorkspaceOptions:
    mode: str = "on-demand"
    rev: str | None = None
    branch: str = "in-memory-edits"
    passthrough: list[str] = field(default_factory=list)
    journal: bool = True
    fail_on_syntax_error: bool = True
    max_journal_entries: int = 1_000_000
    max_journal_bytes: int = 2 << 30
    auto_commit: bool = True
    commit_quiet_seconds: float = 2.0
    watch: bool = True
    index: bool = True
    audit_policy: str = "warn"
    audit_disabled: list[str] = field(default_factory=list)
    warn_on_type_error: bool = False
    run_tests_before_sync: bool = False
    lazy_parse: bool = False
    cache_symbols: bool = True
    languages: list[str] = field(default_factory=lambda: ["python"])
    max_memory_mb: int = 1024
    max_file_mb: int = 512
    lru_eviction: bool = True
    # The kernel opens the mount's files without asking the daemon (vfs.settler, vfs.control_mount);
    # "auto": where closes can be watched (vfs.close_watch) and pyfuse3 is patched (vfs.daemon).
    kernel_opens: bool | str = "auto"
    # Settings given on the command line (keys of vfs.config.KEYS); they beat the project's file.
    flags: dict[str, Any] = field(default_factory=dict)

DEFAULT_BRANCH = "in-memory-edits"


class Workspace:
    """See module docstring."""

    def __init__(self, source: str, options: WorkspaceOptions, base: Any, session: Session,
                 state_dir: Path, journal: Journal | None, *, repo: Any = None,
                 keeper: BranchKeeper | None = None, watch_root: str | None = None,
                 passthrough: Any = None, branch_off: str = "") -> None:
        self.source = source
        self.repo = repo
        self._state_lock: int | None = None  # fd holding the state directory's flock (see _lock_state_dir)
        self.keeper = keeper
        self.branch_off = branch_off
        self.watcher = OutsideWatcher(watch_root, session.base_changed, passthrough,
                                      session.passthrough_changed) \
            if watch_root and options.watch else None
        self.options = options
        self.base = base
        self.session = session
        self.state_dir = state_dir
        self.journal = journal
        self.validator = Validator(session, options.fail_on_syntax_error)
        self.semantics = Semantics(session, state_dir / "index" if options.cache_symbols else None,
                                   lazy=options.lazy_parse) if options.index else None
        self.validator.checks.append(self._no_conflicts)
        self.auditor = Auditor(session, options.audit_policy, options.audit_disabled)
        self.validator.checks.append(self.auditor.gate)
        self.syncer = Syncer(session, options.mode, gate=self.validator.gate)
        self.recovered = 0
        self.settings: Settings | None = None
        self.started = time.time()
        self.control = ControlTree(build_root(self), session.agents.name,
                                   after_command=session.wait_invalidations)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, source: str, options: WorkspaceOptions | None = None,
             mountpoint: str | None = None) -> "Workspace":
        """Assemble the workspace for `source` (a worktree, or a repository with `options.rev`)."""
        options = options or WorkspaceOptions()
        source = os.path.abspath(source)
        if not os.path.exists(source):
            raise FsError(errno.ENOENT, f"no such directory: {source}")
        if not os.path.isdir(source):
            raise FsError(errno.ENOTDIR, f"not a directory: {source}")
        if options.mode not in MODES:
            raise FsError(errno.EINVAL, f"unknown sync mode {options.mode!r}: use one of {', '.join(MODES)}")
        try:
            repo = open_source(source, options.rev)
        except GitSyncError as exc:
            raise FsError(errno.EINVAL, str(exc)) from None
        if options.rev is not None:
            return cls._open_rev(source, options, repo, mountpoint)
        base = WorktreeBase(source)
        under = f"/proc/self/fd/{base.dir_fd}"
        try:
            options, settings = _configure(options, _reader(base))
        except FsError:
            base.close()
            raise
        state_dir = _under(state_dir_for(source), source, under)
        try:
            lock = _lock_state_dir(state_dir, source)
        except FsError:
            base.close()
            raise
        journal = cls._journal(state_dir, options)
        rules = PassthroughRules(under, options.passthrough, read=_reader(base))
        session = Session(base, disk_fd=base.dir_fd, passthrough=rules.is_passthrough, journal=journal)
        _limit_memory(session, options)
        keeper, off = None, "off: the source is not a git repository"
        if repo is not None:
            keeper, off = cls._keeper(session, under, options, options.branch, repo.base_commit)
        ws = cls(source, options, base, session, state_dir, journal, repo=repo, keeper=keeper,
                 watch_root=under, passthrough=rules.is_passthrough, branch_off=off)
        ws.settings = settings
        ws._state_lock = lock
        ws._recover()
        return ws

    @classmethod
    def _open_rev(cls, source: str, options: WorkspaceOptions, repo: Any, mountpoint: str | None) -> "Workspace":
        """A mount of one commit: served from the object store, no worktree, own state and branch."""
        mp = os.path.abspath(mountpoint or source)
        if mp == source:
            raise FsError(errno.EINVAL, "a mount of a commit (--rev) needs a mount point other than the repository")
        tag = hashlib.sha1(os.fsencode(mp)).hexdigest()[:8]
        try:
            base = GitBase(source, repo.base_commit)
        except GitSyncError as exc:
            raise FsError(errno.EINVAL, str(exc)) from None
        options, settings = _configure(options, _reader(base))
        state_dir = state_dir_for(source, name=f"rev-{tag}")
        lock = _lock_state_dir(state_dir, f"{source} at {repo.base_commit[:12]} on {mp}")
        journal = cls._journal(state_dir, options)
        session = Session(base, journal=journal)
        _limit_memory(session, options)
        branch = options.branch if options.branch != DEFAULT_BRANCH else f"{DEFAULT_BRANCH}-{tag}"
        keeper, off = cls._keeper(session, source, options, branch, repo.base_commit)
        ws = cls(source, options, base, session, state_dir, journal, repo=repo, keeper=keeper, branch_off=off)
        ws.settings = settings
        ws._state_lock = lock
        ws._recover()
        return ws

    @staticmethod
    def _journal(state_dir: Path, options: WorkspaceOptions) -> Journal | None:
        if not options.journal:
            return None
        return Journal(state_dir / "journal.db", max_entries=options.max_journal_entries,
                       max_bytes=options.max_journal_bytes, summarize=history.summarize_trimmed)

    @staticmethod
    def _keeper(session: Session, repo_path: str, options: WorkspaceOptions, branch: str,
                base_commit: str | None) -> tuple[BranchKeeper | None, str]:
        try:
            diff_branch = DiffBranch(repo_path, branch, base_commit=base_commit)
        except GitSyncError as exc:
            raise FsError(errno.EINVAL, str(exc)) from None
        keeper = BranchKeeper(session, diff_branch, auto_commit=options.auto_commit,
                              quiet_seconds=options.commit_quiet_seconds)
        return keeper, ""

    def _recover(self) -> None:
        """Restore the overlay a previous daemon left in the journal (unsynced or crashed), its
        hard links, and the file times and owners it had set (on an unchanged file only while its
        disk copy is untouched since)."""
        if self.journal is None:
            return
        saved = self.journal.state()
        unclean = self.journal.get_meta("running") == "1"
        self.journal.set_meta("running", "1")
        self.unclean_shutdown = unclean
        if saved:
            self._recover_states(saved, unclean)
        session = self.session
        with session.lock:
            groups = self.journal.link_groups()
            with self.journal.transaction():  # file numbers are this daemon's inodes from now on
                self.journal.clear_links()
                for group in groups:
                    session.relink(group)
                    for path in group:
                        session._note_links(path, session.tree.try_resolve(path))
            for path, (atime_ns, mtime_ns, uid, gid, at_ns) in self.journal.attrs().items():
                node = session.tree.try_resolve(path)
                if node is None or node.disk:
                    continue
                if path not in session.overlay:
                    st = self.base.stat(path)
                    if st is None or st.mtime_ns > at_ns:
                        continue  # the disk copy changed since: its times win
                node.atime_ns, node.mtime_ns, node.uid, node.gid = atime_ns, mtime_ns, uid, gid
        pending = self.state_dir / "pending"
        replayed = replay(pending, self._file_content,
                          lambda path, data, agent: session.write_file(path, data, agent=agent))
        if replayed:
            log.info("replayed the unjournaled writes of %d file(s) a killed daemon left", replayed)

    def log_pending_writes(self) -> None:
        """The mount journals writes after they return (kernel_opens, vfs.settler): log them
        until then, for the next start to replay."""
        self.session.pending_log = PendingLog(self.state_dir / "pending")

    def _file_content(self, path: str) -> bytes | None:
        node = self.session.tree.try_resolve(path)
        if node is None or node.disk or not node.is_reg:
            return None
        return self.session.read_file(path)

    def _recover_states(self, saved: dict[str, dict], unclean: bool) -> None:
        states = {p: (None if rec.get("kind") == "deleted" else rec) for p, rec in saved.items()}
        session = self.session
        with session.lock:
            session._quiet += 1
            try:
                session.apply_states(states, session.state_content)
            finally:
                session._quiet -= 1
            for path, state in states.items():
                if state == session.base_states.state(path):
                    self.journal.set_state(path, None)  # the disk caught up meanwhile
                else:
                    session.overlay[path] = state
        self.recovered = len(session.overlay)
        log.info("restored %d changed path(s) from the journal (head %d, %s shutdown)",
                 self.recovered, self.journal.head(), "unclean" if unclean else "clean")

    def start_background(self, nursery: Any) -> None:
        """Start the background services (they run on their own threads)."""
        if self.watcher is not None:
            self.watcher.start()
        if self.semantics is not None:
            self.semantics.start()

    def before_unmount(self) -> None:
        """Last work after the FUSE loop ended: what files still open had written is recorded
        (their close never comes), then the lazy mode writes everything."""
        kept = self.session.commit_open_writes()
        if kept:
            log.warning("unmounted with %d file(s) open for writing: their written bytes are kept", kept)
        if self.syncer.mode == "lazy" and self.session.overlay:
            try:
                self.syncer.sync(agent="vfs")
            except FsError as exc:
                message = f"the lazy sync at unmount was refused: {exc.reason} (the changes stay in the journal)"
                log.error("%s", message)
                (self.state_dir / UNMOUNT_NOTE).write_text(message + "\n")

    def close(self, clean: bool = True) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        if self.semantics is not None:
            self.semantics.close()
        if self.keeper is not None:
            self.keeper.close()
        if self.session.pending_log is not None:
            self.session.pending_log.close()
        if self.journal is not None:
            if clean:
                self.journal.set_meta("running", "0")
            self.journal.close()
        self.base.close()
        if self._state_lock is not None:
            os.close(self._state_lock)  # releases the flock: the source may be mounted again
            self._state_lock = None

    # ------------------------------------------------------------------ queries
    def status(self) -> dict[str, Any]:
        s = self.session
        with s.lock:
            overlay = dict(s.overlay)
        out: dict[str, Any] = {
            "source": self.source,
            "base": {"kind": "worktree", "path": self.source},
            "mode": self.syncer.mode,
            "opens": s.opens_mode(),
            "changed": len(overlay),
            "dirty_files": sum(1 for st in overlay.values() if st is None or st.get("kind") != "dir"),
            "journal_head": s.head(),
            "state_dir": _display(str(self.state_dir), self.source),
            "errors": len(self.validator.errors()),
            "last_sync": self.syncer.last,
            "recovered": self.recovered,
            "memory": {"clean_buffers": len(s.tree.clean), "clean_bytes": s.tree.clean_bytes,
                       "max_clean_bytes": s.tree.max_clean_bytes, "evictions": s.tree.evictions,
                       "nodes": len(s.tree.nodes)},
            "conflicts": sorted(s.conflicts),
            "branch": self.branch_info(),
            "index": self.semantics.status() if self.semantics is not None else {"state": "off"},
        }
        if self.options.rev is not None:
            out["base"] = {"kind": "commit", "repository": self.source, "rev": self.options.rev,
                           "commit": self.repo.base_commit}
        if self.settings is not None:
            out["settings"] = {k: {"value": v, "from": self.settings.sources[k]}
                               for k, v in sorted(self.settings.values.items())}
        if self.journal is not None:
            out["journal"] = self.journal.stats()
            out["unclean_shutdown_recovered"] = bool(getattr(self, "unclean_shutdown", False))
        else:
            out["journal"] = None
        return out

    def status_text(self) -> str:
        st = self.status()
        lines = [
            f"source: {st['source']}",
            ("base: worktree " + st["source"]) if st["base"]["kind"] == "worktree"
            else f"base: commit {st['base']['commit']} ({st['base']['rev']}) of {st['source']}",
            f"mode: {st['mode']}",
            f"opens: {st['opens']}",
            f"changed paths: {st['changed']} ({st['dirty_files']} files)",
            f"journal head: {st['journal_head']}",
        ]
        j = st["journal"]
        if j:
            lines.append(f"journal: {j.get('entries', 0)} entries (first {j.get('first_seq')}), "
                         f"{j.get('blobs', 0)} blobs, {j.get('blob_bytes', 0)} bytes stored, "
                         f"limits {j.get('max_entries')} entries / {j.get('max_bytes')} bytes")
        if st["recovered"]:
            how = "after an unclean shutdown" if st.get("unclean_shutdown_recovered") else "unsynced"
            lines.append(f"recovered: {st['recovered']} changed path(s) restored from the journal ({how})")
        mem = st["memory"]
        lines.append(f"memory: {mem['nodes']} inodes, {mem['clean_buffers']} clean buffers "
                     f"({mem['clean_bytes']} bytes, cap {mem['max_clean_bytes']}), {mem['evictions']} evicted")
        lines.append(f"syntax errors: {st['errors']}")
        ix = st["index"]
        if ix.get("state") == "off":
            lines.append("index: off")
        else:
            lines.append(f"index: {ix['state']} {ix.get('done', 0)}/{ix.get('total', 0)} files, "
                         f"{ix.get('pending', 0)} pending, {ix.get('definitions', 0)} definitions")
        lines.append(f"last sync: {st['last_sync']}")
        lines.append(f"conflicts: {len(st['conflicts'])}" +
                     (" (" + ", ".join(st["conflicts"]) + ")" if st["conflicts"] else ""))
        b = st["branch"]
        lines.append(f"diff branch: {b['name']} {b['head'] or '(not yet written)'}" if b["enabled"]
                     else f"diff branch: {b['reason']}")
        lines.append(f"state dir: {st['state_dir']}")
        for key, item in st.get("settings", {}).items():
            lines.append(f"setting {key} = {json.dumps(item['value'])} ({item['from']})")
        return "\n".join(lines) + "\n"

    def changed(self) -> list[str]:
        return changed_lines(self.session)

    def diff(self, path: str | None = None) -> bytes:
        return path_diff(self.session, path) if path else session_diff(self.session)

    def log(self, agent: str | None = None, since: int = 0) -> list:
        if self.journal is None:
            return []
        return self.journal.entries(since=since, agent=agent)

    def agents(self) -> list[str]:
        return self.journal.agents() if self.journal is not None else []

    def errors(self) -> list[str]:
        return self.validator.errors()

    def versions(self, path: str) -> list[history.Version]:
        return history.versions(self.session, path)

    def version_content(self, path: str, n: int) -> bytes:
        for v in self.versions(path):
            if v.n == n:
                return self.session.state_content(path, v.state)
        raise FsError(errno.ENOENT, f"{path} has no version {n}")

    def checkpoints(self) -> list[tuple[str, int, float]]:
        return self.journal.checkpoints() if self.journal is not None else []

    def open_event_stream(self):
        return event_stream(self)

    def kind_of(self, path: str) -> str | None:
        """'dir', 'file' (anything else) or None, for a path of the tree."""
        with self.session.lock:
            node = self.session.tree.try_resolve(path)
            if node is None:
                return None
            return "dir" if node.is_dir else "file"

    def list_dir(self, path: str, include_deleted: bool = False) -> list[str]:
        with self.session.lock:
            node = self.session.tree.try_resolve(path)
            names = set()
            if node is not None and node.is_dir and not node.disk:
                for name, ino in self.session.tree.entries(node).items():
                    if not self.session.tree.nodes[ino].disk:
                        names.add(name)
            if include_deleted:
                prefix = f"{path}/" if path else ""
                for p, state in self.session.overlay.items():
                    if p.startswith(prefix) and state is None:
                        names.add(p[len(prefix):].split("/", 1)[0])
            return sorted(names)

    def branch_info(self) -> dict[str, Any]:
        if self.keeper is None:
            return {"enabled": False, "reason": self.branch_off or "off"}
        return {"enabled": True, "name": self.keeper.name, "ref": self.keeper.branch.ref,
                "head": self.keeper.head(), "base_commit": self.repo.base_commit,
                "last_error": self.keeper.last_error}

    def conflict_lines(self) -> list[str]:
        with self.session.lock:
            return sorted(self.session.conflicts)

    def _no_conflicts(self, paths: list[str]) -> None:
        blocked = sorted(set(paths) & set(self.session.conflicts))
        if blocked:
            raise FsError(errno.EBUSY, "refused: unresolved conflict on " + ", ".join(blocked) +
                          " (echo 'PATH mine|theirs|merge' > .vfs/resolve)")

    def validate(self) -> list[str]:
        return validate(self)

    def audit(self) -> list[str]:
        return self.auditor.lines()

    # ------------------------------------------------------------------ commands
    def resolve(self, text: str, *, agent: str = "api") -> str:
        parts = text.strip().rsplit(None, 1)
        if len(parts) != 2:
            raise FsError(errno.EINVAL, "usage: PATH mine|theirs|merge")
        return conflicts.resolve(self.session, parts[0], parts[1], agent=agent)

    def rename(self, qualname: str, new_name: str, *, agent: str = "api") -> str:
        """Rename a symbol everywhere (libcst), applied as one atomic, validated batch."""
        from .refactor import plan_rename

        paths = self.semantics.source_paths() if self.semantics is not None else self._python_paths()
        reader = self.semantics._read if self.semantics is not None else self._peek
        review: list[str] = []
        plan = plan_rename(reader, paths, qualname, new_name, review=review)
        if not plan:
            return f"{qualname}: already named {new_name}"
        edits = [{"path": p, "content": c.decode("utf-8", "surrogateescape")} for p, c in sorted(plan.items())]
        apply_batch(self.session, edits, agent=agent, validator=self.validator)
        text = f"renamed {qualname} to {new_name} in {len(plan)} file(s): {', '.join(sorted(plan))}"
        if review:
            text += f"; {len(review)} attribute use(s) of unknown type left for review: " + "; ".join(review[:5])
        return text

    def rename_command(self, text: str, agent: str = "api") -> str:
        parts = text.split()
        if len(parts) != 2:
            raise FsError(errno.EINVAL, "usage: pkg.mod.old_name new_name")
        return self.rename(parts[0], parts[1], agent=agent)

    def _peek(self, path: str) -> bytes | None:
        try:
            return self.session.read_file(path)
        except FsError:
            return None

    def _python_paths(self) -> list[str]:
        with self.session.lock:
            root = self.session.tree.nodes[1]
            return [p for p, n in self.session.tree.walk(root, "") if n.is_reg and p.endswith((".py", ".pyi"))]

    def commit_branch(self, label: str | None = None) -> str | None:
        if self.keeper is None:
            raise FsError(errno.EOPNOTSUPP, f"diff branch is {self.branch_off}")
        try:
            return self.keeper.commit(label)
        except (GitSyncError, ValueError) as exc:
            raise FsError(errno.EIO, f"diff branch commit failed: {exc}") from None

    def rollback_command(self, text: str, agent: str = "api") -> str:
        """Parse one `.vfs/rollback` line: `SEQ`, `@CHECKPOINT` or `PATH [N]`."""
        text = text.strip()
        if not text:
            raise FsError(errno.EINVAL, "empty rollback command: give SEQ, @CHECKPOINT or PATH [N]")
        if re.fullmatch(r"[0-9]+", text):
            change = history.rollback_to_seq(self.session, int(text), agent=agent)
            return _summary(f"rolled back to entry {text}", change)
        if text.startswith("@"):
            change = history.rollback_to_checkpoint(self.session, text[1:], agent=agent)
            return _summary(f"rolled back to checkpoint {text[1:]}", change)
        m = re.fullmatch(r"(.*?)(?:\s+([0-9]+))?", text)
        path, n = m.group(1), m.group(2)
        change = history.rollback_path(self.session, check_rel_path(path), int(n) if n else None, agent=agent)
        return _summary(f"rolled back {path}" + (f" to version {n}" if n else ""), change)

    def checkpoint(self, name: str, *, agent: str = "api") -> str:
        self.validator.gate_all()
        change = history.checkpoint(self.session, name, agent=agent)
        if self.keeper is not None:
            sha = self.commit_branch(f"checkpoint {name}")
            return f"checkpoint {name} at seq {change.seq}; {self.keeper.name} at {sha}"
        return f"checkpoint {name} at seq {change.seq}"

    def sync(self, path: str | None = None, *, agent: str = "api") -> str:
        if not self.syncer.writable and self.keeper is not None:
            self.validator.gate_all()
            sha = self.commit_branch("sync")
            return f"no worktree (mount of a commit): diff branch {self.keeper.name} at {sha}"
        self.syncer.sync(path, agent=agent)
        return self.syncer.last

    def set_mode(self, mode: str, *, agent: str = "api") -> str:
        self.syncer.set_mode(mode, agent=agent)
        return f"mode {mode}"

    def batch(self, raw: str | bytes | list, *, agent: str = "api") -> str:
        change = apply_batch(self.session, raw, agent=agent, validator=self.validator)
        if change is None:
            return "batch applied: nothing changed"
        return f"batch applied at seq {change.seq}: {len(change.paths)} path(s) changed"


def _limit_memory(session: Session, options: WorkspaceOptions) -> None:
    """`max_memory_mb` bounds the clean buffers (dirty ones are never dropped); `max_file_mb`
    bounds one file in memory."""
    session.tree.max_clean_bytes = options.max_memory_mb << 20 if options.lru_eviction else None
    session.tree.max_file_bytes = options.max_file_mb << 20


def _configure(options: WorkspaceOptions, read) -> tuple[WorkspaceOptions, Settings]:
    """Merge the project's settings file and the flags into `options` (explicit values win)."""
    import dataclasses

    settings = load_settings(read, options.flags)
    for key in ("run_tests_before_sync", "warn_on_type_error"):
        if settings.values[key]:
            raise FsError(errno.EINVAL, f"{settings.sources[key]}: setting {key!r} = true is not supported yet")
    unknown = [lang for lang in settings.values["languages"] if lang != "python"]
    if unknown:
        raise FsError(errno.EINVAL, f"{settings.sources['languages']}: setting 'languages': "
                                    f"no plug-in for {', '.join(unknown)} (available: python)")
    defaults = WorkspaceOptions()
    changes = {}
    for name, value in settings.options_kwargs().items():
        if getattr(options, name) == getattr(defaults, name):
            changes[name] = value
    return dataclasses.replace(options, **changes), settings


def _summary(what: str, change) -> str:
    if change is None:
        return f"{what}: nothing changed"
    return f"{what} at seq {change.seq}: {len(change.paths)} path(s) changed"


def _lock_state_dir(state_dir: Path, what: str) -> int:
    """Hold the state directory for this workspace alone (an flock the kernel drops when the
    process dies, also by kill -9): two sessions on one journal would diverge."""
    state_dir = Path(state_dir)
    if not state_dir.exists():
        state_dir.mkdir(mode=0o700, parents=True)
        os.chmod(state_dir, 0o700)
    fd = os.open(state_dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FsError(errno.EBUSY, f"{what} is already mounted or open (its state directory is in use: "
                                   f"{state_dir}); unmount it first") from None
    (state_dir / UNMOUNT_NOTE).unlink(missing_ok=True)  # about an earlier session
    return fd


def _display(path: str, source: str) -> str:
    """A /proc/self/fd/N/... path as the user knows it (below the source)."""
    if path.startswith("/proc/self/fd/"):
        rest = path.split("/", 5)[5] if path.count("/") >= 5 else ""
        return os.path.join(source, rest)
    return path


def _under(path: Path, source: str, under: str) -> Path:
    """Re-root `path` below `source` onto the pre-mount descriptor path `under`."""
    try:
        rel = path.relative_to(source)
    except ValueError:
        return path
    return Path(under) / rel


def _reader(base: WorktreeBase):
    def read(rel: str) -> bytes | None:
        try:
            return base.read(rel)
        except OSError:
            return None
    return read
