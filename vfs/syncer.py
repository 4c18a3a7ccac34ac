"""Writing the session to disk: `sync` and the sync modes.

Modes:
- `on-demand` (default): the disk changes only on `sync` (whole session or a path);
- `write-through`: every recorded change is written at once (so the disk
  equals the mount after every close);
- `lazy`: everything is written when the mount stops.
Crash safety comes from the journal in every mode.

A sync writes each changed path atomically: a temporary file in the same
directory, mode bits set, then `rename` over the target; symlinks likewise.
Deleted paths are removed (deepest first), new directories created
(shallowest first).  After a sync the written paths leave the overlay (the
base now equals the buffer) and a `sync` journal entry names them.

Buffers are lazy: a file nobody read yet is served from its base path, also
after a rename (the node keeps pointing at where its content lies on disk).
Before a sync removes or replaces a disk path, every node whose content still
lies there is read into memory, so that what the mount shows never changes
under a sync (`_detach`).

With `fail_on_syntax_error` the gate refuses a sync that would write a broken
file.  Write-through writes each change's paths that pass the gate; a broken
file stays in memory (and in `.vfs/errors`) until a later change fixes it.
Switching to write-through first syncs everything dirty; when the gate
refuses that, the switch is refused and the mode stays.

The disk is reached only through the worktree descriptor (`disk_fd`), never
through the mount, so syncing a mount that covers its own source is safe.
Paths below it are walked one component at a time with `O_NOFOLLOW`: a
symlink on disk where the tree has a directory (a directory that replaced a
symlink in memory, or an outside edit) is never followed, so a sync cannot
write or delete anything outside the backing tree.  Passthrough paths are the
disk's own and are never written or removed by a sync.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
from typing import TYPE_CHECKING, Callable

from .errors import FsError
from .session import check_rel_path
from .states import State
from .tree import ROOT

if TYPE_CHECKING:
    from .session import Change, Session

__all__ = ["MODES", "Syncer", "passthrough_at"]

log = logging.getLogger(__name__)

MODES = ("on-demand", "write-through", "lazy")


class Syncer:
    """Owns the sync mode of one session and performs syncs.

    `gate(paths)` (optional) is asked before writing and raises FsError to
    refuse (syntax errors, audit denials, conflicts).
    """

    def __init__(self, session: "Session", mode: str = "on-demand",
                 gate: Callable[[list[str]], None] | None = None) -> None:
        if mode not in MODES:
            raise FsError(errno.EINVAL, f"unknown sync mode {mode!r}: use one of {', '.join(MODES)}")
        self.session = session
        self.mode = mode
        session.settle_at_once = mode == "write-through"  # every write is a change to carry at once
        self.gate = gate
        self.writable = session.tree.disk_fd is not None
        self.last: str = "no sync yet"
        self._busy = False
        session.subscribe(self._on_change)

    def set_mode(self, mode: str, *, agent: str = "api") -> None:
        mode = mode.strip()
        if mode not in MODES:
            raise FsError(errno.EINVAL, f"unknown sync mode {mode!r}: use one of {', '.join(MODES)}")
        with self.session.lock:
            if mode == "write-through" and self.session.overlay and self.mode != mode:
                self.sync(agent=agent)  # refused (raises) => the mode stays as it was
            old, self.mode = self.mode, mode
            self.session.settle_at_once = mode == "write-through"
            with self.session.compound("mode", agent, info={"from": old, "to": mode}):
                pass

    def _on_change(self, change: "Change") -> None:
        if self.mode != "write-through" or self._busy or change.op in ("sync", "mode", "checkpoint"):
            return
        if not change.paths:
            return
        paths = list(change.paths)
        if self.gate is not None:
            paths = [p for p in paths if self._passes(p)]
        if not paths:
            return
        try:
            self.sync(agent=change.agent, paths=paths, gated=False)
        except FsError as exc:
            log.warning("write-through sync failed: %s", exc)

    def _passes(self, path: str) -> bool:
        try:
            self.gate([path])
        except FsError as exc:
            log.info("write-through keeps %s in memory: %s", path, exc)
            return False
        return True

    # ------------------------------------------------------------------ sync
    def sync(self, path: str | None = None, *, agent: str = "api", paths: list[str] | None = None,
             gated: bool = True) -> "Change | None":
        """Write the overlay (or the part of it at/below `path`) to disk."""
        session = self.session
        if not self.writable:
            raise FsError(errno.EROFS, "this mount has no worktree to sync to (mount of a commit); "
                                       "the diff branch is its output")
        with session.lock:
            if paths is None:
                prefix = check_rel_path(path) if path else ""
                paths = [p for p in session.overlay
                         if not prefix or p == prefix or p.startswith(prefix + "/")]
                if prefix and not paths and not session.exists(prefix):
                    raise FsError(errno.ENOENT, f"no such path: {prefix}")
            else:
                paths = [p for p in paths if p in session.overlay]
            paths = [p for p in paths if not self._passthrough(p)]
            # New parent directories go along (with their own modes), or they
            # would reach the disk with default modes and stay "changed".
            chosen = set(paths)
            for p in list(paths):
                parent = p.rpartition("/")[0]
                while parent:
                    if parent not in chosen and session.overlay.get(parent, None) is not None:
                        chosen.add(parent)
                        paths.append(parent)
                    parent = parent.rpartition("/")[0]
            if gated and self.gate is not None:
                self.gate(paths)
            if not paths:
                self.last = "nothing to sync"
                return None
            self._busy = True
            done: list[str] = []
            try:
                try:
                    self._write(paths, done)
                except (FsError, OSError) as exc:
                    if not done:
                        raise
                    # What reached the disk is synced: the overlay must say so.
                    session.mark_synced(done, agent=agent)
                    reason = exc.reason if isinstance(exc, FsError) else str(exc)
                    raise FsError(getattr(exc, "errno", None) or errno.EIO,
                                  f"{reason} ({len(done)} of {len(paths)} path(s) were written before, "
                                  f"and are synced)") from None
                change = session.mark_synced(paths, agent=agent)
            finally:
                self._busy = False
            self.last = f"synced {len(paths)} path(s) at seq {change.seq if change else session.head()}"
            return change

    def _passthrough(self, path: str) -> bool:
        if passthrough_at(self.session, path):
            log.warning("sync leaves passthrough path %s alone (it lives on disk)", path)
            return True
        return False

    def _write(self, paths: list[str], done: list[str]) -> None:
        """Write `paths` to disk; each one written is appended to `done` (so a failure
        midway leaves what did reach the disk known)."""
        session = self.session
        fd = session.tree.disk_fd
        states = {p: session.overlay[p] for p in paths}
        self._detach(states)
        for p in sorted((p for p, s in states.items() if s is None), key=lambda p: -p.count("/")):
            self._remove(fd, p)
            done.append(p)
        on_disk: dict[int, str] = {}  # inode -> a path where the disk holds it now (hard links)
        for p in sorted((p for p, s in states.items() if s is not None), key=lambda p: p.count("/")):
            if not self._link(fd, p, states[p], on_disk, set(states)):
                self._put(fd, p, states[p])
            done.append(p)

    def _detach(self, paths) -> None:
        """Read into memory every lazy node whose content lies at or below a disk path about to change.

        Only renames (and links) make a node's base path differ from its own
        path, so a path whose node still stands on its own base path is safe:
        the sync writes there exactly what that node shows.  The scan of the
        tree runs only when some path to be replaced on disk is not such a
        path.  Listing a directory creates more lazy nodes, hence the loop.
        """
        tree = self.session.tree
        replaced = set()
        for p in paths:
            node = tree.try_resolve(p)
            if (node is None or node.base_rel != p) and _lstat(tree.disk_fd, p) is not None:
                replaced.add(p)
        if not replaced:
            return

        def at_risk(rel: str) -> bool:
            while rel:
                if rel in replaced:
                    return True
                rel = rel.rpartition("/")[0]
            return False

        while True:
            pending = [n for n in list(tree.nodes.values())
                       if not n.disk and n.base_rel and at_risk(n.base_rel)
                       and ((n.is_dir and n.children is None) or (n.is_reg and n.data is None)
                            or (n.is_lnk and n.target is None))
                       and tree.path_of(n) != n.base_rel]
            if not pending:
                return
            for node in pending:
                if node.is_dir:
                    tree.entries(node)
                elif node.is_reg:
                    tree.load(node)
                else:
                    tree.readlink(node)

    def _rebase(self, path: str) -> None:
        """The disk at `path` now holds what the node there holds: make it the node's base.

        Then a buffer dropped later (to save memory) is read back from where
        its content now lies, not from a base path a rename left behind.
        """
        node = self.session.tree.try_resolve(path)
        if node is None or node.disk:
            return
        if node.is_reg and node.data is not None:
            node.base_rel, node.base_size = path, len(node.data)
        elif node.is_lnk and node.target is not None:
            node.base_rel = path

    def _remove(self, fd: int, path: str) -> None:
        parent, _, name = path.rpartition("/")
        try:
            pfd = _open_dir(fd, parent, create=False)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, f"cannot remove {path} on disk: {exc.strerror}") from None
        if pfd is None:
            return  # a parent is missing or not a directory (a symlink): nothing of the tree lies there
        try:
            st = _lstat(pfd, name)
            if st is None:
                return
            if stat.S_ISDIR(st.st_mode):
                _rmtree_at(pfd, name)
            else:
                os.unlink(name, dir_fd=pfd)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, f"cannot remove {path} on disk: {exc.strerror}") from None
        finally:
            os.close(pfd)

    def _put(self, fd: int, path: str, state: State) -> None:
        session = self.session
        kind = state["kind"]
        if path == "":
            os.fchmod(fd, state["mode"] & 0o7777)  # the root's own mode
            return
        parent, _, name = path.rpartition("/")
        pfd = None
        try:
            pfd = _open_dir(fd, parent, create=True)
            existing = _lstat(pfd, name)
            if kind == "dir":
                if existing is not None and not stat.S_ISDIR(existing.st_mode):
                    os.unlink(name, dir_fd=pfd)
                    existing = None
                if existing is None:
                    os.mkdir(name, state["mode"] & 0o7777, dir_fd=pfd)
                # (No fchmod on an O_PATH descriptor; `name` was just checked or made a directory.)
                os.chmod(name, state["mode"] & 0o7777, dir_fd=pfd)
                return
            if existing is not None and stat.S_ISDIR(existing.st_mode):
                _rmtree_at(pfd, name)
            tmp = sync_tmp_name(name)
            _unlink_quiet(pfd, tmp)
            if kind == "file":
                data = session.state_content(path, state)
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                              dir_fd=pfd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(out, view):]
                    self._carry_metadata(out, path)
                    os.fchmod(out, state["mode"] & 0o7777)  # (after fchown, which clears setid bits)
                    os.fsync(out)
                finally:
                    os.close(out)
            elif kind == "symlink":
                os.symlink(session.state_content(path, state), os.fsencode(tmp), dir_fd=pfd)
            else:
                os.mknod(tmp, state["mode"], state.get("rdev", 0), dir_fd=pfd)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            self._rebase(path)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, f"cannot write {path} to disk: {exc.strerror}") from None
        finally:
            if pfd is not None:
                os.close(pfd)


    def _link(self, fd: int, path: str, state: State, on_disk: dict[int, str], syncing: set[str]) -> bool:
        """Write `path` as a hard link when its node has another name the disk already holds
        as the tree does (written earlier in this sync, or clean); False when there is none."""
        node = self.session.tree.try_resolve(path)
        if node is None or node.disk or not node.is_reg or node.nlink < 2:
            return False
        other = on_disk.get(node.ino)
        if other is None:
            clean = [q for q in self.session.tree.paths_of(node)
                     if q != path and q not in syncing and q not in self.session.overlay
                     and not passthrough_at(self.session, q)]
            other = clean[0] if clean else None
        on_disk.setdefault(node.ino, path)
        if other is None:
            return False
        oparent, _, oname = other.rpartition("/")
        ofd = _open_dir(fd, oparent, create=False)  # (no symlink followed on the way)
        if ofd is None:
            return False
        parent, _, name = path.rpartition("/")
        pfd = None
        tmp = sync_tmp_name(name)
        try:
            pfd = _open_dir(fd, parent, create=True)
            _unlink_quiet(pfd, tmp)
            os.link(oname, tmp, src_dir_fd=ofd, dst_dir_fd=pfd, follow_symlinks=False)
            os.rename(tmp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except OSError as exc:
            if pfd is not None:
                _unlink_quiet(pfd, tmp)
            log.info("sync writes %s as a copy (cannot link it to %s: %s)", path, other, exc.strerror)
            return False
        finally:
            os.close(ofd)
            if pfd is not None:
                os.close(pfd)
        self._rebase(path)
        return True

    def _carry_metadata(self, out: int, path: str) -> None:
        """Give the file written to disk (descriptor `out`) the times of its node -- `touch -d`
        and a rename keep them, as on a local file system -- and, when the daemon may (root),
        its owner and group."""
        node = self.session.tree.try_resolve(path)
        if node is None or node.disk:
            return
        if os.geteuid() == 0:
            os.fchown(out, node.uid, node.gid)
        os.utime(out, ns=(node.atime_ns, node.mtime_ns))


SYNC_TMP_MARK = ".vfs-sync-"  # in the names of the temporary files a sync renames into place


def sync_tmp_name(name: str) -> str:
    """The temporary name a sync writes `name` under before renaming it into place."""
    return f".{name[:200]}{SYNC_TMP_MARK}{os.getpid()}"


def passthrough_at(session: "Session", path: str) -> bool:
    """True when `path` (or one of its parents) is a passthrough path: it lives on disk, not in memory.

    Such paths are not journaled, not versioned and never synced; batches and
    rollbacks refuse them (they would write the disk behind the journal's back).
    """
    tree = session.tree
    node = tree.nodes[ROOT]
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        if node.disk:
            return True
        child = None
        if node.is_dir:
            try:
                child = tree.lookup(node, part)
            except FsError:
                child = None
        if child is None:
            # Not in the tree (yet): the rules decide where new entries would go; every
            # missing parent would be a directory, the last one either.
            if not tree.passthrough or not node.is_dir:
                return False
            for j in range(i, len(parts)):
                done = "/".join(parts[:j + 1])
                if tree.passthrough(done, True) or (j == len(parts) - 1 and tree.passthrough(done, False)):
                    return True
            return False
        node = child
    return node.disk


# O_PATH: walking needs search permission only; O_DIRECTORY|O_NOFOLLOW: a symlink answers ENOTDIR.
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(fd: int, rel: str, *, create: bool) -> int | None:
    """A descriptor of directory `rel` below `fd`, reached without following any symlink.

    With `create`, missing directories are made (0755) and anything else in
    the way (a file, a symlink) is replaced by a directory; without, None
    when some component is missing or not a directory.  The caller closes it.
    """
    cur = os.dup(fd)
    try:
        for part in [p for p in rel.split("/") if p]:
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=cur)
            except FileNotFoundError:
                if not create:
                    os.close(cur)
                    return None
                os.mkdir(part, 0o755, dir_fd=cur)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=cur)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                if not create:
                    os.close(cur)
                    return None
                os.unlink(part, dir_fd=cur)
                os.mkdir(part, 0o755, dir_fd=cur)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=cur)
            os.close(cur)
            cur = nxt
    except BaseException:
        os.close(cur)
        raise
    return cur


def _lstat(fd: int, path: str):
    """lstat of `path` below `fd` without following symlinks in any component (None: not there)."""
    parent, _, name = path.rpartition("/")
    if not parent:
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
    pfd = _open_dir(fd, parent, create=False)
    if pfd is None:
        return None
    try:
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    finally:
        os.close(pfd)


def _unlink_quiet(fd: int, path: str) -> None:
    try:
        os.unlink(path, dir_fd=fd)
    except FileNotFoundError:
        pass


def _rmtree_at(fd: int, name: str) -> None:
    """Remove directory `name` (one component) of directory `fd` and everything below it.

    shutil's descriptor-based walk never follows a symlink out of the tree.
    """
    shutil.rmtree(name, dir_fd=fd)
