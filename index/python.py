"""Python as an index language.

Parser choice, by measurement (``scripts/bench_index.py``; Django 5.2.19
sdist: 2,823 files, 492k lines, 18 MB; CPU time of one process):

==============================================  ============  =====================
parser                                          lines/s       whole Django, 1 core
==============================================  ============  =====================
stdlib ``ast.parse`` only                       ~176,000      2.8 s
``ast`` + this module's extraction              ~91,000       5.4 s
libcst ``parse_module`` (no metadata)           ~21,000       ~23 s
libcst + ScopeProvider + QualifiedNameProvider  ~2,000-2,600  ~3.5 min
==============================================  ============  =====================

(libcst rows from a sample of 89 django/ files, and 3 files for metadata.)
So the full ``ast`` extraction, scopes and all, is ~40x faster than libcst
with the metadata that would give the same facts, and ~4x faster than
libcst's bare parser.

``ast`` yields every fact we need: names, dotted chains, positions (UTF-8
byte columns, converted here to character columns), imports with the
position of each imported name (3.10+), decorators, annotations.  What
libcst's metadata adds (scope analysis, qualified names) is done here in one
pass by `index._pyextract`, cross-file resolution by `index.resolve`.  libcst
stays the tool for rewrites (``rename``), where formatting must survive.

Failures never raise: a source that does not parse (syntax error, bad
encoding, NUL bytes, nesting deeper than the parser or the walker can take)
yields facts whose ``error`` is ``"path:line:col: message"`` (1-based, col
in characters).  Thread-safe: `PythonLanguage` holds no mutable state.
"""
from __future__ import annotations

import ast
import io
import logging
import tokenize

from .facts import FileFacts, PACK_VERSION, pack, unpack
from ._pyextract import Extractor
from .modules import is_package

__all__ = ["PythonLanguage"]

log = logging.getLogger(__name__)


def _line_count(source: bytes) -> int:
    if not source:
        return 0
    return source.count(b"\n") + (0 if source.endswith(b"\n") else 1)


def _encoding(source: bytes) -> str:
    """The PEP 263 encoding of ``source`` (BOM and coding cookie);
    SyntaxError for an unknown or contradictory cookie."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(source).readline)
    except SyntaxError as exc:
        if str(exc).startswith("invalid or missing encoding declaration"):
            return "utf-8"  # undecodable first lines: the strict decode says where
        raise
    return encoding


def _column(source: bytes, at: int) -> tuple[int, int]:
    """1-based (line, character column) of byte offset ``at``."""
    line = source.count(b"\n", 0, at) + 1
    start = source.rfind(b"\n", 0, at) + 1
    return line, len(source[start:at].decode("utf-8", "replace")) + 1


class PythonLanguage:
    """Extracts `FileFacts` from Python source with `ast` (see module docstring)."""

    name = "python"
    suffixes = (".py", ".pyi")
    version = "3"  # part of the cache key: bump whenever extraction changes

    def extract(self, path: str, source: bytes, module: str) -> FileFacts:
        """Facts of one file; never raises for bad input."""
        return unpack(self.extract_packed(path, source, module))

    def extract_packed(self, path: str, source: bytes, module: str) -> tuple:
        """`extract` in packed form (see `index.facts`), without dataclasses."""
        lines = _line_count(source)
        try:
            encoding = _encoding(source)
        except SyntaxError as exc:
            return self._failed(path, module, lines, 1, 1, str(exc))
        try:
            text = source.decode(encoding)
        except UnicodeDecodeError as exc:
            line, col = _column(source, exc.start)
            return self._failed(path, module, lines, line, col, f"cannot decode as {encoding}: {exc.reason} (byte 0x{source[exc.start]:02x})")
        except LookupError:
            return self._failed(path, module, lines, 1, 1, f"unknown encoding: {encoding}")
        if text.startswith("\ufeff"):
            text = text[1:]
        nul = text.find("\0")
        if nul >= 0:
            line = text.count("\n", 0, nul) + 1
            return self._failed(path, module, lines, line, nul - text.rfind("\n", 0, nul), "source code cannot contain null bytes")
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError as exc:
            return self._failed(path, module, lines, exc.lineno or 1, exc.offset or 1, exc.msg)
        except (ValueError, RecursionError, MemoryError) as exc:
            # RecursionError / MemoryError: absurd nesting in generated code.
            return self._failed(path, module, lines, 1, 1, f"cannot parse: {type(exc).__name__}: {exc}")
        package = module if is_package(path) else module.rpartition(".")[0]
        extractor = Extractor(path, module, package, text, text.isascii(), lines)
        try:
            return extractor.run(tree)
        except RecursionError:
            return self._failed(path, module, lines, 1, 1, "too deeply nested to index")

    def _failed(self, path: str, module: str, lines: int, line: int, col: int, message: str) -> tuple:
        log.debug("%s:%d:%d: %s", path, line, col, message)
        facts = FileFacts(
            path=path,
            module=module,
            error=f"{path}:{line}:{col}: {message}",
            lines=lines,
        )
        packed = pack(facts)
        # An unparsable file still is a module: give it its own definition.
        module_def = (("module", module, 1, 1, max(lines, 1), 1),)
        return (PACK_VERSION,) + packed[1:3] + (module_def,) + packed[4:]
