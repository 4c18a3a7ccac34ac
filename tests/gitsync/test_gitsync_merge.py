"""merge3: exact results, cross-checked with `git merge-file` where git's output is the same."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gitsync import merge3

BASE = b"one\ntwo\nthree\nfour\nfive\nsix\nseven\n"


def git_merge_file(tmp_path: Path, base: bytes, mine: bytes, theirs: bytes) -> tuple[bytes, bool]:
    for name, data in (("mine", mine), ("base", base), ("theirs", theirs)):
        (tmp_path / name).write_bytes(data)
    proc = subprocess.run(
        ["git", "merge-file", "-p", "-L", "mine", "-L", "base", "-L", "theirs", "mine", "base", "theirs"],
        cwd=tmp_path, capture_output=True,
    )
    assert proc.returncode >= 0
    return proc.stdout, proc.returncode > 0


CASES = {
    "clean: changes far apart": (
        b"ONE\ntwo\nthree\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n",
        b"ONE\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n",
        False,
    ),
    "clean: insertion and deletion": (
        b"zero\none\ntwo\nthree\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\nthree\nfour\nsix\nseven\n",
        b"zero\none\ntwo\nthree\nfour\nsix\nseven\n",
        False,
    ),
    "identical change on both sides": (
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nseven\n",
        False,
    ),
    "identical change plus a separate one": (
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nSEVEN\n",
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nSEVEN\n",
        False,
    ),
    "conflict: same line changed differently": (
        b"one\ntwo\nmine\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\ntheirs\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\n<<<<<<< mine\nmine\n=======\ntheirs\n>>>>>>> theirs\nfour\nfive\nsix\nseven\n",
        True,
    ),
    "conflict: both append differently": (
        BASE + b"mine\n",
        BASE + b"theirs\n",
        BASE + b"<<<<<<< mine\nmine\n=======\ntheirs\n>>>>>>> theirs\n",
        True,
    ),
    "conflict: one edits, the other deletes": (
        b"one\ntwo\nTHREE\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\nfour\nfive\nsix\nseven\n",
        b"one\ntwo\n<<<<<<< mine\nTHREE\n=======\n>>>>>>> theirs\nfour\nfive\nsix\nseven\n",
        True,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_merge3(name, tmp_path):
    mine, theirs, expected, conflicted = CASES[name]
    assert merge3(BASE, mine, theirs) == (expected, conflicted)
    assert git_merge_file(tmp_path, BASE, mine, theirs) == (expected, conflicted)


def test_one_side_unchanged_takes_the_other():
    other = b"completely\ndifferent\n"
    assert merge3(BASE, BASE, other) == (other, False)
    assert merge3(BASE, other, BASE) == (other, False)
    assert merge3(BASE, BASE, BASE) == (BASE, False)


def test_adjacent_changes_conflict_as_in_git(tmp_path):
    mine = b"one\nTWO\nthree\nfour\nfive\nsix\nseven\n"
    theirs = b"one\ntwo\nTHREE\nfour\nfive\nsix\nseven\n"
    expected = b"one\n<<<<<<< mine\nTWO\nthree\n=======\ntwo\nTHREE\n>>>>>>> theirs\nfour\nfive\nsix\nseven\n"
    assert merge3(BASE, mine, theirs) == (expected, True)
    assert git_merge_file(tmp_path, BASE, mine, theirs) == (expected, True)


def test_missing_final_newline_gets_one_before_a_marker():
    merged, conflicted = merge3(b"a\n", b"mine", b"theirs")
    assert conflicted
    assert merged == b"<<<<<<< mine\nmine\n=======\ntheirs\n>>>>>>> theirs\n"


def test_empty_base_both_add():
    assert merge3(b"", b"x\n", b"x\n") == (b"x\n", False)
    assert merge3(b"", b"x\n", b"y\n") == (b"<<<<<<< mine\nx\n=======\ny\n>>>>>>> theirs\n", True)


def test_binary_content_is_merged_by_lines_without_crashing():
    base = bytes(range(256))
    merged, conflicted = merge3(base, base + b"\x00mine", base + b"\x00theirs")
    assert conflicted
    assert merged.startswith(base[:11])  # up to and including the first b"\n" (0x0a)


def test_large_file_with_spread_changes_is_clean():
    base_lines = [f"line {i}\n".encode() for i in range(5000)]
    mine_lines = list(base_lines)
    theirs_lines = list(base_lines)
    for i in range(0, 5000, 100):
        mine_lines[i] = f"mine {i}\n".encode()
        theirs_lines[i + 50] = f"theirs {i + 50}\n".encode()
    expected = list(base_lines)
    for i in range(0, 5000, 100):
        expected[i] = mine_lines[i]
        expected[i + 50] = theirs_lines[i + 50]
    merged, conflicted = merge3(b"".join(base_lines), b"".join(mine_lines), b"".join(theirs_lines))
    assert (merged, conflicted) == (b"".join(expected), False)
