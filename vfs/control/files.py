"""The files of `.vfs/`: each one a view or a command over the workspace.

This module only renders and parses; every action is a call into the core
(`Session`, `vfs.history`, `Syncer`, `vfs.batch`, `vfs.diffs`, ...), the same
calls the Python API makes.  See README below for the contract.
"""
from __future__ import annotations

import errno
import json
import re
from typing import TYPE_CHECKING, Callable

from ..errors import FsError
from ..session import check_rel_path
from .logview import LogView
from .tree import CNode, Stream

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["build_root", "README"]

README = """\
.vfs/ — the workspace explains itself. Read with cat; act with echo ... > FILE.
A refused command fails the write (non-zero exit) and `cat FILE` shows why.

README            this text
status            base, mode, dirty paths, journal head and usage, recovery, index, branch
status.json       the same as JSON
changed           one line per changed path: M/A/D path, R old -> new
diff              unified diff of the whole session against the base (git apply-able)
diffs/PATH        unified diff of one file (directories mirror the tree)
log               the journal, one entry per line (tail -f follows it)
agents/           one directory per agent; agents/NAME/log lists its entries
versions/PATH/N   version N of PATH (1 = its first; numbers never change, trimmed ones vanish)
rollback          write "PATH [N]" (file to version N, default: previous),
                  "SEQ" (whole session back to journal entry SEQ), or "@CHECKPOINT"
                  (write ./PATH for a path that starts with @ or is all digits)
checkpoint        write NAME to record a checkpoint; cat lists them (name seq time)
sync              write an empty line (everything) or PATH: write dirty buffers to disk
mode              on-demand | write-through | lazy (write one to switch)
batch             write a JSON list of edits: {path, old, new} | {path, content} |
                  {path, delete: true} | {path, rename_to}; all or nothing
errors            syntax errors of changed Python files (path:line:col: message)
conflicts         paths changed on disk (outside the mount) while dirty in memory
resolve           write "PATH mine|theirs|merge" to settle a conflict
branch            the git diff branch: name and head commit (git repositories only)
validate          syntax errors, undefined names and unresolved imports in changed files
audit             dangerous calls introduced by the changes (review help, not a sandbox)
rename            write "pkg.mod.old_name new_name": rename a symbol everywhere, atomically
symbols/PATH      a file's definitions: kind qualified.name line:col
defs/NAME         where a bare or qualified name is defined: path:line:col kind qualified.name
refs/QUALNAME     every reference: path:line:col<TAB>source line
deps/PATH         modules PATH imports; rdeps/PATH: files importing it (PATH?all: transitive)
impact            test files affected by the current changes (pytest $(cat .vfs/impact))
events            a stream of change events, one JSON object per line
"""


def _bytes(text: str) -> bytes:
    """`text` as served: UTF-8, with the raw bytes of names that are not UTF-8
    (decoded with `os.fsdecode`) given back as they were."""
    return text.encode("utf-8", "surrogateescape")


def _lines(items) -> bytes:
    return _bytes("".join(f"{x}\n" for x in items))


def _stamp(when: float) -> str:
    """A time as `.vfs/log` shows it: ISO 8601, UTC, milliseconds."""
    from datetime import datetime, timezone

    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def entry_line(e) -> str:
    """One journal entry as a `.vfs/log` line: seq time agent op path [-> path2] before..after."""
    when = _stamp(e.time)
    deltas = e.info.get("d", [])
    text = f"{e.seq} {when} agent={e.agent} {e.op}"
    if e.path:
        text += f" {_q(e.path)}"
    if e.path2:
        text += f" -> {_q(e.path2)}"
    if e.before or e.after:
        text += f" {(e.before or '-')[:10]}..{(e.after or '-')[:10]}"
    if len(deltas) > 1:
        text += f" (+{len(deltas) - 1} paths)"
    for key in ("name", "target", "edits", "from", "to"):
        if key in e.info:
            text += f" {key}={e.info[key]}"
    if e.op == "sync":
        text += f" paths={len(e.info.get('paths', []))}"
    return text


def _q(path: str) -> str:
    return path.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def build_root(ws: "Workspace") -> CNode:
    """The `.vfs` root directory node for workspace `ws`."""
    files: dict[str, Callable[[], CNode]] = {}

    def view(name: str, read: Callable[[], bytes], *, live: bool = False) -> None:
        files[name] = lambda: CNode(("f", name), read=read, live=live)

    def command(name: str, usage: str, run: Callable[[str, str], str], *, whole: bool = False,
                listing: Callable[[], str] | None = None) -> None:
        node = CNode(("f", name), command=run, whole=whole, usage=usage)

        def read() -> bytes:
            body = listing() if listing else ""
            return _bytes(usage + body + _outcome(node))
        node.read = read
        files[name] = lambda: node

    view("README", lambda: README.encode())
    view("status", lambda: _bytes(ws.status_text()))
    view("status.json", lambda: (json.dumps(ws.status(), indent=2, sort_keys=True) + "\n").encode())
    view("changed", lambda: _lines(ws.changed()))
    view("diff", lambda: ws.diff())
    view("log", LogView(ws, entry_line).render, live=True)
    agent_logs: dict[str, LogView] = {}
    view("errors", lambda: _lines(ws.errors()))
    files["events"] = lambda: CNode(("f", "events"), stream=ws.open_event_stream)

    command("rollback", "usage: echo 'PATH [N]' | 'SEQ' | '@CHECKPOINT' > .vfs/rollback\n",
            lambda text, agent: ws.rollback_command(_no_huge_numbers(ws, text), agent))
    command("checkpoint", "usage: echo NAME > .vfs/checkpoint\ncheckpoints (name seq time):\n",
            lambda text, agent: ws.checkpoint(text.strip(), agent=agent),
            listing=lambda: "".join(f"{n} {s} {_stamp(t)}\n" for n, s, t in ws.checkpoints()))
    command("sync", "usage: echo > .vfs/sync (everything) | echo PATH > .vfs/sync\n",
            lambda text, agent: ws.sync(text.strip() or None, agent=agent),
            listing=lambda: f"sync: {ws.syncer.last}\n")
    command("mode", "usage: echo on-demand|write-through|lazy > .vfs/mode\n",
            lambda text, agent: ws.set_mode(text.strip(), agent=agent),
            listing=lambda: f"mode: {ws.syncer.mode}\n")
    command("batch", "usage: echo '[{\"path\": P, \"old\": S, \"new\": S}, ...]' > .vfs/batch\n",
            lambda text, agent: ws.batch(text, agent=agent), whole=True)

    view("conflicts", lambda: _lines(ws.conflict_lines()))
    files["validate"] = lambda: CNode(("f", "validate"), read=lambda: _lines(ws.validate()), sized=False)
    files["audit"] = lambda: CNode(("f", "audit"), read=lambda: _lines(ws.audit()), sized=False)
    view("branch", lambda: _bytes(_branch_text(ws)))
    command("rename", "usage: echo 'pkg.mod.old_name new_name' > .vfs/rename\n",
            lambda text, agent: ws.rename_command(text, agent))
    command("resolve", "usage: echo 'PATH mine|theirs|merge' > .vfs/resolve\nconflicts:\n",
            lambda text, agent: ws.resolve(text, agent=agent),
            listing=lambda: "".join(f"{p}\n" for p in ws.conflict_lines()))

    dirs = {
        "diffs": lambda: _mirror(ws, ("diffs",), lambda p: ws.diff(p), only_changed=True),
        "versions": lambda: _mirror_versions(ws),
        "agents": lambda: _agents_dir(ws, agent_logs),
    }
    if getattr(ws, "semantics", None) is not None:
        from .index_files import index_entries

        more_files, more_dirs = index_entries(ws)
        files.update(more_files)
        dirs.update(more_dirs)
    names = sorted([*files, *dirs])

    def child(name: str) -> CNode | None:
        if name in files:
            return files[name]()
        if name in dirs:
            return dirs[name]()
        return None

    return CNode(("d", ""), is_dir=True, list=lambda: names, child=child)


def _no_huge_numbers(ws: "Workspace", text: str) -> str:
    """Refuse a SEQ or version of more than 18 digits: no journal gets there, and Python
    refuses to convert numbers of over 4,300 digits (ValueError, not a user error)."""
    m = re.fullmatch(r"(?:(.*?)\s+)?([0-9]{19,})", text.strip())
    if m is not None:
        if m.group(1) is None:
            raise FsError(errno.ENOENT, f"no journal entry {m.group(2)[:19]}... (head is {ws.session.head()})")
        raise FsError(errno.ENOENT, f"{m.group(1)} has no version {m.group(2)[:19]}...")
    return text


def _branch_text(ws: "Workspace") -> str:
    b = ws.branch_info()
    if not b["enabled"]:
        return f"diff branch {b['reason']}\n"
    text = f"{b['name']} {b['head'] or '(not yet written)'}\nbase {b['base_commit'] or '(unborn)'}\n"
    if b.get("last_error"):
        text += f"last error: {b['last_error']}\n"
    return text


def _outcome(node: CNode) -> str:
    if node.last is None:
        return "last: none\n"
    status, message, _ = node.last
    return f"last: {status}: {message}\n"


def _mirror(ws: "Workspace", prefix: tuple, render: Callable[[str], bytes], *, only_changed: bool,
            path: str = "") -> CNode:
    """A directory mirroring the tree below `path`; files render `render(path)`."""

    def names() -> list[str]:
        if only_changed:
            out = set()
            for p in ws.session.changes():
                if path and not p.startswith(path + "/"):
                    continue
                rest = p[len(path) + 1:] if path else p
                out.add(rest.split("/", 1)[0])
            return sorted(out)
        return ws.list_dir(path)

    def child(name: str) -> CNode | None:
        sub = f"{path}/{name}" if path else name
        try:
            sub = check_rel_path(sub)
        except FsError:
            return None
        kind = ws.kind_of(sub)
        if kind is None and only_changed and sub in ws.session.changes():
            kind = "file"
        if kind is None:
            return None
        if kind == "dir":
            return _mirror(ws, prefix, render, only_changed=only_changed, path=sub)
        return CNode((*prefix, "f", sub), read=lambda: render(sub))

    return CNode((*prefix, "d", path), is_dir=True, list=names, child=child)


def _mirror_versions(ws: "Workspace", path: str = "") -> CNode:
    """versions/: directories mirror the tree; a file path is a directory of its versions."""

    def names() -> list[str]:
        return ws.list_dir(path, include_deleted=True)

    def child(name: str) -> CNode | None:
        sub = f"{path}/{name}" if path else name
        try:
            sub = check_rel_path(sub)
        except FsError:
            return None
        kind = ws.kind_of(sub)
        if kind == "dir":
            return _mirror_versions(ws, sub)
        history = ws.versions(sub)
        if not history:
            return None
        return _versions_of(ws, sub)

    return CNode(("versions", "d", path), is_dir=True, list=names, child=child)


def _versions_of(ws: "Workspace", path: str) -> CNode:
    def names() -> list[str]:
        return [str(v.n) for v in ws.versions(path)]

    def child(name: str) -> CNode | None:
        if not re.fullmatch(r"[1-9][0-9]{0,9}", name):
            return None
        n = int(name)
        if not any(v.n == n for v in ws.versions(path)):
            return None
        return CNode(("versions", "v", path, n), read=lambda: ws.version_content(path, n))

    return CNode(("versions", "of", path), is_dir=True, list=names, child=child)


def _agents_dir(ws: "Workspace", logs: dict[str, LogView]) -> CNode:
    """`agents/NAME/log`; `logs` keeps each agent's rendering across lookups."""

    def child(name: str) -> CNode | None:
        if name not in ws.agents():
            return None
        if name not in logs:
            logs[name] = LogView(ws, entry_line, agent=name)
        log_node = CNode(("agents", name, "log"), read=logs[name].render, live=True)
        return CNode(("agents", name), is_dir=True, list=lambda: ["log"],
                     child=lambda n: log_node if n == "log" else None)

    return CNode(("agents",), is_dir=True, list=ws.agents, child=child)


def event_stream(ws: "Workspace") -> Stream:
    stream = Stream()

    def on_change(change) -> None:
        stream.push((json.dumps(change.to_json(), sort_keys=True) + "\n").encode())

    stream.cleanup = ws.session.subscribe(on_change)
    return stream
