"""PythonLanguage: what one file yields on its own (symbolic targets)."""
from __future__ import annotations

import textwrap

from index import Definition, Import, PythonLanguage
from index.facts import pack, unpack

LANG = PythonLanguage()


def extract(source: str | bytes, path: str = "pkg/mod.py", module: str = "pkg.mod"):
    if isinstance(source, str):
        source = textwrap.dedent(source).encode()
    return LANG.extract(path, source, module)


def ref_rows(facts):
    return [(r.name, r.line, r.col, r.enclosing, r.target, r.resolved) for r in facts.references]


def def_rows(facts):
    return [(d.kind, d.qualname, d.line, d.col, d.end_line, d.end_col) for d in facts.definitions]


def test_definitions_kinds_and_spans():
    facts = extract(
        """\
        X = 1
        a, b = 2, 3

        class C(Base):
            attr: int = 0

            def m(self):
                self.inst = 1

                def inner():
                    pass

            @classmethod
            async def am(cls):
                pass

        def f():
            local = 1
            class Local:
                pass
        """
    )
    assert facts.error is None
    assert def_rows(facts) == [
        ("module", "pkg.mod", 1, 1, 20, 13),
        ("variable", "pkg.mod.X", 1, 1, 1, 6),
        ("variable", "pkg.mod.a", 2, 1, 2, 12),
        ("variable", "pkg.mod.b", 2, 4, 2, 12),
        ("class", "pkg.mod.C", 4, 7, 15, 13),
        ("attribute", "pkg.mod.C.attr", 5, 5, 5, 18),
        ("method", "pkg.mod.C.m", 7, 9, 11, 17),
        ("attribute", "pkg.mod.C.inst", 8, 14, 8, 22),
        ("function", "pkg.mod.C.m.inner", 10, 13, 11, 17),
        ("method", "pkg.mod.C.am", 14, 15, 15, 13),
        ("function", "pkg.mod.f", 17, 5, 20, 13),
        ("class", "pkg.mod.f.Local", 19, 11, 20, 13),
    ]
    assert facts.bases == (("pkg.mod.C", ("pkg.mod.Base",)), ("pkg.mod.f.Local", ()))


def test_references_are_symbolic_and_locals_are_not_references():
    facts = extract(
        """\
        import os.path as osp
        from .util import helper as h

        class G:
            def __init__(self, name: "Name"):
                self.name = name

            def greet(self, other):
                h(self.name)
                other.x.y()
                return osp.join("a")

        def run():
            g = G("x")
            g.greet(g)
            return len([v.strip() for v in ()])
        """
    )
    assert ref_rows(facts) == [
        ("os", 1, 8, "pkg.mod", "os", True),
        ("os.path", 1, 11, "pkg.mod", "os.path", True),
        (".util", 2, 7, "pkg.mod", "pkg.util", True),
        ("helper", 2, 19, "pkg.mod", "pkg.util.helper", True),
        ("Name", 5, 31, "pkg.mod.G", "pkg.mod.Name", True),
        ("self.name", 6, 14, "pkg.mod.G.__init__", "pkg.mod.G().name", True),
        ("h", 9, 9, "pkg.mod.G.greet", "pkg.mod.h", True),
        ("self.name", 9, 16, "pkg.mod.G.greet", "pkg.mod.G().name", True),
        ("other.x", 10, 15, "pkg.mod.G.greet", None, False),
        ("other.x.y", 10, 17, "pkg.mod.G.greet", None, False),
        ("osp", 11, 16, "pkg.mod.G.greet", "pkg.mod.osp", True),
        ("osp.join", 11, 20, "pkg.mod.G.greet", "pkg.mod.osp.join", True),
        ("G", 14, 9, "pkg.mod.run", "pkg.mod.G", True),
        ("g.greet", 15, 7, "pkg.mod.run", "pkg.mod.G().greet", True),
        ("len", 16, 12, "pkg.mod.run", "builtins.len", True),
        ("v.strip", 16, 19, "pkg.mod.run", None, False),
    ]
    assert facts.bindings == (
        ("pkg.mod.osp", "os.path"),
        ("pkg.mod.h", "pkg.util.helper"),
        ("pkg.mod.G.name", "pkg.mod.Name()"),
    )


def test_imports_relative_absolute_star_and_too_far():
    facts = extract(
        """\
        import a.b as c, d
        from . import sib
        from ..up import thing
        from .x import *
        """,
        path="pkg/sub/__init__.py",
        module="pkg.sub",
    )
    assert facts.imports == (
        Import("a.b", None, "c", 0, 1, 8),
        Import("d", None, None, 0, 1, 18),
        Import("pkg.sub", "sib", None, 1, 2, 15),
        Import("pkg.up", "thing", None, 2, 3, 18),
        Import("pkg.sub.x", "*", None, 1, 4, 1),
    )
    assert [i.bound for i in facts.imports] == ["c", "d", "sib", "thing", None]
    top = extract("from .. import x\n", path="top.py", module="top")
    assert top.imports == (Import("", "x", None, 2, 1, 16),)
    assert ref_rows(top) == [("x", 1, 16, "top", None, False)]


def test_all_entries_are_references_and_exports():
    facts = extract('from .impl import run\n__all__ = ["run", "missing"]\n__all__ += ["later"]\n')
    assert facts.exports == ("run", "missing", "later")
    names = [(r.name, r.line, r.col, r.target) for r in facts.references if r.line > 1]
    assert names == [
        ("run", 2, 13, "pkg.mod.run"),
        ("missing", 2, 20, "pkg.mod.missing"),
        ("__all__", 3, 1, "pkg.mod.__all__"),  # += reads it
        ("later", 3, 14, "pkg.mod.later"),
    ]


def test_columns_count_characters_not_bytes():
    facts = extract("é = 1; xé = f(é)\n")
    assert def_rows(facts)[1:] == [("variable", "pkg.mod.é", 1, 1, 1, 6), ("variable", "pkg.mod.xé", 1, 8, 1, 17)]
    assert [(r.name, r.col) for r in facts.references] == [("f", 13), ("é", 15)]


def test_coding_cookie_and_bom():
    latin = extract(b'# -*- coding: latin-1 -*-\nt = "\xe9"; y = t.upper()\n')
    assert latin.error is None
    assert [(r.name, r.line, r.col) for r in latin.references] == [("t", 2, 14), ("t.upper", 2, 16)]
    bom = extract(b"\xef\xbb\xbfimport os\n")
    assert [(r.name, r.col) for r in bom.references] == [("os", 8)]


def test_errors_are_reported_not_raised():
    cases = {
        b"def assist(:\n    pass\n": "m.py:1:12: invalid syntax",
        b"x = (\n": "m.py:1:5: '(' was never closed",
        b"x = 1\nyy\x00\n": "m.py:2:3: source code cannot contain null bytes",
        b'x = "\xff"\n': "m.py:1:6: cannot decode as utf-8: invalid start byte (byte 0xff)",
        b"# coding: klingon\n": "m.py:1:1: unknown encoding: klingon",
        b"x = " + b"+".join([b"a"] * 100_000) + b"\n": (
            "m.py:1:1: cannot parse: RecursionError: maximum recursion depth exceeded during ast construction"
        ),
    }
    for source, message in cases.items():
        facts = LANG.extract("m.py", source, "m")
        assert facts.error == message
        assert [d.kind for d in facts.definitions] == ["module"]
        assert facts.references == ()


def test_empty_file_is_a_module():
    facts = extract(b"")
    assert facts.error is None
    assert facts.definitions == (Definition("module", "pkg.mod", "pkg/mod.py", 1, 1, 1, 1),)
    assert facts.lines == 0


def test_pack_roundtrip_and_fast_path_agree():
    source = b"import os\nclass A:\n    def f(self):\n        return os.sep\n"
    facts = LANG.extract("a.py", source, "a")
    assert unpack(pack(facts)) == facts
    assert LANG.extract_packed("a.py", source, "a") == pack(facts)


def test_local_types_annotations_and_walrus():
    facts = extract(
        """\
        from typing import Optional

        def f(a: Optional["Thing"], b: Other | None):
            a.run()
            b.go()
            if (c := Maker()):
                c.make()
            try:
                pass
            except KeyError as e:
                e.args
            x = 1
            x = Other()
            x.gone()
        """
    )
    targets = {r.name: r.target for r in facts.references if "." in r.name}
    assert targets == {
        "a.run": "pkg.mod.Thing().run",
        "b.go": "pkg.mod.Other().go",
        "c.make": "pkg.mod.Maker().make",
        "e.args": "builtins.KeyError().args",
        "x.gone": None,  # assigned twice: unknown
    }


def test_super_calls_look_along_the_bases():
    facts = extract(
        """\
        class C(B):
            def m(self):
                super().m()
                super(C, self).n
                super(Other, self).o
                return lambda: super().p
        """
    )
    assert [(r.name, r.target) for r in facts.references if "super" in r.name] == [
        ("super", "builtins.super"),
        ("super().m", "pkg.mod.C.<super>.m"),
        ("super", "builtins.super"),
        ("super().n", "pkg.mod.C.<super>.n"),
        ("super", "builtins.super"),
        ("super().o", None),
        ("super", "builtins.super"),
        ("super().p", "builtins.super().p"),  # not directly in the method: name-only once resolved
    ]
