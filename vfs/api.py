"""`CodeAgent`: the Python face of a workspace, for agents written in Python.

One contract, two backends:
- `CodeAgent.local(source)` works in-process over a `Workspace` (no FUSE, no
  mount): nothing is written to disk until `sync()`;
- `CodeAgent.mounted(path)` works on a mounted directory through its `.vfs/`
  control files (any process, any language could do the same with cat/echo).

Both speak the same protocol — read a control view, run a control command —
and everything else is written once, here, on top of it: so the two backends
cannot drift apart, and the control files are exercised by every API call.
Errors raise `AgentError` (an `FsError`: `.errno` plus a readable reason,
the same reason `cat .vfs/<command>` shows).
"""
from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import FsError
from .session import check_rel_path

__all__ = ["AgentError", "CodeAgent", "LocalAgent", "MountedAgent", "Symbol", "Location", "Ref"]


class AgentError(FsError):
    """A refused operation: `.errno` and a one-line reason."""


@dataclass(frozen=True)
class Symbol:
    path: str
    kind: str
    qualname: str
    line: int
    col: int


@dataclass(frozen=True)
class Location:
    path: str
    line: int
    col: int
    kind: str
    qualname: str


@dataclass(frozen=True)
class Ref:
    path: str
    line: int
    col: int
    text: str
    resolved: bool = True


def _pos(text: str) -> tuple[str, int, int]:
    path, line, col = text.rsplit(":", 2)
    return path, int(line), int(col)


class CodeAgent:
    """The operations an agent needs (see module docstring). Subclasses provide the protocol."""

    agent = "api"

    # ---------------------------------------------------------------- constructors
    @staticmethod
    def local(source: str | os.PathLike[str], **options: Any) -> "LocalAgent":
        from .workspace import Workspace, WorkspaceOptions

        opts = WorkspaceOptions(**{"watch": False, **options})
        ws = Workspace.open(os.fspath(source), opts)
        ws.start_background(None)
        return LocalAgent(ws)

    @staticmethod
    def mounted(path: str | os.PathLike[str], agent: str | None = None) -> "MountedAgent":
        return MountedAgent(Path(path), agent)

    # ---------------------------------------------------------------- protocol (backends)
    def _read(self, path: str) -> bytes:
        raise NotImplementedError

    def _exists(self, path: str) -> bool:
        raise NotImplementedError

    def _view(self, name: str) -> str:
        raise NotImplementedError

    def _command(self, name: str, text: str) -> str:
        raise NotImplementedError

    def _symbol_files(self) -> list[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "CodeAgent":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---------------------------------------------------------------- files
    def _file(self, op: Callable[[str], Any], path: str) -> Any:
        """`op(path)` for a path checked as the session checks it (no absolute path, no `..`,
        not `.vfs/`), with every failure as `AgentError` -- the same for both backends."""
        try:
            return op(check_rel_path(path))
        except AgentError:
            raise
        except FsError as exc:
            raise AgentError(exc.errno, exc.reason) from None
        except OSError as exc:
            raise AgentError(exc.errno or errno.EIO, f"{path}: {exc.strerror}") from None

    def read_file(self, path: str) -> str:
        return self._file(self._read, path).decode("utf-8")

    def edit_file(self, path: str, old_str: str, new_str: str) -> str:
        """Replace the one occurrence of `old_str` (zero or several: AgentError naming the count)."""
        if not isinstance(old_str, str) or old_str == "":
            raise AgentError(errno.EINVAL, "old_str must be a non-empty string")
        return self.batch_edits([{"path": path, "old": old_str, "new": new_str}])

    def create_file(self, path: str, content: str) -> str:
        if self._file(self._exists, path):
            raise AgentError(errno.EEXIST, f"{path} exists; use edit_file or batch_edits with content")
        return self.batch_edits([{"path": path, "content": content}])

    def delete_file(self, path: str) -> str:
        return self.batch_edits([{"path": path, "delete": True}])

    def batch_edits(self, edits: list[dict[str, Any]]) -> str:
        return self._command("batch", json.dumps(edits) + "\n")

    # ---------------------------------------------------------------- index
    def get_symbols(self, file: str | None = None) -> list[Symbol]:
        files = [file] if file is not None else self._symbol_files()
        out = []
        for path in files:
            try:
                text = self._view(f"symbols/{path}")
            except FsError as exc:
                if file is None and exc.errno == errno.ENOENT:
                    continue  # listed but never parsed successfully
                raise
            for line in text.splitlines():
                if not line or line.startswith("#"):
                    continue
                kind, qualname, pos = line.split(" ")
                ln, col = pos.split(":")
                out.append(Symbol(path, kind, qualname, int(ln), int(col)))
        return out

    def _lines_or_none(self, name: str) -> list[str]:
        """The lines of view `name`; [] when it does not exist (an unknown symbol)."""
        try:
            return self._view(name).splitlines()
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                return []
            raise

    def find_definitions(self, name: str) -> list[Location]:
        out = []
        for line in self._lines_or_none(f"defs/{name}"):
            pos, kind, qualname = line.split(" ")
            path, ln, col = _pos(pos)
            out.append(Location(path, ln, col, kind, qualname))
        return out

    def find_references(self, symbol: str) -> list[Ref]:
        out = []
        for line in self._lines_or_none(f"refs/{symbol}"):
            parts = line.split("\t")
            path, ln, col = _pos(parts[0])
            resolved = not (len(parts) > 2 and parts[-1] == "(unresolved)")
            src = "\t".join(parts[1:-1] if not resolved else parts[1:])
            out.append(Ref(path, ln, col, src, resolved))
        return out

    def affected_tests(self) -> list[str]:
        return self._view("impact").splitlines()

    # ---------------------------------------------------------------- checks
    def validate(self) -> list[str]:
        """Syntax errors, undefined names and unresolved imports in changed files."""
        return self._view("validate").splitlines()

    def audit(self) -> list[str]:
        """Dangerous operations introduced by the changes (review help, not a sandbox)."""
        return self._view("audit").splitlines()

    # ---------------------------------------------------------------- history and output
    def get_diff(self, path: str | None = None) -> str:
        return self._view(f"diffs/{path}" if path else "diff")

    def changed(self) -> list[str]:
        return self._view("changed").splitlines()

    def rollback(self, target: int | str, version: int | None = None) -> str:
        """`rollback(SEQ)`, `rollback("@checkpoint")`, `rollback("path")`, `rollback("path", N)`."""
        if isinstance(target, int):
            text = str(target)
        else:
            text = target if version is None else f"{target} {version}"
        return self._command("rollback", text + "\n")

    def checkpoint(self, name: str) -> str:
        return self._command("checkpoint", name + "\n")

    def sync(self, path: str | None = None) -> str:
        return self._command("sync", (path or "") + "\n")

    def rename(self, qualname: str, new_name: str) -> str:
        """Rename a module-level function/class/variable or a method everywhere (one atomic batch)."""
        return self._command("rename", f"{qualname} {new_name}\n")

    def status(self) -> dict:
        return json.loads(self._view("status.json"))


class LocalAgent(CodeAgent):
    """In-process backend over a Workspace: runs the control tree's own views and commands."""

    def __init__(self, workspace: Any, agent: str = "api") -> None:
        self.ws = workspace
        self.agent = agent

    def close(self) -> None:
        self.ws.close()

    def _node(self, name: str):
        node = self.ws.control.root
        parts = [p for p in name.split("/") if p]
        for i, part in enumerate(parts):
            if not node.is_dir or node.child is None:
                raise AgentError(errno.ENOTDIR, f"no control file {name}")
            node = node.child(part)
            if node is None:
                raise AgentError(errno.ENOENT, f"no control file {name}")
        return node

    def _read(self, path: str) -> bytes:
        return self.ws.session.read_file(path)

    def _exists(self, path: str) -> bool:
        return self.ws.session.exists(path)

    def _view(self, name: str) -> str:
        node = self._node(name)
        if node.read is None:
            raise AgentError(errno.EISDIR, f"{name} is not a view")
        try:
            return node.read().decode("utf-8", "replace")
        except FsError as exc:
            raise AgentError(exc.errno, exc.reason) from None

    def _command(self, name: str, text: str) -> str:
        node = self._node(name)
        try:
            if node.whole:
                return node.command(text, self.agent)
            out = ""
            for line in text.splitlines() or [""]:
                out = node.command(line, self.agent)
            return out
        except FsError as exc:
            raise AgentError(exc.errno, exc.reason) from None
        finally:
            self.ws.session.wait_invalidations()

    def _symbol_files(self) -> list[str]:
        if self.ws.semantics is None:
            return []
        self.ws.semantics.fresh()
        return sorted(p for p in self.ws.semantics.index.paths())


class MountedAgent(CodeAgent):
    """Backend over a mounted directory: plain file reads and control-file writes."""

    def __init__(self, root: Path, agent: str | None = None) -> None:
        self.root = root
        self.control = root / ".vfs"
        if not (self.control / "README").exists():
            raise AgentError(errno.ENOENT, f"{root} is not a vfs mount (no .vfs/README)")
        self.agent = agent or os.environ.get("VFS_AGENT", "api")

    def _read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def _exists(self, path: str) -> bool:
        return os.path.lexists(self.root / path)

    def _view(self, name: str) -> str:
        try:
            return (self.control / name).read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            raise AgentError(exc.errno or errno.EIO, f"{name}: {exc.strerror}") from None

    def _command(self, name: str, text: str) -> str:
        target = self.control / name
        fd = os.open(target, os.O_WRONLY)
        try:
            data = text.encode()
            while data:
                data = data[os.write(fd, data):]
        except OSError as exc:
            reason = self._last(name)
            raise AgentError(exc.errno or errno.EIO, reason or exc.strerror) from None
        finally:
            try:
                os.close(fd)
            except OSError as exc:
                reason = self._last(name)
                raise AgentError(exc.errno or errno.EIO, reason or exc.strerror) from None
        last = self._last(name, ok=True)
        return last or ""

    def _last(self, name: str, ok: bool = False) -> str | None:
        try:
            text = (self.control / name).read_text()
        except OSError:
            return None
        for line in reversed(text.splitlines()):
            prefix = "last: ok: " if ok else "last: error: "
            if line.startswith(prefix):
                msg = line[len(prefix):]
                if not ok and msg.endswith("]") and " [E" in msg:
                    msg = msg[: msg.rindex(" [E")]
                return msg
        return None

    def _symbol_files(self) -> list[str]:
        out = []
        base = self.control / "symbols"
        for dirpath, _dirs, files in os.walk(base):
            for f in files:
                out.append(os.path.relpath(os.path.join(dirpath, f), base))
        return sorted(out)
