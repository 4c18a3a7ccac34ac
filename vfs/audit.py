"""The safety audit: dangerous operations introduced by the session's changes.

This is review help, not a sandbox.  It reads the source of changed Python
files with `ast`, resolves names through imports and aliases
(`import subprocess as sp; sp.run(...)` is `subprocess.run`), and lists calls
to process execution, code evaluation, raw sockets, native code, unsafe
deserialisation, recursive deletion and writes to literal absolute paths
outside the tree — and imports of those modules.  Code that computes names at
run time (`getattr(os, "sys" + "tem")`, `__import__(name)`) is beyond it.

A finding is *introduced* when the changed file has more occurrences of the
same (rule, source line) than the base version of the file.  Findings render
as `path:line:col: rule: detail`.  A file that does not parse is reported
with rule `unparsable` (it cannot be audited), never skipped silently.

Policy `warn` lists findings; `deny` makes sync and checkpoint refuse while
any finding exists (like a syntax error).  Rules can be disabled by name.
"""
from __future__ import annotations

import ast
import errno
import fnmatch
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from .errors import FsError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["Finding", "RULES", "scan", "Auditor"]

# rule pattern (fnmatch on the resolved dotted name) -> why it is dangerous
RULES: dict[str, str] = {
    "eval": "code evaluation",
    "exec": "code evaluation",
    "compile": "code compilation",
    "__import__": "dynamic import",
    "os.system": "shell command",
    "os.popen": "shell command",
    "os.exec*": "process replacement",
    "os.spawn*": "process execution",
    "os.posix_spawn*": "process execution",
    "os.fork*": "process creation",
    "os.kill": "signals other processes",
    "subprocess.*": "process execution",
    "pty.*": "pseudo-terminal / process execution",
    "socket.*": "raw network access",
    "ctypes.*": "native code",
    "pickle.load*": "unsafe deserialisation",
    "marshal.load*": "unsafe deserialisation",
    "shutil.rmtree": "recursive deletion",
}
DANGEROUS_MODULES = ("subprocess", "pty", "socket", "ctypes", "pickle", "marshal")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    col: int
    rule: str
    detail: str
    text: str = ""

    def render(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.rule}: {self.detail}"


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        self.aliases: dict[str, str] = {}
        self.findings: list[Finding] = []

    def _text(self, node: ast.AST) -> str:
        line = getattr(node, "lineno", 1)
        return self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""

    def _add(self, node: ast.AST, rule: str, detail: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, node.col_offset + 1, rule, detail, self._text(node)))

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            top = a.name.split(".")[0]
            self.aliases[a.asname or top] = a.name if a.asname else top
            if top in DANGEROUS_MODULES:
                self._add(node, f"import {a.name}", f"imports {a.name} ({_module_why(a.name)})")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        mod = node.module or ""
        for a in node.names:
            full = f"{mod}.{a.name}" if mod else a.name
            self.aliases[a.asname or a.name] = full
            if node.level == 0 and mod.split(".")[0] in DANGEROUS_MODULES:
                self._add(node, f"import {full}", f"imports {full} ({_why(full) or _module_why(mod)})")
        self.generic_visit(node)

    def _dotted(self, expr: ast.AST) -> str | None:
        if isinstance(expr, ast.Name):
            return self.aliases.get(expr.id, expr.id)
        if isinstance(expr, ast.Attribute):
            head = self._dotted(expr.value)
            return f"{head}.{expr.attr}" if head else None
        return None

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func)
        if name:
            why = _why(name)
            if why:
                self._add(node, name, f"call to {name} ({why})")
            elif name in ("open", "io.open", "os.open", "pathlib.Path.write_text"):
                self._check_open(node, name)
        self.generic_visit(node)

    def _check_open(self, node: ast.Call, name: str) -> None:
        if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(node.args[0].value, str):
            return
        target = node.args[0].value
        mode = "r"
        if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
            mode = str(node.args[1].value)
        for kw in node.keywords:
            if kw.arg in ("mode", "flags") and isinstance(kw.value, ast.Constant):
                mode = str(kw.value.value)
        writing = any(c in mode for c in "wax+") if name != "os.open" else "O_WR" in ast.unparse(node)
        if target.startswith("/") and writing:
            self._add(node, "open-outside", f"writes to absolute path {target!r} outside the tree")


def _module_why(module: str) -> str:
    """Why importing `module` (one of DANGEROUS_MODULES, or below one) is flagged."""
    top = module.split(".")[0]
    for pattern, why in RULES.items():
        if pattern.split(".")[0] == top:
            return why
    return "a module that can reach anything"


def _why(name: str) -> str | None:
    for pattern, why in RULES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return why
    return None


def scan(path: str, source: bytes) -> list[Finding]:
    """Every dangerous operation in `source` (see module docstring)."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None) or 1
        col = getattr(exc, "offset", None) or 1
        return [Finding(path, line, col, "unparsable", f"cannot audit: {getattr(exc, 'msg', exc)}")]
    scanner = _Scanner(path, source.decode("utf-8", "replace").splitlines())
    scanner.visit(tree)
    return sorted(scanner.findings, key=lambda f: (f.line, f.col, f.rule))


class Auditor:
    """Findings introduced by a session's changes, with a policy. Thread-safe (stateless but caches)."""

    def __init__(self, session: "Session", policy: str = "warn", disabled: Iterable[str] = ()) -> None:
        if policy not in ("warn", "deny"):
            raise FsError(errno.EINVAL, f"audit policy must be warn or deny, not {policy!r}")
        self.session = session
        self.policy = policy
        self.disabled = set(disabled)
        self._cache: dict[tuple[str, str], list[Finding]] = {}

    def _scan_state(self, path: str, state: dict | None, base: bool) -> list[Finding]:
        if state is None or state.get("kind") != "file":
            return []
        key = (path, state["blob"])
        hit = self._cache.get(key)
        if hit is None:
            s = self.session
            data = s.base_states.content(path, state) if base else s.state_content(path, state)
            hit = scan(path, data)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def findings(self, paths: Iterable[str] | None = None) -> list[Finding]:
        s = self.session
        with s.lock:
            overlay = dict(s.overlay)
        wanted = set(paths) if paths is not None else None
        out: list[Finding] = []
        for path in sorted(overlay):
            if not path.endswith(".py") or (wanted is not None and path not in wanted):
                continue
            now = self._scan_state(path, overlay[path], base=False)
            if not now:
                continue
            with s.lock:
                base_state = s.base_states.state(path)
            before = Counter((f.rule, f.text) for f in self._scan_state(path, base_state, base=True)
                             if f.rule != "unparsable")
            for f in now:
                if f.rule in self.disabled:
                    continue
                key = (f.rule, f.text)
                if before[key] > 0:
                    before[key] -= 1
                    continue
                out.append(f)
        return out

    def lines(self) -> list[str]:
        return [f.render() for f in self.findings()]

    def gate(self, paths: list[str]) -> None:
        """Validator check: with policy `deny`, refuse while findings exist."""
        if self.policy != "deny":
            return
        found = self.findings(paths)
        if found:
            raise FsError(errno.EPERM, "refused by audit policy deny: " + "; ".join(f.render() for f in found[:5]))
