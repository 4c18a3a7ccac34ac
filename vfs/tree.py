"""The POSIX tree: inodes over a base, with the semantics of a local file system.

`Tree` answers and applies kernel-level operations (lookup, create, rename,
write at an offset, ...) on `Node`s, loading directories and file contents
from the `Base` lazily.  It knows nothing of journals or FUSE: after each
mutation it tells its `recorder` which paths changed (`Recorder.changed`),
and the recorder (the Session) decides what that means.

Passthrough entries (`.git/`, ignored paths) are disk nodes: every operation on
them goes straight to the backing directory through `disk_fd`, and they are
never reported to the recorder.

Errors are `FsError` with the errno a local file system would give.
Thread safety: none here; the Session serialises every call with its lock.
"""
from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from .base import Base
from .errors import FsError
from .node import DirEntries, Node, now_ns

__all__ = ["Caller", "Tree", "Recorder", "ROOT", "NAME_MAX", "join"]

ROOT = 1
NAME_MAX = 255
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


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


class Recorder(Protocol):
    def changed(self, op: str, paths: list[str], caller: Caller, path2: str | None = None) -> None: ...


class _NullRecorder:
    def changed(self, op: str, paths: list[str], caller: Caller, path2: str | None = None) -> None:
        pass


class Tree:
    """Inode table plus POSIX operations (see module docstring)."""

    def __init__(self, base: Base, *, disk_fd: int | None = None,
                 passthrough: Callable[[str, bool], bool] | None = None) -> None:
        self.base = base
        self.disk_fd = disk_fd
        self.passthrough = passthrough if disk_fd is not None else None
        self.recorder: Recorder = _NullRecorder()
        # Invariant: every node reachable from ROOT, open, or looked up by the kernel is in `nodes`.
        self.nodes: dict[int, Node] = {}
        self._next_ino = ROOT + 1
        root_stat = base.stat("")
        root = Node(ROOT, root_stat.mode if root_stat else (stat.S_IFDIR | 0o755),
                    root_stat.uid if root_stat else os.getuid(), root_stat.gid if root_stat else os.getgid(),
                    mtime_ns=root_stat.mtime_ns if root_stat else None)
        root.base_rel = ""
        root.nlink = 2
        self.nodes[ROOT] = root

    # ------------------------------------------------------------------ inodes
    def node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise FsError(errno.ESTALE, f"inode {ino} is gone") from None

    def _new_node(self, mode: int, uid: int, gid: int, *, mtime_ns: int | None = None) -> Node:
        node = Node(self._next_ino, mode, uid, gid, mtime_ns=mtime_ns)
        self._next_ino += 1
        self.nodes[node.ino] = node
        return node

    def _maybe_free(self, node: Node) -> None:
        if node.nlink <= 0 and node.lookups <= 0 and node.opens <= 0 and node.ino != ROOT:
            self.nodes.pop(node.ino, None)

    def forget(self, ino: int, n: int) -> None:
        node = self.nodes.get(ino)
        if node is None:
            return
        node.lookups -= n
        assert node.lookups >= 0, f"forget below zero for inode {ino}"
        self._maybe_free(node)

    # ------------------------------------------------------------------ paths
    def path_of(self, node: Node) -> str | None:
        """Primary path of `node`, or None for an unlinked node."""
        parts: list[str] = []
        while node.ino != ROOT:
            if node.nlink <= 0 or not node.parent:
                return None
            parts.append(node.name)
            node = self.nodes[node.parent]
        return "/".join(reversed(parts))

    def paths_of(self, node: Node) -> list[str]:
        if not node.links:
            p = self.path_of(node)
            return [p] if p is not None else []
        out = []
        for parent, name in sorted(node.links):
            pp = self.path_of(self.nodes[parent]) if parent in self.nodes else None
            if pp is not None:
                out.append(join(pp, name))
        return out

    def resolve(self, path: str, *, follow_last: bool = False) -> Node:
        """Node at relative `path` (no symlink following inside the tree)."""
        node = self.nodes[ROOT]
        if path in ("", "."):
            return node
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise FsError(errno.EINVAL, f"path leaves the tree: {path}")
            child = self.lookup(node, part)
            if child is None:
                raise FsError(errno.ENOENT, f"no such path: {path}")
            node = child
        return node

    def try_resolve(self, path: str) -> Node | None:
        try:
            return self.resolve(path)
        except FsError:
            return None

    def walk(self, node: Node, path: str) -> Iterator[tuple[str, Node]]:
        """(path, node) for `node` and every descendant, parents first; memory nodes only."""
        if node.disk:
            return
        yield path, node
        if node.is_dir:
            for name, ino in self.entries(node).items():
                child = self.nodes[ino]
                yield from self.walk(child, join(path, name))

    # ------------------------------------------------------------------ lazy base loading
    def _child_from_base(self, parent: Node, name: str, rel: str) -> Node | None:
        st = self.base.stat(rel)
        if st is None:
            return None
        node = self._new_node(st.mode, st.uid, st.gid, mtime_ns=st.mtime_ns)
        node.base_rel = rel
        node.base_size = st.size
        node.rdev = st.rdev
        return node

    def _disk_child(self, parent: Node, name: str, rel: str) -> Node | None:
        try:
            st = os.stat(rel, dir_fd=self.disk_fd, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        node = self._new_node(st.st_mode, st.st_uid, st.st_gid, mtime_ns=st.st_mtime_ns)
        node.disk = True
        return node

    def _attach(self, parent: Node, name: str, node: Node) -> None:
        assert parent.children is not None
        parent.children.set(name, node.ino)
        if node.parent and (node.parent, node.name) != (parent.ino, name):
            node.links.add((node.parent, node.name))
            node.links.add((parent.ino, name))
        elif node.links:
            node.links.add((parent.ino, name))
        node.parent, node.name = parent.ino, name

    def _detach(self, parent: Node, name: str, node: Node) -> None:
        assert parent.children is not None
        parent.children.pop(name)
        if node.links:
            node.links.discard((parent.ino, name))
            if (node.parent, node.name) == (parent.ino, name) and node.links:
                node.parent, node.name = min(node.links)
            if len(node.links) <= 1:
                node.links.clear()

    def entries(self, dirnode: Node) -> DirEntries:
        """The directory's entries, listing the base (or disk) the first time."""
        if not dirnode.is_dir:
            raise FsError(errno.ENOTDIR, "not a directory")
        if dirnode.disk:
            return self._refresh_disk_dir(dirnode)
        if dirnode.children is None:
            dirnode.children = DirEntries()
            if dirnode.base_rel is not None:
                dir_path = self.path_of(dirnode) or ""
                names = sorted(self.base.listdir(dirnode.base_rel))
                for name in names:
                    rel = join(dirnode.base_rel, name)
                    child_path = join(dir_path, name)
                    st = self.base.stat(rel)
                    if st is None:
                        continue
                    if self.passthrough and self.passthrough(child_path, stat.S_ISDIR(st.mode)):
                        child = self._disk_child(dirnode, name, child_path)
                    else:
                        child = self._child_from_base(dirnode, name, rel)
                    if child is not None:
                        self._attach(dirnode, name, child)
                        if child.is_dir:
                            dirnode.nlink += 1
        return dirnode.children

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

    def _drop_disk_child(self, dirnode: Node, name: str) -> None:
        ino = dirnode.children.get(name)
        if ino is None:
            return
        child = self.nodes[ino]
        self._detach(dirnode, name, child)
        child.nlink = 0
        self._maybe_free(child)

    def _disk_listdir(self, rel: str | None) -> list[str]:
        with _opened(rel or ".", os.O_RDONLY | os.O_DIRECTORY, self.disk_fd) as fd:
            return os.listdir(fd)

    def load(self, node: Node) -> bytearray:
        """The content buffer of a memory file, read from the base on first use."""
        if node.data is None:
            node.data = bytearray(self.base.read(node.base_rel)) if node.base_rel is not None else bytearray()
        return node.data

    # ------------------------------------------------------------------ queries
    def lookup(self, parent: Node, name: str) -> Node | None:
        if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, "file name too long")
        if parent.disk:
            children = self.entries(parent)
            ino = children.get(name)
            return self.nodes[ino] if ino is not None else None
        ino = self.entries(parent).get(name)
        return self.nodes[ino] if ino is not None else None

    def disk_stat(self, node: Node) -> os.stat_result | None:
        """Fresh lstat of a disk node (None when it vanished)."""
        try:
            return os.stat(self.path_of(node) or ".", dir_fd=self.disk_fd, follow_symlinks=False)
        except OSError:
            return None

    def readlink(self, node: Node) -> bytes:
        if not node.is_lnk:
            raise FsError(errno.EINVAL, "not a symlink")
        if node.disk:
            return os.fsencode(os.readlink(self.path_of(node), dir_fd=self.disk_fd))
        if node.target is None:
            node.target = self.base.readlink(node.base_rel)
        return node.target

    # ------------------------------------------------------------------ creation
    def _check_new_name(self, parent: Node, name: str) -> None:
        if not parent.is_dir:
            raise FsError(errno.ENOTDIR, "not a directory")
        if parent.nlink <= 0:
            raise FsError(errno.ENOENT, "directory was removed")
        if name in ("", ".", ".."):
            raise FsError(errno.EEXIST if name else errno.ENOENT, "invalid name")
        if "/" in name or "\0" in name:
            raise FsError(errno.EINVAL, "invalid name")
        if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, "file name too long")
        if self.lookup(parent, name) is not None:
            raise FsError(errno.EEXIST, f"exists: {name}")

    def _owner(self, parent: Node, caller: Caller, mode: int) -> tuple[int, int, int]:
        """uid, gid and mode for a new entry: caller owns it; setgid directories pass their group on."""
        gid = caller.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        elif mode & stat.S_ISGID and not stat.S_ISDIR(mode) and not caller.in_group(gid):
            mode &= ~stat.S_ISGID
        return caller.uid, gid, mode

    def _is_disk_child(self, parent: Node, name: str, is_dir: bool) -> bool:
        if parent.disk:
            return True
        if not self.passthrough:
            return False
        return self.passthrough(join(self.path_of(parent) or "", name), is_dir)

    def _disk_path(self, parent: Node, name: str) -> str:
        return join(self.path_of(parent) or "", name)

    def _disk_new(self, parent: Node, name: str, caller: Caller, make: Callable[[str], None]) -> Node:
        rel = self._disk_path(parent, name)
        try:
            make(rel)
            if os.geteuid() == 0:
                os.chown(rel, caller.uid, caller.gid, dir_fd=self.disk_fd, follow_symlinks=False)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None
        child = self._disk_child(parent, name, rel)
        if child is None:
            raise FsError(errno.EIO, f"{rel} vanished after creation")
        self._attach(parent, name, child)
        parent.touch()
        return child

    def create(self, parent: Node, name: str, mode: int, caller: Caller) -> Node:
        """Create a regular file (O_CREAT|O_EXCL semantics: EEXIST if present)."""
        self._check_new_name(parent, name)
        mode = stat.S_IFREG | (mode & 0o7777 & ~caller.umask)
        if self._is_disk_child(parent, name, False):
            def make(rel: str) -> None:
                os.close(os.open(rel, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode & 0o7777, dir_fd=self.disk_fd))
            return self._disk_new(parent, name, caller, make)
        uid, gid, mode = self._owner(parent, caller, mode)
        node = self._new_node(mode, uid, gid)
        node.data = bytearray()
        self._attach(parent, name, node)
        parent.touch()
        self.recorder.changed("create", [join(self.path_of(parent) or "", name)], caller)
        return node

    def mkdir(self, parent: Node, name: str, mode: int, caller: Caller) -> Node:
        self._check_new_name(parent, name)
        mode = stat.S_IFDIR | (mode & 0o7777 & ~caller.umask)
        if self._is_disk_child(parent, name, True):
            node = self._disk_new(parent, name, caller,
                                  lambda rel: os.mkdir(rel, mode & 0o7777, dir_fd=self.disk_fd))
            parent.nlink += 1
            return node
        uid, gid, mode = self._owner(parent, caller, mode)
        node = self._new_node(mode, uid, gid)
        node.children = DirEntries()
        self._attach(parent, name, node)
        parent.nlink += 1
        parent.touch()
        self.recorder.changed("mkdir", [join(self.path_of(parent) or "", name)], caller)
        return node

    def mknod(self, parent: Node, name: str, mode: int, rdev: int, caller: Caller) -> Node:
        self._check_new_name(parent, name)
        ftype = stat.S_IFMT(mode) or stat.S_IFREG
        mode = ftype | (mode & 0o7777 & ~caller.umask)
        if stat.S_ISREG(mode):
            node = self.create(parent, name, mode, Caller(caller.uid, caller.gid, caller.pid, 0, caller.groups))
            return node
        if self._is_disk_child(parent, name, False):
            return self._disk_new(parent, name, caller,
                                  lambda rel: os.mknod(rel, mode, rdev, dir_fd=self.disk_fd))
        uid, gid, mode = self._owner(parent, caller, mode)
        node = self._new_node(mode, uid, gid)
        node.rdev = rdev
        self._attach(parent, name, node)
        parent.touch()
        self.recorder.changed("mknod", [join(self.path_of(parent) or "", name)], caller)
        return node

    def symlink(self, parent: Node, name: str, target: bytes, caller: Caller) -> Node:
        self._check_new_name(parent, name)
        if self._is_disk_child(parent, name, False):
            return self._disk_new(parent, name, caller,
                                  lambda rel: os.symlink(target, os.fsencode(rel), dir_fd=self.disk_fd))
        node = self._new_node(stat.S_IFLNK | 0o777, caller.uid, caller.gid)
        node.target = bytes(target)
        self._attach(parent, name, node)
        parent.touch()
        self.recorder.changed("symlink", [join(self.path_of(parent) or "", name)], caller)
        return node

    def link(self, node: Node, parent: Node, name: str, caller: Caller) -> Node:
        if node.is_dir:
            raise FsError(errno.EPERM, "hard link to a directory")
        self._check_new_name(parent, name)
        if node.disk or self._is_disk_child(parent, name, False):
            if not (node.disk and self._is_disk_child(parent, name, False)):
                raise FsError(errno.EXDEV, "hard link across the passthrough boundary")
            src = self.path_of(node)
            rel = self._disk_path(parent, name)
            try:
                os.link(src, rel, src_dir_fd=self.disk_fd, dst_dir_fd=self.disk_fd, follow_symlinks=False)
            except OSError as exc:
                raise FsError(exc.errno or errno.EIO, str(exc)) from None
            self._attach(parent, name, node)
            return node
        if node.is_reg:
            self.load(node)
        elif node.is_lnk:
            self.readlink(node)
        self._attach(parent, name, node)
        node.nlink += 1
        node.touch(content=False)
        parent.touch()
        self.recorder.changed("link", [join(self.path_of(parent) or "", name)], caller)
        return node

    # ------------------------------------------------------------------ removal
    def unlink(self, parent: Node, name: str, caller: Caller) -> None:
        child = self.lookup(parent, name)
        if child is None:
            raise FsError(errno.ENOENT, f"no such file: {name}")
        if child.is_dir:
            raise FsError(errno.EISDIR, f"is a directory: {name}")
        path = join(self.path_of(parent) or "", name)
        if child.disk:
            try:
                os.unlink(path, dir_fd=self.disk_fd)
            except OSError as exc:
                raise FsError(exc.errno or errno.EIO, str(exc)) from None
        elif child.is_reg and child.opens > 0:
            self.load(child)  # an open handle keeps reading the content after the name is gone
        self._detach(parent, name, child)
        child.nlink -= 1
        child.touch(content=False)
        parent.touch()
        self._maybe_free(child)
        if not child.disk:
            self.recorder.changed("unlink", [path], caller)

    def rmdir(self, parent: Node, name: str, caller: Caller) -> None:
        if name == ".":
            raise FsError(errno.EINVAL, "cannot remove '.'")
        if name == "..":
            raise FsError(errno.ENOTEMPTY, "cannot remove '..'")
        child = self.lookup(parent, name)
        if child is None:
            raise FsError(errno.ENOENT, f"no such directory: {name}")
        if not child.is_dir:
            raise FsError(errno.ENOTDIR, f"not a directory: {name}")
        path = join(self.path_of(parent) or "", name)
        if child.disk:
            try:
                os.rmdir(path, dir_fd=self.disk_fd)
            except OSError as exc:
                raise FsError(exc.errno or errno.EIO, str(exc)) from None
        elif len(self.entries(child)):
            raise FsError(errno.ENOTEMPTY, f"directory not empty: {name}")
        self._detach(parent, name, child)
        child.nlink = 0
        parent.nlink -= 1
        child.touch(content=False)
        parent.touch()
        self._maybe_free(child)
        if not child.disk:
            self.recorder.changed("rmdir", [path], caller)

    # ------------------------------------------------------------------ rename
    def _is_ancestor(self, maybe_ancestor: Node, node: Node) -> bool:
        while node.ino != ROOT:
            if node.ino == maybe_ancestor.ino:
                return True
            node = self.nodes[node.parent]
        return maybe_ancestor.ino == ROOT

    def rename(self, old_parent: Node, old_name: str, new_parent: Node, new_name: str,
               flags: int, caller: Caller) -> None:
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (RENAME_NOREPLACE | RENAME_EXCHANGE):
            raise FsError(errno.EINVAL, f"unsupported rename flags {flags:#x}")
        src = self.lookup(old_parent, old_name)
        if src is None:
            raise FsError(errno.ENOENT, f"no such file: {old_name}")
        if not new_parent.is_dir:
            raise FsError(errno.ENOTDIR, "not a directory")
        if len(new_name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, "file name too long")
        if new_name in ("", ".", "..") or old_name in (".", ".."):
            raise FsError(errno.EBUSY if new_name in (".", "..") else errno.EINVAL, "invalid name")
        dst = self.lookup(new_parent, new_name)
        if src.is_dir and self._is_ancestor(src, new_parent):
            raise FsError(errno.EINVAL, "cannot move a directory into itself")
        if flags & RENAME_EXCHANGE and dst is not None and dst.is_dir and self._is_ancestor(dst, old_parent):
            raise FsError(errno.EINVAL, "cannot move a directory into itself")
        if flags & RENAME_NOREPLACE and dst is not None:
            raise FsError(errno.EEXIST, f"exists: {new_name}")
        if flags & RENAME_EXCHANGE and dst is None:
            raise FsError(errno.ENOENT, f"no such file: {new_name}")
        src_disk = src.disk
        dst_disk = self._is_disk_child(new_parent, new_name, src.is_dir)
        if src_disk != dst_disk or (dst is not None and dst.disk != src_disk):
            raise FsError(errno.EXDEV, "rename across the passthrough boundary")
        old_path = join(self.path_of(old_parent) or "", old_name)
        new_path = join(self.path_of(new_parent) or "", new_name)
        if src_disk:
            self._disk_rename(old_path, new_path, flags)
        if dst is not None and not (flags & RENAME_EXCHANGE):
            if dst is src:
                return  # both names are links to one inode: POSIX says do nothing
            if src.is_dir and not dst.is_dir:
                raise FsError(errno.ENOTDIR, f"not a directory: {new_name}")
            if not src.is_dir and dst.is_dir:
                raise FsError(errno.EISDIR, f"is a directory: {new_name}")
            if dst.is_dir and not dst.disk and len(self.entries(dst)):
                raise FsError(errno.ENOTEMPTY, f"directory not empty: {new_name}")
        touched = [p for p, _ in self.walk(src, old_path)]
        if dst is not None:
            touched += [p for p, _ in self.walk(dst, new_path)]
        if flags & RENAME_EXCHANGE:
            self._detach(old_parent, old_name, src)
            self._detach(new_parent, new_name, dst)
            self._attach(new_parent, new_name, src)
            self._attach(old_parent, old_name, dst)
            if src.is_dir != dst.is_dir:
                delta = 1 if src.is_dir else -1
                new_parent.nlink += delta
                old_parent.nlink -= delta
            dst.touch(content=False)
        else:
            if dst is not None:
                self._detach(new_parent, new_name, dst)
                dst.nlink -= 2 if dst.is_dir else 1
                if dst.is_dir:
                    dst.nlink = 0
                    new_parent.nlink -= 1
                if dst.is_reg and dst.opens > 0:
                    self.load(dst)
                dst.touch(content=False)
                self._maybe_free(dst)
            self._detach(old_parent, old_name, src)
            self._attach(new_parent, new_name, src)
            if src.is_dir and old_parent is not new_parent:
                old_parent.nlink -= 1
                new_parent.nlink += 1
        src.touch(content=False)
        old_parent.touch()
        new_parent.touch()
        if not src_disk:
            touched += [p for p, _ in self.walk(src, new_path)]
            if flags & RENAME_EXCHANGE:
                touched += [p for p, _ in self.walk(dst, old_path)]
            self.recorder.changed("rename", sorted(set(touched)), caller, path2=new_path)

    def _disk_rename(self, old: str, new: str, flags: int) -> None:
        try:
            if flags:
                _renameat2(self.disk_fd, old, new, flags)
            else:
                os.rename(old, new, src_dir_fd=self.disk_fd, dst_dir_fd=self.disk_fd)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None

    # ------------------------------------------------------------------ content and metadata
    def write(self, node: Node, offset: int, buf: bytes) -> int:
        """Write at `offset` (a hole up to it reads as zeros); marks the node unsaved."""
        data = self.load(node)
        end = offset + len(buf)
        if offset > len(data):
            data.extend(b"\0" * (offset - len(data)))
        data[offset:end] = buf
        node.unsaved = True
        node.touch()
        return len(buf)

    def read(self, node: Node, offset: int, size: int) -> bytes:
        data = self.load(node)
        return bytes(data[offset:offset + size])

    def truncate(self, node: Node, size: int) -> None:
        if node.is_dir:
            raise FsError(errno.EISDIR, "is a directory")
        if not node.is_reg:
            raise FsError(errno.EINVAL, "not a regular file")
        if size < 0:
            raise FsError(errno.EINVAL, "negative size")
        data = self.load(node) if size else None
        if data is None:
            node.data = bytearray()
        elif size < len(data):
            del data[size:]
        else:
            data.extend(b"\0" * (size - len(data)))
        node.unsaved = True
        node.touch()

    def setattr(self, node: Node, caller: Caller, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> None:
        """chmod/chown/truncate/utimens.  Permission checks are the kernel's (default_permissions)."""
        if node.disk:
            self._disk_setattr(node, mode, uid, gid, size, atime_ns, mtime_ns)
            return
        meta_changed = False
        if size is not None:
            self.truncate(node, size)
            if caller.uid != 0:
                self._kill_priv(node)
        if mode is not None:
            new_mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            if caller.uid != 0 and not caller.in_group(node.gid) and not stat.S_ISDIR(node.mode):
                new_mode &= ~stat.S_ISGID
            meta_changed = meta_changed or new_mode != node.mode
            node.mode = new_mode
        if uid is not None or gid is not None:
            if (uid is not None and uid != node.uid) or (gid is not None and gid != node.gid) or caller.uid != 0:
                if not stat.S_ISDIR(node.mode) and (uid is not None or gid is not None):
                    self._kill_priv(node, chown=True)
            node.uid = node.uid if uid is None else uid
            node.gid = node.gid if gid is None else gid
        if atime_ns is not None:
            node.atime_ns = atime_ns
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        node.ctime_ns = ctime_ns if ctime_ns is not None else now_ns()
        if meta_changed:
            self.recorder.changed("chmod", self.paths_of(node), caller)

    def _kill_priv(self, node: Node, chown: bool = False) -> None:
        """POSIX: writes, truncation and chown clear setuid, and setgid when group-executable."""
        kill = stat.S_ISUID
        if node.mode & stat.S_IXGRP:
            kill |= stat.S_ISGID
        if node.mode & kill:
            node.mode &= ~kill

    def _disk_setattr(self, node: Node, mode, uid, gid, size, atime_ns, mtime_ns) -> None:
        rel = self.path_of(node) or "."
        fd = self.disk_fd
        try:
            if size is not None:
                with _opened(rel, os.O_WRONLY, fd) as f:
                    os.ftruncate(f, size)
            if mode is not None and not node.is_lnk:
                os.chmod(rel, mode & 0o7777, dir_fd=fd)
            if uid is not None or gid is not None:
                os.chown(rel, -1 if uid is None else uid, -1 if gid is None else gid, dir_fd=fd,
                         follow_symlinks=False)
            if atime_ns is not None or mtime_ns is not None:
                st = os.stat(rel, dir_fd=fd, follow_symlinks=False)
                os.utime(rel, ns=(st.st_atime_ns if atime_ns is None else atime_ns,
                                  st.st_mtime_ns if mtime_ns is None else mtime_ns),
                         dir_fd=fd, follow_symlinks=False)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None

    def commit(self, node: Node, caller: Caller) -> bool:
        """A close/fsync point: report unsaved content as one write. True if anything was recorded."""
        if not node.unsaved:
            return False
        node.unsaved = False
        paths = self.paths_of(node)
        if paths:
            self.recorder.changed("write", paths, caller)
        return bool(paths)


class _opened:
    def __init__(self, rel: str, flags: int, dir_fd: int) -> None:
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
