"""What every part of the rename shares: the error, the suffixes, name checks."""
from __future__ import annotations

import errno
import keyword

from ..errors import FsError


PY_SUFFIXES = (".py", ".pyi")


class RenameError(FsError):
    """A rename refused: ``EINVAL`` (bad name, collision, unparsable file) or
    ``ENOENT`` (no such symbol); `str()` says why, naming file and line."""


def _is_package(path: str) -> bool:
    """``pkg/__init__.py`` (or ``.pyi``): its module name is its directory's."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0] == "__init__"


def _check_identifier(name: str, what: str) -> None:
    if keyword.iskeyword(name):
        raise RenameError(errno.EINVAL, f"{what} {name!r} is a Python keyword")
    if not name.isidentifier():
        raise RenameError(errno.EINVAL, f"{what} {name!r} is not a valid Python identifier")
