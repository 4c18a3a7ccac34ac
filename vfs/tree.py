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
from collections import OrderedDict
import logging
import os
import stat
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

from .base import Base
from .errors import FsError
from .node import DirEntries, Node, now_ns

__all__ = ["Caller", "Tree", "Recorder", "ROOT", "NAME_MAX", "join"]

log = logging.getLogger(__name__)

ROOT = 1
NAME_MAX = 255
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4
_DAY_NS = 24 * 3600 * 10**9


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
        # Invariant: clean[ino] == len(nodes[ino].data) for buffers still equal to their base
        # content, least recently used first; clean_bytes == sum(clean.values()).
        self.clean: OrderedDict[int, int] = OrderedDict()
        self.clean_bytes = 0
        self.max_clean_bytes: int | None = None  # None: clean buffers are never dropped
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
        child.nlink = 0 if child.is_dir else child.nlink - 1
        self._maybe_free(child)

    def _disk_listdir(self, rel: str | None) -> list[str]:
        with _opened(rel or ".", os.O_RDONLY | os.O_DIRECTORY, self.disk_fd) as fd:
            return os.listdir(fd)

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

    def _disk_ref(self, node: Node) -> tuple[str, int | None]:
        """(path, dir_fd) naming a disk node for path-based calls, also once it is unlinked."""
        if node.pin is not None:
            return f"/proc/self/fd/{node.pin}", None
        path = self.path_of(node)
        if path is None:
            raise FsError(errno.ENOENT, "unlinked")
        return path or ".", self.disk_fd

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

    def _disk_remove(self, child: Node, path: str, remove) -> None:
        """Remove a passthrough entry on disk, pinning it first for descriptors still open on it."""
        try:
            self._pin(child, path)
            remove(path, dir_fd=self.disk_fd)
        except OSError as exc:
            raise FsError(exc.errno or errno.EIO, str(exc)) from None

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
    def write(self, node: Node, offset: int, buf: bytes, caller: Caller | None = None) -> int:
        """Write at `offset` (a hole up to it reads as zeros); marks the node unsaved.

        With `caller`, setuid/setgid are cleared as a write by that caller clears them.
        """
        data = self.load(node)
        self.dirtied(node)
        end = offset + len(buf)
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

    def _resize(self, node: Node, size: int) -> None:
        """Change the content length."""
        if node.is_dir:
            raise FsError(errno.EISDIR, "is a directory")
        if not node.is_reg:
            raise FsError(errno.EINVAL, "not a regular file")
        if size < 0:
            raise FsError(errno.EINVAL, "negative size")
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
        (see `_privs_to_kill`).  Without `caller`: an unprivileged caller in the file's group."""
        node.mode &= ~_privs_to_kill(node.mode, node.gid, caller, chown=chown)

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
                    kill = _privs_to_kill(current, st.st_gid, caller, chown=False)
                    if kill:
                        mode = current & ~kill
            if mode is not None and not node.is_lnk:
                os.chmod(rel, mode & 0o7777, dir_fd=fd)
            if uid is not None or gid is not None:
                before = os.stat(rel, dir_fd=fd, follow_symlinks=follow)
                kill = _privs_to_kill(before.st_mode, before.st_gid, caller, chown=True)
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

    def commit(self, node: Node, caller: Caller) -> bool:
        """A close/fsync point: report unsaved content as one write. True if anything was recorded."""
        if not node.unsaved:
            return False
        node.unsaved = False
        paths = self.paths_of(node)
        if paths:
            self.recorder.changed("write", paths, caller)
        return bool(paths)


def _privs_to_kill(mode: int, gid: int, caller: Caller | None, *, chown: bool) -> int:
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
