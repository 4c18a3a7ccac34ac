"""Tests of vfs.journal on real SQLite files."""
from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from vfs.journal import Entry, Journal, JournalError, blob_id

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def journal(tmp_path):
    j = Journal(tmp_path / "state" / "journal.db")
    yield j
    j.check_invariants()
    j.close()


def test_blob_id_is_git_blob_sha1():
    assert blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert blob_id(b"x" * 3) == hashlib.sha1(b"blob 3\0xxx").hexdigest()


def test_append_and_read_back(tmp_path):
    journal = Journal(tmp_path / "state" / "journal.db")
    a, b = journal.put_blob(b"one\n"), journal.put_blob(b"two\n")
    e1 = journal.append("create", "src/a.py", agent="alice", after=a, mode=0o100644)
    e2 = journal.append("write", "src/a.py", agent="bob", before=a, after=b,
                        info={"message": "fix"})
    assert (e1.seq, e2.seq) == (1, 2)
    assert (e1.txn, e2.txn) == (1, 2)
    assert journal.head() == 2 and journal.first_seq() == 1
    assert journal.entries() == [e1, e2]
    assert journal.entries(since=1) == [e2]
    assert journal.entries(until=1) == [e1]
    assert journal.entries(limit=1) == [e1]
    assert journal.entry(2) == e2
    assert e2.info == {"message": "fix"}
    with pytest.raises(KeyError):
        journal.entry(3)
    journal.close()
    with Journal(tmp_path / "state" / "journal.db") as again:
        assert again.entries() == [e1, e2]
        assert again.head() == 2
        assert again.get_blob(b) == b"two\n"


def test_entry_line_and_json():
    e = Entry(17, 1795714801.1239, "alice", "write", "src/a.py",
              before="3f2a1c9" + "0" * 33, after="9b8e7d6" + "1" * 33, mode=0o100644, txn=17)
    assert e.line() == ("17 2026-11-26T17:40:01.123Z agent=alice write src/a.py "
                        "3f2a1c9..->9b8e7d6.. mode=100644")
    odd = Entry(3, 0.0, "ev\nil", "rename", "a\tb\\c", path2="d\ne\u2028", info={"n": 2, "m": "x y"})
    assert odd.line() == ("3 1970-01-01T00:00:00.000Z agent=ev\\nil rename a\\tb\\\\c -> "
                          "d\\ne\\u2028 m=x y n=2")
    assert Entry(4, 0.0, "a", "checkpoint", "", info={"name": "v1"}).line() == \
        "4 1970-01-01T00:00:00.000Z agent=a checkpoint . name=v1"
    assert Entry(5, 0.0, "a", "unlink", "f", before="ab" * 20).line() == \
        "5 1970-01-01T00:00:00.000Z agent=a unlink f abababa..->0000000"
    assert odd.to_json() == {"seq": 3, "time": 0.0, "agent": "ev\nil", "op": "rename",
                             "path": "a\tb\\c", "path2": "d\ne\u2028", "before": None,
                             "after": None, "mode": None, "txn": 0,
                             "info": {"n": 2, "m": "x y"}}


def test_append_rejects_bad_arguments(journal):
    with pytest.raises(ValueError, match="unknown journal op 'frob'"):
        journal.append("frob", "a", agent="x")
    with pytest.raises(ValueError, match="agent must be a non-empty string"):
        journal.append("write", "a", agent="")
    with pytest.raises(ValueError, match="not a blob id: 'zz'"):
        journal.append("write", "a", agent="x", after="zz")
    assert journal.head() == 0
    assert journal.append("write", "a", agent="x").seq == 1


def test_transaction_commits_together(journal):
    seen = []
    journal.subscribe(seen.append)
    with journal.transaction() as txn:
        assert txn == 1
        journal.append("write", "a", agent="x")
        journal.append("write", "b", agent="x")
        journal.set_state("a", {"blob": journal.put_blob(b"A")})
        assert journal.head() == 0  # committed head moves only at exit
        assert seen == []
    assert journal.head() == 2
    assert [e.txn for e in journal.entries()] == [1, 1]
    assert [[e.seq for e in batch] for batch in seen] == [[1, 2]]
    assert journal.append("write", "c", agent="x").txn == 3


def test_transaction_rollback_restores_everything(journal):
    seen = []
    journal.subscribe(seen.append)
    journal.append("write", "a", agent="x")
    with pytest.raises(RuntimeError, match="boom"):
        with journal.transaction():
            journal.append("write", "b", agent="x")
            journal.set_state("b", {"blob": journal.put_blob(b"B")})
            journal.set_meta("k", "v")
            raise RuntimeError("boom")
    assert journal.head() == 1
    assert journal.state() == {}
    assert journal.get_meta("k") is None
    assert not journal.has_blob(blob_id(b"B"))
    assert len(seen) == 1
    assert journal.append("write", "c", agent="x").seq == 2
    assert [e.path for e in journal.entries()] == ["a", "c"]


def test_nested_transactions(journal):
    seen = []
    journal.subscribe(seen.append)
    with journal.transaction() as outer:
        journal.append("write", "a", agent="x")
        with journal.transaction() as inner:
            assert inner == outer
            journal.append("write", "b", agent="x")
        assert seen == []
        with pytest.raises(KeyError):
            with journal.transaction():
                journal.append("write", "lost", agent="x")
                raise KeyError("inner")
        journal.append("write", "c", agent="x")
    assert [(e.seq, e.path, e.txn) for e in journal.entries()] == \
        [(1, "a", 1), (2, "b", 1), (3, "c", 1)]
    assert [[e.path for e in batch] for batch in seen] == [["a", "b", "c"]]


def test_blob_dedup(journal):
    first = journal.put_blob(b"same")
    assert journal.put_blob(bytearray(b"same")) == first == blob_id(b"same")
    assert journal.stats()["blobs"] == 1
    assert journal.stats()["blob_bytes"] == 4
    assert journal.has_blob(first) and not journal.has_blob(blob_id(b"other"))
    assert journal.get_blob(first) == b"same"
    with pytest.raises(KeyError):
        journal.get_blob(blob_id(b"other"))


def test_state_round_trip(tmp_path):
    journal = Journal(tmp_path / "state" / "journal.db")
    blob = journal.put_blob(b"content")
    journal.set_state("src/a.py", {"blob": blob, "mode": 0o100644, "version": 3})
    journal.set_state("gone.py", {"deleted": True})
    journal.set_state("x", {"blob": blob})
    journal.set_state("x", None)
    expect = {"gone.py": {"deleted": True},
              "src/a.py": {"blob": blob, "mode": 0o100644, "version": 3}}
    assert journal.state() == expect
    journal.close()
    with Journal(tmp_path / "state" / "journal.db") as again:
        assert again.state() == expect
        again.clear_state()
        assert again.state() == {}
        assert not again.has_blob(blob)  # nothing else referenced it


def test_checkpoints(journal):
    journal.append("write", "a", agent="x")
    journal.add_checkpoint("v1", 1, {"message": "first"})
    journal.append("write", "b", agent="x")
    journal.add_checkpoint("v0", 0)
    with pytest.raises(JournalError) as err:
        journal.add_checkpoint("v1", 2)
    assert str(err.value) == "checkpoint 'v1' already exists (at seq 1)"
    with pytest.raises(JournalError, match=r"checkpoint 'v9': seq 3 is not in 0\.\.2"):
        journal.add_checkpoint("v9", 3)
    with pytest.raises(JournalError, match="non-empty single line"):
        journal.add_checkpoint("a\nb", 1)
    assert [(n, s) for n, s, _ in journal.checkpoints()] == [("v1", 1), ("v0", 0)]
    assert journal.checkpoint_seq("v1") == 1
    assert journal.checkpoint_info("v1") == {"message": "first"}
    with pytest.raises(KeyError):
        journal.checkpoint_seq("nope")


def test_agents_and_agent_filter(journal):
    for agent in ["bob", "alice", "bob", "carol"]:
        journal.append("write", "f", agent=agent)
    assert journal.agents() == ["alice", "bob", "carol"]
    assert [e.seq for e in journal.entries(agent="bob")] == [1, 3]
    assert [e.seq for e in journal.entries(since=1, agent="bob")] == [3]
    assert journal.entries(agent="dave") == []


def test_path_filter_matches_path2(journal):
    journal.append("write", "a.py", agent="x")
    journal.append("rename", "a.py", agent="x", path2="b.py")
    journal.append("write", "b.py", agent="x")
    journal.append("write", "c.py", agent="x")
    assert [e.seq for e in journal.entries(path="a.py")] == [1, 2]
    assert [e.seq for e in journal.entries(path="b.py")] == [2, 3]
    assert [e.seq for e in journal.entries(path="b.py", limit=1)] == [2]


def test_meta(journal):
    assert journal.get_meta("base", "none") == "none"
    journal.set_meta("base", "abc")
    assert journal.get_meta("base") == "abc"
    journal.set_meta("base", None)
    assert journal.get_meta("base") is None
    with pytest.raises(JournalError, match="meta key 'schema_version' is reserved"):
        journal.set_meta("schema_version", "9")


def test_entry_limit_trims_and_keeps_state_and_pinned_blobs(tmp_path):
    j = Journal(tmp_path / "j.db", max_entries=3)
    blobs = [j.put_blob(b"v%d" % i) for i in range(6)]
    for i in range(6):
        j.append("write", "f", agent="x", before=blobs[i - 1] if i else None, after=blobs[i])
        if i == 0:
            j.set_state("f", {"blob": blobs[0]})
            j.pin_blob(blobs[1])
        j.check_invariants()
    assert (j.first_seq(), j.head()) == (4, 6)
    assert [e.seq for e in j.entries()] == [4, 5, 6]
    with pytest.raises(KeyError):
        j.entry(3)
    # Entry 4 still names blobs[2] as `before`; 0 is state, 1 pinned.
    assert [j.has_blob(b) for b in blobs] == [True, True, True, True, True, True]
    j.append("write", "f", agent="x", before=blobs[5], after=blobs[5])
    assert [j.has_blob(b) for b in blobs] == [True, True, False, True, True, True]
    j.unpin_blob(blobs[1])
    assert not j.has_blob(blobs[1])
    j.set_state("f", {"blob": blobs[5]})
    assert not j.has_blob(blobs[0])
    st = j.stats()
    assert (st["entries"], st["first_seq"], st["head"], st["blobs"]) == (3, 5, 7, 3)
    j.check_invariants()
    j.close()
    with Journal(tmp_path / "j.db", max_entries=3) as again:
        assert (again.first_seq(), again.head()) == (5, 7)
        assert again.append("write", "g", agent="x").seq == 8


def test_blobs_named_in_info_live_as_long_as_their_entry(tmp_path):
    j = Journal(tmp_path / "j.db", max_entries=2)
    x0, x1, x2, a, b = (j.put_blob(d) for d in (b"x0", b"x1", b"x2", b"a", b"b"))
    j.append("write", "x", agent="s", after=x0)
    j.append("batch", "a", agent="s", info={"d": [["a", None, {"blob": a, "mode": 33188}],
                                                   ["b", {"blob": b}, None]]})
    j.append("write", "x", agent="s", before=x0, after=x1)
    assert j.first_seq() == 2
    assert [j.has_blob(h) for h in (x0, x1, a, b)] == [True, True, True, True]
    j.append("write", "x", agent="s", before=x1, after=x2)
    assert j.first_seq() == 3
    assert [j.has_blob(h) for h in (x0, x1, x2, a, b)] == [True, True, True, False, False]
    j.check_invariants()
    j.close()


def test_byte_limit_trims_only_what_is_needed(tmp_path):
    j = Journal(tmp_path / "j.db", max_bytes=2500)
    blobs = []
    for i in range(3):
        blobs.append(j.put_blob(bytes([i]) * 1000))
        j.append("write", f"f{i}", agent="x", after=blobs[-1])
    # 3000 bytes > 2500: dropping entry 1 (frees 1000 bytes) is enough.
    assert (j.first_seq(), j.head()) == (2, 3)
    assert [j.has_blob(b) for b in blobs] == [False, True, True]
    # State keeps blob 1 alive: the next write must trim entries 2 and 3.
    j.set_state("f1", {"blob": blobs[1]})
    with j.transaction():
        blobs.append(j.put_blob(b"z" * 1000))
        j.append("write", "f3", agent="x", after=blobs[-1])
    assert (j.first_seq(), j.head()) == (4, 4)
    assert [j.has_blob(b) for b in blobs] == [False, True, False, True]
    j.check_invariants()
    j.close()


def test_byte_limit_found_beyond_the_first_entries(tmp_path):
    with Journal(tmp_path / "j.db") as j, j.transaction():
        for i in range(300):
            j.append("write", "f", agent="x", after=j.put_blob(b"%010d" % i))
    with Journal(tmp_path / "j.db", max_bytes=1000) as j:
        j.append("write", "g", agent="x")
        # 3000 bytes, 10 per entry: exactly the first 200 entries must go.
        assert (j.first_seq(), j.head()) == (201, 301)
        assert j.stats()["blob_bytes"] == 1000
        j.check_invariants()


def test_byte_limit_unreachable_keeps_history(tmp_path, caplog):
    j = Journal(tmp_path / "j.db", max_bytes=100)
    blob = j.put_blob(b"q" * 500)
    with j.transaction():
        j.pin_blob(blob)
        j.append("write", "f", agent="x", after=blob)
        j.append("write", "g", agent="x", after=blob)
    assert (j.first_seq(), j.head()) == (1, 2)
    assert j.has_blob(blob)
    assert [r.getMessage() for r in caplog.records] == [
        f"journal {tmp_path / 'j.db'}: blob bytes exceed max_bytes 100 by 400 even "
        "without history; keeping history"]
    j.close()


def test_subscribers_see_commits_only(journal):
    calls = []
    unsubscribe = journal.subscribe(lambda batch: calls.append([e.seq for e in batch]))

    def broken(batch):
        raise RuntimeError("subscriber bug")

    journal.subscribe(broken)
    with journal.transaction():
        journal.append("write", "a", agent="x")
        assert calls == []
    with pytest.raises(ValueError):
        with journal.transaction():
            journal.append("write", "b", agent="x")
            raise ValueError
    journal.set_meta("no", "entries")  # a commit without entries notifies nobody
    journal.append("write", "c", agent="x")
    unsubscribe()
    unsubscribe()
    journal.append("write", "d", agent="x")
    assert calls == [[1], [2]]


def test_subscriber_may_append(journal):
    batches = []

    def echo(batch):
        batches.append([(e.seq, e.path) for e in batch])
        if batch[0].path == "a":
            journal.append("write", "echo", agent="y")
            batches.append("appended")

    journal.subscribe(echo)
    journal.append("write", "a", agent="x")
    # The echo's batch is delivered after the callback for batch 1 returns.
    assert batches == [[(1, "a")], "appended", [(2, "echo")]]


def test_subscriber_runs_without_the_lock(journal):
    result = []

    def reader(batch):
        # Another thread can use the journal while the callback runs.
        t = threading.Thread(target=lambda: result.append(journal.head()))
        t.start()
        t.join(5)

    journal.subscribe(reader)
    journal.append("write", "a", agent="x")
    assert result == [1]


def test_file_permissions(tmp_path):
    j = Journal(tmp_path / "state" / "sub" / "journal.db")
    j.append("write", "a", agent="x")
    assert stat.S_IMODE(os.stat(tmp_path / "state" / "sub").st_mode) == 0o700
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        assert stat.S_IMODE(os.stat(tmp_path / "state" / "sub" / name).st_mode) == 0o600, name
    j.close()


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not sqlite" * 300)
    with pytest.raises(JournalError, match=r"cannot open journal .*garbage\.db: corrupt or not a vfs journal"):
        Journal(garbage)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE t(x)")
    conn.close()
    with pytest.raises(JournalError, match="a SQLite database, but not a vfs journal"):
        Journal(foreign)
    future = tmp_path / "future.db"
    Journal(future).close()
    with sqlite3.connect(future) as conn:
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(JournalError) as err:
        Journal(future)
    assert str(err.value) == f"cannot open journal {future}: schema version 5, this vfs reads version 4"


def test_schema_1_is_migrated(tmp_path):
    db = tmp_path / "j.db"
    with Journal(db) as j:
        a, b, c = (j.put_blob(d) for d in (b"a", b"b", b"c"))
        j.append("write", "x", agent="s", after=a)
        j.append("batch", "y", agent="s", info={"d": [["y", None, {"blob": b}]]})
        j.append("write", "x", agent="s", before=a, after=c)
    with sqlite3.connect(db) as conn:  # turn it back into a version 1 journal
        conn.executescript("""DROP TABLE refs; DROP TABLE summaries;
            DROP TABLE attrs; DROP TABLE links; DROP INDEX blobs_base; ALTER TABLE blobs DROP COLUMN base; ALTER TABLE blobs DROP COLUMN depth;
            CREATE INDEX entries_before ON entries(before) WHERE before IS NOT NULL;
            CREATE INDEX entries_after ON entries(after) WHERE after IS NOT NULL;
            UPDATE meta SET value = '1' WHERE key = 'schema_version';""")
    conn.close()
    with Journal(db, max_entries=1) as j:
        assert j.get_meta("schema_version") == "4"
        assert [e.seq for e in j.entries()] == [1, 2, 3]
        j.append("write", "z", agent="s", after=c)
        assert j.first_seq() == 4
        assert [j.has_blob(h) for h in (a, b, c)] == [False, False, True]
        j.check_invariants()


def test_trimmed_entries_are_folded_into_summaries(tmp_path):
    """The summarize hook sees every trimmed entry once, oldest first, and its
    records are committed with the trim (so they survive a reopen)."""
    seen = []

    def count_paths(entry, summaries):
        seen.append(entry.seq)
        summaries.put(entry.path, (summaries.get(entry.path) or 0) + 1)

    db = tmp_path / "j.db"
    with Journal(db, max_entries=2, summarize=count_paths) as j:
        for path in "aabab":
            j.append("write", path, agent="s")
        assert seen == [1, 2, 3]
        assert (j.summary("a"), j.summary("b"), j.summary("c")) == (2, 1, None)
    with Journal(db) as j:
        assert (j.summary("a"), j.summary("b")) == (2, 1)


def test_schema_2_gains_the_summaries_table(tmp_path):
    db = tmp_path / "j.db"
    with Journal(db) as j:
        j.append("write", "x", agent="s")
    with sqlite3.connect(db) as conn:
        conn.executescript("DROP TABLE summaries; DROP TABLE attrs; DROP TABLE links; DROP INDEX blobs_base; ALTER TABLE blobs DROP COLUMN base;"
                           " ALTER TABLE blobs DROP COLUMN depth; UPDATE meta SET value = '2' WHERE key = 'schema_version';")
    conn.close()
    with Journal(db, max_entries=1, summarize=lambda e, s: s.put(e.path, e.seq)) as j:
        assert j.get_meta("schema_version") == "4"
        j.append("write", "y", agent="s")
        assert j.summary("x") == 1
        j.check_invariants()



def test_big_versions_are_stored_as_deltas(tmp_path):
    """A log that grows by a line per version, or a database rewriting a page, is stored as a
    delta against its previous version (not a full copy per version, as it was: O(size x
    versions)); every version reads back whole, also after trimming and a reopen."""
    db = tmp_path / "j.db"
    content = bytes(range(256)) * 1024  # 256 KiB
    versions = [content]
    with Journal(db, max_entries=10) as j:
        prev = j.put_blob(content)
        j.append("write", "log", agent="s", after=prev)
        for i in range(40):
            new = bytearray(versions[-1]) + b"line %d\n" % i
            new[4096 * (i % 60):4096 * (i % 60) + 8] = b"page%04d" % i  # a page rewritten in place
            blob = j.put_blob(bytes(new), like=prev)
            j.append("write", "log", agent="s", before=prev, after=blob)
            j.set_state("log", {"kind": "file", "blob": blob})
            versions.append(bytes(new))
            prev = blob
        stats = j.stats()
        assert stats["blob_bytes"] < 2 * len(content) + 40 * 8192, stats  # not 41 full copies
        for seq_entry in j.entries():
            assert j.get_blob(seq_entry.after) in versions
        j.check_invariants()
    with Journal(db) as j:
        assert j.get_blob(prev) == versions[-1]
        j.check_invariants()


def test_schema_3_gains_deltas(tmp_path):
    db = tmp_path / "j.db"
    with Journal(db) as j:
        a = j.put_blob(b"a" * 100_000)
        j.append("write", "x", agent="s", after=a)
    with sqlite3.connect(db) as conn:
        conn.executescript("DROP TABLE attrs; DROP TABLE links; DROP INDEX blobs_base; ALTER TABLE blobs DROP COLUMN base;"
                           " ALTER TABLE blobs DROP COLUMN depth; UPDATE meta SET value = '3' WHERE key = 'schema_version';")
    conn.close()
    with Journal(db) as j:
        assert j.get_meta("schema_version") == "4"
        b = j.put_blob(b"a" * 100_000 + b"b", like=a)
        assert j.get_blob(b) == b"a" * 100_000 + b"b" and j.stats()["blob_bytes"] < 100_000 + 8192
        j.check_invariants()

def test_closed_journal_refuses_calls(tmp_path):
    j = Journal(tmp_path / "j.db")
    j.close()
    j.close()
    with pytest.raises(JournalError, match="is closed"):
        j.entries()
    with pytest.raises(JournalError, match="is closed"):
        j.append("write", "a", agent="x")


_WRITER = """
import os, signal, sys, threading
from vfs.journal import Journal
j = Journal(sys.argv[1])
started = threading.Event()
def killer():
    started.wait()
    os.kill(os.getpid(), signal.SIGKILL)
threading.Thread(target=killer, daemon=True).start()
for i in range(100000):
    with j.transaction():
        blob = j.put_blob(os.urandom(512))
        j.append("write", "f%d" % (i % 7), agent="w", after=blob)
        j.set_state("f%d" % (i % 7), {"blob": blob})
    print(j.head(), flush=True)
    if i == 150:
        started.set()
"""


def test_kill_9_keeps_committed_entries(tmp_path):
    db = tmp_path / "j.db"
    proc = subprocess.run([sys.executable, "-c", _WRITER, str(db)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    acknowledged = int(proc.stdout.split()[-1])
    assert acknowledged >= 151
    with Journal(db) as j:
        j.check_invariants()
        head = j.head()
        assert acknowledged <= head <= acknowledged + 1
        entries = j.entries()
        assert [e.seq for e in entries] == list(range(1, head + 1))
        assert all(len(j.get_blob(e.after)) == 512 for e in entries)
        state = j.state()
        assert len(state) == 7
        assert all(j.has_blob(r["blob"]) for r in state.values())
        assert j.append("write", "after", agent="x").seq == head + 1


def test_four_threads_append_contiguously(journal):
    def worker(name):
        for _ in range(250):
            journal.append("write", name, agent=name)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = journal.entries()
    assert [e.seq for e in entries] == list(range(1, 1001))
    assert journal.head() == 1000
    assert journal.agents() == ["t0", "t1", "t2", "t3"]
    assert [len(journal.entries(agent=f"t{i}")) for i in range(4)] == [250] * 4


def test_subscribers_get_batches_in_commit_order_across_threads(journal):
    order = []
    journal.subscribe(lambda batch: order.extend(e.seq for e in batch))
    threads = [threading.Thread(target=lambda: [journal.append("write", "f", agent="x")
                                                for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order == list(range(1, 201))
