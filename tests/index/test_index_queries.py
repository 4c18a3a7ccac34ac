"""Cross-file answers over the sample project (index_tree.TREE)."""
from __future__ import annotations

import pytest

from index import STALE_HEADER, render_definitions, render_paths, render_references, render_symbols
from index_tree import TREE, build, defs, refs, write_tree


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    write_tree(root)
    built = build(root)
    built.check_invariants()
    return built


def test_only_python_files_are_indexed(index):
    assert index.paths() == sorted(p for p in TREE if p.endswith(".py"))
    with pytest.raises(KeyError):
        index.symbols("README.md")


def test_definitions_bare_and_qualified(index):
    helper = [("pkg/util.py", 1, 5, "function", "pkg.util.helper")]
    assert defs(index, "helper") == helper
    assert defs(index, "pkg.util.helper") == helper
    assert defs(index, "pkg.helper") == helper  # through the re-export in pkg/__init__.py
    assert defs(index, "Greeter") == [("pkg/models.py", 12, 7, "class", "pkg.models.Greeter")]
    assert defs(index, "pkg.models.Greeter.greet") == [("pkg/models.py", 18, 9, "method", "pkg.models.Greeter.greet")]
    assert defs(index, "describe") == [
        ("pkg/models.py", 8, 9, "method", "pkg.models.Base.describe"),
        ("pkg/sub/deep.py", 14, 9, "method", "pkg.sub.deep.Child.describe"),
    ]
    assert defs(index, "name") == [("pkg/models.py", 16, 14, "attribute", "pkg.models.Greeter.name")]
    assert defs(index, "kind") == [("pkg/models.py", 6, 5, "attribute", "pkg.models.Base.kind")]
    assert defs(index, "compute") == [("src/lib/core.py", 1, 5, "function", "lib.core.compute")]
    assert defs(index, "part_fn") == [("nsroot/nspkg/part.py", 1, 5, "function", "nsroot.nspkg.part.part_fn")]
    assert defs(index, "VALUE") == [("uses_lib.py", 4, 1, "variable", "uses_lib.VALUE")]
    assert defs(index, "pkg") == [("pkg/__init__.py", 1, 1, "module", "pkg")]
    assert defs(index, "nope") == []
    assert defs(index, "pkg.nope") == []


def test_symbols_and_render(index):
    text = render_symbols(index.symbols("pkg/models.py"), index.is_stale("pkg/models.py"))
    assert text == (
        "module pkg.models 1:1\n"
        "class pkg.models.Base 5:7\n"
        "attribute pkg.models.Base.kind 6:5\n"
        "method pkg.models.Base.describe 8:9\n"
        "class pkg.models.Greeter 12:7\n"
        "attribute pkg.models.Greeter.greeting 13:5\n"
        "method pkg.models.Greeter.__init__ 15:9\n"
        "attribute pkg.models.Greeter.name 16:14\n"
        "method pkg.models.Greeter.greet 18:9\n"
        "method pkg.models.Greeter.shout 21:9\n"
    )
    assert render_symbols(index.symbols("pkg/sub/__init__.py"), True) == STALE_HEADER + "module pkg.sub 1:1\n"
    assert render_definitions(index.definitions("describe")) == (
        "pkg/models.py:8:9 method pkg.models.Base.describe\n"
        "pkg/sub/deep.py:14:9 method pkg.sub.deep.Child.describe\n"
    )


def test_references_through_imports_aliases_and_reexports(index):
    target = "pkg.util.helper"
    assert refs(index, target) == [
        ("app.py", 7, 16, "pkg.helper", target, True),  # pkg re-exports it
        ("pkg/__init__.py", 2, 19, "helper", target, True),  # the import line itself
        ("pkg/__init__.py", 5, 13, "helper", target, True),  # its __all__ entry
        ("pkg/models.py", 2, 19, "helper", target, True),
        ("pkg/models.py", 19, 16, "h", target, True),  # imported `as h`
        ("pkg/sub/deep.py", 10, 14, "u.helper", target, True),  # import pkg.util as u
        ("pkg/util.py", 6, 12, "helper", target, True),
        ("pkg/util.py", 6, 19, "helper", target, True),
        ("tests/conftest.py", 1, 22, "helper", target, True),
        ("tests/conftest.py", 3, 10, "helper", target, True),
    ]
    assert refs(index, "pkg.helper") == refs(index, target)
    assert refs(index, "helper") == refs(index, target)  # a bare name: every `helper` defined


def test_methods_through_class_and_instances_and_name_only_candidates(index):
    target = "pkg.models.Greeter.greet"
    assert refs(index, target) == [
        ("pkg/models.py", 22, 22, "other.target.greet", None, False),  # dynamic attribute
        ("pkg/models.py", 23, 26, "self.name.greet", None, False),  # self.x.method()
        ("pkg/sub/deep.py", 8, 7, "g.greet", target, True),  # through an instance
        ("pkg/sub/deep.py", 9, 13, "Greeter.greet", target, True),  # through the class
        ("tests/test_models.py", 5, 35, "helpers.make_greeter().greet", None, False),
    ]
    assert refs(index, "pkg.Greeter") == [
        ("pkg/__init__.py", 3, 21, "Greeter", "pkg.models.Greeter", True),
        ("pkg/__init__.py", 5, 23, "Greeter", "pkg.models.Greeter", True),
        ("pkg/sub/deep.py", 2, 17, "Greeter", "pkg.models.Greeter", True),
        ("pkg/sub/deep.py", 7, 9, "Greeter", "pkg.models.Greeter", True),
        ("pkg/sub/deep.py", 9, 5, "Greeter", "pkg.models.Greeter", True),
        ("tests/helpers.py", 2, 28, "Greeter", "pkg.models.Greeter", True),
        ("tests/helpers.py", 3, 12, "Greeter", "pkg.models.Greeter", True),
    ]


def test_bare_name_covers_every_definition_so_named(index):
    both = refs(index, "describe")
    assert both == sorted(refs(index, "pkg.models.Base.describe") + refs(index, "pkg.sub.deep.Child.describe"))
    assert refs(index, "pkg") == [  # a bare module name stays the module
        ("app.py", 1, 8, "pkg", "pkg", True),
        ("app.py", 2, 6, "pkg", "pkg", True),
        ("app.py", 7, 12, "pkg", "pkg", True),
        ("pkg/sub/deep.py", 1, 8, "pkg", "pkg", True),
        ("pkg/sub/deep.py", 2, 6, "pkg", "pkg", True),
        ("tests/conftest.py", 1, 6, "pkg", "pkg", True),
        ("tests/helpers.py", 2, 10, "pkg", "pkg", True),
    ]


def test_inheritance_and_overrides(index):
    assert refs(index, "pkg.models.Base.kind") == [
        ("pkg/models.py", 9, 21, "self.kind", "pkg.models.Base.kind", True),
        ("pkg/sub/deep.py", 19, 41, "Child().kind", "pkg.models.Base.kind", True),  # inherited
    ]
    assert refs(index, "pkg.models.Base.describe") == [
        ("pkg/models.py", 19, 36, "self.describe", "pkg.models.Base.describe", True),
        ("pkg/sub/deep.py", 15, 24, "super().describe", "pkg.models.Base.describe", True),
    ]
    assert refs(index, "pkg.sub.deep.Child.describe") == [
        ("pkg/sub/deep.py", 19, 20, "Child().describe", "pkg.sub.deep.Child.describe", True),
    ]


def test_src_layout_and_namespace_package(index):
    target = "lib.core.compute"
    assert refs(index, target) == [
        ("src/lib/__init__.py", 1, 19, "compute", target, True),
        ("tests/unit/lib_test.py", 1, 17, "compute", target, True),
        ("tests/unit/lib_test.py", 5, 12, "compute", target, True),
        ("uses_lib.py", 1, 17, "compute", target, True),
        ("uses_lib.py", 4, 9, "compute", target, True),
        ("uses_lib.py", 4, 30, "lib.core.compute", target, True),
    ]
    assert refs(index, "nsroot.nspkg.part") == [
        ("nsuser.py", 1, 21, "nsroot.nspkg.part", "nsroot.nspkg.part", True),
        ("nsuser.py", 2, 19, "nsroot.nspkg.part", "nsroot.nspkg.part", True),
        ("nsuser.py", 4, 9, "p", "nsroot.nspkg.part", True),
    ]
    assert refs(index, "nsroot.nspkg.part.part_fn") == [
        ("nsuser.py", 2, 31, "part_fn", "nsroot.nspkg.part.part_fn", True),
        ("nsuser.py", 4, 11, "p.part_fn", "nsroot.nspkg.part.part_fn", True),
        ("nsuser.py", 4, 23, "part_fn", "nsroot.nspkg.part.part_fn", True),
    ]


def test_render_references_uses_source_lines(index):
    def line_of(path: str, line: int) -> str:
        return TREE[path].splitlines(keepends=True)[line - 1]

    assert render_references(index.references("pkg.models.Greeter.greet"), line_of) == (
        "pkg/models.py:22:22\t        other.target.greet()\t(unresolved)\n"
        "pkg/models.py:23:26\t        return self.name.greet()\t(unresolved)\n"
        "pkg/sub/deep.py:8:7\t    g.greet()\n"
        "pkg/sub/deep.py:9:13\t    Greeter.greet(g)\n"
        "tests/test_models.py:5:35\t    assert helpers.make_greeter().greet()\t(unresolved)\n"
    )
    assert render_references([], line_of) == ""


def test_dependencies(index):
    expected = {
        "app.py": ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"],
        "nsroot/nspkg/part.py": [],
        "nsuser.py": ["nsroot/nspkg/part.py"],
        "pkg/__init__.py": ["pkg/models.py", "pkg/util.py"],
        "pkg/models.py": ["pkg/util.py"],  # `from . import util`: its own package is not an edge
        "pkg/sub/__init__.py": [],
        "pkg/sub/deep.py": ["pkg/models.py", "pkg/util.py"],
        "pkg/util.py": [],
        "src/lib/__init__.py": ["src/lib/core.py"],
        "src/lib/core.py": [],
        "tests/conftest.py": ["pkg/__init__.py", "pkg/util.py"],
        "tests/helpers.py": ["pkg/__init__.py", "pkg/models.py"],  # an import inside a function
        "tests/test_app.py": ["app.py"],
        "tests/test_models.py": ["tests/helpers.py"],  # `import helpers`: sibling on sys.path
        "tests/unit/conftest.py": ["src/lib/__init__.py"],
        "tests/unit/lib_test.py": ["src/lib/__init__.py"],
        "uses_lib.py": ["src/lib/__init__.py", "src/lib/core.py"],
    }
    assert {p: index.dependencies(p) for p in index.paths()} == expected
    with pytest.raises(KeyError):
        index.dependencies("missing.py")


def test_dependents_direct_and_transitive(index):
    assert index.dependents("pkg/util.py") == ["pkg/__init__.py", "pkg/models.py", "pkg/sub/deep.py", "tests/conftest.py"]
    assert index.dependents("pkg/util.py", transitive=True) == [
        "app.py",
        "pkg/__init__.py",
        "pkg/models.py",
        "pkg/sub/deep.py",
        "tests/conftest.py",
        "tests/helpers.py",
        "tests/test_app.py",
        "tests/test_models.py",
    ]
    assert index.dependents("src/lib/core.py", transitive=True) == [
        "src/lib/__init__.py",
        "tests/unit/conftest.py",
        "tests/unit/lib_test.py",
        "uses_lib.py",
    ]
    assert index.dependents("tests/test_app.py", transitive=True) == []
    assert render_paths(index.dependents("pkg/models.py")) == "pkg/__init__.py\npkg/sub/deep.py\ntests/helpers.py\n"


def test_affected_tests(index):
    everything = ["tests/test_app.py", "tests/test_models.py", "tests/unit/lib_test.py"]
    assert index.affected_tests(["pkg/util.py"]) == everything  # tests/conftest.py imports it
    assert index.affected_tests(["pkg/sub/deep.py"]) == ["tests/test_app.py"]
    # models -> pkg/__init__ -> tests/conftest.py, which covers every test under tests/
    assert index.affected_tests(["pkg/models.py"]) == everything
    assert index.affected_tests(["src/lib/core.py"]) == ["tests/unit/lib_test.py"]
    assert index.affected_tests(["tests/conftest.py"]) == everything
    assert index.affected_tests(["tests/unit/conftest.py"]) == ["tests/unit/lib_test.py"]
    assert index.affected_tests(["tests/test_app.py"]) == ["tests/test_app.py"]
    assert index.affected_tests(["tests/helpers.py"]) == ["tests/test_models.py"]
    assert index.affected_tests(["nsroot/nspkg/part.py", "README.md"]) == []
    assert index.affected_tests([]) == []


def test_stats(index):
    stats = index.stats()
    assert stats["files"] == 17
    assert stats["parsed"] == 17
    assert stats["cache_hits"] == 0
    assert stats["errors"] == 0
    assert stats["lines"] == sum(TREE[p].count("\n") for p in TREE if p.endswith(".py"))
    assert stats["unresolved"] == 4
    assert stats["references"] == sum(len(index.facts(p).references) for p in index.paths())
    assert stats["definitions"] == sum(len(index.symbols(p)) for p in index.paths())
