"""Validation of changed Python files, and the gate that guards sync/checkpoint/batch.

Every changed `.py` file is parsed (stdlib `compile(..., PyCF_ONLY_AST)`,
cached by blob id, so each distinct content is parsed once).  Saving a broken
file through the mount is always allowed — editors save intermediate states —
but with `fail_on_syntax_error` on (the default) `sync`, `checkpoint` and
`batch` refuse while a changed file does not parse, naming it.

Further checks (the safety audit) plug in as extra `checks`: callables that
take the paths about to be written and raise FsError to refuse.
"""
from __future__ import annotations

import ast
import errno
import threading
from typing import TYPE_CHECKING, Callable

from .errors import FsError
from .states import blob_id

if TYPE_CHECKING:
    from .session import Session

__all__ = ["syntax_error", "Validator"]

_PLACEHOLDER = "<vfs-path>"


def syntax_error(path: str, source: bytes) -> str | None:
    """`path:line:col: message` when `source` does not parse as Python, else None."""
    try:
        try:
            compile(source, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except SystemError:
            # CPython 3.11 can fail an AST build run at the same time as another thread's
            # ("AST constructor recursion depth mismatch"): once more settles it.
            compile(source, path, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        line = exc.lineno or 1
        col = exc.offset or 1
        return f"{path}:{line}:{col}: {exc.msg}"
    except (ValueError, MemoryError, RecursionError) as exc:
        return f"{path}:1:1: {exc}"
    return None


class Validator:
    def __init__(self, session: "Session", fail_on_syntax_error: bool = True) -> None:
        self.session = session
        self.fail_on_syntax_error = fail_on_syntax_error
        self.checks: list[Callable[[list[str]], None]] = []
        self._cache: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def _error_for(self, path: str, state: dict, source: bytes | None = None) -> str | None:
        blob = state["blob"]
        with self._lock:
            if blob in self._cache:
                hit = self._cache[blob]
                return hit.replace(_PLACEHOLDER, path, 1) if hit else None
        if source is None:
            source = self.session.state_content(path, state)
        err = syntax_error(_PLACEHOLDER, source)
        with self._lock:
            if len(self._cache) > 10000:
                self._cache.clear()
            self._cache[blob] = err
        return err.replace(_PLACEHOLDER, path, 1) if err else None

    def error_in(self, path: str, source: bytes) -> str | None:
        """The syntax error of `source` as the content of `path` (cached by blob id,
        so content checked before it is written is not parsed again after)."""
        return self._error_for(path, {"blob": blob_id(source)}, source)

    def errors(self, paths: list[str] | None = None) -> list[str]:
        """Syntax errors of the changed `.py` files (or of `paths` among them), sorted."""
        with self.session.lock:
            overlay = dict(self.session.overlay)
        out = []
        for path in sorted(paths if paths is not None else overlay):
            state = overlay.get(path)
            if not path.endswith(".py") or state is None or state.get("kind") != "file":
                continue
            err = self._error_for(path, state)
            if err:
                out.append(err)
        return out

    def gate(self, paths: list[str]) -> None:
        """Refuse (EINVAL) to write `paths` while a changed file fails validation."""
        if self.fail_on_syntax_error:
            broken = self.errors(paths)
            if broken:
                raise FsError(errno.EINVAL, "refused: syntax error in " + "; ".join(broken))
        for check in self.checks:
            check(paths)

    def gate_all(self) -> None:
        """The gate for operations that cover the whole session (checkpoint)."""
        with self.session.lock:
            paths = list(self.session.overlay)
        self.gate(paths)
