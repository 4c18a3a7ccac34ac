"""What a language extracts from one file: definitions, references, imports.

Positions everywhere in the index are **1-based lines and 1-based columns
counted in characters** (code points, as Python's own tracebacks count
them).  A span's end is exclusive: ``end_col`` is the column just past its
last character.

Two forms exist for the same facts:

- the public dataclasses below (`FileFacts` and what it holds), which is what
  a `Language` returns and what queries hand out;
- the *packed* form (`pack` / `unpack`): nested tuples of str/int/None only,
  which `marshal` writes and reads at C speed.  The index stores and caches
  packed facts and builds dataclasses only for query answers; holding 400k
  frozen dataclass instances for a large tree would cost seconds and hundreds
  of MB (see DESIGN.md, "Keep compact facts, not trees").

Symbolic targets.  A language cannot know other files, so the `target` it
puts on a `Reference` (and the values in `FileFacts.bindings` and
`FileFacts.bases`) are *symbolic*: an absolute dotted path as read from the
file's own bindings, e.g. ``pkg.util.helper`` for a name imported with
``from .util import helper``.  A component followed by ``()`` means "an
instance of what the prefix names": ``pkg.mod.Greeter().greet`` is the
``greet`` attribute of a ``Greeter`` instance; the component ``<super>``
after a class (``pkg.mod.C.<super>.m``) is ``super()`` in that class's
methods, looked up along its bases.  The index resolves symbolic
targets to canonical qualified names through the import graph
(`index.resolve`).  A reference the language cannot anchor at all (a local of
unknown type, ``self.x.method``) carries ``target=None, resolved=False``: a
name-only candidate.

All types here are immutable and safe to share between threads.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "KINDS",
    "Definition",
    "Reference",
    "Import",
    "FileFacts",
    "pack",
    "unpack",
    "PACK_VERSION",
]

KINDS = ("module", "class", "function", "method", "variable", "attribute")

# Bump when the packed layout or its meaning changes; cached facts with
# another version are ignored (and re-extracted).
PACK_VERSION = 3


@dataclass(frozen=True, slots=True)
class Definition:
    """A name defined in a file.

    ``line``/``col`` is where the defined name itself is written (the
    ``helper`` in ``def helper():``); ``end_line``/``end_col`` is the end of
    the whole defining statement, so the span covers a function's body.
    ``kind`` is one of `KINDS`.  A module's own definition spans the file.
    """

    kind: str
    qualname: str
    path: str
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def name(self) -> str:
        """The last component of the qualified name."""
        return self.qualname.rpartition(".")[2]


@dataclass(frozen=True, slots=True)
class Reference:
    """One use of a name.

    ``name`` is the dotted expression as written up to and including the
    referenced component (``mod.func``, ``Greeter().greet``; call arguments
    are shown as ``()``); ``line``/``col`` is where that last component
    starts.  ``enclosing`` is the qualified name of the innermost enclosing
    function or class, or the module.  ``target`` is the resolved qualified
    name (symbolic in a language's output, canonical in the index's answers);
    ``resolved=False`` marks a name-only candidate, whose ``target`` is None.
    """

    name: str
    path: str
    line: int
    col: int
    enclosing: str
    target: str | None = None
    resolved: bool = True

    @property
    def last(self) -> str:
        """The referenced component without call markers (``greet``)."""
        return self.name.rpartition(".")[2].replace("()", "")


@dataclass(frozen=True, slots=True)
class Import:
    """One name bound by an import statement (``from x import a, b`` gives two).

    ``module`` is the absolute module the statement names: ``pkg.util`` for
    ``from .util import x`` inside ``pkg/mod.py``, ``a.b`` for ``import a.b``;
    it is ``""`` when a relative import climbs above the top-level package.
    ``name`` is the imported name of a from-import (``"*"`` for a star
    import) and None for a plain ``import``; ``alias`` is the ``as`` name.
    ``level`` counts the leading dots of a relative import.
    """

    module: str
    name: str | None
    alias: str | None
    level: int
    line: int
    col: int

    @property
    def bound(self) -> str | None:
        """The name the import binds in its scope (None for a star import)."""
        if self.alias:
            return self.alias
        if self.name is None:
            return self.module.partition(".")[0]
        return None if self.name == "*" else self.name


@dataclass(frozen=True, slots=True)
class FileFacts:
    """Everything one language knows about one file on its own.

    ``error`` is ``"path:line:col: message"`` when the source does not parse;
    the facts are then those of an empty module (the index keeps the last
    good facts instead).  ``bindings`` maps qualified names bound at module
    or class level to symbolic targets (imports, ``X = Foo()``); ``bases``
    maps each class to its base classes as symbolic targets (None where a
    base is not a plain dotted name); ``exports`` is the literal ``__all__``
    or None.  ``lines`` counts the source's lines.
    """

    path: str
    module: str
    definitions: tuple[Definition, ...] = ()
    references: tuple[Reference, ...] = ()
    imports: tuple[Import, ...] = ()
    error: str | None = None
    bindings: tuple[tuple[str, str], ...] = ()
    bases: tuple[tuple[str, tuple[str | None, ...]], ...] = ()
    exports: tuple[str, ...] | None = None
    lines: int = 0


# Packed layout (all tuples):
#   (PACK_VERSION, path, module, defs, refs, imports, error, bindings, bases, exports, lines)
#   defs:    (kind, qualname, line, col, end_line, end_col)
#   refs:    (name, line, col, enclosing, symbolic target or None)
#   imports: (module, name, alias, level, line, col)
P_PATH, P_MODULE, P_DEFS, P_REFS, P_IMPORTS, P_ERROR, P_BINDINGS, P_BASES, P_EXPORTS, P_LINES = range(1, 11)


def pack(facts: FileFacts) -> tuple:
    """The packed (marshal-friendly) form of `facts`."""
    return (
        PACK_VERSION,
        facts.path,
        facts.module,
        tuple((d.kind, d.qualname, d.line, d.col, d.end_line, d.end_col) for d in facts.definitions),
        tuple(
            (r.name, r.line, r.col, r.enclosing, r.target if r.resolved else None)
            for r in facts.references
        ),
        tuple((i.module, i.name, i.alias, i.level, i.line, i.col) for i in facts.imports),
        facts.error,
        tuple(facts.bindings),
        tuple((c, tuple(b)) for c, b in facts.bases),
        None if facts.exports is None else tuple(facts.exports),
        facts.lines,
    )


def unpack(packed: tuple) -> FileFacts:
    """The `FileFacts` a packed tuple stands for (symbolic targets kept)."""
    path = packed[P_PATH]
    return FileFacts(
        path=path,
        module=packed[P_MODULE],
        definitions=tuple(Definition(k, q, path, l, c, el, ec) for k, q, l, c, el, ec in packed[P_DEFS]),
        references=tuple(
            Reference(n, path, l, c, e, t, t is not None) for n, l, c, e, t in packed[P_REFS]
        ),
        imports=tuple(Import(*row) for row in packed[P_IMPORTS]),
        error=packed[P_ERROR],
        bindings=packed[P_BINDINGS],
        bases=packed[P_BASES],
        exports=packed[P_EXPORTS],
        lines=packed[P_LINES],
    )
