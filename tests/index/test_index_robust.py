"""Bad input never crashes the index and never loses good facts."""
from __future__ import annotations

import time

import pytest

from index import STALE_HEADER, Index, render_symbols
from index._pool import chunked
from index_tree import TREE, build, defs, generated, refs, write_tree


@pytest.fixture
def index(tmp_path):
    write_tree(tmp_path)
    return build(tmp_path)


def test_syntax_error_keeps_last_good_facts_marked_stale(index):
    good_symbols = index.symbols("pkg/util.py")
    good_refs = refs(index, "pkg.util.helper")
    index.update("pkg/util.py", b"def assist(:\n    pass\n")
    assert index.is_stale("pkg/util.py")
    assert index.errors() == ["pkg/util.py:1:12: invalid syntax"]
    assert index.symbols("pkg/util.py") == good_symbols
    assert refs(index, "pkg.util.helper") == good_refs
    assert render_symbols(index.symbols("pkg/util.py"), index.is_stale("pkg/util.py")) == (
        STALE_HEADER + "module pkg.util 1:1\nfunction pkg.util.helper 1:5\nfunction pkg.util.twice 5:5\n"
    )
    index.update("pkg/util.py", TREE["pkg/util.py"].replace("helper", "assist").encode())
    assert not index.is_stale("pkg/util.py")
    assert index.errors() == []
    assert defs(index, "assist") == [("pkg/util.py", 1, 5, "function", "pkg.util.assist")]
    index.check_invariants()


def test_file_that_never_parsed(index):
    index.update("broken.py", b"def (\n")
    assert index.is_stale("broken.py")
    assert [(d.kind, d.qualname) for d in index.symbols("broken.py")] == [("module", "broken")]
    assert index.errors() == ["broken.py:1:5: invalid syntax"]
    assert index.stats()["errors"] == 1
    index.remove("broken.py")
    assert index.errors() == []
    with pytest.raises(KeyError):
        index.is_stale("broken.py")


def test_non_utf8_and_odd_bytes(index):
    index.update("bin.py", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    index.update("nul.py", b"x = 1\x00\n")
    index.update("latin.py", b"# -*- coding: latin-1 -*-\nNAME = '\xe9t\xe9'\n")
    assert index.errors() == [
        "bin.py:1:1: cannot decode as utf-8: invalid start byte (byte 0x89)",
        "nul.py:1:6: source code cannot contain null bytes",
    ]
    assert defs(index, "NAME") == [("latin.py", 2, 1, "variable", "latin.NAME")]
    index.check_invariants()


def test_empty_file(index):
    index.update("empty.py", b"")
    assert [(d.kind, d.qualname, d.line, d.col) for d in index.symbols("empty.py")] == [("module", "empty", 1, 1)]
    assert not index.is_stale("empty.py")
    assert index.dependencies("empty.py") == []


def test_ten_megabyte_generated_file(index):
    source = generated(10)
    assert len(source) >= 10 * (1 << 20)
    started = time.monotonic()
    index.update("gen/table.py", source)  # parsed in a child process (> 1 MB)
    elapsed = time.monotonic() - started
    assert not index.is_stale("gen/table.py")
    assert defs(index, "TABLE") == [("gen/table.py", 1, 1, "variable", "gen.table.TABLE")]
    assert len(index.symbols("gen/table.py")) == 1 + 1 + 2000
    assert len(index.references("gen.table.f1")) == 1
    assert elapsed < 15, elapsed
    index.check_invariants()


def test_pathological_nesting(index):
    index.update("deep.py", b"x = " + b"+".join([b"a"] * 100_000) + b"\n")
    index.update("parens.py", b"x = " + b"(" * 300 + b")" * 300 + b"\n")
    assert index.errors() == [
        "deep.py:1:1: cannot parse: RecursionError: maximum recursion depth exceeded during ast construction",
        "parens.py:1:205: too many nested parentheses",
    ]


def test_a_huge_file_is_parsed_first_and_alone():
    jobs = [(i, None, f"m{i}.py", f"m{i}", b"x" * 5000) for i in range(40)]
    jobs.append((40, None, "big.py", "big", b"x" * (3 << 20)))
    chunks = chunked(jobs, workers=2)
    assert [job[2] for job in chunks[0]] == ["big.py"]  # starts at once, on its own worker
    assert sorted(job[0] for chunk in chunks for job in chunk) == list(range(41))
    assert len(chunks) >= 2  # the small files are not queued behind it


def test_build_with_a_huge_file_uses_the_pool(tmp_path):
    write_tree(tmp_path)
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "big.py").write_bytes(generated(3))
    seen = []
    index = Index()
    files = [(p.relative_to(tmp_path).as_posix(), p.read_bytes) for p in sorted(tmp_path.rglob("*.py"))]
    index.build(files, workers=2, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (18, 18)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert index.stats()["parsed"] == 18
    assert defs(index, "TABLE") == [("gen/big.py", 1, 1, "variable", "gen.big.TABLE")]
