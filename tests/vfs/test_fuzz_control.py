"""Fuzz of the `.vfs/` control directory over ONE long-lived real mount.

Hypothesis drives writes of random and adversarial input into every command
file (`rollback`, `checkpoint`, `sync`, `mode`, `batch`, `resolve`, `rename`):
binary junk, invalid UTF-8, NUL, huge lines and documents, unicode, paths
with `..`, absolute paths, paths through symlinks that point out of the tree
(on disk from the start, made in the mount, synced to disk), malformed and
deeply nested JSON, conflicting batches, rollback targets, checkpoint, mode,
resolve and rename lines — plus writes to files that take no commands, and
several writers at once.  Inputs are drawn while the run goes (`st.data()`),
so valid ones can name the current journal head, checkpoints and contents.

After every write (`Fuzzer.write`) it checks:
- the write was answered within `BOUND` seconds (a watchdog thread unmounts
  and fails the run otherwise) and the daemon is alive;
- a refused command got an errno, and `cat .vfs/FILE` ends with
  `last: error: REASON [ERRNO]` naming that errno; an accepted one ends with
  `last: ok: ...`; never an internal error (EIO);
- a refused command changed nothing: journal head (`status.json`), the tree
  seen through the mount (a hash of every entry, `.vfs` excluded) and the
  backing directory on disk are as before;
- the disk changes only through an accepted `sync` (or `mode`, or any
  accepted change while the mode is write-through);
- nothing outside the tree is touched: an inotify watch on a canary
  directory (reachable through symlinks in the tree) must stay silent — no
  open, read, write, create or delete — and the canary's secret (or
  /etc/passwd's first line) never appears in any `.vfs` output (every 2,500
  writes all of them are read in full); nothing new appears next to the
  source or the mount.  (While vfs.base still follows symlinks in parent
  components, `BASE_READS_OUTSIDE`, reads of the canary are only counted:
  test_security pins that bug down; writes are always fatal.)

Writes that run exactly one command are checked strictly; a payload holding
several lines may be partly accepted, so it only has to answer with an errno
or success, and its effects are taken as the new state.  Conflicts come from
the watcher, asynchronously, so they are counted, not checked (see
`Fuzzer._conflicts`).  When accepted batches have grown the tree past
`MAX_ENTRIES`, the run rolls back to the checkpoint made at the start.

Each command is written in-process with os.open/os.write/os.close (a write
that completes a line runs it; the rest runs at close, whose error shells
ignore but we do not).  The CI run is about 10,000 writes; `scripts/fuzz_control
--writes N` runs longer (same code: `run_fuzz`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import pytest
from hypothesis import given, settings, strategies as st

from fuzz_engine import Fuzzer, run_fuzz
from fuzz_world import (
    CI_WRITES, MAX_LINE, _listing, _status, close_world, disk_hash, head_of, last, make_world, send)
from mountlib import SAMPLE, make_project, mount_source, unmount


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        w = make_world(root)
    try:
        yield w
    finally:
        close_world(w)


def test_fuzz_control_directory(world):
    """≥ 10,000 writes of random and adversarial input; every promise checked after each (module docstring)."""
    fz = Fuzzer(world)
    try:
        run_fuzz(fz, CI_WRITES, derandomize=True)
        fz.full_read()
    finally:
        fz.close()
        print(fz.stats.summary())
    assert fz.stats.writes >= CI_WRITES
    assert fz.stats.refused > CI_WRITES // 4 and fz.stats.accepted > 200, fz.stats.summary()
    assert set(fz.stats.by_file) >= set(world.commands)
    assert hashlib.sha256(world.canary.read_bytes()).hexdigest() == world.canary_hash
    assert _listing(world.outside) == world.outside_listing


# ---------------------------------------------------------------------------- regressions
# Bugs the fuzz found, each pinned down on its own (one shared mount; each test leaves it usable).
@pytest.fixture(scope="module")
def regress(tmp_path_factory):
    root = tmp_path_factory.mktemp("regress")
    src = make_project(root / "src", {**SAMPLE, "__pycache__/cached.txt": "on disk\n"})
    mnt = root / "mnt"
    mnt.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_STATE_HOME", str(root / "state"))
        m = mount_source(src, mnt)
    try:
        yield m
    finally:
        unmount(m)


def test_deeply_nested_json_is_invalid_not_an_internal_error(regress):
    mp = regress.path
    for payload in (b"[" * 100_000 + b"\n", b'{"a":' * 50_000 + b"\n", b"[" * 100_000):
        assert send(mp, "batch", payload) == "EINVAL"
        assert last(mp, "batch") == "last: error: invalid JSON: nested too deeply [EINVAL]"


def test_big_batch_written_line_by_line_takes_linear_time(regress):
    """Every newline used to re-parse the whole buffer: 2 MB of pretty JSON in 32,000 writes took minutes
    (and the FUSE loop served nobody meanwhile)."""
    mp = regress.path
    edits = [{"path": f"big/f{i % 20}.txt", "content": "x\\\"[{" * 40} for i in range(8000)]
    lines = (json.dumps(edits, indent=2) + "\n").encode().splitlines(keepends=True)
    assert len(lines) > 30_000
    started = time.monotonic()
    assert send(mp, "batch", b"", chunks=lines) == "ok"
    assert time.monotonic() - started < 30
    assert last(mp, "batch").startswith("last: ok: batch applied at seq ")
    assert (mp / "big" / "f3.txt").read_text() == "x\\\"[{" * 40
    assert send(mp, "batch", json.dumps([{"path": "big", "delete": True}]).encode() + b"\n") == "ok"


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='ab"\\[]{} \n'),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(alphabet='"\\[]{}x'), inner,
                                                                               max_size=3)),
       st.lists(st.integers(1, 9), min_size=1, max_size=50), st.integers(0, 2))
def test_json_nesting_hint(doc, cuts, indent):
    """The hint that decides when a big batch is worth parsing: closed exactly at the end of a document
    (never before), whatever pieces it arrives in, brackets and escapes inside strings included."""
    from vfs.control.tree import _Nesting

    text = json.dumps([doc], indent=indent or None).encode()
    n, pos = _Nesting(), 0
    for cut in cuts:
        if pos >= len(text) - 1:
            break
        piece = text[pos:min(pos + cut, len(text) - 1)]
        n.feed(piece)
        pos += len(piece)
        assert not n.closed(), (text, pos)
    n.feed(text[pos:])
    assert n.closed() and n.depth == 0


def test_diff_with_a_new_or_deleted_directory(regress):
    mp = regress.path
    (mp / "newdir" / "sub").mkdir(parents=True)
    (mp / "newdir" / "sub" / "f.txt").write_text("f\n")
    try:
        diff = (mp / ".vfs" / "diff").read_text()  # used to fail with EIO (a directory has no diff side)
        assert "diff --git a/newdir/sub/f.txt b/newdir/sub/f.txt" in diff
        assert "A newdir/" in (mp / ".vfs" / "changed").read_text().splitlines()
    finally:
        shutil.rmtree(mp / "newdir")


def test_batch_refuses_passthrough_paths(regress):
    """A batch wrote an empty file to the disk (its content only in memory) and said 'applied'; a batch
    refused later still left the file on disk."""
    mp, src = regress.path, regress.source
    disk = disk_hash(src)
    head = head_of(mp)
    for edits, where in (([{"path": "__pycache__/new.txt", "content": "x"}], "__pycache__/new.txt"),
                         ([{"path": "calc/__pycache__/x.pyc", "content": ""}], "calc/__pycache__/x.pyc"),
                         ([{"path": "__pycache__/cached.txt", "old": "disk", "new": "mem"}], "__pycache__/cached.txt"),
                         ([{"path": "README.md", "rename_to": "__pycache__/R.md"}], "__pycache__/R.md"),
                         ([{"path": "data/notes.txt", "content": "ok"},
                           {"path": "__pycache__/y.txt", "content": "x"}], "__pycache__/y.txt")):
        assert send(mp, "batch", json.dumps(edits).encode() + b"\n") == "EXDEV", edits
        assert last(mp, "batch").endswith(f"{where} is a passthrough path (on disk, not in memory): "
                                          "write it directly [EXDEV]"), last(mp, "batch")
    assert disk_hash(src) == disk and head_of(mp) == head
    assert (mp / "data" / "notes.txt").read_text() == SAMPLE["data/notes.txt"]


def test_rollback_refuses_passthrough_paths(regress):
    """A rollback of a passthrough path recorded it as deleted, and the next sync removed it from the disk."""
    mp, src = regress.path, regress.source
    assert send(mp, "rollback", b"__pycache__/cached.txt\n") == "EXDEV"
    assert last(mp, "rollback") == ("last: error: __pycache__/cached.txt is a passthrough path (on disk, not "
                                    "in memory): it has no versions [EXDEV]")
    assert send(mp, "sync", b"__pycache__/cached.txt\n") == "ok"
    assert (src / "__pycache__" / "cached.txt").read_text() == "on disk\n"
    assert "__pycache__" not in (mp / ".vfs" / "changed").read_text()


def test_batch_strings_with_surrogates(regress):
    mp = regress.path
    head = head_of(mp)
    for edits in ([{"path": "\udcff", "content": "x"}], [{"path": "data/x\ud800.txt", "content": "x"}],
                  [{"path": "data/notes.txt", "content": "\ud800"}], [{"path": "README.md", "rename_to": "\udc80"}]):
        assert send(mp, "batch", json.dumps(edits).encode() + b"\n") == "EINVAL", edits
        assert "holds a lone surrogate (not Unicode text) [EINVAL]" in last(mp, "batch")
    assert head_of(mp) == head
    # In contents, \udc80-\udcff stand for raw bytes (what os.fsdecode makes of them).
    assert send(mp, "batch", json.dumps([{"path": "data/raw.bin", "content": "a\udcffb"}]).encode() + b"\n") == "ok"
    assert (mp / "data" / "raw.bin").read_bytes() == b"a\xffb"
    (mp / "data" / "raw.bin").unlink()


def test_rollback_numbers_and_names_too_long(regress):
    mp = regress.path
    assert send(mp, "rollback", b"9" * 5000 + b"\n") == "ENOENT"
    assert last(mp, "rollback").startswith("last: error: no journal entry 9999999999999999999... (head is ")
    assert send(mp, "rollback", b"data/notes.txt " + b"1" * 5000 + b"\n") == "ENOENT"
    assert last(mp, "rollback") == "last: error: data/notes.txt has no version 1111111111111111111... [ENOENT]"
    assert send(mp, "rollback", b"a" * 300 + b"\n") == "ENAMETOOLONG"
    assert send(mp, "rollback", b"a" * (MAX_LINE - 1) + b"\n") == "ENAMETOOLONG"
    shown = last(mp, "rollback")
    assert shown.endswith("File name too long [ENAMETOOLONG]") and len(shown) < 2200


def test_messages_stay_on_one_line(regress):
    """A path holding a newline (possible in JSON) split the outcome over two lines of `cat FILE`."""
    mp = regress.path
    edits = [{"path": "no\nsuch\x1b[2J\u2028file", "old": "a", "new": "b"}]
    assert send(mp, "batch", json.dumps(edits).encode() + b"\n") == "ENOENT"
    text = (mp / ".vfs" / "batch").read_text()
    assert text.splitlines()[-1] == ("last: error: edit 1 (no\\nsuch\\x1b[2J\\u2028file): no such file [ENOENT]")
    assert text.endswith("[ENOENT]\n") and text.count("\n") == 2  # usage, outcome


def test_resolve_merge_with_overlaps_is_carried_out(regress):
    """An overlapping merge wrote conflict markers (a journal entry) and then failed the writer (EAGAIN):
    a refused command must change nothing, so it is an accepted one that says the conflict stays."""
    mp, src = regress.path, regress.source
    (mp / "data" / "notes.txt").write_text("alpha\nMINE\ngamma\n")
    (src / "data" / "notes.txt").write_text("alpha\nTHEIRS\ngamma\n")
    deadline = time.monotonic() + 10
    while "data/notes.txt" not in _status(mp)["conflicts"]:
        assert time.monotonic() < deadline, "the watcher never reported the conflict"
        time.sleep(0.02)
    head = head_of(mp)
    assert send(mp, "resolve", b"data/notes.txt merge\n") == "ok"
    assert last(mp, "resolve") == ("last: ok: data/notes.txt: overlapping changes; conflict markers written, "
                                   "still in conflict (edit it, then 'merge' again, or 'mine')")
    assert head_of(mp) == head + 1
    merged = (mp / "data" / "notes.txt").read_text()
    assert "<<<<<<<" in merged and "MINE" in merged and "THEIRS" in merged
    assert _status(mp)["conflicts"] == ["data/notes.txt"]
    assert send(mp, "resolve", b"data/notes.txt theirs\n") == "ok"
    assert (mp / "data" / "notes.txt").read_text() == "alpha\nTHEIRS\ngamma\n"
    assert _status(mp)["conflicts"] == []


def test_sync_then_edit_is_no_conflict(regress):
    mp = regress.path
    for i in range(3):
        batch = json.dumps([{"path": "data/notes.txt", "content": f"v{i}\n"}]).encode() + b"\n"
        assert send(mp, "batch", batch) == "ok"
        assert send(mp, "sync", b"data/notes.txt\n") == "ok"
        assert send(mp, "batch", batch.replace(b"v", b"w")) == "ok"
        time.sleep(0.3)  # the watcher's settle time is 50 ms
        assert _status(mp)["conflicts"] == [], f"round {i}"


def test_file_name_not_utf8(regress):
    mp = regress.path
    name = os.fsencode(str(mp)) + b"/data/\xff.txt"
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644)  # EIO: the journal refused the path
        os.close(fd)
        assert b"\xff.txt" in os.listdir(os.fsencode(str(mp / "data")))
        assert (mp / ".vfs" / "status.json").read_bytes()
    finally:
        try:
            os.unlink(name)
        except OSError:
            pass
