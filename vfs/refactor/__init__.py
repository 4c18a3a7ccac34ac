"""Rename a Python symbol across a tree, preserving formatting: `plan_rename`.

`plan_rename(read, paths, "pkg.mod.old_name", "new_name")` returns
``{path: new_content}`` for every file that changes; the caller applies the
result as one batch (`vfs.batch.apply_batch`), so a rename is all or nothing.
It is a pure function: the only input is ``read(path)``, nothing is written,
and a refused rename raises `RenameError` before anything is returned.
It parses (seconds for large trees, see Notes): call it from a worker
thread, never on the FUSE loop.  It holds no state between calls.

What it renames — the qualified name is ``module.name`` (a module-level
function, class or variable) or ``module.Class.member`` (a method, or any
other attribute bound in the class body: class variable, property, nested
class).  A qualified name that reaches the symbol through a re-export
(``pkg.old_name`` where ``pkg/__init__.py`` does ``from .mod import
old_name``) is followed to the definition first.

- the definition, and every use in the defining module, nested scopes
  included — by libcst's `ScopeProvider`: a local variable, parameter or
  import that shadows the name in an inner scope is a different binding and is
  left alone; ``global old_name`` statements follow;
- ``from M import old_name`` (absolute or relative): the imported name, and —
  when not aliased — every use of that binding in the importing scope;
  ``from M import old_name as x`` changes only the import, uses of ``x`` stay;
- attribute access whose fully qualified name (libcst's scope analysis,
  relative imports resolved as `FullyQualifiedNameProvider` does) is the
  symbol: ``import pkg.mod`` + ``pkg.mod.old_name``, ``import pkg.mod as m`` +
  ``m.old_name``, ``from . import mod`` + ``mod.old_name``;
- re-exports: a module that imports the name unaliased at module level (or by
  ``from M import *``) re-exports it, so ``from pkg import old_name`` and
  ``pkg.old_name`` are renamed too, transitively; string entries of
  ``__all__`` (``=``, ``+=``, ``.append``, ``.extend``) are renamed in the
  defining module and in every re-exporting module;
- uses of ``old_name`` in a module that gets it through ``from M import *``;
- string annotations (``x: "old_name"``, ``"list[old_name]"``), which libcst
  reports as uses;
- string literals whose whole value is a qualified name of the symbol
  (``mock.patch("pkg.mod.old_name")``);
- members: ``Class.member`` through any name of the class, ``self.member`` /
  ``cls.member`` in the methods of the class (first parameter, not in a
  `staticmethod`), ``super().member`` there, and — best effort — ``obj.member``
  when every binding of ``obj`` in its scope is ``obj = Class(...)``,
  ``obj: Class``, a parameter annotated ``Class``, or ``with Class(...) as
  obj``.  Subclasses of the class anywhere in the tree (found through their
  bases) are part of the rename: their overrides and their ``self.member``
  uses are renamed with it, so overriding keeps working.
- a second binding of the same name in a renamed scope that imports something
  else (``except ImportError: from json import dump``) keeps its source and
  is bound to the new name (``from json import dump as new_name``).

Refused with `RenameError` (nothing is planned):

- ``EINVAL``: the new name is not an identifier or is a keyword; the
  qualified name is malformed, names a module, nests deeper than
  ``Class.member`` or goes through something that is not a class; a ``.py``
  file that contains the old name as text does not parse (files that do not
  contain it are never parsed: that is the fast path); the new name would
  collide — it is already bound in a scope whose binding is renamed (the
  defining module, the class or a subclass, a module importing the old name
  unaliased), a renamed use would be captured by an inner binding of the new
  name, a builtin or unresolved use of the new name would be shadowed, or
  ``self.new_name`` is already used in the class.  The message names the
  file and line.
- ``ENOENT``: no module of the tree matches, or it does not define the name
  (or the class does not bind the member in its body).

Not supported (left as is): comments and docstrings that mention the name;
dynamic access (``getattr(obj, "old_name")``, strings other than a complete
qualified name); ``obj.member`` where the type of ``obj`` is not evident as
above (return values, containers, ``Optional[Class]`` annotations, values
passed around untyped) — pass ``review=[]`` to get those ``.member`` lines
listed; instance attributes assigned only through ``self.x = ...``; keyword
arguments that name a renamed class variable (dataclass fields); superclasses:
renaming ``Sub.member`` does not rename ``Base.member`` that it overrides;
``nonlocal`` statements; module renames (that is a file rename).  A ``.pyi``
stub of the defining module is renamed with it.

How — three filters, cheapest first, so libcst (the slow part) sees only the
files that can change:

1. text: a file is read and searched for the old name as a word; files
   without it are never parsed (that is also why an unparsable file that
   does not mention the name is not an error);
2. `ast` outline (~20x faster than libcst with scope analysis: 35 ms against
   0.65 s for a 2,500-line file): which modules
   re-export the symbol (to a fixpoint), and whether the file imports it, or
   takes ``.old_name`` of a name bound to its module (``m.old_name``,
   ``pkg.mod.old_name``); for members, whether some ``x.member`` starts from
   a name bound, assigned or annotated from a family class;
3. libcst: `ScopeProvider` per remaining file; qualified names are asked of
   the scope for the few nodes that matter (as `FullyQualifiedNameProvider`
   would compute them, which as a whole-file pass cost as much as the scope
   analysis).  Edits are keyed by node identity and applied by one
   transformer, so everything else round-trips byte for byte.

Notes — measured on a 2-core machine shared with other jobs (load ~2):

- `benchmark()` (run ``python -m vfs.refactor``): a function used in 30
  generated modules (~40 lines each; by import, aliased import, module
  attribute, ``pkg.core.f``, with shadowing parameters and locals), in a tree
  of 93 files (30 more mention the name without importing it, 30 import a
  same-named function from elsewhere): 0.55-0.6 s, 31 files parsed with
  libcst (1,181 lines), 31 changed; 100 users (303 files): 1.9-2.0 s.
  About 2,000-2,500 libcst-parsed lines/s: the time is the libcst parse and
  scope pass of the files that change.
- dulwich (85 files, 75k lines): ``dulwich.objects.sha_to_hex`` 10 s (8
  files, 27k lines parsed, all 8 changed); ``dulwich.objects.Tree.add`` 9-10 s
  (7 parsed, 6 changed, although ``add`` occurs in 53 files);
  ``dulwich.repo.Repo`` 19-21 s (29 files, 51k lines).
- libcst itself (297 files): ``libcst._parser.entrypoints.parse_module``
  (re-exported as ``libcst.parse_module``) 7 s, 57 files changed; libcst's own
  test suite gives the same result on the renamed copy as on the original
  (2136 passed, same 6 failures and 4 errors from this environment).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from .bench import benchmark
from .common import PY_SUFFIXES, RenameError, _check_identifier
from .planner import _Planner

__all__ = ["RenameError", "plan_rename", "benchmark"]


def plan_rename(read: Callable[[str], bytes | None], paths: Iterable[str], qualname: str, new_name: str,
                module_of: Callable[[str], str | None] | None = None, *,
                review: list[str] | None = None) -> dict[str, bytes]:
    """Plan renaming `qualname` to `new_name` across the tree; see module docstring.

    `read(path)` returns a file's current content (None: gone); `paths` are the
    tree's files (only ``.py``/``.pyi`` are considered); `module_of(path)`
    gives a file's dotted module name (None: not importable) — by default the
    index's `ModuleTable` rules (packages, ``src/``, namespaces, aliases).
    Returns ``{path: new_content}`` for the files that change, including the
    defining one; ``{}`` when `new_name` equals the old name.

    `review`, when given, receives ``path:line: text`` for every attribute
    access ``.old_name`` left unchanged (after the plan): uses whose object
    the rename could not tie to the symbol — the best-effort part, above all
    for methods called on values of unknown type — for a human to check.
    """
    _check_identifier(new_name, "new name")
    planner = _Planner(read, [p for p in paths if p.endswith(PY_SUFFIXES)], module_of)
    out = planner.plan(qualname, new_name)
    if review is not None:
        review.extend(planner.leftovers(out))
    return out
