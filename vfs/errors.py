"""Domain errors of the session core.

The core raises `FsError` with a POSIX errno and a readable reason; the FUSE
adapter turns it into `pyfuse3.FUSEError(errno)` at one place, control files
keep the reason for `cat`, the CLI prints it.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = ["FsError", "fs_error"]


class FsError(OSError):
    """An operation refused with `errno`; `str()` is the reason in one line."""

    def __init__(self, err: int, reason: str | None = None) -> None:
        super().__init__(err, reason or os.strerror(err))
        self.reason = reason or os.strerror(err)

    def __str__(self) -> str:
        return self.reason


def fs_error(name: str, reason: str | None = None) -> FsError:
    """`fs_error("ENOENT", "no such path: x")` — build an FsError by errno name."""
    return FsError(getattr(_errno, name), reason)
