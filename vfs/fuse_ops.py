"""pyfuse3 operations: translate kernel requests into Session calls.

No policy lives here.  Each handler converts names and credentials, calls the
session, and builds the reply.  Domain errors (`FsError`, `OSError`) become
`FUSEError(errno)` in one place (`translate`).

Kernel lookup counts: every reply that hands the kernel an entry (lookup,
create, mkdir, mknod, symlink, link, and each non-dot entry accepted by
`readdir_reply`, since pyfuse3 always uses readdirplus) adds one to the node's
`lookups`; `forget` subtracts.  The kernel does not count "." and "..".

Caching: memory nodes are answered with long entry/attribute timeouts and
`keep_cache` (except when the tree says a read must reach it to move atime,
see `Tree.keep_cache`), so a warm tree is served by the kernel without round
trips.  Attributes are built after `Tree.settle`, so a directory's link count
is exact in the first reply the kernel caches.
Changes that do not come through the kernel are followed by explicit
invalidations (see `vfs.invalidator`).  Missing names are answered with inode
0 and the same timeout, which the kernel caches as a negative entry (Python's
import system probes many names that do not exist).  Passthrough (disk) nodes
get short timeouts, because other processes may change them behind our back.

The control directory `.vfs` is reachable by name at the root but never
listed; its inodes belong to `control` (see `vfs.control`).

Round trips on a warm tree: with the pyfuse3 that `scripts/setup` builds
(`scripts/pyfuse3/`, `PATCHED`), `opendir` answers ENOSYS, so the kernel stops
sending OPENDIR/RELEASEDIR for the whole mount and keeps directory listings in
its page cache (dropped when a directory's mtime changes or its inode is
invalidated; `.vfs` directories report a fresh mtime on every getattr), and a
read-only `open` sets `noflush`, so its `close` sends no FLUSH (nothing to
make durable: only handles that wrote have a close point).  A warm `rg` then
costs one OPEN and one (asynchronous) RELEASE per file.  With a stock pyfuse3
the same requests are answered as before: handles for directories, FLUSH on
every close.

With `kernel_opens` (patch level 2; `control_link` set) not even that: `open`
and `create` answer ENOSYS, and the kernel then makes files with MKNOD and
opens every file of the mount itself (no OPEN, FLUSH or RELEASE); reads, writes
and fsyncs arrive by inode (`read_inode`, `write_inode`, `fsync_inode`), O_TRUNC
as a SETATTR (`no_atomic_o_trunc`), and writes are journaled at their writer's
close (vfs.settler, vfs.close_watch).
`.vfs` is then a symlink (`LINK_INO`) to the control mount (vfs.control_mount).
"""
from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from typing import Any

import pyfuse3
import trio

from .errors import FsError
from .node import Node
from .session import Session
from .tree import ROOT, Caller

__all__ = ["VfsOperations", "CACHE_TIMEOUT", "DISK_TIMEOUT", "PATCHED", "HANDLELESS", "translate"]

log = logging.getLogger(__name__)

CACHE_TIMEOUT = 300.0
DISK_TIMEOUT = 1.0
PATCH_LEVEL = getattr(pyfuse3, "__vfs_patch__", 0)
PATCHED = PATCH_LEVEL >= 1
HANDLELESS = PATCH_LEVEL >= 2  # files are opened without us, `.vfs` is its own mount (module docstring)
LINK_INO = (1 << 40) - 1  # `.vfs` as a symlink to the control mount (below the control tree's range)


def translate(fn):
    """Run a handler; turn domain errors into FUSEError at this one place."""

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except FsError as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        except Exception:
            log.exception("internal error in %s", fn.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _drop_pages(ino: int) -> None:
    try:
        pyfuse3.invalidate_inode(ino, False)
    except OSError:
        pass  # the kernel does not hold it


def _caller(ctx: pyfuse3.RequestContext) -> Caller:
    return Caller(ctx.uid, ctx.gid, ctx.pid, ctx.umask)


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


class VfsOperations(pyfuse3.Operations):
    """See module docstring."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, session: Session, control: Any = None, control_link: bytes | None = None) -> None:
        """`control`: the ControlTree served in this mount; or `control_link`: the path `.vfs`
        links to (the control mount), and then no file of this mount is opened through us."""
        super().__init__()
        self.session = session
        self.control = control  # vfs.control.ControlTree or None
        self.control_link = control_link
        self.handleless = control_link is not None
        self.no_atomic_o_trunc = self.handleless  # read by the patched pyfuse3 at INIT
        self._link_time = time.time_ns()

    # ---------------------------------------------------------------- attributes
    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = node.ino
        a.generation = 0
        if node.disk:
            st = self.session.tree.disk_stat(node)
            if st is None:
                raise FsError(errno.ENOENT, "vanished")
            a.st_mode, a.st_nlink = st.st_mode, st.st_nlink
            a.st_uid, a.st_gid, a.st_rdev = st.st_uid, st.st_gid, st.st_rdev
            a.st_size, a.st_blocks = st.st_size, st.st_blocks
            a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
            a.entry_timeout = a.attr_timeout = DISK_TIMEOUT
        else:
            self.session.tree.settle(node)
            a.st_mode, a.st_nlink = node.mode, max(node.nlink, 0)
            a.st_uid, a.st_gid, a.st_rdev = node.uid, node.gid, node.rdev
            a.st_size, a.st_blocks = node.size(), node.blocks()
            a.st_atime_ns, a.st_mtime_ns, a.st_ctime_ns = node.atime_ns, node.mtime_ns, node.ctime_ns
            a.entry_timeout = a.attr_timeout = CACHE_TIMEOUT
        a.st_blksize = 4096
        return a

    def _link_attrs(self) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = LINK_INO
        a.st_mode, a.st_nlink = stat.S_IFLNK | 0o777, 1
        a.st_uid, a.st_gid = os.getuid(), os.getgid()
        a.st_size = len(self.control_link)
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self._link_time
        a.entry_timeout = a.attr_timeout = CACHE_TIMEOUT
        return a

    def _entry(self, node: Node) -> pyfuse3.EntryAttributes:
        attrs = self._attrs(node)
        node.lookups += 1
        return attrs

    def _is_control(self, ino: int) -> bool:
        return self.control is not None and self.control.owns(ino)

    # ---------------------------------------------------------------- lookups
    @translate
    async def lookup(self, parent_inode, name, ctx):
        name_s = _name(name)
        if self._is_control(parent_inode):
            return self.control.lookup(parent_inode, name_s)
        if parent_inode == ROOT and name_s == ".vfs":
            if self.control_link is not None:
                return self._link_attrs()
            if self.control is not None:
                return self.control.lookup_root()
        with self.session.lock:
            if name_s == ".":
                return self._entry(self.session.getattr(parent_inode))
            if name_s == "..":
                node = self.session.getattr(parent_inode)
                return self._entry(self.session.getattr(node.parent or ROOT))
            node = self.session.lookup(parent_inode, name_s)
            if node is None:
                parent = self.session.getattr(parent_inode)
                a = pyfuse3.EntryAttributes()
                a.st_ino = 0
                a.entry_timeout = DISK_TIMEOUT if parent.disk else CACHE_TIMEOUT
                return a
            return self._entry(node)

    @translate
    async def getattr(self, inode, ctx=None):
        if self._is_control(inode):
            return self.control.getattr(inode)
        if inode == LINK_INO:
            return self._link_attrs()
        with self.session.lock:
            return self._attrs(self.session.getattr(inode))

    async def forget(self, inode_list):
        for ino, n in inode_list:
            if self._is_control(ino) or ino == LINK_INO:
                continue
            self.session.forget(ino, n)

    @translate
    async def readlink(self, inode, ctx):
        if inode == LINK_INO:
            return self.control_link
        return self.session.readlink(inode)

    # ---------------------------------------------------------------- directories
    @translate
    async def opendir(self, inode, ctx):
        if self._is_control(inode):
            fh = self.control.opendir(inode)
        else:
            if not self.session.getattr(inode).is_dir:
                raise FsError(errno.ENOTDIR)
            fh = inode
        if PATCHED:  # directories need no handle: readdir gets the inode (module docstring)
            raise pyfuse3.FUSEError(errno.ENOSYS)
        return fh

    @translate
    async def readdir(self, fh, start_id, token):
        if self._is_control(fh):
            return self.control.readdir(fh, start_id, token)
        with self.session.lock:
            node = self.session.getattr(fh)
            if start_id < 1:
                if not pyfuse3.readdir_reply(token, b".", self._attrs(node), 1):
                    return
            if start_id < 2:
                parent = self.session.getattr(node.parent or ROOT)
                if not pyfuse3.readdir_reply(token, b"..", self._attrs(parent), 2):
                    return
            for cookie, name, child in self.session.readdir(fh, max(start_id, 2)):
                try:
                    attrs = self._attrs(child)
                except FsError:
                    continue
                if not pyfuse3.readdir_reply(token, os.fsencode(name), attrs, cookie):
                    return
                child.lookups += 1

    async def releasedir(self, fh):
        if self._is_control(fh):
            self.control.releasedir(fh)

    @translate
    async def mkdir(self, parent_inode, name, mode, ctx):
        self._refuse_control(parent_inode, name)
        with self.session.lock:
            return self._entry(self.session.mkdir(parent_inode, _name(name), mode, _caller(ctx)))

    @translate
    async def rmdir(self, parent_inode, name, ctx):
        self._refuse_control(parent_inode, name)
        self.session.rmdir(parent_inode, _name(name), _caller(ctx))

    def _refuse_control(self, parent_inode: int, name: bytes) -> None:
        if self._is_control(parent_inode) or (parent_inode == ROOT and name == b".vfs"
                                              and (self.control or self.control_link)):
            raise FsError(errno.EPERM, "the control directory cannot be changed this way")

    # ---------------------------------------------------------------- entries
    @translate
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        self._refuse_control(parent_inode, name)
        with self.session.lock:
            return self._entry(self.session.mknod(parent_inode, _name(name), mode, rdev, _caller(ctx)))

    @translate
    async def symlink(self, parent_inode, name, target, ctx):
        self._refuse_control(parent_inode, name)
        with self.session.lock:
            return self._entry(self.session.symlink(parent_inode, _name(name), target, _caller(ctx)))

    @translate
    async def link(self, inode, new_parent_inode, new_name, ctx):
        self._refuse_control(new_parent_inode, new_name)
        if self._is_control(inode) or inode == LINK_INO:
            raise FsError(errno.EPERM)
        with self.session.lock:
            return self._entry(self.session.link(inode, new_parent_inode, _name(new_name), _caller(ctx)))

    @translate
    async def unlink(self, parent_inode, name, ctx):
        self._refuse_control(parent_inode, name)
        self.session.unlink(parent_inode, _name(name), _caller(ctx))

    @translate
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        self._refuse_control(parent_inode_old, name_old)
        self._refuse_control(parent_inode_new, name_new)
        self.session.rename(parent_inode_old, _name(name_old), parent_inode_new, _name(name_new),
                            flags, _caller(ctx))

    @translate
    async def setattr(self, inode, attr, fields, fh, ctx):
        if self._is_control(inode):
            return self.control.setattr(inode, attr, fields)
        if inode == LINK_INO:
            raise FsError(errno.EPERM, "the control directory cannot be changed this way")
        kw: dict[str, Any] = {}
        if fields.update_mode:
            kw["mode"] = attr.st_mode
        if fields.update_uid:
            kw["uid"] = attr.st_uid
        if fields.update_gid:
            kw["gid"] = attr.st_gid
        if fields.update_size:
            kw["size"] = attr.st_size
        if fields.update_atime:
            kw["atime_ns"] = attr.st_atime_ns
        if fields.update_mtime:
            kw["mtime_ns"] = attr.st_mtime_ns
        if getattr(fields, "update_ctime", False):
            kw["ctime_ns"] = attr.st_ctime_ns
        with self.session.lock:
            node = self.session.setattr(inode, _caller(ctx), fh, **kw)
            attrs = self._attrs(node)
            stale = self.handleless and node.is_reg and not node.disk and not self.session.tree.keep_cache(node)
        if stale:
            # The next read must reach us to move atime (Tree.keep_cache), and no open will drop
            # the kernel's pages: drop them now, from a thread (the loop keeps serving READs).
            await trio.to_thread.run_sync(_drop_pages, inode)
        return attrs

    # ---------------------------------------------------------------- files
    @translate
    async def open(self, inode, flags, ctx):
        if self.handleless:  # the kernel stops asking: every file is opened without us
            raise pyfuse3.FUSEError(errno.ENOSYS)
        if self._is_control(inode):
            return await self.control.open(inode, flags, ctx)
        with self.session.lock:
            node = self.session.getattr(inode)
            keep = self.session.tree.keep_cache(node)  # before open: O_TRUNC changes the times
            fh = self.session.open(inode, flags, _caller(ctx))
            if PATCHED:
                read_only = flags & os.O_ACCMODE == os.O_RDONLY
                return pyfuse3.FileInfo(fh=fh, keep_cache=keep, direct_io=False, noflush=read_only)
            return pyfuse3.FileInfo(fh=fh, keep_cache=keep, direct_io=False)

    @translate
    async def create(self, parent_inode, name, mode, flags, ctx):
        if self.handleless:  # the kernel then makes files with MKNOD and opens them itself
            raise pyfuse3.FUSEError(errno.ENOSYS)
        self._refuse_control(parent_inode, name)
        with self.session.lock:
            caller = _caller(ctx)
            node = self.session.create(parent_inode, _name(name), mode, caller)
            fh = self.session.open(node.ino, flags & ~os.O_TRUNC, caller)
            return pyfuse3.FileInfo(fh=fh, keep_cache=self.session.tree.keep_cache(node)), self._entry(node)

    @translate
    async def read(self, fh, off, size):
        if self._is_control_fh(fh):
            return await self.control.read_async(fh, off, size)
        return self.session.read(fh, off, size)

    @translate
    async def write(self, fh, off, buf):
        if self._is_control_fh(fh):
            return await self.control.write(fh, off, buf)
        return self.session.write(fh, off, buf)

    @translate
    async def flush(self, fh):
        if fh == 0:  # a handle-less open: no close point; the kernel stops sending FLUSH
            self.session.kernel_opened()
            raise pyfuse3.FUSEError(errno.ENOSYS)
        if self._is_control_fh(fh):
            return await self.control.flush(fh)
        self.session.flush(fh)

    @translate
    async def fsync(self, fh, datasync):
        if self._is_control_fh(fh):
            return await self.control.flush(fh)
        self.session.fsync(fh)

    @translate
    async def release(self, fh):
        if self._is_control_fh(fh):
            return await self.control.release(fh)
        self.session.release(fh)

    # handle-less opens (patch level 2): the inode and the caller instead of a handle
    @translate
    async def read_inode(self, inode, off, size, ctx):
        return self.session.read_inode(inode, off, size)

    @translate
    async def write_inode(self, inode, off, buf, ctx, flags=0):
        return self.session.write_inode(inode, off, buf, _caller(ctx), flags)

    @translate
    async def fsync_inode(self, inode, datasync, ctx):
        self.session.fsync_inode(inode, _caller(ctx))

    def _is_control_fh(self, fh: int) -> bool:
        return self.control is not None and self.control.owns_fh(fh)

    @translate
    async def statfs(self, ctx):
        out = pyfuse3.StatvfsData()
        st = self.session.statfs()
        if st is not None:
            for attr in ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files",
                         "f_ffree", "f_favail"):
                setattr(out, attr, getattr(st, attr))
        else:
            out.f_bsize = out.f_frsize = 4096
            out.f_blocks = out.f_bfree = out.f_bavail = 1 << 24
            out.f_files = out.f_ffree = out.f_favail = 1 << 20
        out.f_namemax = 255
        return out

    async def access(self, inode, mode, ctx):
        return True
