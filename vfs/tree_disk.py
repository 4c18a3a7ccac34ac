"""Passthrough nodes: the part of the `Tree` whose entries live on disk.

`.git/` and ignored paths are served straight from the backing directory
through `Tree.disk_fd` (a descriptor of the source root opened before the
mount, so a mount over the source still reaches it).  Every path is opened
relative to that descriptor with no symlink followed in its parent
components.  The daemon runs as root, so owner, mode and setid clearing of
what it creates or changes are set explicitly for the caller.

`DiskNodes` is a mixin of `Tree` (it uses the tree's `nodes`, `recorder`,
`disk_fd`, `passthrough` and node bookkeeping); it holds no state of its own.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Callable

from .caller import Caller, join, privs_to_kill
from .errors import FsError
from .node import DirEntries, Node

log = logging.getLogger(__name__)

RENAME_NOREPLACE_FLAG = 1


class DiskNodes:
    """The disk side of `Tree` (see module docstring)."""

    def _disk_child(self, parent: Node, name: str, rel: str,
                    st: os.stat_result | None = None) -> Node | None:
        """A node for the backing entry `rel`, to be attached by the caller.

        Names of one hard-linked backing file share one node (and inode number),
        as they share one inode on disk.
        """
        if st is None:
            try:
                st = os.stat(rel, dir_fd=self.disk_fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                return None
        key = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            known = self.nodes.get(self._disk_inodes.get(key, 0))
            if known is not None and known.disk and known.nlink > 0:
                known.nlink += 1
                return known
        node = self._new_node(st.st_mode, st.st_uid, st.st_gid, mtime_ns=st.st_mtime_ns)
        node.disk = True
        if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
            self._disk_inodes[key] = node.ino
        return node

    def _refresh_disk_dir(self, dirnode: Node) -> DirEntries:
        if dirnode.children is None:
            dirnode.children = DirEntries()
        rel = self.path_of(dirnode)
        try:
            on_disk = set(self._disk_listdir(rel))
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None
        for name in dirnode.children.names():
            if name not in on_disk:
                self._drop_disk_child(dirnode, name)
        for name in sorted(on_disk - set(dirnode.children.names())):
            child = self._disk_child(dirnode, name, join(rel or "", name))
            if child is not None:
                self._attach(dirnode, name, child)
        return dirnode.children

    def refresh_disk_child(self, parent: Node, name: str) -> bool:
        """Make passthrough entry `name` of memory directory `parent` follow the disk after it
        changed there outside the mount: attached when it appeared, dropped when it went,
        replaced when its type changed.  True when the tree changed.  Memory entries, and
        directories whose entries were never loaded, are left alone."""
        if parent.disk or not parent.is_dir or parent.children is None:
            return False
        ino = parent.children.get(name)
        child = self.nodes[ino] if ino is not None else None
        if child is not None and not child.disk:
            return False
        rel = self._disk_path(parent, name)
        try:
            st = os.stat(rel, dir_fd=self.disk_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is not None and child is not None and stat.S_IFMT(st.st_mode) == stat.S_IFMT(child.mode):
            return False
        if st is not None and child is None and not self._is_disk_child(parent, name, stat.S_ISDIR(st.st_mode)):
            return False
        if child is not None:
            self._drop_disk_child(parent, name)
        if st is not None:
            new = self._disk_child(parent, name, rel, st)
            if new is not None:
                self._attach(parent, name, new)
        parent.touch()
        return True

    def _drop_disk_child(self, dirnode: Node, name: str) -> None:
        ino = dirnode.children.get(name)
        if ino is None:
            return
        child = self.nodes[ino]
        self._detach(dirnode, name, child)
        child.nlink = 0 if child.is_dir else child.nlink - 1
        self._maybe_free(child)

    def _disk_listdir(self, rel: str | None) -> list[str]:
        with _opened(rel or ".", os.O_RDONLY | os.O_DIRECTORY, self.disk_fd) as fd:
            return os.listdir(fd)

    def _disk_lookup(self, parent: Node, name: str) -> Node | None:
        """Look one name up on disk (the backing directory may change behind our back)."""
        if not parent.is_dir:
            raise FsError(errno.ENOTDIR, "not a directory")
        if parent.children is None:
            parent.children = DirEntries()
        rel = join(self.path_of(parent) or "", name)
        try:
            st = os.stat(rel, dir_fd=self.disk_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None
        ino = parent.children.get(name)
        if ino is not None:
            node = self.nodes[ino]
            if st is not None and stat.S_IFMT(st.st_mode) == stat.S_IFMT(node.mode):
                return node
            self._drop_disk_child(parent, name)  # gone, or replaced by another kind of entry
        if st is None:
            return None
        child = self._disk_child(parent, name, rel, st)
        self._attach(parent, name, child)
        return child

    def disk_stat(self, node: Node) -> os.stat_result | None:
        """Fresh lstat of a disk node (None when it vanished)."""
        if node.pin is not None:
            return os.fstat(node.pin)
        path = self.path_of(node)
        if path is None:
            return None
        try:
            return os.stat(path or ".", dir_fd=self.disk_fd, follow_symlinks=False)
        except OSError:
            return None

    def _pin(self, node: Node, rel: str) -> None:
        """`rel` is about to lose its last name: keep it reachable through an O_PATH descriptor
        while the kernel still holds it (fstat, fchmod, ftruncate through an open descriptor).

        Directories too: a directory open for reading is an `opendir`, which `opens` does not
        count, so the kernel's lookups decide; the pin goes when the node is freed.
        """
        if node.pin is None and (node.opens > 0 or node.lookups > 0) and (node.is_reg or node.is_dir) \
                and (node.is_dir or node.nlink <= 1):
            node.pin = os.open(rel, os.O_PATH | os.O_NOFOLLOW, dir_fd=self.disk_fd)

    def disk_pread(self, node: Node, offset: int, size: int) -> bytes:
        """read(2) of a passthrough file without a handle (vfs.settler): open, read, close."""
        return self._on_disk_file(node, os.O_RDONLY, lambda f: os.pread(f, size, offset))

    def disk_pwrite(self, node: Node, offset: int, buf: bytes) -> int:
        return self._on_disk_file(node, os.O_WRONLY, lambda f: os.pwrite(f, buf, offset))

    def disk_fsync(self, node: Node) -> None:
        self._on_disk_file(node, os.O_RDONLY, os.fsync)

    def _on_disk_file(self, node: Node, flags: int, fn: Callable[[int], object]):
        rel, fd = self._disk_ref(node)
        try:
            with _opened(rel, flags, fd) as f:
                return fn(f)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None

    def _disk_ref(self, node: Node) -> tuple[str, int | None]:
        """(path, dir_fd) naming a disk node for path-based calls, also once it is unlinked."""
        if node.pin is not None:
            return f"/proc/self/fd/{node.pin}", None
        path = self.path_of(node)
        if path is None:
            raise FsError(errno.ENOENT, "unlinked")
        return path or ".", self.disk_fd

    def _is_disk_child(self, parent: Node, name: str, is_dir: bool) -> bool:
        if parent.disk:
            return True
        if not self.passthrough:
            return False
        return self.passthrough(join(self.path_of(parent) or "", name), is_dir)

    def _disk_path(self, parent: Node, name: str) -> str:
        return join(self.path_of(parent) or "", name)

    def _disk_new(self, parent: Node, name: str, caller: Caller, make: Callable[[str], None],
                  mode: int) -> Node:
        """Create a passthrough entry with `make(rel)`, then give it the caller's owner and the exact
        mode (the daemon's own umask and group must not leak into it)."""
        rel = self._disk_path(parent, name)
        uid, gid, mode = self._owner(parent, caller, mode)
        if not parent.disk:
            self._ensure_disk_dir(parent)
        try:
            make(rel)
            if os.geteuid() == 0:
                os.chown(rel, uid, gid, dir_fd=self.disk_fd, follow_symlinks=False)
            if not stat.S_ISLNK(mode):
                os.chmod(rel, mode & 0o7777, dir_fd=self.disk_fd)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None
        child = self._disk_child(parent, name, rel)
        if child is None:
            raise FsError(errno.EIO, f"{rel} vanished after creation")
        self._attach(parent, name, child)
        parent.touch()
        return child

    def _ensure_disk_dir(self, node: Node) -> None:
        """Make memory directory `node` exist on disk at its path, so that a passthrough
        entry can live in it (`newpkg/__pycache__` of a package created in memory): each
        missing component is made with its node's mode and owner.  Components are checked
        from the top without following symlinks; one that is not a directory on disk (a
        file, or a symlink that could lead out of the tree) refuses with EXDEV."""
        path = self.path_of(node)
        if not path:
            return
        done = ""
        for part in path.split("/"):
            done = join(done, part)
            try:
                st = os.stat(done, dir_fd=self.disk_fd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            except OSError as exc:
                raise FsError(exc.errno or errno.EIO, str(exc)) from None
            if st is not None:
                if not stat.S_ISDIR(st.st_mode):
                    raise FsError(errno.EXDEV, f"{done} is not a directory on disk: no passthrough entry below it")
                continue
            dirnode = self.resolve(done)
            try:
                os.mkdir(done, 0o700, dir_fd=self.disk_fd)
                if os.geteuid() == 0:
                    os.chown(done, dirnode.uid, dirnode.gid, dir_fd=self.disk_fd, follow_symlinks=False)
                os.chmod(done, dirnode.mode & 0o7777, dir_fd=self.disk_fd)
            except FileExistsError:
                pass  # made meanwhile: checked again by the next component's stat
            except OSError as exc:
                raise FsError(exc.errno or errno.EIO, str(exc)) from None
            else:
                self.recorder.disk_changed(done)

    def _move_disk_descendants(self, moved: Node, old_path: str, new_path: str) -> None:
        """After memory directory `moved` went from `old_path` to `new_path`, move the
        passthrough entries below it on disk too (their disk path is their tree path).
        One that cannot move (its new place is taken on disk) is dropped from the tree;
        it stays on disk at its old path.  Directories left empty on disk at old paths the
        tree no longer has are removed (vfs made them for those entries)."""
        emptied: set[str] = set()
        for path, node in list(self.walk(moved, new_path)):
            if not node.is_dir or node.children is None:
                continue
            for name, ino in list(node.children.items()):
                child = self.nodes[ino]
                if not child.disk:
                    continue
                new_rel = join(path, name)
                old_rel = old_path + new_rel[len(new_path):]
                try:
                    self._ensure_disk_dir(node)
                    self._disk_rename(old_rel, new_rel, RENAME_NOREPLACE_FLAG)
                    emptied.add(old_rel.rpartition("/")[0])
                except FsError as exc:
                    log.info("passthrough %s stays on disk (cannot move it to %s: %s)", old_rel, new_rel, exc.reason)
                    self._drop_disk_child(node, name)
        for old_dir in sorted(emptied, key=len, reverse=True):
            while old_dir and self.try_resolve(old_dir) is None:
                try:
                    os.rmdir(old_dir, dir_fd=self.disk_fd)
                except OSError:
                    break
                self.recorder.disk_changed(old_dir)
                old_dir = old_dir.rpartition("/")[0]

    def _disk_remove(self, child: Node, path: str, remove) -> None:
        """Remove a passthrough entry on disk, pinning it first for descriptors still open on it."""
        try:
            self._pin(child, path)
            remove(path, dir_fd=self.disk_fd)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None

    def _disk_rename(self, old: str, new: str, flags: int) -> None:
        try:
            if flags:
                _renameat2(self.disk_fd, old, new, flags)
            else:
                os.rename(old, new, src_dir_fd=self.disk_fd, dst_dir_fd=self.disk_fd)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None

    def _disk_setattr(self, node: Node, caller: Caller, mode, uid, gid, size, atime_ns, mtime_ns) -> None:
        """setattr of a passthrough entry, done by the daemon on the backing file.

        The daemon may keep setuid/setgid where the caller would lose them, so
        truncation and chown clear them here for the caller as `_kill_priv` does.
        """
        rel, fd = self._disk_ref(node)
        follow = node.pin is not None  # /proc/self/fd/N must be followed to reach the file
        try:
            if size is not None:
                with _opened(rel, os.O_WRONLY, fd) as f:
                    os.ftruncate(f, size)
                if caller.uid != 0:
                    st = os.stat(rel, dir_fd=fd, follow_symlinks=follow)
                    current = st.st_mode if mode is None else mode
                    kill = privs_to_kill(current, st.st_gid, caller, chown=False)
                    if kill:
                        mode = current & ~kill
            if mode is not None and not node.is_lnk:
                os.chmod(rel, mode & 0o7777, dir_fd=fd)
            if uid is not None or gid is not None:
                before = os.stat(rel, dir_fd=fd, follow_symlinks=follow)
                kill = privs_to_kill(before.st_mode, before.st_gid, caller, chown=True)
                os.chown(rel, -1 if uid is None else uid, -1 if gid is None else gid, dir_fd=fd,
                         follow_symlinks=follow)
                if kill and not node.is_lnk:
                    after = os.stat(rel, dir_fd=fd, follow_symlinks=follow)
                    if after.st_mode & kill:
                        os.chmod(rel, stat.S_IMODE(after.st_mode) & ~kill, dir_fd=fd)
            if atime_ns is not None or mtime_ns is not None:
                st = os.stat(rel, dir_fd=fd, follow_symlinks=follow)
                os.utime(rel, ns=(st.st_atime_ns if atime_ns is None else atime_ns,
                                  st.st_mtime_ns if mtime_ns is None else mtime_ns),
                         dir_fd=fd, follow_symlinks=follow)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None


class _opened:
    def __init__(self, rel: str, flags: int, dir_fd: int | None) -> None:
        self.fd = os.open(rel, flags, dir_fd=dir_fd)

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def _renameat2(dir_fd: int, old: str, new: str, flags: int) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    res = libc.renameat2(dir_fd, os.fsencode(old), dir_fd, os.fsencode(new), flags)
    if res != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
