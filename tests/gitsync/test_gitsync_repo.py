"""open_source, revision resolution and branch-name rules, checked against the git CLI."""
from __future__ import annotations

import os
import subprocess

import pytest

from gitsync import (
    EMPTY_TREE_SHA,
    BareRepositoryError,
    GitSyncError,
    InvalidBranchNameError,
    UnknownRevisionError,
    check_branch_name,
    open_source,
)


@pytest.fixture
def history(make_repo):
    """main: c1 - c2 - c3 (HEAD), tags light (c2) and annotated (c1), branch side at c1."""
    path, git = make_repo({"f": b"1\n"})
    git.write({"f": b"2\n"})
    git.commit_all("c2")
    git.write({"f": b"3\n"})
    git.commit_all("c3")
    git("tag", "light", "HEAD~1")
    git("tag", "-a", "-m", "annotated", "annotated", "HEAD~2")
    git("branch", "side", "HEAD~2")
    return path, git


def test_plain_directory_is_not_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    assert open_source(tmp_path / "plain") is None


def test_subdirectory_of_a_worktree_is_served_as_a_plain_directory(make_repo):
    path, _git = make_repo({"sub/f": b"x"})
    assert open_source(path / "sub") is None


def test_rev_needs_a_repository(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(GitSyncError) as exc:
        open_source(tmp_path / "plain", rev="HEAD")
    assert str(exc.value) == f"{tmp_path / 'plain'} is not a git repository; --rev needs one"


def test_missing_directory(tmp_path):
    with pytest.raises(GitSyncError) as exc:
        open_source(tmp_path / "nope")
    assert str(exc.value) == f"{tmp_path / 'nope'} is not a directory"


def test_worktree_on_a_branch(history):
    path, git = history
    info = open_source(path)
    assert info is not None
    assert info.source == str(path)
    assert info.git_dir == str(path / ".git")
    assert info.common_dir == str(path / ".git")
    assert info.worktree == str(path)
    assert info.bare is False
    assert info.head_ref == "refs/heads/main"
    assert info.head_branch == "main"
    assert info.detached is False
    assert info.unborn is False
    assert info.head_commit == git.sha("HEAD")
    assert info.rev is None
    assert info.base_commit == git.sha("HEAD")
    assert info.base_tree == git.sha("HEAD^{tree}")
    assert info.state_dir == str(path / ".git" / "vfs")


def test_detached_head(history):
    path, git = history
    git("checkout", "-q", "--detach", "HEAD~1")
    info = open_source(path)
    assert info.head_ref is None
    assert info.head_branch is None
    assert info.detached is True
    assert info.base_commit == git.sha("HEAD") == git.sha("main~1")


def test_unborn_branch_has_the_empty_tree_as_base(make_repo):
    path, git = make_repo()
    info = open_source(path)
    assert info.head_ref == "refs/heads/main"
    assert info.unborn is True
    assert info.head_commit is None
    assert info.base_commit is None
    assert info.base_tree == EMPTY_TREE_SHA == git("hash-object", "-t", "tree", "/dev/null").strip()


@pytest.mark.parametrize(
    "rev",
    ["HEAD", "main", "side", "light", "annotated", "HEAD~1", "HEAD~2", "HEAD^", "main~2", "HEAD^1",
     "HEAD~0", "HEAD^0", "HEAD^^", "main~", "HEAD~1^", "annotated^{commit}", "annotated^{}", "refs/heads/side"],
)
def test_revisions_resolve_like_git_rev_parse(history, rev):
    path, git = history
    info = open_source(path, rev=rev)
    assert info.rev == rev
    assert info.base_commit == git.sha(f"{rev}^{{commit}}")
    assert info.base_tree == git.sha(f"{rev}^{{tree}}")
    assert info.head_commit == git.sha("HEAD")  # HEAD is reported, not moved


def test_full_and_short_sha(history):
    path, git = history
    sha = git.sha("HEAD~1")
    assert open_source(path, rev=sha).base_commit == sha
    assert open_source(path, rev=sha[:7]).base_commit == sha


@pytest.mark.parametrize("rev", ["xyz", "HEAD~3", "HEAD^2", "0" * 40, "deadbeef", "HEAD~x", "~1", "nope~1"])
def test_unknown_revision(history, rev):
    path, git = history
    assert git.run("rev-parse", "--verify", "-q", f"{rev}^{{commit}}", check=False).returncode != 0
    with pytest.raises(UnknownRevisionError) as exc:
        open_source(path, rev=rev)
    assert str(exc.value) == f"unknown revision '{rev}'"


def test_revision_naming_a_tree_is_not_a_commit(history):
    path, git = history
    tree = git.sha("HEAD^{tree}")
    with pytest.raises(UnknownRevisionError) as exc:
        open_source(path, rev=tree)
    assert str(exc.value) == f"revision '{tree}' is not a commit"


def test_bare_repository_needs_a_rev(history, tmp_path):
    path, git = history
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(path), str(bare))
    with pytest.raises(BareRepositoryError) as exc:
        open_source(bare)
    assert str(exc.value) == f"{bare} is a bare repository; mount a commit with --rev REV"


def test_bare_repository_with_rev(history, tmp_path):
    path, git = history
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(path), str(bare))
    info = open_source(bare, rev="main~1")
    assert info.bare is True
    assert info.worktree is None
    assert info.git_dir == str(bare)
    assert info.base_commit == git.sha("main~1")
    assert info.head_ref == "refs/heads/main"
    assert info.state_dir == str(bare / "vfs")


def test_linked_worktree(history, tmp_path):
    path, git = history
    linked = tmp_path / "linked"
    git("worktree", "add", "-q", "-b", "wt", str(linked), "HEAD~1")
    info = open_source(linked)
    assert info.worktree == str(linked)
    assert info.git_dir == str(path / ".git" / "worktrees" / "linked")
    assert info.common_dir == str(path / ".git")
    assert info.head_ref == "refs/heads/wt"
    assert info.base_commit == git.sha("main~1")


def test_repo_info_is_immutable(history):
    path, _git = history
    info = open_source(path)
    with pytest.raises(AttributeError):
        info.base_commit = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "name",
    ["in-memory-edits", "feature/x", "a.b", "v1.0", "uni-ñ", "a..b", "a b", "a~b", "a^b", "a:b", "a?b",
     "a*b", "a[b", "a\\b", "a/", "/a", "a//b", ".a", "a/.b", "a.lock", "a/b.lock", "a.", "@", "a@{b",
     "-a", "HEAD", "", "a\x7fb", "x/-y"],
)
def test_branch_names_follow_git_check_ref_format(name, tmp_path):
    git_ok = subprocess.run(
        ["git", "check-ref-format", "--branch", name], cwd=tmp_path, capture_output=True
    ).returncode == 0
    if name == "HEAD":
        git_ok = False  # check-ref-format accepts it, but `git branch HEAD` refuses
    if git_ok:
        assert check_branch_name(name) == "refs/heads/" + name
    else:
        with pytest.raises(InvalidBranchNameError) as exc:
            check_branch_name(name)
        assert str(exc.value) == f"'{name}' is not a valid branch name"


def test_open_source_does_not_write(history):
    path, git = history
    before = {p: os.stat(p).st_mtime_ns for p in (path / ".git").rglob("*")}
    open_source(path, rev="HEAD~1")
    after = {p: os.stat(p).st_mtime_ns for p in (path / ".git").rglob("*")}
    assert before == after
