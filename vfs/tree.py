"""The POSIX tree: inodes over a base, with the semantics of a local file system.

`Tree` answers and applies kernel-level operations (lookup, create, rename,
write at an offset, ...) on `Node`s, loading directories and file contents
from the `Base` lazily.  It knows nothing of journals or FUSE: after each
mutation it tells its `recorder` which paths changed (`Recorder.changed`),
and the recorder (the Session) decides what that means.

"Local file system" means what ext4 on Linux shows, checked against one by
tests/vfs/test_posix.py: new entries belong to the caller (umask applied,
setgid directories pass their group on); setuid/setgid are cleared on write,
truncation and chown as Linux clears them; ctime moves with every change,
mtime with every content change, atime as under `relatime`; a directory is
4 KiB and its link count is 2 + its subdirectories.  Permission checks are
the kernel's (`default_permissions`), not ours.

Passthrough entries (`.git/`, ignored paths) are disk nodes: every operation on
them goes straight to the backing directory through `disk_fd`, and they are
never reported to the recorder.  The daemon acts on them as root, so ownership,
modes and setuid clearing are set explicitly for the caller.

Errors are `FsError` with the errno a local file system would give.
Thread safety: none here; the Session serialises every call with its lock.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from collections import OrderedDict
from typing import Callable, Iterator, Protocol

from .base import Base
from .caller import Caller, join, privs_to_kill
from .errors import FsError
from .node import DirEntries, Node, now_ns
from .tree_disk import DiskNodes

__all__ = ["Caller", "Tree", "Recorder", "ROOT", "NAME_MAX", "join"]

log = logging.getLogger(__name__)

ROOT = 1
NAME_MAX = 255
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
_DAY_NS = 24 * 3600 * 10**9


class Recorder(Protocol):
    def changed(self, op: str, paths: list[str], caller: Caller, path2: str | None = None) -> None: ...

    def disk_changed(self, path: str) -> None:
        """The tree itself made or removed the directory `path` on disk (for passthrough
        entries below a memory directory): the base changed there."""


class _NullRecorder:
    def changed(self, op: str, paths: list[str], caller: Caller, path2: str | None = None) -> None:
        pass

    def disk_changed(self, path: str) -> None:
        pass


class Tree(DiskNodes):
    """Inode table plus POSIX operations (see module docstring); the passthrough
    side (nodes that live on disk) is `DiskNodes`."""

    def __init__(self, base: Base, *, disk_fd: int | None = None,
                 passthrough: Callable[[str, bool], bool] | None = None) -> None:
        self.base = base
        self.disk_fd = disk_fd
        self.passthrough = passthrough if disk_fd is not None else None
        self.recorder: Recorder = _NullRecorder()
        # Invariant: every node reachable from ROOT, open, or looked up by the kernel is in `nodes`.
        self.nodes: dict[int, Node] = {}
        # Invariant: clean[ino] == len(nodes[ino].data) for buffers still equal to their base
        # content, least recently used first; clean_bytes == sum(clean.values()).
        self.clean: OrderedDict[int, int] = OrderedDict()
        self.clean_bytes = 0
        self.max_clean_bytes: int | None = None  # None: clean buffers are never dropped
        self.max_file_bytes: int | None = None  # None: no limit (see _check_size)
        self.evictions = 0
        self._next_ino = ROOT + 1
        # (st_dev, st_ino) of hard-linked backing files -> their node (entries may be stale: check).
        self._disk_inodes: dict[tuple[int, int], int] = {}
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
            self.dirtied(node)
        self._maybe_free_node(node)

    def _maybe_free_node(self, node: Node) -> None:
        if node.nlink <= 0 and node.lookups <= 0 and node.opens <= 0 and node.ino != ROOT:
            self.nodes.pop(node.ino, None)
            if node.pin is not None:
                os.close(node.pin)
                node.pin = None

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
        """(path, node) for `node` and every descendant, parents first; memory nodes only.

        Iterative: a tree may be deeper than Python's recursion limit.
        """
        stack = [(path, node)]
        while stack:
            path, node = stack.pop()
            if node.disk:
                continue
            yield path, node
            if node.is_dir:
                items = self.entries(node).items()
                stack.extend((join(path, name), self.nodes[ino]) for name, ino in reversed(items))

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
        elif (node.parent, node.name) == (parent.ino, name):
            # Its only name is gone.  Kept, the old name would look like a second link to the
            # `_attach` of a rename: a stale entry in `links` that could later become the
            # primary name (and a passthrough node would then read another file).
            node.parent, node.name = 0, ""

    def entries(self, dirnode: Node) -> DirEntries:
        """The directory's entries, listing the base (or disk) the first time."""
        if not dirnode.is_dir:
            raise FsError(errno.ENOTDIR, "not a directory")
        if dirnode.disk:
            return self._refresh_disk_dir(dirnode)
        if dirnode.children is None:
            children = DirEntries()
            if dirnode.base_rel is not None:
                # Listed in full before it is installed: a failing base leaves it unlisted, not empty.
                dir_path = self.path_of(dirnode) or ""
                names = sorted(self.base.listdir(dirnode.base_rel))
                found: list[tuple[str, Node]] = []
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
                        found.append((name, child))
                dirnode.children = children
                for name, child in found:
                    self._attach(dirnode, name, child)
                    if child.is_dir:
                        dirnode.nlink += 1
            dirnode.children = children
        return dirnode.children

    def load(self, node: Node) -> bytearray:
        """The content buffer of a memory file, read from the base on first use.

        A buffer read from the base and not changed since is *clean*: it joins
        the LRU of clean buffers, which `max_clean_bytes` bounds by dropping
        the least recently used ones (they are read again when needed).
        """
        if node.data is None:
            if node.base_rel is None:
                node.data = bytearray()
            else:
                node.data = bytearray(self.base.read(node.base_rel))
                self._note_clean(node)
        elif node.ino in self.clean:
            self.clean.move_to_end(node.ino)
        return node.data

    def _note_clean(self, node: Node) -> None:
        size = len(node.data)
        self.clean[node.ino] = size
        self.clean_bytes += size
        limit = self.max_clean_bytes
        while limit is not None and self.clean_bytes > limit and len(self.clean) > 1:
            ino, size = self.clean.popitem(last=False)
            self.clean_bytes -= size
            victim = self.nodes.get(ino)
            if victim is not None and victim.data is not None:
                victim.data = None
                self.evictions += 1

    def dirtied(self, node: Node) -> None:
        """`node`'s buffer is about to differ from the base: it may no longer be evicted.

        Every change of a buffer's bytes must call this first.
        """
        size = self.clean.pop(node.ino, None)
        if size is not None:
            self.clean_bytes -= size

    # ------------------------------------------------------------------ queries
    def settle(self, node: Node) -> Node:
        """Load what `node`'s attributes depend on, so they are exact from the first getattr.

        A directory's link count is 2 + its subdirectories, so a directory not
        listed yet is listed now (the kernel caches attributes: a count that
        grew later would not be seen).
        """
        if node.is_dir and not node.disk and node.children is None:
            try:
                self.entries(node)
            except OSError as exc:  # the base lost it: the attributes are still worth answering
                log.warning("cannot list %s for its link count: %s", self.path_of(node), exc)
        return node

    def lookup(self, parent: Node, name: str) -> Node | None:
        """The child `name` of directory `parent`, or None; ENAMETOOLONG for names over NAME_MAX bytes."""
        children = parent.children
        if children is not None and not parent.disk:
            ino = children.get(name)  # hot path: every path the session resolves comes here
            if ino is not None:
                return self.nodes[ino]
        if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
            raise FsError(errno.ENAMETOOLONG, "file name too long")
        if parent.disk:
            return self._disk_lookup(parent, name)
        ino = self.entries(parent).get(name)
        return self.nodes[ino] if ino is not None else None

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
        parent_mode, parent_gid = parent.mode, parent.gid
        if parent.disk:
            st = self.disk_stat(parent)
            if st is not None:
                parent_mode, parent_gid = st.st_mode, st.st_gid
        if parent_mode & stat.S_ISGID:
            gid = parent_gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        elif mode & stat.S_ISGID and not stat.S_ISDIR(mode) and not caller.in_group(gid):
            mode &= ~stat.S_ISGID
        return caller.uid, gid, mode

    def create(self, parent: Node, name: str, mode: int, caller: Caller) -> Node:
        """Create a regular file (O_CREAT|O_EXCL semantics: EEXIST if present)."""
        self._check_new_name(parent, name)
        mode = stat.S_IFREG | (mode & 0o7777 & ~caller.umask)
        if self._is_disk_child(parent, name, False):
            def make(rel: str) -> None:
                os.close(os.open(rel, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode & 0o7777, dir_fd=self.disk_fd))
            return self._disk_new(parent, name, caller, make, mode)
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
                                  lambda rel: os.mkdir(rel, mode & 0o7777, dir_fd=self.disk_fd), mode)
            self._subdirs(parent, +1)
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
                                  lambda rel: os.mknod(rel, mode, rdev, dir_fd=self.disk_fd), mode)
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
                                  lambda rel: os.symlink(target, os.fsencode(rel), dir_fd=self.disk_fd),
                                  stat.S_IFLNK | 0o777)
        uid, gid, mode = self._owner(parent, caller, stat.S_IFLNK | 0o777)
        node = self._new_node(mode, uid, gid)
        node.target = bytes(target)
        self._attach(parent, name, node)
        parent.touch()
        self.recorder.changed("symlink", [join(self.path_of(parent) or "", name)], caller)
        return node

    def link(self, node: Node, parent: Node, name: str, caller: Caller) -> Node:
        if node.is_dir:
            raise FsError(errno.EPERM, "hard link to a directory")
        if node.nlink <= 0:
            raise FsError(errno.ENOENT, "the file was removed")  # as linkat(2) of an unlinked file
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
            node.nlink += 1
            st = self.disk_stat(node)
            if st is not None:
                self._disk_inodes[(st.st_dev, st.st_ino)] = node.ino
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
            self._disk_remove(child, path, os.unlink)
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
            self._disk_remove(child, path, os.rmdir)
        elif len(self.entries(child)):
            raise FsError(errno.ENOTEMPTY, f"directory not empty: {name}")
        self._detach(parent, name, child)
        child.nlink = 0
        child.dir_size = 0
        self._subdirs(parent, -1)
        child.touch(content=False)
        parent.touch()
        self._maybe_free(child)
        if not child.disk:
            self.recorder.changed("rmdir", [path], caller)

    # ------------------------------------------------------------------ rename
    @staticmethod
    def _subdirs(parent: Node, delta: int) -> None:
        """A subdirectory came (+1) or went (-1): a memory directory's link count is 2 + its
        subdirectories.  A disk directory's count comes from the disk (its node starts at 2
        whatever it holds), so there `nlink` only says "linked" and must not move: counting
        moves out of it would bring a live directory to 0, i.e. "removed"."""
        if not parent.disk:
            parent.nlink += delta

    def _is_ancestor(self, maybe_ancestor: Node, node: Node) -> bool:
        while node.ino != ROOT:
            if node.ino == maybe_ancestor.ino:
                return True
            if node.parent not in self.nodes:
                return False  # a removed directory: no longer below anything
            node = self.nodes[node.parent]
        return maybe_ancestor.ino == ROOT

    def rename(self, old_parent: Node, old_name: str, new_parent: Node, new_name: str,
               flags: int, caller: Caller) -> None:
        """rename(2)/renameat2(2): NOREPLACE, EXCHANGE and WHITEOUT (as ext4 and tmpfs have them)."""
        known = RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT
        if flags & ~known or (flags & RENAME_EXCHANGE and flags & (RENAME_NOREPLACE | RENAME_WHITEOUT)):
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
        if dst is src:
            return  # two names of one inode: POSIX says do nothing (also for an exchange)
        src_disk = src.disk
        dst_disk = self._is_disk_child(new_parent, new_name, src.is_dir)
        if src_disk != dst_disk or (dst is not None and dst.disk != src_disk):
            raise FsError(errno.EXDEV, "rename across the passthrough boundary")
        old_path = join(self.path_of(old_parent) or "", old_name)
        new_path = join(self.path_of(new_parent) or "", new_name)
        if src_disk:
            if dst is not None and not flags & RENAME_EXCHANGE:
                self._pin(dst, new_path)
            if not new_parent.disk:
                self._ensure_disk_dir(new_parent)
            self._disk_rename(old_path, new_path, flags)
        if dst is not None and not (flags & RENAME_EXCHANGE):
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
                self._subdirs(new_parent, delta)
                self._subdirs(old_parent, -delta)
            dst.touch(content=False)
        else:
            if dst is not None:
                self._detach(new_parent, new_name, dst)
                dst.nlink -= 2 if dst.is_dir else 1
                if dst.is_dir:
                    dst.nlink = 0
                    self._subdirs(new_parent, -1)
                if dst.is_reg and dst.opens > 0:
                    self.load(dst)
                dst.touch(content=False)
                self._maybe_free(dst)
            self._detach(old_parent, old_name, src)
            self._attach(new_parent, new_name, src)
            if src.is_dir and old_parent is not new_parent:
                self._subdirs(old_parent, -1)
                self._subdirs(new_parent, +1)
        src.touch(content=False)
        old_parent.touch()
        new_parent.touch()
        if flags & RENAME_WHITEOUT and not src_disk:
            # overlayfs' marker of a removed lower entry: a 0/0 character device with mode 0.
            uid, gid, mode = self._owner(old_parent, caller, stat.S_IFCHR)
            self._attach(old_parent, old_name, self._new_node(mode, uid, gid))
        if not src_disk:
            if src.is_dir:
                self._move_disk_descendants(src, old_path, new_path)
            if flags & RENAME_EXCHANGE and dst.is_dir:
                self._move_disk_descendants(dst, new_path, old_path)
            touched += [p for p, _ in self.walk(src, new_path)]
            if flags & RENAME_EXCHANGE:
                touched += [p for p, _ in self.walk(dst, old_path)]
            # The old path first: the journal entry names it (`rename OLD -> NEW`).
            self.recorder.changed("rename", [old_path, *sorted(set(touched) - {old_path})], caller, path2=new_path)

    # ------------------------------------------------------------------ content and metadata
    def write(self, node: Node, offset: int, buf: bytes, caller: Caller | None = None) -> int:
        """Write at `offset` (a hole up to it reads as zeros); marks the node unsaved.

        With `caller`, setuid/setgid are cleared as a write by that caller clears them.
        """
        end = offset + len(buf)
        self._check_size(end)
        data = self.load(node)
        self.dirtied(node)
        if offset > len(data):
            data.extend(b"\0" * (offset - len(data)))
        data[offset:end] = buf
        node.unsaved = True
        node.touch()
        if caller is not None:
            self._kill_priv(node, caller)
        return len(buf)

    def read(self, node: Node, offset: int, size: int) -> bytes:
        data = self.load(node)
        self.accessed(node)
        return bytes(data[offset:offset + size])

    def readdir(self, dirnode: Node, cookie: int) -> Iterator[tuple[int, str, int]]:
        """(cookie, name, ino) of the entries after `cookie`, lazily; a listing is an access (atime)."""
        entries = self.entries(dirnode)
        self.accessed(dirnode)
        return entries.since(cookie)

    def accessed(self, node: Node) -> None:
        """Move atime as a `relatime` mount does (the default, and what FUSE mounts show).

        The kernel leaves atime of FUSE inodes to the file system and re-reads it
        after each read and readdir that reached us.
        """
        now = now_ns()
        if self._atime_due(node, now):
            node.atime_ns = now

    @staticmethod
    def _atime_due(node: Node, now: int) -> bool:
        return node.atime_ns <= node.mtime_ns or node.atime_ns <= node.ctime_ns or now - node.atime_ns >= _DAY_NS

    def keep_cache(self, node: Node) -> bool:
        """May an open keep the kernel's page cache of `node`?

        Not when the next read has to reach us to move atime (see `accessed`):
        a read served from the page cache never does.  So the cache is dropped
        once per content or metadata change that a later read would record.
        """
        if node.disk:
            return False
        return not self._atime_due(node, now_ns())

    def truncate(self, node: Node, size: int, caller: Caller | None = None) -> None:
        """Set the size (growing reads as zeros); moves mtime and ctime even when the size stays,
        as open(O_TRUNC), truncate(2) and ftruncate(2) do on ext4.

        With `caller`, setuid/setgid are cleared as truncation by that caller clears them.
        """
        self._resize(node, size)
        node.unsaved = True
        node.touch()
        if caller is not None:
            self._kill_priv(node, caller)

    def _check_size(self, size: int) -> None:
        """EFBIG past `max_file_bytes`: a memory file is held, and journaled, whole (as a
        file system past its maximum file size answers)."""
        if self.max_file_bytes is not None and size > self.max_file_bytes:
            raise FsError(errno.EFBIG, f"file too large for memory: {size} bytes (max_file_mb is "
                                       f"{self.max_file_bytes >> 20}; ignored paths go to disk)")

    def _resize(self, node: Node, size: int) -> None:
        """Change the content length."""
        if node.is_dir:
            raise FsError(errno.EISDIR, "is a directory")
        if not node.is_reg:
            raise FsError(errno.EINVAL, "not a regular file")
        if size < 0:
            raise FsError(errno.EINVAL, "negative size")
        self._check_size(size)
        self.dirtied(node)
        if size == 0 and node.data is None:
            node.data = bytearray()  # no need to read what is cut off anyway
            return
        data = self.load(node)
        self.dirtied(node)
        if size < len(data):
            del data[size:]
        else:
            data.extend(b"\0" * (size - len(data)))

    def setattr(self, node: Node, caller: Caller, *, mode: int | None = None, uid: int | None = None,
                gid: int | None = None, size: int | None = None, atime_ns: int | None = None,
                mtime_ns: int | None = None, ctime_ns: int | None = None) -> None:
        """chmod/chown/truncate/utimens.  Permission checks are the kernel's (default_permissions).

        As on a local file system: ctime moves with every change (also a chmod to
        the same mode or a chown to the same owner), a size change moves mtime,
        truncation by an unprivileged caller and every chown clear setuid (and
        setgid where Linux clears it).  pyfuse3 has turned UTIME_NOW into times.
        """
        if node.disk:
            self._disk_setattr(node, caller, mode, uid, gid, size, atime_ns, mtime_ns)
            return
        old_mode = node.mode
        changed = all(v is None for v in (mode, uid, gid, size, atime_ns, mtime_ns))  # chown(f, -1, -1)
        # The mode first: the kernel sends one along with a truncation or chown when it clears
        # setuid itself (with an older rule for setgid); our own clearing then applies on top.
        if mode is not None:
            new_mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            if caller.uid != 0 and not caller.in_group(node.gid):
                new_mode &= ~stat.S_ISGID
            node.mode = new_mode
            changed = True
        if size is not None:
            self.truncate(node, size, caller)
            changed = True
        if uid is not None or gid is not None:
            self._kill_priv(node, caller, chown=True)  # against the old group, before it changes
            node.uid = node.uid if uid is None else uid
            node.gid = node.gid if gid is None else gid
            changed = True
        if atime_ns is not None:
            node.atime_ns = atime_ns
            changed = True
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
            changed = True
        if ctime_ns is not None:
            node.ctime_ns = ctime_ns
        elif changed:
            node.ctime_ns = now_ns()
        if node.mode != old_mode:
            self.recorder.changed("chmod", self.paths_of(node), caller)

    def _kill_priv(self, node: Node, caller: Caller | None = None, *, chown: bool = False) -> None:
        """Clear setuid/setgid of a non-directory as Linux does on write, truncate and chown
        (see `privs_to_kill`).  Without `caller`: an unprivileged caller in the file's group."""
        node.mode &= ~privs_to_kill(node.mode, node.gid, caller, chown=chown)

    def commit(self, node: Node, caller: Caller) -> bool:
        """A close/fsync point: report unsaved content as one write. True if anything was recorded."""
        if not node.unsaved:
            return False
        node.unsaved = False
        paths = self.paths_of(node)
        if paths:
            self.recorder.changed("write", paths, caller)
        return bool(paths)


