"""Batches: many edits validated together and applied atomically.

A batch is a JSON list of edits:
    {"path": P, "old": S, "new": S}     replace the one occurrence of `old` (0 or 2+ is an error)
    {"path": P, "content": S}           create or replace the whole file
    {"path": P, "delete": true}         delete a file (or a directory tree)
    {"path": P, "rename_to": Q}         move P to Q
Edits apply in order, each seeing the result of the ones before it.  All of
them are checked first against a virtual view of the tree; if any fails,
nothing changes and the error names the edit (`edit 3 (src/a.py): ...`).
Resulting Python files must parse when `fail_on_syntax_error` is on.
Paths stay inside the in-memory tree: `..`, absolute paths and `.vfs` are
refused (EINVAL), so is a path through a symlink or a file (ENOTDIR: symlinks
are never followed, so no edit reaches outside the tree) and a passthrough
path (EXDEV: it lives on disk, outside the journal; write it directly).
Strings are Unicode text; in `old`, `new` and `content`, `\\udc80`-`\\udcff`
escapes stand for the raw bytes 0x80-0xff (as `os.fsdecode` produces them),
other lone surrogates are refused, and paths must hold none.
"""
from __future__ import annotations

import errno
import json
from typing import TYPE_CHECKING, Any

from .errors import FsError
from .session import check_rel_path
from .syncer import passthrough_at

if TYPE_CHECKING:
    from .session import Change, Session
    from .validation import Validator

__all__ = ["parse_batch", "apply_batch", "MAX_EDITS"]

MAX_EDITS = 10000
_KEYS = {"path", "old", "new", "content", "delete", "rename_to"}


def parse_batch(raw: bytes | str) -> list[dict[str, Any]]:
    """Decode and shape-check a batch; FsError(EINVAL) with the reason otherwise."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FsError(errno.EINVAL, f"batch is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        edits = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FsError(errno.EINVAL, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise FsError(errno.EINVAL, "invalid JSON: nested too deeply") from None
    if isinstance(edits, dict):
        edits = [edits]
    if not isinstance(edits, list) or not edits:
        raise FsError(errno.EINVAL, "a batch is a non-empty JSON list of edits")
    if len(edits) > MAX_EDITS:
        raise FsError(errno.E2BIG, f"too many edits ({len(edits)} > {MAX_EDITS})")
    for i, e in enumerate(edits, 1):
        if not isinstance(e, dict):
            raise FsError(errno.EINVAL, f"edit {i}: must be an object")
        unknown = set(e) - _KEYS
        if unknown:
            raise FsError(errno.EINVAL, f"edit {i}: unknown key(s) {', '.join(sorted(unknown))}")
        if not isinstance(e.get("path"), str) or not e["path"]:
            raise FsError(errno.EINVAL, f"edit {i}: 'path' must be a non-empty string")
        kinds = [k for k in ("old", "content", "delete", "rename_to") if k in e]
        if len(kinds) != 1:
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): give exactly one of old/new, content, "
                                        "delete, rename_to")
        kind = kinds[0]
        if kind == "old" and not (isinstance(e["old"], str) and isinstance(e.get("new"), str)):
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): 'old' and 'new' must be strings")
        if kind == "old" and e["old"] == "":
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): 'old' must not be empty")
        if kind == "content" and not isinstance(e["content"], str):
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): 'content' must be a string")
        if kind == "delete" and e["delete"] is not True:
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): 'delete' must be true")
        if kind == "rename_to" and (not isinstance(e["rename_to"], str) or not e["rename_to"]):
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): 'rename_to' must be a non-empty string")
        if kind != "old" and "new" in e:
            raise FsError(errno.EINVAL, f"edit {i} ({e['path']}): 'new' goes with 'old'")
        for key in ("path", "old", "new", "content", "rename_to"):
            if isinstance(e.get(key), str) and not _encodable(e[key], strict=key in ("path", "rename_to")):
                raise FsError(errno.EINVAL, f"edit {i}: '{key}' holds a lone surrogate (not Unicode text)")
    return edits


def _encodable(text: str, strict: bool) -> bool:
    """Contents may carry raw bytes as surrogate escapes; paths must be Unicode (the journal stores them as text)."""
    try:
        text.encode("utf-8", "strict" if strict else "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class _View:
    """The tree as the batch sees it so far.

    `files` maps each path an edit touched to its bytes, or None when it is
    gone (deleted, renamed away); every other path reads as in the session,
    following directories that earlier edits moved (`moved`) back to where
    the session still holds them.
    """

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.files: dict[str, bytes | None] = {}
        self.moved: list[tuple[str, str]] = []  # (src, dest) of directory renames, in order

    def _gone(self, path: str) -> bool:
        return any(self.files.get(a, b"") is None for a in _ancestors(path))

    def _origin(self, path: str) -> str:
        for src, dest in reversed(self.moved):
            if path == dest or path.startswith(dest + "/"):
                path = src + path[len(dest):]
        return path

    def read(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self._gone(path):
            return None
        node = self.session.tree.try_resolve(self._origin(path))
        if node is None:
            return None
        if node.is_dir:
            raise FsError(errno.EISDIR, "is a directory")
        if node.disk or not node.is_reg:
            raise FsError(errno.EINVAL, "not a regular in-memory file")
        return bytes(self.session.tree.load(node))

    def is_dir(self, path: str) -> bool:
        return self.kind(path) == "dir"

    def kind(self, path: str) -> str | None:
        """'file' (a regular file), 'dir', 'other' (symlink, special) or None (nothing there)."""
        if path in self.files:
            return None if self.files[path] is None else "file"
        if self._gone(path):
            return None
        node = self.session.tree.try_resolve(self._origin(path))
        if node is None:
            return None
        return "dir" if node.is_dir else "file" if node.is_reg else "other"

    def check_parents(self, path: str) -> None:
        """Every parent of `path` is a directory or absent (then it will be made): ENOTDIR otherwise.

        A parent that is a symlink is refused, not followed.
        """
        for a in _ancestors(path):
            kind = self.kind(a)
            if kind == "other":
                raise FsError(errno.ENOTDIR, f"{a} is not a directory (symlinks are not followed)")
            if kind == "file":
                raise FsError(errno.ENOTDIR, f"{a} is a file")

    def check_in_memory(self, path: str) -> None:
        for p in dict.fromkeys((path, self._origin(path))):
            if passthrough_at(self.session, p):
                raise FsError(errno.EXDEV, f"{path} is a passthrough path (on disk, not in memory): "
                                           "write it directly")

    def move_dir(self, src: str, dest: str) -> None:
        for key in [k for k in self.files if k == src or k.startswith(src + "/")]:
            self.files[dest + key[len(src):]] = self.files.pop(key)
        self.moved.append((src, dest))
        self.files[src] = None


def _ancestors(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _preview(text: bytes, needle: bytes) -> str:
    lines = []
    start = 0
    while len(lines) < 3:
        i = text.find(needle, start)
        if i < 0:
            break
        lineno = text.count(b"\n", 0, i) + 1
        line = text.splitlines()[lineno - 1].decode("utf-8", "replace").strip() if text else ""
        lines.append(f"line {lineno}: {line[:80]}")
        start = i + 1
    return "; ".join(lines)


def plan_batch(session: "Session", edits: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """Check every edit against the virtual view; return the operations to apply."""
    view = _View(session)
    ops: list[tuple[str, Any]] = []
    for i, e in enumerate(edits, 1):
        label = f"edit {i} ({e['path']})"
        try:
            path = check_rel_path(e["path"])
            if not path:
                raise FsError(errno.EINVAL, "the root cannot be edited")
            view.check_in_memory(path)
            if "old" in e:
                view.check_parents(path)
                data = view.read(path)
                if data is None:
                    raise FsError(errno.ENOENT, "no such file")
                old, new = _bytes(e["old"]), _bytes(e["new"])
                count = data.count(old)
                if count != 1:
                    where = f": {_preview(data, old)}" if count else ""
                    raise FsError(errno.EINVAL, f"'old' occurs {count} times (must be exactly once){where}")
                data = data.replace(old, new, 1)
                view.files[path] = data
                ops.append(("write", (path, data)))
            elif "content" in e:
                view.check_parents(path)
                kind = view.kind(path)
                if kind == "dir":
                    raise FsError(errno.EISDIR, "is a directory")
                if kind == "other":
                    raise FsError(errno.EINVAL, "not a regular in-memory file")
                data = _bytes(e["content"])
                view.files[path] = data
                ops.append(("write", (path, data)))
            elif "delete" in e:
                view.check_parents(path)
                if view.is_dir(path):
                    view.files[path] = None
                elif view.read(path) is None:
                    raise FsError(errno.ENOENT, "no such file")
                view.files[path] = None
                ops.append(("delete", path))
            else:
                dest = check_rel_path(e["rename_to"])
                if not dest:
                    raise FsError(errno.EINVAL, "cannot rename onto the root")
                if dest == path or dest.startswith(path + "/"):
                    raise FsError(errno.EINVAL, "cannot move a path into itself")
                view.check_parents(path)
                view.check_parents(dest)
                view.check_in_memory(dest)
                if view.is_dir(path):
                    if view.is_dir(dest) or view.read(dest) is not None:
                        raise FsError(errno.EEXIST, f"{dest} exists")
                    ops.append(("rename", (path, dest)))
                    view.move_dir(path, dest)
                    continue
                data = view.read(path)
                if data is None:
                    raise FsError(errno.ENOENT, "no such file")
                if view.is_dir(dest):
                    raise FsError(errno.EISDIR, f"{dest} is a directory")
                view.files[path] = None
                view.files[dest] = data
                ops.append(("rename", (path, dest)))
        except FsError as exc:
            raise FsError(exc.errno, f"{label}: {exc.reason}") from None
    return ops, view


def apply_batch(session: "Session", raw: bytes | str | list, *, agent: str = "api",
                validator: "Validator | None" = None) -> "Change | None":
    """Validate and apply a batch (see module docstring)."""
    edits = raw if isinstance(raw, list) else parse_batch(raw)
    if isinstance(raw, list):
        edits = parse_batch(json.dumps(raw))
    with session.lock:
        ops, view = plan_batch(session, edits)
        if validator is not None and validator.fail_on_syntax_error:
            broken = [err for p, data in sorted(view.files.items())
                      if p.endswith(".py") and data is not None
                      for err in [validator.error_in(p, data)] if err]
            touched = set(view.files)
            broken += [e for e in validator.errors() if e.split(":", 1)[0] not in touched]
            if broken:
                raise FsError(errno.EINVAL, "refused: syntax error in " + "; ".join(broken))
        with session.compound("batch", agent, info={"edits": len(edits)}) as result:
            for i, (kind, arg) in enumerate(ops):
                try:
                    if kind == "write":
                        session._put_file(*arg)
                    elif kind == "delete":
                        session._remove(arg)
                    else:
                        session._move(*arg)
                except FsError as exc:
                    # The plan should have caught it; the compound puts everything back.
                    path = arg if kind == "delete" else arg[0]
                    raise FsError(exc.errno, f"applying {kind} of {path}: {exc.reason}") from None
        return result["change"]
