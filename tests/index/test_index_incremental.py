"""Incremental updates, the on-disk cache and concurrency."""
from __future__ import annotations

import logging
import threading

import pytest

from index import Index, PythonLanguage
from index_tree import RENAMED, TREE, build, defs, files_of, refs, write_tree


@pytest.fixture
def root(tmp_path):
    tree = tmp_path / "tree"
    write_tree(tree)
    return tree


def snapshot(index: Index) -> dict:
    """Everything queries can see, for comparing two indexes."""
    return {
        path: (index.facts(path), index.dependencies(path), index.dependents(path), index.is_stale(path))
        for path in index.paths()
    }


HELPER_AFTER_RENAME = [  # name-only candidates once pkg.util.helper is gone
    ("app.py", 8, 16, "pkg.helper", None, False),
    ("pkg/__init__.py", 2, 19, "helper", None, False),
    ("pkg/__init__.py", 5, 13, "helper", None, False),
    ("pkg/models.py", 2, 19, "helper", None, False),
    ("pkg/sub/deep.py", 10, 14, "u.helper", None, False),
    ("tests/conftest.py", 1, 22, "helper", None, False),
    ("tests/conftest.py", 3, 10, "helper", None, False),
]
ASSIST = [
    ("app.py", 3, 22, "assist", "pkg.util.assist", True),
    ("app.py", 8, 28, "assist", "pkg.util.assist", True),
    ("pkg/util.py", 6, 12, "assist", "pkg.util.assist", True),
    ("pkg/util.py", 6, 19, "assist", "pkg.util.assist", True),
]


def test_rename_a_function_and_add_a_call(root):
    index = build(root)
    assert index.stats()["parsed"] == 17
    for path, text in RENAMED.items():
        index.update(path, text.encode())
    assert index.stats()["parsed"] == 19  # only the two changed files
    assert defs(index, "helper") == []
    assert defs(index, "assist") == [("pkg/util.py", 1, 5, "function", "pkg.util.assist")]
    assert refs(index, "pkg.util.assist") == ASSIST
    assert refs(index, "pkg.util.helper") == HELPER_AFTER_RENAME  # dependents were refreshed
    assert index.dependencies("app.py") == ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py", "pkg/util.py"]
    index.check_invariants()
    # Same answers as a fresh index of the edited tree.
    write_tree(root, RENAMED)
    assert snapshot(index) == snapshot(build(root))


def test_edit_inside_a_body_reresolves_only_that_file(root):
    index = build(root)
    before = index.stats()
    index.update("pkg/util.py", TREE["pkg/util.py"].replace("x * 2", "x * 3").encode())
    after = index.stats()
    assert (after["parsed"], after["resolved"]) == (before["parsed"] + 1, before["resolved"] + 1)
    # A new module-level name changes the namespace: its consulters are refreshed too.
    index.update("pkg/util.py", (TREE["pkg/util.py"] + "\nEXTRA = 1\n").encode())
    consulters = {"pkg/util.py", "pkg/__init__.py", "pkg/models.py", "pkg/sub/deep.py", "tests/conftest.py", "app.py"}
    assert index.stats()["resolved"] - after["resolved"] == len(consulters)


def test_files_appearing_and_disappearing(root):
    index = build(root)
    index.update("app.py", (TREE["app.py"] + "from pkg.later import soon\nsoon()\n").encode())
    missing = [("app.py", 8, 23, "soon", None, False), ("app.py", 9, 1, "soon", None, False)]
    assert refs(index, "pkg.later.soon") == missing  # name-only candidates until it exists
    assert index.dependencies("app.py") == ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"]
    index.update("pkg/later.py", b"def soon():\n    pass\n")
    assert index.dependencies("app.py") == ["pkg/__init__.py", "pkg/later.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"]
    assert refs(index, "pkg.later.soon") == [
        ("app.py", 8, 23, "soon", "pkg.later.soon", True),
        ("app.py", 9, 1, "soon", "pkg.later.soon", True),
    ]
    assert index.affected_tests(["pkg/later.py"]) == ["tests/test_app.py"]
    index.remove("pkg/later.py")
    assert index.dependencies("app.py") == ["pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py"]
    assert refs(index, "pkg.later.soon") == missing
    # A deleted module's importers are still found by name.
    assert index.dependents("pkg/later.py") == ["app.py"]
    assert index.affected_tests(["pkg/later.py"]) == ["tests/test_app.py"]
    index.remove("pkg/later.py")  # removing twice is a no-op
    index.check_invariants()


def test_an_init_file_appearing_changes_module_aliases(root):
    index = build(root)
    assert index.dependencies("tests/test_models.py") == ["tests/helpers.py"]  # `import helpers`
    index.update("tests/__init__.py", b"")
    # tests/ is now a package: helpers.py is tests.helpers only, `import helpers` is external.
    assert index.dependencies("tests/test_models.py") == []
    assert index.references("tests.helpers.make_greeter") == []
    index.remove("tests/__init__.py")
    assert index.dependencies("tests/test_models.py") == ["tests/helpers.py"]
    assert [r.path for r in index.references("tests.helpers.make_greeter")] == ["tests/test_models.py"]
    index.check_invariants()


def test_rename_file(root):
    index = build(root)
    index.rename("pkg/util.py", "pkg/tools.py", TREE["pkg/util.py"].encode())
    assert defs(index, "helper") == [("pkg/tools.py", 1, 5, "function", "pkg.tools.helper")]
    # Importers of pkg.util now hold name-only candidates; tools.py's own calls resolve.
    assert refs(index, "pkg.tools.helper") == sorted(
        [
            ("pkg/tools.py", 6, 12, "helper", "pkg.tools.helper", True),
            ("pkg/tools.py", 6, 19, "helper", "pkg.tools.helper", True),
            ("app.py", 7, 16, "pkg.helper", None, False),
        ]
        + [r for r in HELPER_AFTER_RENAME if r[0] != "app.py"]
    )
    index.check_invariants()


def test_second_index_over_the_same_cache_parses_nothing(root, tmp_path):
    cache = tmp_path / "cache"
    first = build(root, cache)
    assert first.stats()["parsed"] == 17
    second = build(root, cache)
    stats = second.stats()
    assert (stats["parsed"], stats["cache_hits"], stats["resolved"]) == (0, 17, 0)  # facts and resolution reused
    assert snapshot(second) == snapshot(first)


def test_warm_build_after_offline_edits_refreshes_what_depends_on_them(root, tmp_path):
    cache = tmp_path / "cache"
    build(root, cache)
    write_tree(root, RENAMED)
    warm = build(root, cache)
    assert warm.stats()["parsed"] == 2
    assert warm.stats()["resolved"] < 17
    assert refs(warm, "pkg.util.helper") == HELPER_AFTER_RENAME
    assert refs(warm, "pkg.util.assist") == ASSIST
    assert snapshot(warm) == snapshot(build(root))
    warm.check_invariants()


def test_warm_build_after_a_package_appeared(root, tmp_path):
    cache = tmp_path / "cache"
    build(root, cache)
    (root / "tests" / "__init__.py").write_text("")
    (root / "pkg" / "later.py").write_text("def soon():\n    pass\n")
    warm = build(root, cache)
    assert warm.stats()["parsed"] == 2
    assert snapshot(warm) == snapshot(build(root))


def test_corrupt_cache_files_are_misses(root, tmp_path, caplog):
    cache = tmp_path / "cache"
    build(root, cache)
    (cache / "facts.pack").write_bytes(b"garbage")
    (cache / "resolution").write_bytes(b"\x00junk")
    with caplog.at_level(logging.WARNING, logger="index.cache"):
        again = build(root, cache)
    assert again.stats()["parsed"] == 17
    assert "corrupt facts pack ignored" in caplog.text
    assert "corrupt resolution snapshot ignored" in caplog.text
    assert snapshot(again) == snapshot(build(root))
    assert build(root, cache).stats()["parsed"] == 0  # the pack was rewritten


def test_single_file_updates_are_cached_too(tmp_path, caplog):
    cache = tmp_path / "cache"
    Index(cache).update("a.py", b"A = 1\n")
    second = Index(cache)
    second.update("a.py", b"A = 1\n")
    assert (second.stats()["parsed"], second.stats()["cache_hits"]) == (0, 1)
    [entry] = cache.glob("??/*")
    entry.write_bytes(b"garbage")
    third = Index(cache)
    with caplog.at_level(logging.WARNING, logger="index.cache"):
        third.update("a.py", b"A = 1\n")
    assert third.stats()["parsed"] == 1
    assert "corrupt entry" in caplog.text
    assert defs(third, "A") == [("a.py", 1, 1, "variable", "a.A")]


class SlowPython(PythonLanguage):
    """Python whose extraction of a source containing SLOW waits for a signal."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def extract_packed(self, path, source, module):
        if b"SLOW" in source:
            self.entered.set()
            assert self.release.wait(10)
        return super().extract_packed(path, source, module)


def test_a_slow_update_finishing_last_does_not_win():
    lang = SlowPython()
    index = Index(languages=[lang])
    slow = threading.Thread(target=index.update, args=("m.py", b"SLOW = 1\n"))
    slow.start()
    assert lang.entered.wait(10)
    index.update("m.py", b"FAST = 1\n")  # called later, finishes first
    lang.release.set()
    slow.join()
    assert [d.qualname for d in index.symbols("m.py")] == ["m", "m.FAST"]


def test_a_remove_during_a_slow_update_wins():
    lang = SlowPython()
    index = Index(languages=[lang])
    slow = threading.Thread(target=index.update, args=("m.py", b"SLOW = 1\n"))
    slow.start()
    assert lang.entered.wait(10)
    index.remove("m.py")
    lang.release.set()
    slow.join()
    assert index.paths() == []


def test_queries_are_not_blocked_by_a_parse_in_progress():
    lang = SlowPython()
    index = Index(languages=[lang])
    index.update("a.py", b"def f():\n    pass\n")
    slow = threading.Thread(target=index.update, args=("b.py", b"SLOW = 1\n"))
    slow.start()
    assert lang.entered.wait(10)
    assert defs(index, "f") == [("a.py", 1, 5, "function", "a.f")]  # answered while b.py parses
    lang.release.set()
    slow.join()
    assert defs(index, "SLOW") == [("b.py", 1, 1, "variable", "b.SLOW")]


def test_concurrent_updates_and_queries(root):
    index = build(root)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                index.update(f"gen/m{n}.py", f"from pkg.util import helper\nV{i} = helper({i})\n".encode())
                index.update("pkg/util.py", TREE["pkg/util.py"].replace("2", str(i)).encode())
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(30):
                index.references("pkg.util.helper")
                index.affected_tests(["pkg/util.py"])
                index.definitions("helper")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)] + [threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    index.check_invariants()
    assert [r.path for r in index.references("pkg.util.helper") if r.path.startswith("gen/")] == [
        "gen/m0.py", "gen/m0.py", "gen/m1.py", "gen/m1.py", "gen/m2.py", "gen/m2.py",
    ]


def test_build_skips_unreadable_files(root, caplog):
    def broken() -> bytes:
        raise PermissionError("denied")

    index = Index()
    with caplog.at_level(logging.WARNING, logger="index.index"):
        index.build(files_of(root) + [("locked.py", broken)], workers=1)
    assert "locked.py" not in index.paths()
    assert "cannot read locked.py: denied" in caplog.text
