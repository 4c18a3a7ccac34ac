"""What every part of the rename shares: the error, the suffixes, name checks, attribute scans."""
from __future__ import annotations

import errno
import io
import keyword
import re
import tokenize

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

def attribute_lines(data: bytes, name: str) -> list[int]:
    """Line numbers where `.name` is accessed in the code of `data` (sorted, each once)."""
    try:
        lines: list[int] = []
        prev = None
        for tok in tokenize.tokenize(io.BytesIO(data).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
                continue
            if tok.type == tokenize.NAME and tok.string == name and prev is not None \
                    and prev.type == tokenize.OP and prev.string == ".":
                lines.append(tok.start[0])
            prev = tok
        return sorted(set(lines))
    except (tokenize.TokenError, SyntaxError):
        pattern = re.compile(rb"\.\s*" + re.escape(name.encode()) + rb"(?![A-Za-z0-9_])")
        return [n for n, line in enumerate(data.splitlines(), 1) if pattern.search(line)]
