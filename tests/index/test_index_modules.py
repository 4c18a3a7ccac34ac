"""Module names from paths, and the module table."""
from __future__ import annotations

from index import ModuleTable, module_name
from index.modules import aliases


def test_canonical_names():
    assert module_name("pkg/mod.py") == "pkg.mod"
    assert module_name("pkg/__init__.py") == "pkg"
    assert module_name("pkg/sub/__init__.pyi") == "pkg.sub"
    assert module_name("setup.py") == "setup"
    assert module_name("src/lib/core.py") == "lib.core"  # src layout
    assert module_name("src/__init__.py") == "src"  # a package literally named src
    assert module_name("ns/part/mod.py") == "ns.part.mod"  # namespace packages
    assert module_name("tests/test_x.py") == "tests.test_x"


def test_aliases_follow_the_package_chain():
    inits = {"tests/admin", "src/lib", "packages/foo/src/foo"}
    has_init = inits.__contains__
    assert aliases("tests/admin/models.py", has_init) == ("admin.models",)
    assert aliases("tests/admin/__init__.py", has_init) == ("admin",)
    assert aliases("tests/helpers.py", has_init) == ("helpers",)
    assert aliases("src/lib/core.py", has_init) == ("src.lib.core",)
    assert aliases("packages/foo/src/foo/x.py", has_init) == ("foo.x",)
    assert aliases("pkg/mod.py", {"pkg"}.__contains__) == ()
    assert aliases("setup.py", has_init) == ()


def test_table_lookup_preferences_and_namespaces():
    table = ModuleTable()
    changed = table.add(["pkg/__init__.py", "pkg/mod.py", "pkg/mod.pyi", "ns/a/x.py", "tests/helpers.py"])
    assert {"pkg", "pkg.mod", "ns", "ns.a", "ns.a.x", "tests", "helpers"} <= changed
    assert table.lookup("pkg.mod") == "pkg/mod.py"  # .py over .pyi
    assert table.lookup("ns") == ModuleTable.NAMESPACE
    assert table.lookup("ns.a.x") == "ns/a/x.py"
    assert table.lookup("helpers") == "tests/helpers.py"  # alias
    assert table.lookup("nope") is None
    assert table.names("tests/helpers.py") == ("tests.helpers", "helpers")
    table.add(["helpers.py"])
    assert table.lookup("helpers") == "helpers.py"  # canonical beats alias
    table.add(["pkg/mod/__init__.py"])
    assert table.lookup("pkg.mod") == "pkg/mod/__init__.py"  # package beats module
    table.check_invariants()


def test_table_reports_alias_changes_when_an_init_appears():
    table = ModuleTable()
    table.add(["tests/helpers.py", "tests/test_a.py"])
    changed = table.add(["tests/__init__.py"])
    assert {"helpers", "test_a", "tests.helpers", "tests"} <= changed
    assert table.lookup("helpers") is None
    assert table.names("tests/helpers.py") == ("tests.helpers",)
    changed = table.remove(["tests/__init__.py"])
    assert "helpers" in changed
    assert table.lookup("helpers") == "tests/helpers.py"
    table.remove(["tests/helpers.py", "tests/test_a.py"])
    assert table.lookup("tests") is None  # the namespace went with its last file
    assert len(table) == 0
    table.check_invariants()
