"""DiffBranch, verified with the git CLI: content, history, and what is left untouched."""
from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from dulwich.refs import DiskRefsContainer

from gitsync import (
    BranchCheckedOutError,
    GitSyncError,
    ConcurrentUpdateError,
    DiffBranch,
    InvalidBranchNameError,
    UnknownRevisionError,
    open_source,
)
from gitsync.branch import MAX_ATTEMPTS

BRANCH = "in-memory-edits"
FILES = {
    "a.txt": b"a\n",
    "script.sh": b"#!/bin/sh\n",
    "dir/b.txt": b"b\n",
    "dir/sub/c.txt": b"c\n",
    "gone.txt": b"gone\n",
    "docs/only.txt": b"only\n",
    "docs/deeper/more.txt": b"more\n",
}

# One change of every kind, as a session would pass them.
CHANGES = {
    "a.txt": (0o100644, b"a changed\n"),  # modified
    "new/deep/file.txt": (0o100644, b"new\n"),  # added, in new directories
    "gone.txt": None,  # deleted
    "script.sh": (0o100644, b"#!/bin/sh\n"),  # mode change 755 -> 644 only
    "dir/b.txt": (0o100775, b"b\n"),  # mode change 644 -> 755 (st_mode normalised)
    "newlink": (0o120777, b"dir/b.txt"),  # symlink added
    "link": (0o120777, b"dir/sub/c.txt"),  # symlink retargeted
    "docs/only.txt": None,  # directory deleted, path by path
    "docs/deeper/more.txt": None,
}
EXPECTED_NAME_STATUS = sorted([
    "A\tnew/deep/file.txt", "A\tnewlink", "D\tdocs/deeper/more.txt", "D\tdocs/only.txt", "D\tgone.txt",
    "M\ta.txt", "M\tdir/b.txt", "M\tlink", "M\tscript.sh",
])


@pytest.fixture
def repo(make_repo):
    path, git = make_repo(FILES)
    os.chmod(path / "script.sh", 0o755)
    os.symlink("a.txt", path / "link")
    base = git.commit_all("second")
    git("branch", "feature", "HEAD~1")
    git("tag", "v1")
    git("tag", "-a", "-m", "annotated", "v1a")
    git("pack-refs", "--all")
    git("branch", "loose-ref")  # one loose ref next to the packed ones
    # Uncommitted state that must survive: a staged change and a worktree change.
    (path / "a.txt").write_bytes(b"staged\n")
    git("add", "a.txt")
    (path / "dir/b.txt").write_bytes(b"unstaged\n")
    return path, git, base


def name_status(git, a: str, b: str) -> list[str]:
    return sorted(git("diff", "--no-renames", "--name-status", a, b).splitlines())


def snapshot(path: Path, git) -> dict[str, str]:
    """Hash of everything a diff-branch commit must not change."""
    out: dict[str, str] = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if rel.startswith(".git/objects/") or rel.startswith(f".git/logs/refs/heads/{BRANCH}") \
                or rel == f".git/refs/heads/{BRANCH}" or p.is_dir():
            continue
        data = os.readlink(p).encode() if p.is_symlink() else p.read_bytes()
        out[rel] = hashlib.sha256(data).hexdigest() + oct(os.lstat(p).st_mode)
    refs = [line for line in git("for-each-ref", "--format=%(refname) %(objectname)").splitlines()
            if not line.startswith(f"refs/heads/{BRANCH} ")]
    out["<refs>"] = "\n".join(refs)
    out["<status>"] = git("status", "--porcelain")
    return out


def test_first_commit_records_exactly_the_changes(repo):
    path, git, base = repo
    before = snapshot(path, git)
    branch = DiffBranch(path, base_commit=base)
    assert branch.name == BRANCH and branch.ref == "refs/heads/in-memory-edits"
    assert branch.head() is None
    head = branch.commit(CHANGES, "session edits")
    assert head == git.sha(BRANCH) == branch.head()
    assert name_status(git, base, BRANCH) == EXPECTED_NAME_STATUS
    assert git.bytes("show", f"{BRANCH}:a.txt") == b"a changed\n"
    assert git.bytes("show", f"{BRANCH}:new/deep/file.txt") == b"new\n"
    assert git("ls-tree", BRANCH, "script.sh").split()[0] == "100644"
    assert git("ls-tree", BRANCH, "dir/b.txt").split()[0] == "100755"
    assert git("ls-tree", BRANCH, "newlink").split()[0] == "120000"
    assert git.bytes("cat-file", "blob", f"{BRANCH}:newlink") == b"dir/b.txt"
    assert git.bytes("cat-file", "blob", f"{BRANCH}:link") == b"dir/sub/c.txt"
    assert git("ls-tree", "--name-only", BRANCH).split() == ["a.txt", "dir", "link", "new", "newlink", "script.sh"]
    assert git.sha(f"{BRANCH}^") == base
    assert git("log", "-1", "--format=%an <%ae>|%cn <%ce>|%s", BRANCH).strip() == \
        "vfs <vfs@localhost>|vfs <vfs@localhost>|session edits"
    git("fsck", "--strict", "--no-dangling")  # no empty trees, well-formed objects
    assert snapshot(path, git) == before
    branch.close()


def test_second_commit_has_the_first_as_parent(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    first = branch.commit(CHANGES, "one")
    # The whole difference again, plus one more change: the commit shows only the new one.
    second = branch.commit({**CHANGES, "dir/sub/c.txt": (0o100644, b"c2\n")}, "two", author="Agent <a@x>")
    assert second != first
    assert git.sha(f"{second}^") == first
    assert git("rev-list", "--count", f"{base}..{BRANCH}").strip() == "2"
    assert name_status(git, first, second) == ["M\tdir/sub/c.txt"]
    assert name_status(git, base, second) == sorted(EXPECTED_NAME_STATUS + ["M\tdir/sub/c.txt"])
    assert git("log", "-1", "--format=%an <%ae>", second).strip() == "Agent <a@x>"


def test_reverting_a_change_records_the_new_difference(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    branch.commit(CHANGES, "one")
    smaller = {k: v for k, v in CHANGES.items() if k != "a.txt"}  # a.txt was reverted in the session
    second = branch.commit(smaller, "two")
    assert git.bytes("show", f"{second}:a.txt") == FILES["a.txt"]
    assert sorted(name_status(git, base, second)) == [s for s in EXPECTED_NAME_STATUS if s != "M\ta.txt"]


def test_unchanged_tree_writes_nothing(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    first = branch.commit(CHANGES, "one")
    objects = sorted((path / ".git/objects").rglob("*"))
    reflog = (path / f".git/logs/refs/heads/{BRANCH}").read_bytes()
    assert branch.commit(dict(CHANGES), "again") == first
    assert git.sha(BRANCH) == first
    assert sorted((path / ".git/objects").rglob("*")) == objects
    assert (path / f".git/logs/refs/heads/{BRANCH}").read_bytes() == reflog


def test_no_difference_creates_no_branch(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    same_as_base = {"a.txt": (0o100644, FILES["a.txt"]), "never-existed.txt": None}
    assert branch.commit(same_as_base, "nothing") is None
    assert branch.commit({}, "nothing") is None
    assert git.run("rev-parse", "--verify", "-q", BRANCH, check=False).returncode == 1
    assert branch.head() is None


def test_reflog_entry_in_a_worktree(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    head = branch.commit(CHANGES, "session edits\n\nbody")
    assert git("reflog", "show", "--format=%H %gs", BRANCH).splitlines() == [f"{head} vfs: session edits"]
    assert git("log", "-1", "--format=%B", BRANCH) == "session edits\n\nbody\n\n"


def test_ref_moved_by_someone_else_between_commits_is_kept(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    first = branch.commit(CHANGES, "one")
    # Someone commits onto the branch with the git CLI.
    tree = git.sha(f"{first}^{{tree}}")
    theirs = git("commit-tree", tree, "-p", first, "-m", "someone else").strip()
    git("update-ref", f"refs/heads/{BRANCH}", theirs, first)
    second = branch.commit({**CHANGES, "a.txt": (0o100644, b"mine again\n")}, "two")
    assert git.sha(f"{second}^") == theirs
    assert git.run("merge-base", "--is-ancestor", theirs, second).returncode == 0
    assert git.bytes("show", f"{second}:a.txt") == b"mine again\n"


@pytest.fixture
def racing_ref(monkeypatch):
    """Make the next `moves` compare-and-swaps lose: the branch moves just before each."""
    state = {"moves": 0, "made": []}
    original = DiskRefsContainer.set_if_equals

    def set_if_equals(self, name, old_ref, new_ref, *args, **kwargs):
        if state["moves"] > 0:
            state["moves"] -= 1
            git = state["git"]
            theirs = git("commit-tree", git.sha(f"{old_ref.decode()}^{{tree}}"), "-p", old_ref.decode(),
                         "-m", "racer").strip()
            git("update-ref", name.decode(), theirs, old_ref.decode())
            state["made"].append(theirs)
        return original(self, name, old_ref, new_ref, *args, **kwargs)

    monkeypatch.setattr(DiskRefsContainer, "set_if_equals", set_if_equals)
    return state


def test_compare_and_swap_retries_on_top_of_the_moved_head(repo, racing_ref):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    first = branch.commit(CHANGES, "one")
    racing_ref.update(git=git, moves=2)
    second = branch.commit({**CHANGES, "x.txt": (0o100644, b"x\n")}, "two")
    racer1, racer2 = racing_ref["made"]
    assert git.sha(f"{racer1}^") == first
    assert git.sha(f"{second}^") == racer2
    assert git("rev-list", f"{first}..{second}").split() == [second, racer2, racer1]
    assert name_status(git, base, second) == sorted(EXPECTED_NAME_STATUS + ["A\tx.txt"])


def test_gives_up_when_the_ref_keeps_moving(repo, racing_ref):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    branch.commit(CHANGES, "one")
    racing_ref.update(git=git, moves=MAX_ATTEMPTS)
    with pytest.raises(ConcurrentUpdateError) as exc:
        branch.commit({"x.txt": (0o100644, b"x\n")}, "two")
    assert str(exc.value) == f"branch 'in-memory-edits' moved concurrently; gave up after {MAX_ATTEMPTS} attempts"
    assert git.sha(BRANCH) == racing_ref["made"][-1]  # their last commit is still the head


def test_concurrent_writers_never_lose_commits(repo):
    """Four writers (as four processes would: separate DiffBranch objects) race on one branch.

    Under sustained contention a writer may give up (ConcurrentUpdateError) --
    that is the contract -- but every commit that was reported written must be
    on the branch, and nothing else may be.
    """
    path, git, base = repo
    branches = [DiffBranch(path, base_commit=base) for _ in range(4)]
    written: list[str] = []
    gave_up: list[ConcurrentUpdateError] = []
    errors: list[BaseException] = []

    def writer(i: int, branch: DiffBranch) -> None:
        for n in range(8):
            try:
                written.append(branch.commit({f"w{i}.txt": (0o100644, f"{n}\n".encode())}, f"w{i} {n}"))
            except ConcurrentUpdateError as exc:
                gave_up.append(exc)
            except BaseException as exc:  # collected for the main thread
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i, b)) for i, b in enumerate(branches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(written) + len(gave_up) == 32
    history = git("rev-list", f"{base}..{BRANCH}").split()
    assert sorted(history) == sorted(written)  # every reported commit landed; none was clobbered
    print(f"\n[gitsync] 4 racing writers: {len(written)} commits, {len(gave_up)} gave up")


def test_invalid_branch_name(repo):
    path, _git, base = repo
    with pytest.raises(InvalidBranchNameError) as exc:
        DiffBranch(path, "bad..name", base_commit=base)
    assert str(exc.value) == "'bad..name' is not a valid branch name"


def test_checked_out_branch_is_refused(repo):
    path, _git, base = repo
    with pytest.raises(BranchCheckedOutError) as exc:
        DiffBranch(path, "main", base_commit=base)
    assert str(exc.value) == f"branch 'main' is checked out at {path}; choose another diff branch"


def test_branch_checked_out_in_a_linked_worktree_is_refused(repo, tmp_path):
    path, git, base = repo
    git("worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    with pytest.raises(BranchCheckedOutError) as exc:
        DiffBranch(path, "wt", base_commit=base)
    assert str(exc.value) == f"branch 'wt' is checked out at {tmp_path / 'wt'}; choose another diff branch"


def test_unknown_base_commit(repo):
    path, _git, _base = repo
    with pytest.raises(UnknownRevisionError) as exc:
        DiffBranch(path, base_commit="1" * 40)
    assert str(exc.value) == f"unknown revision '{'1' * 40}'"


def test_bare_repository_at_a_rev(repo, tmp_path):
    path, git, base = repo
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(path), str(bare))
    info = open_source(bare, rev="main~1")
    files_before = {p: p.read_bytes() for p in bare.rglob("*") if p.is_file() and "objects" not in p.parts}
    branch = DiffBranch(bare, "edits/at-rev", base_commit=info.base_commit)
    head = branch.commit({"a.txt": (0o100644, b"bare edit\n"), "gone.txt": None}, "bare")
    bgit = type(git)(bare)
    assert bgit.sha("edits/at-rev") == head
    assert bgit.sha("edits/at-rev^") == info.base_commit == git.sha("main~1")
    assert name_status(bgit, info.base_commit, head) == ["D\tgone.txt", "M\ta.txt"]
    bgit("fsck", "--strict", "--no-dangling")
    assert not (bare / "logs/refs/heads/edits/at-rev").exists()  # bare: no reflog by default
    files_after = {p: p.read_bytes() for p in bare.rglob("*") if p.is_file() and "objects" not in p.parts}
    assert set(files_after) - set(files_before) == {bare / "refs/heads/edits/at-rev"}
    assert {p: c for p, c in files_after.items() if p in files_before} == files_before


def test_worktree_mounted_at_an_older_rev(repo):
    path, git, _base = repo
    old = git.sha("HEAD~1")
    branch = DiffBranch(path, base_commit=old)
    head = branch.commit({"a.txt": (0o100644, b"on old\n")}, "old")
    assert git.sha(f"{head}^") == old
    assert name_status(git, old, head) == ["M\ta.txt"]


def test_unborn_repository(make_repo):
    path, git = make_repo()
    branch = DiffBranch(path, base_commit=None)
    assert branch.commit({}, "nothing") is None
    head = branch.commit({"f.txt": (0o100644, b"f\n"), "d/g": (0o100755, b"g\n")}, "first")
    assert git("rev-list", "--parents", "-n1", head).split() == [head]  # a root commit
    assert git("ls-tree", "-r", "--name-only", head).split() == ["d/g", "f.txt"]
    assert git.run("rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 1  # still unborn


def test_deleting_everything_leaves_an_empty_root_tree(repo):
    path, git, base = repo
    everything = git("ls-tree", "-r", "--name-only", base).split()
    head = DiffBranch(path, base_commit=base).commit(dict.fromkeys(everything), "wipe")
    assert git.sha(f"{head}^{{tree}}") == git("hash-object", "-t", "tree", "/dev/null").strip()
    git("fsck", "--strict", "--no-dangling")


def test_whole_directory_deleted_by_its_own_path(repo):
    path, git, base = repo
    head = DiffBranch(path, base_commit=base).commit({"docs": None}, "rm docs")
    assert name_status(git, base, head) == ["D\tdocs/deeper/more.txt", "D\tdocs/only.txt"]


def test_file_replaced_by_a_directory_and_back(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    head = branch.commit({"a.txt": None, "a.txt/inner": (0o100644, b"i\n")}, "file to dir")
    assert git("ls-tree", "-r", "--name-only", head, "a.txt").split() == ["a.txt/inner"]
    head = branch.commit({"dir": (0o100644, b"now a file\n")}, "dir to file")
    assert git.bytes("show", f"{head}:dir") == b"now a file\n"
    git("fsck", "--strict", "--no-dangling")


@pytest.mark.parametrize("st_mode, git_mode", [
    (0o100644, "100644"), (0o100664, "100644"), (0o100600, "100644"), (0o100755, "100755"),
    (0o100700, "100755"), (0o100744, "100755"), (0o120777, "120000"), (0o120000, "120000"),
])
def test_mode_normalisation(repo, st_mode, git_mode):
    path, git, base = repo
    head = DiffBranch(path, base_commit=base).commit({"m": (st_mode, b"target")}, "mode")
    assert git("ls-tree", head, "m").split()[0] == git_mode


@pytest.mark.parametrize("changes, message", [
    ({"../x": None}, "invalid path '../x': must be relative, '/'-separated, without '.', '..' or empty parts"),
    ({"/abs": None}, "invalid path '/abs': must be relative, '/'-separated, without '.', '..' or empty parts"),
    ({"a//b": None}, "invalid path 'a//b': must be relative, '/'-separated, without '.', '..' or empty parts"),
    ({"": None}, "invalid path '': must be relative, '/'-separated, without '.', '..' or empty parts"),
    ({".git/config": (0o100644, b"")}, "invalid path '.git/config': git cannot record a '.git' entry"),
    ({"sub/.GIT/x": (0o100644, b"")}, "invalid path 'sub/.GIT/x': git cannot record a '.git' entry"),
    ({"d": (0o40755, b"")}, "'d': unsupported mode 0o40755: only regular files and symlinks are recorded"),
    ({"d": (0o644, b"")}, "'d': unsupported mode 0o644: only regular files and symlinks are recorded"),
    ({"s": (0o100644, "text")}, "content of 's' must be bytes, not str"),
    ({"x": (0o100644, b""), "x/y": (0o100644, b"")}, "'x' is set as a file and has paths added below it"),
    ({"a.txt/y": (0o100644, b"")}, "'a.txt' is a file in the tree; delete it to add paths below it"),
])
def test_invalid_changes(repo, changes, message):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    with pytest.raises(ValueError) as exc:
        branch.commit(changes, "bad")
    assert str(exc.value) == message
    assert branch.head() is None


def test_invalid_author(repo):
    path, _git, base = repo
    with pytest.raises(ValueError) as exc:
        DiffBranch(path, base_commit=base).commit(CHANGES, "m", author="nobody")
    assert str(exc.value) == "invalid author 'nobody': expected 'Name <email>'"


def test_unchanged_subtrees_are_reused(repo):
    path, git, base = repo
    head = DiffBranch(path, base_commit=base).commit({"a.txt": (0o100644, b"z\n")}, "one file")
    for sub in ("dir", "docs", "dir/sub"):
        assert git.sha(f"{head}:{sub}") == git.sha(f"{base}:{sub}")


def count_objects(git) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split(": ") for line in git("count-objects", "-v").splitlines())
            if k in ("count", "packs", "in-pack")}


def test_small_commits_write_loose_objects_and_large_ones_one_pack(repo):
    path, git, base = repo
    git("gc", "-q", "--prune=now")
    branch = DiffBranch(path, base_commit=base)
    before = count_objects(git)
    branch.commit({"a.txt": (0o100644, b"small\n")}, "small")
    after_small = count_objects(git)
    # blob + root tree + commit, loose
    assert after_small == {**before, "count": before["count"] + 3}
    many = {f"gen/d{i % 4}/f{i}.txt": (0o100644, f"{i}\n".encode()) for i in range(40)}
    head = branch.commit(many, "large")
    after_large = count_objects(git)
    # 40 blobs + gen + 4 dirs + root = 46 objects in one new pack; the commit is loose
    assert after_large == {"count": after_small["count"] + 1, "packs": before["packs"] + 1,
                           "in-pack": before["in-pack"] + 46}
    assert git.bytes("show", f"{head}:gen/d3/f39.txt") == b"39\n"
    git("fsck", "--strict", "--no-dangling")


def test_branch_checked_out_in_the_main_worktree_is_refused_from_a_linked_one(repo, tmp_path):
    path, git, base = repo
    git("worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    with pytest.raises(BranchCheckedOutError) as exc:
        DiffBranch(tmp_path / "wt", "main", base_commit=base)
    assert str(exc.value) == f"branch 'main' is checked out at {path}; choose another diff branch"
    head = DiffBranch(tmp_path / "wt", base_commit=base).commit({"a.txt": None}, "from linked")
    assert git.sha(BRANCH) == head  # refs are shared between worktrees


def test_packed_branch_ref_is_updated(repo):
    path, git, base = repo
    branch = DiffBranch(path, base_commit=base)
    first = branch.commit(CHANGES, "one")
    git("pack-refs", "--all")
    assert not (path / f".git/refs/heads/{BRANCH}").exists()
    second = branch.commit({"a.txt": None}, "two")
    assert git.sha(f"{second}^") == first
    assert git.sha(BRANCH) == second


def test_ref_name_conflicts_are_reported(repo):
    path, git, base = repo
    git("branch", "edits/one")
    with pytest.raises(GitSyncError) as exc:
        DiffBranch(path, "edits", base_commit=base)
    assert str(exc.value) == "cannot create branch 'edits': ref 'refs/heads/edits/one' exists"
    with pytest.raises(GitSyncError) as exc:
        DiffBranch(path, "feature/x", base_commit=base)  # "feature" is packed (fixture)
    assert str(exc.value) == "cannot create branch 'feature/x': ref 'refs/heads/feature' exists"
    # A conflicting ref created after construction is caught at commit time.
    branch = DiffBranch(path, "late", base_commit=base)
    git("branch", "late/blocker")
    with pytest.raises(GitSyncError) as exc:
        branch.commit(CHANGES, "x")
    assert str(exc.value) == "cannot create branch 'late': ref 'refs/heads/late/blocker' exists"


def test_bare_repository_with_a_linked_worktree(repo, tmp_path):
    path, git, base = repo
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(path), str(bare))
    bgit = type(git)(bare)
    bgit("worktree", "add", "-q", "-b", "wt", str(tmp_path / "wt"))
    # The bare repository's HEAD ("main") is checked out nowhere; "wt" is.
    head = DiffBranch(tmp_path / "wt", "main", base_commit=base).commit({"a.txt": None}, "ok")
    assert bgit.sha("main") == head
    with pytest.raises(BranchCheckedOutError):
        DiffBranch(bare, "wt", base_commit=base)
