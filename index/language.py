"""The language plug-in interface.

A `Language` turns one file's bytes into `FileFacts` without looking at any
other file; everything cross-file (module names, resolution, dependencies)
is the index's job.  A language must never raise for bad input: a source
that does not parse yields facts with ``error`` set.

Optional fast path: a language may also provide
``extract_packed(path, source, module) -> tuple`` returning
``facts.pack(extract(...))`` without building dataclasses; the index uses it
when present (bulk builds create hundreds of thousands of references).

``version`` (optional, default ``"0"``) is part of the cache key: bump it
when the extraction changes so cached facts are re-extracted.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from .facts import FileFacts, pack

__all__ = ["Language", "extract_packed", "language_version"]


@runtime_checkable
class Language(Protocol):
    """What the index needs from a language (see module docstring)."""

    name: str
    suffixes: tuple[str, ...]

    def extract(self, path: str, source: bytes, module: str) -> FileFacts:
        """Facts of one file; ``module`` is its module name as the index computed it."""
        ...


def extract_packed(language: Language, path: str, source: bytes, module: str) -> tuple:
    """Packed facts through the language's fast path when it has one."""
    fast = getattr(language, "extract_packed", None)
    if fast is not None:
        return fast(path, source, module)
    return pack(language.extract(path, source, module))


def language_version(language: Language) -> str:
    """The language's cache-key version (``"0"`` when it declares none)."""
    return str(getattr(language, "version", "0"))
