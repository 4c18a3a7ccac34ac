"""The session: the one core every face (FUSE, control files, CLI, Python API) talks to.

A Session owns the truth of a mounted workspace:
- `tree`, the POSIX inode tree over a base (see `vfs.tree`);
- `overlay`, path -> state for every path whose state differs from the base
  (`None` = deleted from the base).  It is exactly "what changed";
- the journal (optional, see `vfs.journal`), where each change is appended
  with the before and after state of every path it touched, in the same
  transaction as the overlay update, so a remount can restore it.

Every change, whatever face it came from, reaches `changed()`, which records
it, bumps the journal, and tells listeners (`subscribe`).  Changes that did
not come through the kernel (API calls, control commands) also queue kernel
cache invalidations; the FUSE adapter installs the `invalidator`.

Thread safety: every public method takes `self.lock` (an RLock), so FUSE
handlers on the trio thread and API callers on other threads are serialised.
Nothing here blocks for long: no parsing, no network; hashing is per close.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .agents import AgentNames
from .base import Base
from .caller import API_CALLER
from .errors import FsError
from .external import ExternalChanges
from .node import Node
from .settler import PendingWrites
from .states import BaseStates, State, blob_id, node_state
from .tree import ROOT, Caller, Tree, join

__all__ = ["Session", "Handle", "Change", "API_CALLER", "check_rel_path"]

log = logging.getLogger(__name__)

_MISSING = object()


def check_rel_path(path: str) -> str:
    """Normalise a path given by a user (control file, API): relative, inside the tree.

    Refuses absolute paths, `..`, NUL and empty names with EINVAL.
    """
    if not isinstance(path, str):
        raise FsError(errno.EINVAL, "path must be a string")
    if "\0" in path:
        raise FsError(errno.EINVAL, "path contains NUL")
    if path.startswith("/"):
        raise FsError(errno.EINVAL, f"absolute path refused: {path}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise FsError(errno.EINVAL, f"path leaves the tree: {path}")
    if parts and parts[0] == ".vfs":
        raise FsError(errno.EINVAL, f"path inside the control directory: {path}")
    return "/".join(parts)


# Operations that are journaled even when they change no path (markers in the history).
_ALWAYS_RECORDED = frozenset({"checkpoint", "sync", "rollback", "batch", "mode", "resolve"})


@dataclass(frozen=True)
class Change:
    """One recorded change, as listeners see it."""

    seq: int
    op: str
    paths: tuple[str, ...]
    agent: str
    time: float
    path2: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"seq": self.seq, "op": self.op, "paths": list(self.paths), "agent": self.agent,
               "time": self.time}
        if self.path2 is not None:
            out["path2"] = self.path2
        return out


@dataclass
class Handle:
    node: Node
    flags: int
    caller: Caller
    fd: int | None = None  # disk nodes: a real descriptor on the backing file
    wrote: bool = False  # a write(2) came through this handle


class Session(ExternalChanges, PendingWrites):
    """See module docstring; changes that do not come through the kernel (applied
    states, syncs, outside edits) are in `vfs.external`."""

    def __init__(self, base: Base, *, disk_fd: int | None = None,
                 passthrough: Callable[[str, bool], bool] | None = None,
                 journal: Any = None, agent_names: AgentNames | None = None) -> None:
        self.lock = threading.RLock()
        self.base = base
        self.tree = Tree(base, disk_fd=disk_fd, passthrough=passthrough)
        self.tree.recorder = self
        self.base_states = BaseStates(base)
        self.journal = journal
        self.agents = agent_names or AgentNames()
        # Invariant: overlay[p] == state of p in the tree, for exactly the paths whose state != base state.
        self.overlay: dict[str, State] = {}
        self.handles: dict[int, Handle] = {}
        self._next_fh = 1
        PendingWrites.__init__(self)
        self._seq = journal.head() if journal is not None else 0
        self._listeners: list[Callable[[Change], None]] = []
        self.invalidator: Any = None  # set by the FUSE adapter: .inode(ino), .entry(parent_ino, name), .wait()
        self._quiet = 0  # >0 while restoring: tree changes are not recorded at all
        self._agent_override: str | None = None
        # Paths touched inside the running compound operation (None when none runs).
        self._compound: list[str] | None = None
        # Paths changed on disk while their buffer was dirty: path -> {"ancestor": state, "theirs": state}.
        self.conflicts: dict[str, dict] = {}
        # Paths that left the overlay by a sync: the disk holds them now, but a diff against
        # the commit the session started from must still show them (the diff branch).
        self.synced: set[str] = set(json.loads(journal.get_meta("synced") or "[]")) if journal else set()

    # ------------------------------------------------------------------ listeners
    def subscribe(self, fn: Callable[[Change], None]) -> Callable[[], None]:
        with self.lock:
            self._listeners.append(fn)

        def unsubscribe() -> None:
            with self.lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)
        return unsubscribe

    def agent_name(self, caller: Caller) -> str:
        if self._agent_override is not None:
            return self._agent_override
        return self.agents.name(caller.pid) if caller.pid else "api"

    # ------------------------------------------------------------------ state bookkeeping
    def _content(self, node: Node) -> bytes | None:
        if node.is_reg:
            return bytes(self.tree.load(node)) if node.data is not None or node.base_rel is None \
                else None
        if node.is_lnk:
            return self.tree.readlink(node)
        return None

    def current_state(self, path: str) -> State:
        node = self.tree.try_resolve(path)
        if node is None or node.disk:
            return None
        if node.is_reg and node.data is None and node.base_rel is not None:
            # Never loaded: still the base content.
            base = self.base_states.state(node.base_rel)
            if base is not None and base.get("kind") == "file":
                return {"kind": "file", "mode": node.mode, "blob": base["blob"]}
        return node_state(node, self._content(node))

    def state_before(self, path: str) -> State:
        """The last recorded state of `path`: the overlay's, else the base's."""
        hit = self.overlay.get(path, _MISSING)
        if hit is not _MISSING:
            return hit
        return self._base_state(path)

    def _base_state(self, path: str) -> State:
        pinned = self._pinned_bases
        if pinned is not None and path in pinned:
            return pinned[path]
        return self.base_states.state(path)

    def state_content(self, path: str, state: State) -> bytes:
        """The bytes behind a state: from the tree, the journal or the base."""
        blob = state.get("blob")
        if blob is None:
            raise FsError(errno.ENOENT, f"the content {path} had was never read (it changed outside the mount)")
        node = self.tree.try_resolve(path)
        if node is not None and not node.disk:
            data = self._content(node)
            if data is not None and blob_id(data) == blob:
                return data
        if self.journal is not None and self.journal.has_blob(blob):
            return self.journal.get_blob(blob)
        base = self.base_states.state(path)
        if base is not None and base.get("blob") == blob:
            return self.base_states.content(path, base)
        raise FsError(errno.ENOENT, f"content {blob[:12]} of {path} is no longer stored")

    def _store(self, path: str, state: State, node_for_content: Node | None, like: str | None = None) -> None:
        """Make sure the journal holds the content of `state` (`like`: the blob of the version it
        follows, which the journal may store it as a delta against)."""
        if self.journal is None or state is None or state.get("blob") is None:
            return  # nothing to store (no content, or content never read: see _tree_state)
        if self.journal.has_blob(state["blob"]):
            return
        if node_for_content is not None:
            data = self._content(node_for_content)
            if data is None:
                data = self.base_states.content(node_for_content.base_rel, state)
        else:
            data = self.base_states.content(path, state)
        self.journal.put_blob(data, like=like)

    # ------------------------------------------------------------------ the recorder
    def changed(self, op: str, paths: list[str], caller: Caller, path2: str | None = None,
                info: dict | None = None) -> Change | None:
        """Record that `paths` may have changed (Tree calls this after each mutation).

        Inside `compound()` the paths are only collected; the compound records them
        as one entry when it ends.
        """
        if self._quiet:
            return None
        if self._unsettled and not self._settling:
            self.settle(caller.pid)  # earlier writes first: the journal keeps the order readers saw
            if self._unsettled:
                self._note_moves()
        if self._compound is not None:
            self._compound.extend(paths)
            return None
        return self._record_paths(op, paths, caller, path2, info)

    def _record_paths(self, op: str, paths: Iterable[str], caller: Caller, path2: str | None = None,
                      info: dict | None = None) -> Change | None:
        deltas = []
        unchanged = []
        for path in dict.fromkeys(paths):
            before = self.state_before(path)
            after = self.current_state(path)
            if before == after:
                unchanged.append(path)
                continue
            deltas.append((path, before, after))
        if unchanged and self.journal is not None:
            # Same state, maybe another file: a symlink renamed over an equal one ends a hard link.
            with self.journal.transaction():
                for path in unchanged:
                    self._note_links(path, self.tree.try_resolve(path))
        if not deltas and op not in _ALWAYS_RECORDED:
            return None
        return self._record(op, deltas, self.agent_name(caller), path2=path2, info=info)

    def _record(self, op: str, deltas: list[tuple[str, State, State]], agent: str,
                path2: str | None = None, info: dict | None = None, path: str | None = None,
                bases: dict[str, State] | None = None) -> Change:
        """Journal one change and update the overlay.  `bases` gives the base state of some paths
        as the caller saw it (an outside edit that the disk may have outrun meanwhile)."""
        now = time.time()
        if self.journal is not None:
            with self.journal.transaction():
                for path, before, after in deltas:
                    self._store(path, before, None)
                    node = self.tree.try_resolve(path)
                    self._store(path, after, node, like=(before or {}).get("blob"))
                    self._note_attrs(path, node if after is not None else None)
                main = deltas[0] if deltas else (path or "", None, None)
                extra = dict(info or {})
                extra["d"] = [[p, b, a] for p, b, a in deltas]
                entry = self.journal.append(
                    op, main[0], agent=agent, path2=path2,
                    before=(main[1] or {}).get("blob"), after=(main[2] or {}).get("blob"),
                    mode=(main[2] or {}).get("mode"), info=extra)
                self._update_overlay(deltas, bases)
            seq = entry.seq
            now = entry.time
        else:
            self._update_overlay(deltas, bases)
            self._seq += 1
            seq = self._seq
        change = Change(seq, op, tuple(p for p, _, _ in deltas) or ((path,) if path else ()), agent, now, path2)
        self._seq = max(self._seq, seq)
        for fn in list(self._listeners):
            try:
                fn(change)
            except Exception:  # a listener must never break a write
                log.exception("change listener failed")
        return change

    def _update_overlay(self, deltas: Iterable[tuple[str, State, State]],
                        bases: dict[str, State] | None = None) -> None:
        for path, _before, after in deltas:
            base = bases[path] if bases and path in bases else self._base_state(path)
            if after == base:
                self.overlay.pop(path, None)
                if self.journal is not None:
                    self.journal.set_state(path, None)
            else:
                self.overlay[path] = after
                if self.journal is not None:
                    self.journal.set_state(path, after if after is not None else {"kind": "deleted"})

    # ------------------------------------------------------------------ kernel-facing operations
    def lookup(self, parent: int, name: str) -> Node | None:
        with self.lock:
            return self.tree.lookup(self.tree.node(parent), name)

    def getattr(self, ino: int) -> Node:
        with self.lock:
            return self.tree.node(ino)

    def readdir(self, ino: int, cookie: int) -> Iterator[tuple[int, str, Node]]:
        """Entries after `cookie`, lazily: the caller holds `self.lock` while consuming them."""
        with self.lock:
            nodes = self.tree.nodes
            return ((c, name, nodes[i]) for c, name, i in self.tree.readdir(self.tree.node(ino), cookie))

    def create(self, parent: int, name: str, mode: int, caller: Caller) -> Node:
        with self.lock:
            return self.tree.create(self.tree.node(parent), name, mode, caller)

    def mkdir(self, parent: int, name: str, mode: int, caller: Caller) -> Node:
        with self.lock:
            return self.tree.mkdir(self.tree.node(parent), name, mode, caller)

    def mknod(self, parent: int, name: str, mode: int, rdev: int, caller: Caller) -> Node:
        with self.lock:
            return self.tree.mknod(self.tree.node(parent), name, mode, rdev, caller)

    def symlink(self, parent: int, name: str, target: bytes, caller: Caller) -> Node:
        with self.lock:
            return self.tree.symlink(self.tree.node(parent), name, target, caller)

    def link(self, ino: int, parent: int, name: str, caller: Caller) -> Node:
        with self.lock:
            self._settle_for(caller)
            return self.tree.link(self.tree.node(ino), self.tree.node(parent), name, caller)

    def unlink(self, parent: int, name: str, caller: Caller) -> None:
        with self.lock:
            self._settle_for(caller)
            self.tree.unlink(self.tree.node(parent), name, caller)

    def rmdir(self, parent: int, name: str, caller: Caller) -> None:
        with self.lock:
            self.tree.rmdir(self.tree.node(parent), name, caller)

    def rename(self, old_parent: int, old: str, new_parent: int, new: str, flags: int, caller: Caller) -> None:
        with self.lock:
            self._settle_for(caller)
            t = self.tree
            t.rename(t.node(old_parent), old, t.node(new_parent), new, flags, caller)

    def readlink(self, ino: int) -> bytes:
        with self.lock:
            return self.tree.readlink(self.tree.node(ino))

    def _note_attrs(self, path: str, node: Node | None) -> None:
        """Journal the times and owner `node` shows at `path` (none: forget them) and its hard
        links: a remount puts them back."""
        if node is None or node.disk:
            self.journal.set_attrs(path, None)
        else:
            self.journal.set_attrs(path, (node.atime_ns, node.mtime_ns, node.uid, node.gid))
        self._note_links(path, node)

    def _note_links(self, path: str, node: Node | None) -> None:
        """Journal the names of a hard-linked file as one group (its inode numbers them)."""
        if node is not None and not node.disk and (node.is_reg or node.is_lnk) and node.nlink > 1:
            for name in self.tree.paths_of(node):
                self.journal.set_link(name, node.ino)
        else:
            self.journal.set_link(path, None)

    def setattr(self, ino: int, caller: Caller, fh: int | None = None, **fields: Any) -> Node:
        with self.lock:
            self._settle_for(caller)  # a chmod after a write: the write's version has the old mode
            if fh == 0:
                self.kernel_opened()  # ftruncate(2) of a file the kernel opened
            node = self.tree.node(ino)
            # Without a handle, a truncation to 0 may be an open(O_TRUNC) whose write follows.
            o_trunc = fields.get("size") == 0 and fh is None and self.settler is not None and not node.disk
            if o_trunc:
                self._begin_write(node, caller, truncating=True)
            self.tree.setattr(node, caller, **fields)
            if self.journal is not None and not node.disk and any(
                    fields.get(k) is not None for k in ("atime_ns", "mtime_ns", "uid", "gid")):
                for path in self.tree.paths_of(node):  # touch -d, utime(), chown: kept across a remount
                    self._note_attrs(path, node)
            if fields.get("size") is not None and not node.disk:
                if o_trunc:
                    self._log_truncate(node, 0)
                    self._written(node, emptied=True)
                else:  # truncate(2)/ftruncate(2) are acknowledged when they return: record now.
                    self.tree.commit(node, caller)
            return node

    def forget(self, ino: int, n: int) -> None:
        with self.lock:
            self.tree.forget(ino, n)

    def open(self, ino: int, flags: int, caller: Caller) -> int:
        with self.lock:
            node = self.tree.node(ino)
            if node.is_dir:
                raise FsError(errno.EISDIR, "is a directory")
            handle = Handle(node, flags, caller)
            if node.disk:
                rel = self.tree.path_of(node)
                try:
                    handle.fd = os.open(rel, flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOCTTY),
                                        dir_fd=self.tree.disk_fd)
                except OSError as exc:
                    raise FsError(exc.errno or errno.EIO, str(exc)) from None
            elif flags & os.O_TRUNC and node.is_reg:
                self.tree.truncate(node, 0, caller)
            node.opens += 1
            fh = self._next_fh
            self._next_fh += 1
            self.handles[fh] = handle
            return fh

    def _handle(self, fh: int) -> Handle:
        try:
            return self.handles[fh]
        except KeyError:
            raise FsError(errno.EBADF, f"bad file handle {fh}") from None

    def read(self, fh: int, offset: int, size: int) -> bytes:
        with self.lock:
            h = self._handle(fh)
            if h.fd is not None:
                return os.pread(h.fd, size, offset)
            return self.tree.read(h.node, offset, size)

    def write(self, fh: int, offset: int, buf: bytes) -> int:
        with self.lock:
            h = self._handle(fh)
            if h.fd is not None:
                return os.pwrite(h.fd, buf, offset)
            node = h.node
            if h.flags & os.O_APPEND:
                offset = len(self.tree.load(node))
            h.wrote = True
            return self.tree.write(node, offset, buf, h.caller)

    def flush(self, fh: int) -> None:
        """close(2) of one descriptor: the durability point for what this handle wrote.

        A handle that only truncated (O_TRUNC) and wrote nothing yet is left for
        `release`: shells open with O_TRUNC, dup the descriptor and close the
        original before the command writes, and that first close must not record
        an empty version.
        """
        with self.lock:
            h = self._handle(fh)
            if h.fd is None and h.wrote:
                self.tree.commit(h.node, h.caller)

    def fsync(self, fh: int) -> None:
        with self.lock:
            h = self._handle(fh)
            if h.fd is not None:
                os.fsync(h.fd)
            else:
                self.tree.commit(h.node, h.caller)

    def release(self, fh: int) -> None:
        with self.lock:
            h = self.handles.pop(fh, None)
            if h is None:
                return
            if h.fd is not None:
                os.close(h.fd)
            else:
                self.tree.commit(h.node, h.caller)
            h.node.opens -= 1
            self.tree._maybe_free(h.node)

    def commit_open_writes(self) -> int:
        """The mount is going away while files are open for writing: record what their handles
        wrote (the close that would have will never come).  Returns how many files."""
        with self.lock:
            done = self.settle(force=True)
            for h in list(self.handles.values()):
                if h.fd is None and h.wrote and self.tree.commit(h.node, h.caller):
                    done += 1
            return done

    def statfs(self) -> os.statvfs_result | None:
        fd = self.tree.disk_fd
        return os.fstatvfs(fd) if fd is not None else None

    # ------------------------------------------------------------------ compound operations
    # Changes that did not come through the kernel (API calls, control
    # commands, rollback, batch) run inside `compound()`: all their tree
    # mutations become ONE journal entry, all or nothing, followed by the
    # kernel cache invalidations their effects need.
    @contextlib.contextmanager
    def compound(self, op: str, agent: str = "api", *, path2: str | None = None,
                 info: dict | None = None) -> Iterator[dict]:
        """Group the mutations of the block into one recorded change.

        If the block raises, every path it touched is put back to its recorded
        state (nothing is journaled) and the exception propagates.  A compound
        inside a compound joins the outer one.  The yielded dict receives
        `change` (the recorded Change, or None when nothing changed).
        """
        with self.lock:
            if self._compound is not None:
                yield {}
                return
            self.settle()
            self._compound = []
            result: dict = {"change": None}
            try:
                yield result
            except BaseException:
                touched, self._compound = self._compound, None
                self._restore(touched)
                self._invalidate(touched)
                raise
            touched, self._compound = self._compound, None
            with self._as(agent):
                change = self._record_paths(op, touched, API_CALLER, path2, info)
            if change is None and op in _ALWAYS_RECORDED:
                change = self._record(op, [], agent, path2=path2, info=info)
            result["change"] = change
            self._invalidate(touched)

    def _restore(self, paths: list[str]) -> None:
        """Put `paths` back to their recorded states without recording anything."""
        self._quiet += 1
        try:
            states = {p: self.state_before(p) for p in dict.fromkeys(paths)}
            self.apply_states(states, self.state_content)
        finally:
            self._quiet -= 1

    def _invalidate(self, paths: Iterable[str]) -> None:
        """Queue kernel invalidations for `paths`: their entries, their inodes, their parents."""
        inv = self.invalidator
        if inv is None:
            return
        seen: set[tuple] = set()
        for path in dict.fromkeys(paths):
            parent_path, _, name = path.rpartition("/")
            parent = self.tree.try_resolve(parent_path)
            node = self.tree.try_resolve(path)
            for item in ((("entry", parent.ino, name),) if parent else ()) + \
                        ((("inode", node.ino),) if node else ()) + \
                        ((("inode", parent.ino),) if parent else ()):
                if item in seen:
                    continue
                seen.add(item)
                if item[0] == "entry":
                    inv.entry(item[1], item[2])
                else:
                    inv.inode(item[1])

    def wait_invalidations(self, timeout: float = 5.0) -> None:
        """Block until queued kernel invalidations are done (no-op without a mount).

        Call it from a thread, never from the FUSE loop.
        """
        inv = self.invalidator
        if inv is not None:
            inv.wait(timeout)

    # ------------------------------------------------------------------ API-facing operations
    def read_file(self, path: str) -> bytes:
        path = check_rel_path(path)
        with self.lock:
            node = self.tree.resolve(path)
            if node.is_dir:
                raise FsError(errno.EISDIR, f"is a directory: {path}")
            if node.is_lnk:
                return self.tree.readlink(node)
            if node.disk:
                raise FsError(errno.EPERM, f"passthrough path, read it from disk: {path}")
            return bytes(self.tree.load(node))

    def exists(self, path: str) -> bool:
        with self.lock:
            return self.tree.try_resolve(check_rel_path(path)) is not None

    def _ensure_dirs(self, path: str) -> Node:
        node = self.tree.nodes[ROOT]
        done = ""
        for part in [p for p in path.split("/") if p]:
            child = self.tree.lookup(node, part)
            if child is None:
                child = self.tree.mkdir(node, part, 0o777, API_CALLER)
            elif not child.is_dir:
                raise FsError(errno.ENOTDIR, f"not a directory: {join(done, part)}")
            node = child
            done = join(done, part)
        return node

    def _put_file(self, path: str, data: bytes, mode: int | None = None) -> None:
        parent_path, _, name = path.rpartition("/")
        parent = self._ensure_dirs(parent_path)
        node = self.tree.lookup(parent, name)
        if node is None:
            node = self.tree.create(parent, name, 0o666 if mode is None else mode, API_CALLER)
        elif node.is_dir:
            raise FsError(errno.EISDIR, f"is a directory: {path}")
        elif not node.is_reg or node.disk:
            raise FsError(errno.EINVAL, f"not a regular in-memory file: {path}")
        else:
            node = self._fresh_inode(parent, name, node)
        self.tree.dirtied(node)
        node.data = bytearray(data)
        node.unsaved = False
        node.touch()
        if mode is not None:
            node.mode = stat.S_IFREG | (mode & 0o7777)
        self.changed("write", [path], API_CALLER)

    def _remove(self, path: str) -> None:
        node = self.tree.resolve(path)
        if node is self.tree.nodes[ROOT]:
            raise FsError(errno.EBUSY, "cannot delete the root")
        self.delete_tree_node(self.tree.nodes[node.parent], node.name, node)

    def write_file(self, path: str, data: bytes, *, agent: str = "api", mode: int | None = None) -> Change | None:
        """Replace (or create, with parent directories) the file at `path`; one journal entry."""
        path = check_rel_path(path)
        if not path:
            raise FsError(errno.EISDIR, "the root is a directory")
        with self.compound("write", agent) as result:
            self._put_file(path, data, mode)
        return result["change"]

    def delete_path(self, path: str, *, agent: str = "api") -> Change | None:
        """Delete a file, symlink or whole directory tree."""
        path = check_rel_path(path)
        with self.compound("unlink", agent) as result:
            self._remove(path)
        return result["change"]

    def rename_path(self, old: str, new: str, *, agent: str = "api") -> Change | None:
        old, new = check_rel_path(old), check_rel_path(new)
        with self.compound("rename", agent, path2=new) as result:
            self._move(old, new)
        return result["change"]

    def _move(self, old: str, new: str) -> None:
        node = self.tree.resolve(old)
        if node.disk:
            raise FsError(errno.EXDEV, f"passthrough path: {old}")
        parent_path, _, name = new.rpartition("/")
        new_parent = self._ensure_dirs(parent_path)
        self.tree.rename(self.tree.nodes[node.parent], node.name, new_parent, name, 0, API_CALLER)

    def mkdir_path(self, path: str, *, agent: str = "api") -> Change | None:
        path = check_rel_path(path)
        with self.compound("mkdir", agent) as result:
            self._ensure_dirs(path)
        return result["change"]

    class _AgentScope:
        def __init__(self, session: "Session", agent: str | None) -> None:
            self.session, self.agent, self.saved = session, agent, None

        def __enter__(self) -> None:
            self.saved = self.session._agent_override
            if self.agent is not None:
                self.session._agent_override = self.agent

        def __exit__(self, *exc: Any) -> None:
            self.session._agent_override = self.saved

    def _as(self, agent: str | None) -> "Session._AgentScope":
        """Attribute the changes made inside the block to `agent`."""
        return Session._AgentScope(self, agent)

    # ------------------------------------------------------------------ queries
    def changes(self) -> dict[str, State]:
        with self.lock:
            self.settle()
            return dict(sorted(self.overlay.items()))

    def head(self) -> int:
        with self.lock:
            return self._seq

    def check_invariants(self) -> None:
        """Cheap consistency checks the tests call."""
        with self.lock:
            for path, state in self.overlay.items():
                assert self.current_state(path) == state, f"overlay out of date for {path}"
                assert state != self.base_states.state(path), f"overlay holds an unchanged path {path}"
            for node in self.tree.nodes.values():
                assert node.lookups >= 0 and node.opens >= 0
            t = self.tree
            assert t.clean_bytes == sum(t.clean.values())
            for ino, size in t.clean.items():
                node = t.nodes.get(ino)
                assert node is not None and node.data is not None and len(node.data) == size
                assert node.base_rel is not None and not node.unsaved, f"inode {ino}: unsaved buffer in the clean LRU"
