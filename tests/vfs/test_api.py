"""One CodeAgent suite, two backends: in-process (no FUSE) and over a real mount."""
from __future__ import annotations

import errno

import pytest

from mountlib import make_project, mount_source, unmount
from vfs.api import AgentError, CodeAgent
from vfs.errors import FsError

FILES = {
    "pkg/__init__.py": "from .core import helper\n\n__all__ = ['helper']\n",
    "pkg/core.py": "def helper(x):\n    return x + 1\n\n\nclass Box:\n    def size(self):\n        return helper(1)\n",
    "pkg/util.py": "import os\n\n\ndef shout(s):\n    return s.upper()\n",
    "tests/test_core.py": "from pkg import helper\n\n\ndef test_helper():\n    assert helper(1) == 2\n",
    "tests/test_util.py": "from pkg.util import shout\n\n\ndef test_shout():\n    assert shout('a') == 'A'\n",
    "notes.txt": "one\ntwo\ntwo\n",
}


@pytest.fixture(params=["local", "mounted"])
def agent(request, tmp_path):
    src = make_project(tmp_path / "src", FILES)
    if request.param == "local":
        a = CodeAgent.local(src)
        try:
            yield a
        finally:
            a.close()
    else:
        mp = tmp_path / "mnt"
        mp.mkdir()
        m = mount_source(src, mp)
        try:
            yield CodeAgent.mounted(mp)
        finally:
            unmount(m)


def test_read_and_edit(agent):
    assert agent.read_file("pkg/util.py").startswith("import os")
    agent.edit_file("pkg/util.py", "return s.upper()", "return s.upper() + '!'")
    assert "+ '!'" in agent.read_file("pkg/util.py")
    assert agent.changed() == ["M pkg/util.py"]


@pytest.mark.parametrize("old, count", [("two", 2), ("three", 0)])
def test_edit_requires_exactly_one_match(agent, old, count):
    with pytest.raises(AgentError) as err:
        agent.edit_file("notes.txt", old, "x")
    assert err.value.errno == errno.EINVAL
    assert f"'old' occurs {count} times" in str(err.value)
    if count:
        assert "line 2: two; line 3: two" in str(err.value)
    assert agent.read_file("notes.txt") == "one\ntwo\ntwo\n"
    assert agent.changed() == []


@pytest.mark.parametrize("path,code,reason", [
    ("/etc/hostname", errno.EINVAL, "absolute path refused: /etc/hostname"),
    ("../outside.txt", errno.EINVAL, "path leaves the tree: ../outside.txt"),
    (".vfs/status", errno.EINVAL, "path inside the control directory: .vfs/status"),
])
def test_paths_outside_the_tree_are_refused_by_both_backends(agent, tmp_path, path, code, reason):
    """Regression: the mounted backend read any path (`/etc/hostname`, `../sibling`) while the
    local one refused; both check paths as the session does, and raise AgentError."""
    (tmp_path / "outside.txt").write_text("not yours\n")
    for call in (lambda: agent.read_file(path), lambda: agent.create_file(path, "x")):
        with pytest.raises(AgentError) as err:
            call()
        assert (err.value.errno, err.value.reason) == (code, reason)
    with pytest.raises(AgentError) as err:
        agent.read_file("missing.txt")
    assert err.value.errno == errno.ENOENT


def test_edit_with_empty_old_is_refused(agent):
    with pytest.raises(AgentError, match="non-empty"):
        agent.edit_file("notes.txt", "", "x")


def test_create_and_delete(agent):
    agent.create_file("pkg/new.py", "VALUE = 1\n")
    assert agent.read_file("pkg/new.py") == "VALUE = 1\n"
    with pytest.raises(AgentError) as err:
        agent.create_file("pkg/new.py", "again")
    assert err.value.errno == errno.EEXIST
    agent.delete_file("notes.txt")
    assert sorted(agent.changed()) == ["A pkg/new.py", "D notes.txt"]


def test_symbols_definitions_references(agent):
    syms = {(s.kind, s.qualname) for s in agent.get_symbols("pkg/core.py")}
    assert syms == {("module", "pkg.core"), ("function", "pkg.core.helper"), ("class", "pkg.core.Box"),
                    ("method", "pkg.core.Box.size")}
    defs = agent.find_definitions("helper")
    assert [(d.path, d.line, d.col, d.kind) for d in defs] == [("pkg/core.py", 1, 5, "function")]
    refs = {(r.path, r.line) for r in agent.find_references("pkg.core.helper")}
    assert {("pkg/core.py", 7), ("tests/test_core.py", 1), ("tests/test_core.py", 5), ("pkg/__init__.py", 1)} <= refs
    assert agent.find_definitions("no_such_name") == []
    all_syms = agent.get_symbols()
    assert {s.path for s in all_syms} >= {"pkg/core.py", "pkg/util.py", "tests/test_core.py"}


def test_edits_are_seen_by_the_index_at_once(agent):
    agent.edit_file("pkg/core.py", "def helper(x):", "def assist(x):")
    agent.edit_file("pkg/util.py", "    return s.upper()", "    from pkg.core import assist\n    return assist(s)")
    assert [d.qualname for d in agent.find_definitions("assist")] == ["pkg.core.assist"]
    assert agent.find_definitions("helper") == []
    assert ("pkg/util.py", 5) in {(r.path, r.line) for r in agent.find_references("pkg.core.assist")}


def test_affected_tests(agent):
    assert agent.affected_tests() == []
    agent.edit_file("pkg/util.py", "s.upper()", "s.upper().strip()")
    assert agent.affected_tests() == ["tests/test_util.py"]


def test_batch_is_atomic(agent):
    with pytest.raises(AgentError, match=r"edit 2 \(notes.txt\): 'old' occurs 0 times"):
        agent.batch_edits([{"path": "pkg/util.py", "old": "upper", "new": "lower"},
                           {"path": "notes.txt", "old": "zzz", "new": "y"}])
    assert agent.changed() == []
    agent.batch_edits([{"path": "pkg/util.py", "old": "upper", "new": "lower"},
                       {"path": "notes.txt", "rename_to": "docs/notes.txt"}])
    assert sorted(agent.changed()) == ["A docs/", "M pkg/util.py", "R notes.txt -> docs/notes.txt"]


def _save_raw(agent, path: str, text: str) -> None:
    """Save like an editor does (no validation gate), through the backend's own medium."""
    if hasattr(agent, "ws"):
        agent.ws.session.write_file(path, text.encode())
    else:
        (agent.root / path).write_text(text)


def test_batch_refuses_a_broken_python_file(agent):
    with pytest.raises(AgentError, match=r"refused: syntax error in pkg/broken.py:1:7"):
        agent.create_file("pkg/broken.py", "def f(:\n")
    assert agent.changed() == []


def test_validate_reports_syntax_undefined_and_imports(agent):
    _save_raw(agent, "pkg/broken.py", "def f(:\n")
    _save_raw(agent, "pkg/sloppy.py", "from .missing import thing\n\n\ndef g():\n    return undefined_name\n")
    problems = agent.validate()
    assert problems[0].startswith("pkg/broken.py:1:")
    assert "pkg/sloppy.py:1:1: unresolved import '.missing'" in problems
    assert "pkg/sloppy.py:5:12: undefined name 'undefined_name'" in problems


def test_audit_finds_introduced_aliased_subprocess_only(agent):
    assert agent.audit() == []
    agent.edit_file("pkg/util.py", "import os\n", "import os\nimport subprocess as sp\n")
    agent.edit_file("pkg/util.py", "    return s.upper()", "    sp.run(['true'])\n    return s.upper()")
    found = agent.audit()
    assert "pkg/util.py:6:5: subprocess.run: call to subprocess.run (process execution)" in found
    assert any(line.startswith("pkg/util.py:2:1: import subprocess") for line in found)
    assert not any("os" in line.split(": ")[1] for line in found)
    # Regression: a module import said "(None)" when no call rule named the module itself.
    agent.edit_file("pkg/util.py", "import os\n", "import os\nimport pickle\n")
    assert "pkg/util.py:2:1: import pickle: imports pickle (unsafe deserialisation)" in agent.audit()


def test_diff_checkpoint_rollback(agent):
    agent.edit_file("pkg/util.py", "upper", "lower")
    agent.checkpoint("one")
    agent.edit_file("pkg/util.py", "lower", "title")
    assert "+    return s.title()" in agent.get_diff("pkg/util.py")
    agent.rollback("@one")
    assert "s.lower()" in agent.read_file("pkg/util.py")
    agent.rollback("pkg/util.py", 1)
    assert "s.upper()" in agent.read_file("pkg/util.py")
    assert agent.get_diff() == ""
    with pytest.raises(AgentError) as err:
        agent.rollback("@nope")
    assert err.value.errno == errno.ENOENT and "no checkpoint named 'nope'" in str(err.value)


def test_sync_writes_disk(agent):
    agent.edit_file("notes.txt", "one", "uno")
    agent.sync()
    assert agent.changed() == []
    assert agent.read_file("notes.txt") == "uno\ntwo\ntwo\n"


def test_a_sync_that_fails_midway_says_what_reached_the_disk(tmp_path, monkeypatch):
    """Regression: when one file could not be written (EACCES), the files written before it
    were on disk but still listed as changed, and the error did not say so."""
    from vfs.syncer import Syncer

    src = make_project(tmp_path / "src", FILES)
    a = CodeAgent.local(src)
    try:
        a.edit_file("notes.txt", "one", "uno")
        a.edit_file("pkg/util.py", "upper", "lower")
        put = Syncer._put

        def refuse_util(self, fd, path, state):
            if path == "pkg/util.py":
                raise FsError(errno.EACCES, f"cannot write {path} to disk: Permission denied")
            return put(self, fd, path, state)

        monkeypatch.setattr(Syncer, "_put", refuse_util)
        with pytest.raises(AgentError) as err:
            a.sync()
        assert err.value.errno == errno.EACCES
        assert "(1 of 2 path(s) were written before, and are synced)" in err.value.reason
        assert (src / "notes.txt").read_text().startswith("uno")
        assert a.changed() == ["M pkg/util.py"]
        monkeypatch.setattr(Syncer, "_put", put)
        a.sync()
        assert a.changed() == [] and "lower" in (src / "pkg" / "util.py").read_text()
    finally:
        a.close()


def test_outside_file_gone_while_its_appearance_is_recorded(tmp_path, monkeypatch):
    """An outside file deleted right after it appeared: the deletion lands while the appearance is
    still being recorded.  The appearance must not become an addition of ours (it did: then the
    deletion's event found a "dirty" path and made a conflict, and the ghost file stayed listed)."""
    src = make_project(tmp_path / "src", FILES)
    a = CodeAgent.local(src)
    try:
        session = a.ws.session
        take = session._take_base

        def take_then_vanish(path, node, disk):
            take(path, node, disk)
            (src / path).unlink(missing_ok=True)  # the outside process deletes it at this moment

        (src / "pkg" / "flash.py").write_text("x = 1\n")
        monkeypatch.setattr(session, "_take_base", take_then_vanish)
        session.base_changed("pkg/flash.py")
        monkeypatch.setattr(session, "_take_base", take)
        assert "pkg/flash.py" not in session.changes()
        # its deletion's event: taken as the outside change it is (the first call may have
        # seen it already), never a conflict
        assert session.base_changed("pkg/flash.py") in ("updated", "unchanged")
        assert not session.exists("pkg/flash.py") and "pkg/flash.py" not in session.changes()
        assert "pkg/flash.py" not in session.conflicts
        session.check_invariants()
    finally:
        a.close()
