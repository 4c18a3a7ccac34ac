"""The sample project the index tests run against, and helpers.

Covers: relative imports, re-exports through ``__init__.py`` and
``__all__``, ``import a.b as c``, aliases, methods called through the class
and through instances, inheritance, unresolvable attributes, a ``src/``
layout, a namespace package, a tests directory with ``test_*.py``,
``*_test.py``, helpers imported by sibling name and two ``conftest.py``.

(Named ``index_tree`` rather than ``conftest``: ``tests/index`` has no
``__init__.py``, and a module here must not shadow the ``index`` package.)
"""
from __future__ import annotations

from pathlib import Path

from index import Index

TREE: dict[str, str] = {
    "pkg/__init__.py": '''\
"""The package: re-exports its API."""
from .util import helper
from .models import Greeter as Greeter

__all__ = ["helper", "Greeter"]
''',
    "pkg/util.py": '''\
def helper(x):
    return x * 2


def twice(x):
    return helper(helper(x))
''',
    "pkg/models.py": '''\
from . import util
from .util import helper as h


class Base:
    kind = "base"

    def describe(self):
        return self.kind


class Greeter(Base):
    greeting = "hi"

    def __init__(self, name):
        self.name = name

    def greet(self):
        return h(self.name) + self.describe() + util.twice(1)

    def shout(self, other):
        other.target.greet()
        return self.name.greet()
''',
    "pkg/sub/__init__.py": "",
    "pkg/sub/deep.py": '''\
import pkg.util as u
from pkg import Greeter
from ..models import Base


def run():
    g = Greeter("x")
    g.greet()
    Greeter.greet(g)
    return u.helper(2)


class Child(Base):
    def describe(self):
        return super().describe() + "child"


def use_child():
    return Child().describe() + Child().kind
''',
    "app.py": '''\
import pkg
from pkg.sub import deep


def main():
    deep.run()
    return pkg.helper(3)
''',
    "src/lib/__init__.py": '''\
from .core import compute
''',
    "src/lib/core.py": '''\
def compute():
    return 42
''',
    "uses_lib.py": '''\
from lib import compute
import lib.core

VALUE = compute() + lib.core.compute()
''',
    "nsroot/nspkg/part.py": '''\
def part_fn():
    return 1
''',
    "nsuser.py": '''\
import nsroot.nspkg.part as p
from nsroot.nspkg.part import part_fn

TOTAL = p.part_fn() + part_fn()
''',
    "tests/conftest.py": '''\
from pkg.util import helper

HELPED = helper(1)
''',
    "tests/helpers.py": '''\
def make_greeter():
    from pkg.models import Greeter
    return Greeter("t")
''',
    "tests/test_models.py": '''\
import helpers


def test_greet():
    assert helpers.make_greeter().greet()
''',
    "tests/test_app.py": '''\
import app


def test_main():
    assert app.main() == 6
''',
    "tests/unit/conftest.py": '''\
import lib
''',
    "tests/unit/lib_test.py": '''\
from lib import compute


def test_compute():
    assert compute() == 42
''',
    "README.md": "not indexed\n",
}

# The edit of the incremental tests: `helper` renamed, a call added in app.py.
RENAMED: dict[str, str] = {
    "pkg/util.py": '''\
def assist(x):
    return x * 2


def twice(x):
    return assist(assist(x))
''',
    "app.py": '''\
import pkg
from pkg.sub import deep
from pkg.util import assist


def main():
    deep.run()
    return pkg.helper(3) + assist(1)
''',
}


def write_tree(root: Path, tree: dict[str, str] = TREE) -> None:
    """Write ``tree`` under ``root``."""
    for rel, text in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def files_of(root: Path) -> list[tuple[str, object]]:
    """``(relative path, reader)`` for every file under ``root``, sorted."""
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out.append((path.relative_to(root).as_posix(), path.read_bytes))
    return out


def build(root: Path, cache_dir: Path | None = None) -> Index:
    """A fresh index of ``root`` built in-process (the tree is tiny)."""
    index = Index(cache_dir)
    index.build(files_of(root), workers=1)
    return index


def refs(index: Index, qualname: str) -> list[tuple]:
    """references() as comparable tuples."""
    return [(r.path, r.line, r.col, r.name, r.target, r.resolved) for r in index.references(qualname)]


def defs(index: Index, name: str) -> list[tuple]:
    """definitions() as comparable tuples."""
    return [(d.path, d.line, d.col, d.kind, d.qualname) for d in index.definitions(name)]


def generated(megabytes: int) -> bytes:
    """A generated module: a huge data table and 2,000 small functions."""
    row = '    "' + "x" * 60 + '",\n'
    count = megabytes * (1 << 20) // len(row)
    functions = "".join(f"def f{i}():\n    return f{i - 1}() + TABLE[{i}]\n" for i in range(1, 2000))
    return ("TABLE = [\n" + row * count + "]\n\ndef f0():\n    return 0\n" + functions).encode()
