"""The text the ``.vfs/`` control files serve for index queries.

Every function returns complete lines, each ending in ``\\n`` ("" when there
is nothing), in a deterministic order, so ``cat`` output can be compared,
diffed and fed to other tools (``path:line:col`` is what editors and
``grep -n``-style tooling expect).  Columns are 1-based characters.

Pure functions of their arguments; thread-safe.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .facts import Definition, Reference

__all__ = ["STALE_HEADER", "render_symbols", "render_definitions", "render_references", "render_paths"]

STALE_HEADER = "# stale: last good parse (file has a syntax error)\n"


def render_symbols(defs: Iterable[Definition], stale: bool) -> str:
    """``kind qualified.name line:col`` per definition, in the given order;
    first line `STALE_HEADER` when the facts are from an older source."""
    lines = [f"{d.kind} {d.qualname} {d.line}:{d.col}\n" for d in defs]
    return (STALE_HEADER if stale else "") + "".join(lines)


def render_definitions(defs: Iterable[Definition]) -> str:
    """``path:line:col kind qualified.name``, sorted by path and position."""
    ordered = sorted(defs, key=lambda d: (d.path, d.line, d.col, d.qualname))
    return "".join(f"{d.path}:{d.line}:{d.col} {d.kind} {d.qualname}\n" for d in ordered)


def render_references(refs: Iterable[Reference], line_of: Callable[[str, int], str]) -> str:
    """``path:line:col<TAB>source line``, plus ``<TAB>(unresolved)`` for a
    name-only candidate; sorted by path and position.  ``line_of(path,
    line)`` returns that line's text (its line ending, if any, is dropped;
    tabs inside it are kept)."""
    ordered = sorted(refs, key=lambda r: (r.path, r.line, r.col))
    out = []
    for r in ordered:
        text = line_of(r.path, r.line).rstrip("\r\n")
        suffix = "" if r.resolved else "\t(unresolved)"
        out.append(f"{r.path}:{r.line}:{r.col}\t{text}{suffix}\n")
    return "".join(out)


def render_paths(paths: Iterable[str]) -> str:
    """One path per line, sorted and without duplicates."""
    return "".join(f"{p}\n" for p in sorted(set(paths)))
