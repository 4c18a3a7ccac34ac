"""`.vfs` on a FUSE connection of its own.

With `kernel_opens` the main mount answers OPEN with ENOSYS (vfs.settler): the
kernel then opens its files itself, which is what makes a warm `rg` cost no
round trip per file.  That switch holds for a whole connection, and control files need
their opens: a view is rendered once per open (a consistent snapshot for
`cat`), a command's bytes are buffered per open and its errors returned by
`write()`/`close()`, `.vfs/events` streams per open.  So then the control
tree is served by a second session of the same
process (`pyfuse3.init_control`), mounted on a private directory, and the
main mount's `.vfs` is a symlink to it: `cat .vfs/diff`, `echo ... >
.vfs/rollback` and `cd .vfs` work as before.

The second mount is made with `auto_unmount` (fusermount3 removes it when the
daemon dies, even by `kill -9`) and ends with the main one (pyfuse3.main).

`ControlOperations` only translates: the control mount's root inode (1) is the
control tree's root; everything else is `ControlTree`'s, and reads of state
settle handle-less writes first, so the views show every write readers see.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import pyfuse3

from .control.tree import ControlTree
from .errors import FsError
from .fuse_ops import translate

__all__ = ["ControlOperations", "control_dir"]


def control_dir() -> Path:
    """A new private directory to mount the control tree on (under $XDG_RUNTIME_DIR or /tmp)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and os.path.isdir(runtime) else Path(tempfile.gettempdir())
    base = base / f"vfs-{os.getuid()}"
    base.mkdir(mode=0o700, exist_ok=True)
    for stale in base.glob("ctl-*"):  # left by killed daemons; a live mount's cannot be removed
        try:
            stale.rmdir()
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="ctl-", dir=base))


class ControlOperations(pyfuse3.Operations):
    """pyfuse3 operations of the control mount (see module docstring)."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, control: ControlTree, settle: Callable[[], Any]) -> None:
        super().__init__()
        self.control = control
        self.settle = settle
        self.root = control.root_ino

    def _in(self, ino: int) -> int:
        return self.root if ino == pyfuse3.ROOT_INODE else ino

    def _out(self, attrs: pyfuse3.EntryAttributes) -> pyfuse3.EntryAttributes:
        if attrs.st_ino == self.root:
            attrs.st_ino = pyfuse3.ROOT_INODE
        return attrs

    @translate
    async def lookup(self, parent_inode, name, ctx):
        self.settle(ctx.pid)
        return self._out(self.control.lookup(self._in(parent_inode), os.fsdecode(name)))

    @translate
    async def getattr(self, inode, ctx=None):
        self.settle(ctx.pid if ctx is not None else None)
        return self._out(self.control.getattr(self._in(inode)))

    @translate
    async def setattr(self, inode, attr, fields, fh, ctx):
        return self._out(self.control.setattr(self._in(inode), attr, fields))

    async def forget(self, inode_list):
        pass  # control inodes are never forgotten (vfs.control.tree)

    @translate
    async def opendir(self, inode, ctx):
        return self.control.opendir(self._in(inode))

    @translate
    async def readdir(self, fh, start_id, token):
        self.control.readdir(self._in(fh), start_id, token)

    async def releasedir(self, fh):
        self.control.releasedir(fh)

    @translate
    async def open(self, inode, flags, ctx):
        self.settle(ctx.pid)
        return await self.control.open(self._in(inode), flags, ctx)

    @translate
    async def read(self, fh, off, size):
        return await self.control.read_async(fh, off, size)

    @translate
    async def write(self, fh, off, buf):
        self.settle(self.control.opener(fh))
        return await self.control.write(fh, off, buf)

    @translate
    async def flush(self, fh):
        self.settle(self.control.opener(fh))
        return await self.control.flush(fh)

    @translate
    async def fsync(self, fh, datasync):
        return await self.control.flush(fh)

    @translate
    async def release(self, fh):
        self.settle()  # RELEASE comes late, when its opener may be writing elsewhere: not its settle
        return await self.control.release(fh)

    @translate
    async def statfs(self, ctx):
        out = pyfuse3.StatvfsData()
        out.f_bsize = out.f_frsize = 4096
        out.f_namemax = 255
        return out

    async def access(self, inode, mode, ctx):
        return True

    @translate
    async def _refuse(self, *args):
        raise FsError(errno.EPERM, "the control directory cannot be changed this way")

    create = mkdir = mknod = symlink = link = unlink = rmdir = rename = _refuse
