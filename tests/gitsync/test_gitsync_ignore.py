"""IgnoreRules: exact cases, and agreement with `git ls-files --others --ignored` on a real tree."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from gitsync import IgnoreRules

GITIGNORE = b"""\
# comment
*.log
!important.log
build/
/root_only.txt
docs/*
!docs/keep.md
cache
"""
NESTED = b"""\
*.tmp
!keep.log
sub_only/
"""
TREE = [
    "a.py", "debug.log", "important.log", "root_only.txt", "build/out.o", "build/nested/deep.o",
    "src/build", "src/root_only.txt", "src/x.log", "src/y.tmp", "docs/readme.md", "docs/keep.md",
    "cache/blob", "src/cache", "pkg/keep.log", "pkg/other.log", "pkg/data.tmp", "pkg/sub_only/f",
    "pkg/inner/z.tmp", "pkg/inner/keep.log", "other/data.tmp", "other/sub_only/f", "vendor/lib.py",
    "build2/out.o",
]


def make_tree(root: Path) -> None:
    for rel in TREE:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (root / ".gitignore").write_bytes(GITIGNORE)
    (root / "pkg/.gitignore").write_bytes(NESTED)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    root = tmp_path / "plain"
    root.mkdir()
    make_tree(root)
    return root


@pytest.fixture
def repo(make_repo) -> tuple[Path, object]:
    path, git = make_repo()
    make_tree(path)
    return path, git


EXPECTED = {
    ("a.py", False): False,
    ("debug.log", False): True,
    ("important.log", False): False,  # negation
    ("root_only.txt", False): True,  # anchored
    ("src/root_only.txt", False): False,  # anchored pattern does not match deeper
    ("build", True): True,  # directory-only pattern
    ("build/out.o", False): True,  # under an ignored directory
    ("build/nested/deep.o", False): True,
    ("src/build", False): False,  # "build/" does not match a file
    ("build2", True): False,
    ("src/x.log", False): True,
    ("src/y.tmp", False): False,  # pkg/.gitignore does not reach src/
    ("docs", True): False,  # docs/* ignores the content, not the directory
    ("docs/readme.md", False): True,
    ("docs/keep.md", False): False,
    ("cache", True): True,
    ("cache/blob", False): True,
    ("src/cache", False): True,  # unanchored, matches files too
    ("pkg/keep.log", False): False,  # nested negation overrides the root's *.log
    ("pkg/other.log", False): True,
    ("pkg/data.tmp", False): True,  # nested pattern
    ("pkg/inner/z.tmp", False): True,  # nested pattern applies below its directory
    ("pkg/inner/keep.log", False): False,
    ("pkg/sub_only", True): True,
    ("pkg/sub_only/f", False): True,
    ("other/data.tmp", False): False,
    ("other/sub_only", True): False,
    ("", True): False,
    (".git", True): True,
    (".git/config", False): True,
    ("pkg/.git", True): True,
    ("pkg/.git/HEAD", False): True,
    (".gitignore", False): False,
}


@pytest.mark.parametrize("case", sorted(EXPECTED), ids=lambda c: f"{c[0]}{'/' if c[1] else ''}")
def test_plain_directory(plain, case):
    rules = IgnoreRules(plain)
    assert rules.is_ignored(*case) is EXPECTED[case]


@pytest.mark.parametrize("case", sorted(EXPECTED), ids=lambda c: f"{c[0]}{'/' if c[1] else ''}")
def test_git_worktree(repo, case):
    path, _git = repo
    assert IgnoreRules(path).is_ignored(*case) is EXPECTED[case]


def test_agrees_with_git_on_every_file(repo):
    path, git = repo
    ignored_by_git = set(git("ls-files", "--others", "--ignored", "--exclude-standard").splitlines())
    rules = IgnoreRules(path)
    files = [p.relative_to(path).as_posix() for p in path.rglob("*")
             if p.is_file() and ".git" not in p.relative_to(path).parts]
    ours = {f for f in files if rules.is_ignored(f, False)}
    assert ours == ignored_by_git
    assert "pkg/keep.log" not in ours and "pkg/data.tmp" in ours


def test_info_exclude_and_core_excludes_file(repo, tmp_path):
    path, git = repo
    (path / ".git/info").mkdir(exist_ok=True)
    (path / ".git/info/exclude").write_bytes(b"*.py\n")
    global_ignore = tmp_path / "home/.config/git/ignore"  # XDG default, HOME is tmp (conftest)
    global_ignore.parent.mkdir(parents=True)
    global_ignore.write_bytes(b"vendor/\n!debug.log\n")
    rules = IgnoreRules(path)
    assert rules.is_ignored("a.py", False) is True
    assert rules.is_ignored("vendor", True) is True
    assert rules.is_ignored("debug.log", False) is True  # .gitignore outranks the global file
    ignored_by_git = set(git("ls-files", "--others", "--ignored", "--exclude-standard").splitlines())
    assert {"a.py", "vendor/lib.py"} <= ignored_by_git


def test_a_plain_directory_ignores_info_exclude_lookalikes(plain):
    # Without .git there is no info/exclude to read; only .gitignore files count.
    assert IgnoreRules(plain).is_ignored("a.py", False) is False


def test_extra_patterns_take_precedence(plain):
    rules = IgnoreRules(plain, extra_patterns=[".vfs", "*.py", "!debug.log"])
    assert rules.is_ignored(".vfs", True) is True
    assert rules.is_ignored("src/mod.py", False) is True
    assert rules.is_ignored("debug.log", False) is False


def test_nothing_under_an_ignored_directory_can_be_re_included(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / ".gitignore").write_bytes(b"out/\n!out/keep.txt\n")
    rules = IgnoreRules(root)
    assert rules.is_ignored("out/keep.txt", False) is True


def test_reader_callable_and_invalidate(tmp_path):
    contents = {".gitignore": b"*.a\n"}
    reads: list[str] = []

    def read(rel: str) -> bytes | None:
        reads.append(rel)
        return contents.get(rel)

    rules = IgnoreRules(tmp_path, read=read)
    assert rules.is_ignored("x.a", False) is True
    assert rules.is_ignored("d/e/x.a", False) is True
    assert rules.is_ignored("d/e/x.b", False) is False
    # Each directory's .gitignore is read once, however many queries.
    assert sorted(reads) == [".gitignore", "d/.gitignore", "d/e/.gitignore"]
    contents[".gitignore"] = b"*.b\n"
    assert rules.is_ignored("x.b", False) is False  # cached until invalidated
    rules.invalidate()
    assert rules.is_ignored("x.b", False) is True
    assert rules.is_ignored("x.a", False) is False


def test_symlinked_gitignore_is_not_followed(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (tmp_path / "elsewhere").write_bytes(b"*\n")
    os.symlink(tmp_path / "elsewhere", root / ".gitignore")
    assert IgnoreRules(root).is_ignored("a", False) is False


def test_ignorecase_from_config(repo):
    path, git = repo
    git("config", "core.ignorecase", "true")
    rules = IgnoreRules(path)
    assert rules.is_ignored("DEBUG.LOG", False) is True
    git("config", "core.ignorecase", "false")
    assert IgnoreRules(path).is_ignored("DEBUG.LOG", False) is False
