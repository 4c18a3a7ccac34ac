"""GitBase against `git ls-tree` / `git show` of real commits."""
from __future__ import annotations

import errno
import os
import stat
import threading
import time

import pytest

from gitsync import GitBase, UnknownRevisionError
from vfs.base import BaseStat

FILES = {
    "README.md": b"# readme\n",
    "empty.txt": b"",
    "binary.bin": bytes(range(256)) * 4,
    "src/pkg/__init__.py": b"",
    "src/pkg/mod.py": b"def f():\n    return 1\n",
    "src/pkg/deep/er/leaf.txt": b"leaf\n",
    "src/run.sh": b"#!/bin/sh\necho hi\n",
    "docs/guide.md": b"guide\n",
    "sp ace/na\u00efve.txt": b"unicode name\n",
}


@pytest.fixture
def repo(make_repo):
    path, git = make_repo(FILES)
    os.chmod(path / "src/run.sh", 0o755)
    os.symlink("src/pkg/mod.py", path / "link")
    os.symlink("../README.md", path / "docs/up")
    os.symlink("does/not/exist", path / "dangling")
    git("add", "-A")
    # A submodule entry (gitlink) without a real submodule.
    git("update-index", "--add", "--cacheinfo", f"160000,{git.sha('HEAD')},vendor/sub")
    git("commit", "-q", "-m", "second")
    return path, git


def ls_tree(git, rev: str) -> dict[str, tuple[str, str, str, str]]:
    """path -> (mode, type, sha, size) for every entry, trees included."""
    out = {}
    for line in git.bytes("ls-tree", "-r", "-t", "-l", "-z", rev).split(b"\0"):
        if not line:
            continue
        meta, path = line.split(b"\t", 1)
        mode, kind, sha, size = meta.split()
        out[os.fsdecode(path)] = (mode.decode(), kind.decode(), sha.decode(), size.decode())
    return out


def test_matches_git_ls_tree_and_show(repo):
    path, git = repo
    head = git.sha("HEAD")
    base = GitBase(path, head)
    mtime_ns = int(git("log", "-1", "--format=%ct")) * 1_000_000_000
    entries = ls_tree(git, "HEAD")
    assert set(entries) >= {"src/run.sh", "link", "vendor/sub", "src/pkg/deep/er"}
    for rel, (mode, kind, sha, size) in entries.items():
        st = base.stat(rel)
        assert st is not None, rel
        assert st.mtime_ns == mtime_ns
        assert (st.uid, st.gid) == (os.getuid(), os.getgid())
        assert base.git_entry(rel) == (int(mode, 8), sha)
        if kind == "tree" or kind == "commit":
            assert st.mode == stat.S_IFDIR | 0o755, rel
            assert st.size == 0
        elif mode == "120000":
            assert st.mode == stat.S_IFLNK | 0o777
            assert base.readlink(rel) == git.bytes("cat-file", "blob", sha)
            assert base.readlink(rel) == os.fsencode(os.readlink(path / rel))
            assert st.size == int(size)
        else:
            assert st.mode == stat.S_IFREG | int(mode[-3:], 8), rel
            assert st.size == int(size)
            assert base.read(rel) == git.bytes("show", f"HEAD:{rel}") == (path / rel).read_bytes()
    # listdir of every directory matches the names git lists one level down.
    for rel in [""] + [p for p, e in entries.items() if e[1] == "tree"]:
        listed = git.bytes("ls-tree", "-z", "--name-only", f"HEAD:{rel}" if rel else "HEAD")
        expected = sorted(os.fsdecode(n) for n in listed.split(b"\0") if n)
        assert sorted(base.listdir(rel)) == expected, rel
    base.check_invariants()
    base.close()


def test_exact_values(repo):
    path, git = repo
    base = GitBase(path, git.sha("HEAD"))
    assert sorted(base.listdir("")) == ["README.md", "binary.bin", "dangling", "docs", "empty.txt", "link",
                                        "sp ace", "src", "vendor"]
    assert sorted(base.listdir("src")) == ["pkg", "run.sh"]
    assert base.stat("src/run.sh").mode == 0o100755
    assert base.stat("src/pkg/mod.py").mode == 0o100644
    assert base.stat("src/pkg/mod.py").size == 22
    assert base.stat("empty.txt").size == 0
    assert base.read("empty.txt") == b""
    assert base.read("binary.bin") == bytes(range(256)) * 4
    assert base.readlink("link") == b"src/pkg/mod.py"
    assert base.readlink("docs/up") == b"../README.md"
    assert base.readlink("dangling") == b"does/not/exist"
    assert base.read("sp ace/na\u00efve.txt") == b"unicode name\n"
    assert base.tree_sha == git.sha("HEAD^{tree}")
    assert base.commit_sha == git.sha("HEAD")
    assert base.git_entry("") == (0o40000, git.sha("HEAD^{tree}"))


def test_submodule_is_an_empty_directory(repo):
    path, git = repo
    base = GitBase(path, git.sha("HEAD"))
    assert base.stat("vendor/sub") == BaseStat(0o40755, 0, base.mtime_ns, os.getuid(), os.getgid())
    assert base.listdir("vendor/sub") == []
    assert base.stat("vendor/sub/anything") is None
    with pytest.raises(IsADirectoryError):
        base.read("vendor/sub")


def test_missing_and_wrong_kind(repo):
    path, git = repo
    base = GitBase(path, git.sha("HEAD"))
    for rel in ["nope", "src/nope", "README.md/x", "../README.md", "/README.md", "src//run.sh",
                "./README.md", "src/", "link/x"]:
        assert base.stat(rel) is None, rel
        assert base.git_entry(rel) is None, rel
    with pytest.raises(FileNotFoundError) as exc:
        base.listdir("nope")
    assert exc.value.errno == errno.ENOENT and exc.value.filename == "nope"
    with pytest.raises(NotADirectoryError):
        base.listdir("README.md")
    with pytest.raises(NotADirectoryError):
        base.listdir("link")  # lstat semantics: a symlink is not followed
    with pytest.raises(NotADirectoryError):
        base.read("README.md/x")
    with pytest.raises(IsADirectoryError):
        base.read("src")
    with pytest.raises(OSError) as exc:
        base.read("link")
    assert exc.value.errno == errno.ELOOP
    with pytest.raises(OSError) as exc:
        base.readlink("README.md")
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(FileNotFoundError):
        base.read("src/nope.py")
    with pytest.raises(FileNotFoundError):
        base.readlink("nope")


def test_older_commit_is_served_not_the_worktree(repo):
    path, git = repo
    first = git.sha("HEAD~1")
    (path / "README.md").write_bytes(b"changed on disk\n")
    base = GitBase(path, first)
    assert base.stat("link") is None  # added in the second commit
    assert base.read("README.md") == b"# readme\n"
    assert base.stat("src/run.sh").mode == 0o100644  # chmod came in the second commit
    assert base.mtime_ns == int(git("log", "-1", "--format=%ct", first)) * 1_000_000_000


def test_unborn_base_is_the_empty_tree(make_repo):
    path, _git = make_repo()
    before = time.time_ns()
    base = GitBase(path, None)
    st = base.stat("")
    assert st.mode == 0o40755
    assert st.mtime_ns >= before
    assert base.listdir("") == []
    assert base.stat("x") is None


def test_unknown_commit(repo):
    path, git = repo
    with pytest.raises(UnknownRevisionError) as exc:
        GitBase(path, "0" * 40)
    assert str(exc.value) == f"unknown revision '{'0' * 40}'"
    tree = git.sha("HEAD^{tree}")
    with pytest.raises(UnknownRevisionError) as exc:
        GitBase(path, tree)
    assert str(exc.value) == f"revision '{tree}' is not a commit"


def test_reads_packed_objects(repo):
    path, git = repo
    git("gc", "-q", "--prune=now")
    assert git("count-objects", "-v").splitlines()[0] == "count: 0"
    base = GitBase(path, git.sha("HEAD"))
    assert base.read("src/pkg/deep/er/leaf.txt") == b"leaf\n"


def test_concurrent_readers_see_the_same_content(repo):
    path, git = repo
    base = GitBase(path, git.sha("HEAD"), tree_cache_entries=2, blob_cache_bytes=64)
    expected = {rel: (path / rel).read_bytes() for rel in FILES}
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                for rel, content in expected.items():
                    assert base.read(rel) == content
                    assert base.stat(rel).size == len(content)
        except BaseException as exc:  # collected for the main thread to re-raise
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    base.check_invariants()


def test_open_is_lazy_on_a_3000_file_repo(make_repo, capsys):
    files = {f"pkg{i // 100}/sub{i % 7}/mod{i}.py": f"x = {i}\n".encode() for i in range(3000)}
    path, git = make_repo(files)
    git("gc", "-q")
    head = git.sha("HEAD")
    t0 = time.perf_counter()
    base = GitBase(path, head)
    t1 = time.perf_counter()
    content = base.read("pkg17/sub3/mod1704.py")
    t2 = time.perf_counter()
    assert content == b"x = 1704\n"
    with capsys.disabled():
        print(f"\n[gitsync] GitBase open {1000 * (t1 - t0):.2f} ms, first read {1000 * (t2 - t1):.2f} ms"
              " (3,000 files, packed)")
