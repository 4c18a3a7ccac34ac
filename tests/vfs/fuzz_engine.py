"""The fuzz of the control directory, part 2: the Fuzzer (one write and its checks), the
hypothesis strategies for each command's payloads, and the run.  See test_fuzz_control.py."""
from __future__ import annotations

import errno
import json
import os
import re
import secrets
import threading
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed as hseed, settings, strategies as st

import fuzz_world
from fuzz_world import (
    BASE_READS_OUTSIDE, CONFLICT_PATH, FULL_READ_EVERY, MAX_ENTRIES, MAX_LINE, PASSWD_MARK, POOL,
    Stats, TreeHasher, WRITES_PER_EXAMPLE, WRITE_EVENTS, Watchdog, World, Write, _command, _listing,
    _short, make_conflict)


# ---------------------------------------------------------------------------- the fuzzer
class Fuzzer:
    """Performs writes on a World and checks every promise after each (see module docstring)."""

    def __init__(self, world: World, *, full_read_every: int = FULL_READ_EVERY) -> None:
        self.w = world
        self.stats = Stats()
        self.dog = Watchdog(world)
        self.full_read_every = full_read_every
        self.checkpoints = ["base1"]
        self._cp = 0
        # `.vfs` held open: reading a control file then costs one lookup less (they are never cached)
        self.vfs_fd = os.open(world.mnt / ".vfs", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.failure: BaseException | None = None
        self.progress = None  # called with a summary line every 1,000 writes (scripts/fuzz_control)
        self.tree_hash = TreeHasher(world.mnt)
        self.disk_hash = TreeHasher(world.src)
        self.refresh()

    # -------------------------------------------------------------- observed state
    def read_control(self, name: str) -> bytes:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.vfs_fd)
        try:
            chunks = [os.read(fd, 1 << 20)]
            while len(chunks[-1]) == 1 << 20:  # (a short read is the end: views are rendered whole at open)
                chunks.append(os.read(fd, 1 << 20))
            return b"".join(chunks)
        finally:
            os.close(fd)

    def status(self) -> dict:
        return json.loads(self.read_control("status.json"))

    def refresh(self) -> None:
        st = self.status()
        self.head = st["journal_head"]
        self.mode = st["mode"]
        self.conflicts = set(st["conflicts"])
        self.tree = self.tree_hash()
        self.disk = self.disk_hash()

    @property
    def contents(self) -> dict[str, bytes]:
        return self.tree_hash.contents

    def known_checkpoint(self, i: int) -> str:
        """Mostly one of the last few (a rollback replays every entry since its target: the run would
        slow down as the journal grows), now and then any."""
        cps = self.checkpoints
        return cps[i % len(cps)] if i % 10 == 0 else cps[-1 - (i // 10) % min(len(cps), 8)]

    def fresh_checkpoint(self) -> str:
        self._cp += 1
        return f"fz{self._cp}-{secrets.token_hex(2)}"

    # -------------------------------------------------------------- writing
    def _raw_write(self, w: Write) -> tuple[str, int | None]:
        """('ok', None) or (stage, errno); stage is open, write or close."""
        try:
            fd = os.open(w.file, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC, dir_fd=self.vfs_fd)
        except OSError as exc:
            return "open", exc.errno
        try:
            data = memoryview(w.payload)
            n = max(1, w.chunks)
            size = max(1, -(-len(data) // n))
            while data:
                piece, data = data[:size], data[size:]
                while piece:
                    piece = piece[os.write(fd, piece):]
        except OSError as exc:
            try:
                os.close(fd)
            except OSError:
                pass
            return "write", exc.errno
        try:
            os.close(fd)
        except OSError as exc:
            return "close", exc.errno
        return "ok", None

    def last_line(self, name: str) -> str:
        text = self.read_control(name)
        self._no_leak(text, f".vfs/{name}")
        lines = text.rstrip(b"\n").split(b"\n")  # (as `tail -1` sees it: only \n ends a line)
        return lines[-1].decode("utf-8", "replace")

    def write(self, w: Write) -> str:
        """Do one write and check everything; returns 'ok' or the errno name."""
        self.dog.begin(w.describe())
        stage, err = self._raw_write(w)
        took = self.dog.end()
        self._alive(w)
        self.stats.writes += 1
        self.stats.by_file[w.file] = self.stats.by_file.get(w.file, 0) + 1
        key = (w.file, err is None)
        self.stats.time_in[key] = self.stats.time_in.get(key, 0.0) + took
        self.stats.entries += self.tree_hash.entries
        if took > self.stats.max_latency:
            self.stats.max_latency, self.stats.slowest = took, w.describe()[:120]
        strict = w.commands_run() <= 1
        outcome = "ok" if err is None else errno.errorcode.get(err, str(err))
        self.stats.errnos[outcome] = self.stats.errnos.get(outcome, 0) + 1
        if w.file not in self.w.commands:
            assert err is not None, f"a write to a file that takes no commands succeeded: {w.describe()}"
            self._unchanged(w, outcome)
            return outcome
        last = self.last_line(w.file) if w.commands_run() else None
        if err is not None:
            assert err != errno.EIO, f"internal error (EIO) for {w.describe()}: {_short(last)}"
            assert last is not None, f"{w.describe()} refused ({outcome}) though no command ran"
            m = re.fullmatch(r"last: error: (.+) \[([A-Z0-9]+)\]", last)
            assert m, f"refused with {outcome} at {stage}, but `cat .vfs/{w.file}` ends with {_short(last)!r}: " \
                      f"{w.describe()}"
            assert m.group(2) == outcome, (f"the writer got {outcome} but .vfs/{w.file} says {m.group(2)}: "
                                          f"{_short(last)!r} for {w.describe()}")
            assert "internal error" not in m.group(1), f"{_short(last)!r} for {w.describe()}"
            assert len(last) < 5000, f"a message of {len(last)} characters for {w.describe()}"
        elif last is not None and strict:
            assert last.startswith("last: ok: "), \
                f"accepted, but .vfs/{w.file} ends with {_short(last)!r}: {w.describe()}"
        if err is not None and strict:
            self.stats.refused += 1
            self._unchanged(w, outcome)
        else:
            if err is None and strict:
                self.stats.accepted += 1
            else:
                self.stats.lenient += 1
            self._moved_on(w)
        self._outside_untouched(w)
        if self.stats.writes % self.full_read_every == 0:
            self.full_read()
        if self.progress is not None and self.stats.writes % 1000 == 0:
            self.progress(self.stats.summary())
        return outcome

    def _alive(self, w: Write) -> None:
        try:
            os.kill(self.w.mount.pid, 0)
        except ProcessLookupError:
            raise AssertionError(f"the daemon died after {w.describe()}") from None

    def _unchanged(self, w: Write, outcome: str) -> None:
        st = self.status()
        tree = self.tree_hash()
        disk = self.disk_hash()
        assert st["journal_head"] == self.head, \
            f"refused ({outcome}) but the journal moved {self.head} -> {st['journal_head']}: {w.describe()}"
        assert tree == self.tree, f"refused ({outcome}) but the tree changed: {w.describe()}"
        assert disk == self.disk, f"refused ({outcome}) but the disk changed: {w.describe()}"
        assert st["mode"] == self.mode, f"refused ({outcome}) but the mode changed: {w.describe()}"
        self._conflicts(st)

    def _moved_on(self, w: Write, files: set[str] | None = None) -> None:
        old_disk, old_mode = self.disk, self.mode
        st = self.status()
        self.head, self.mode = st["journal_head"], st["mode"]
        self.tree = self.tree_hash()
        self.disk = self.disk_hash()
        if self.disk != old_disk:
            assert (files or {w.file}) & {"sync", "mode"} or "write-through" in (old_mode, self.mode), \
                f"the disk changed without a sync: {w.describe()}"
        self._conflicts(st)
        if self.tree_hash.entries > MAX_ENTRIES:
            self.reset()
        if w.file == "checkpoint" and w.payload.strip():
            name = w.payload.decode("utf-8", "replace").strip().splitlines()[-1].strip()
            if name and name not in self.checkpoints:
                self.checkpoints.append(name)

    def _conflicts(self, st: dict) -> None:
        """Conflicts come from the watcher, asynchronously: not the write's doing, only counted.

        Besides the one `make_conflict` makes, a conflict appears when a path is
        changed in memory right after a sync wrote it and the watcher reports
        that write late (vfs takes its own write for an outside edit; see
        test_sync_then_edit_is_no_conflict).
        """
        now = set(st["conflicts"])
        self.stats.stray_conflicts |= now - {CONFLICT_PATH}
        self.conflicts = now

    def _outside_untouched(self, w: Write) -> None:
        events = self.w.watch.events()
        if BASE_READS_OUTSIDE and events and not any(e[1] & WRITE_EVENTS for e in events):
            self.stats.base_reads_outside += 1  # the known vfs.base bug; writes stay fatal
            return
        assert not events, f"something touched the canary directory outside the tree: {events} after {w.describe()}"

    def _no_leak(self, data: bytes, where: str) -> None:
        assert self.w.secret not in data, f"the canary's secret appeared in {where}"
        assert PASSWD_MARK not in data, f"/etc/passwd content appeared in {where}"

    def full_read(self) -> None:
        """Read every .vfs output in full (no secret anywhere); check the surroundings."""
        mp = self.w.mnt / ".vfs"
        names = [n for n in os.listdir(mp) if n != "events"]
        for name in names:
            p = mp / name
            if p.is_dir():
                continue
            with open(p, "rb") as f:
                self._no_leak(f.read(), f".vfs/{name}")
        for sub in ("versions", "diffs"):
            for d, _dirs, files in os.walk(mp / sub):
                for n in files:
                    with open(Path(d) / n, "rb") as f:
                        self._no_leak(f.read(), str(Path(d, n).relative_to(self.w.mnt)))
        assert sorted(os.listdir(self.w.root)) == self.w.root_listing, "something appeared next to the source"
        assert _listing(self.w.outside) == self.w.outside_listing, "the canary directory changed"
        self.w.watch.events()  # (listing it above is our own access)
        self.refresh_links()

    def reset(self) -> None:
        """Back to the checkpoint made at the start: accepted batches may have grown the tree
        (a directory 600 deep), and every check walks all of it."""
        self.dog.begin("rollback @base1 (reset)")
        _command(self.w.mnt, "rollback", b"@base1\n")
        self.dog.end()
        self.stats.resets += 1
        self.refresh()

    def refresh_links(self) -> None:
        """Put back the in-memory symlinks (a rollback to before them removes them), and a conflict."""
        mp = self.w.mnt
        changed = False
        for name, target in (("mnt_out", str(self.w.outside)), ("mnt_etc", "/etc")):
            if not os.path.lexists(mp / name):
                try:
                    os.symlink(target, mp / name)
                    changed = True
                except OSError:
                    pass
        if not self.conflicts and make_conflict(self.w):
            self.stats.conflicts_made += 1
            changed = True
        if changed:
            self.refresh()

    def close(self) -> None:
        self.dog.stop()
        try:
            os.close(self.vfs_fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------- strategies
BAD_PATHS = [
    "..", "../", "../outside/canary.txt", "../../etc/passwd", "data/../../x", "data/../..", "a/./b/../../..",
    "/etc/passwd", "/", "//", "/tmp/evil.txt", "///etc//passwd", "./../x", "fz/../../outside",
    ".vfs", ".vfs/status", "./.vfs/log", ".vfs/../.vfs/batch", "a\0b", "data/notes.txt\0", "\0",
    "~/.bashrc", "$HOME/x", "`id`", "$(id)", "\\..\\..\\etc\\passwd", "..\\x", "C:\\Windows",
    "x" * 300, "/".join(["d"] * 600), "data/notes.txt/", "data//notes.txt", "./data/notes.txt",
    " data/notes.txt", "data/notes.txt ", "data/notes.txt\t2", "data/notes.txt 1 2", "-1", "--help",
    "fz/a.txt\r", "é/ü/ñ.txt", "\u202eevil", "\ufeffbom.txt", "con", "nul", "*", "?", "[a-z]", "%2e%2e/x",
    "link_out/canary.txt", "link_out/sub/inner.txt", "link_out/new.txt", "link_out", "link_out/",
    "link_etc/passwd", "link_etc/shadow", "link_etc", "link_rel", "link_rel/x",
    "mnt_out/canary.txt", "mnt_out/sub/inner.txt", "mnt_etc/passwd", "mnt_etc",
    "synced_out/canary.txt", "synced_out/sub", "link_etc/../etc/passwd", "__pycache__/cached.txt",
    "__pycache__/new.txt", "__pycache__", "calc/__pycache__/x.pyc",
]

_names = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0"), min_size=1,
                 max_size=12)
paths = st.one_of(
    st.sampled_from(POOL),
    st.sampled_from(BAD_PATHS),
    st.lists(st.one_of(_names, st.sampled_from(["..", ".", "", "fz", "link_out", "mnt_etc", "data"])),
             min_size=1, max_size=5).map("/".join),
    st.text(max_size=40),
)


def _huge(n: int, unit: bytes) -> bytes:
    return (unit * (n // len(unit) + 1))[:n]


junk = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(1, 3000)),
    st.sampled_from([b"\xff\xfe\n", b"\xc3\n", b"\xed\xa0\x80\n", b"abc\0def\n", b"\0", b"\r\n", b"\r",
                     b"\n\n\n", b"   \n", b"\t\n", b"\x1b[2J\n", b"\xe2\x80\xae\n", b"\xf4\x90\x80\x80\n"]),
)

# Lines around the 1 MiB limit, one time in four (they are slow to push through; junk otherwise).
huge = st.builds(lambda gate, n, unit, nl, other: _huge(n, unit) + (b"\n" if nl else b"") if gate == 2 else other,
                 st.integers(0, 3),
                 st.sampled_from([MAX_LINE - 2, MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 5000, 2 * MAX_LINE]),
                 st.sampled_from([b"a", b"0", b"/..", b"\xc3\xa9", b"[", b"link_out/"]), st.booleans(), junk)


def line(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass") + b"\n"


@st.composite
def rollback_payload(draw, fz: Fuzzer) -> bytes:
    # (The draws never depend on the mount's state, only the values made from them:
    # hypothesis requires the same choices to lead to the same draws.)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return line(str(max(0, fz.head - draw(st.integers(-3, 30)))))
    if kind == 1:
        return line(draw(st.sampled_from(["-1", "+1", "1e3", "0x10", " 0", "00", "1.5", "١٢", "9" * 30, "9" * 5000,
                                          str(fz.head + 1), str(2 ** 63), str(-(2 ** 63))])))
    if kind == 2:
        name = draw(st.one_of(st.integers(0, 1 << 20).map(fz.known_checkpoint), _names,
                              st.sampled_from(["", "@", "../x", "a b"])))
        return line("@" + name)
    if kind in (3, 4, 5):
        path = draw(paths)
        version = draw(st.one_of(st.none(), st.integers(-2, 8).map(str), st.sampled_from(["99999999999", "x", "1 2"])))
        return line(path if version is None else f"{path} {version}")
    if kind == 6:
        return draw(junk)
    if kind == 7:
        return draw(huge)
    if kind == 8:
        back = draw(st.lists(st.integers(-2, 5), min_size=2, max_size=3))
        return b"".join(line(str(max(0, fz.head - n))) for n in back)
    return line(draw(st.text(max_size=60)))


@st.composite
def checkpoint_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 7))
    if kind in (0, 1):
        return line(fz.fresh_checkpoint())
    if kind == 2:
        return line(fz.known_checkpoint(draw(st.integers(0, 1 << 20))))
    if kind == 3:
        return line(draw(st.sampled_from(["", " ", "a" * 64 + "b", "bad name", "-lead", ".hidden", "a/b", "../up",
                                          "é", "x\ty", "@x", "a" * 70, "ok.name_1-2 ", "\u0660"])))
    if kind == 4:
        return draw(junk)
    if kind == 5:
        return draw(huge)
    if kind == 6:
        return line(fz.fresh_checkpoint()).rstrip(b"\n")  # runs at close
    return line(draw(st.text(max_size=70)))


@st.composite
def sync_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        return b"\n"
    if kind in (1, 2, 3):
        return line(draw(paths))
    if kind == 4:
        return draw(junk)
    if kind == 5:
        return draw(huge)
    return line(draw(st.text(max_size=40)))


@st.composite
def mode_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind in (0, 1):
        return line(draw(st.sampled_from(["on-demand", "write-through", "lazy", " on-demand ", "lazy\r"])))
    if kind == 2:
        return line(draw(st.sampled_from(["ON-DEMAND", "write_through", "lazy lazy", "", "on-demand\0", "eager",
                                          "on-demand\nlazy", "writethrough", "lazy;rm -rf /"])))
    if kind == 3:
        return draw(junk)
    if kind == 4:
        return draw(huge)
    return line(draw(st.text(max_size=30)))


@st.composite
def resolve_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 5))
    how = draw(st.sampled_from(["mine", "theirs", "merge", "MINE", "both", "", "mine theirs", "../x"]))
    which = draw(st.integers(0, 1 << 20))
    if kind in (0, 1):
        pending = sorted(fz.conflicts) or [CONFLICT_PATH]
        return line(f"{pending[which % len(pending)]} {how}")
    if kind == 2:
        return line(f"{draw(paths)} {how}")
    if kind == 3:
        return draw(junk)
    if kind == 4:
        return draw(huge)
    return line(draw(st.text(max_size=50)))


IDENTS = ["add", "mul", "plus", "times", "f", "g", "_x", "class", "1abc", "a.b", "", "é", "None", "x" * 300,
          "a-b", "__init__", "ops", "calc"]


@st.composite
def rename_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 5))
    qual = draw(st.sampled_from(["calc.ops.add", "calc.ops.mul", "calc.add", "fz.c.f", "calc.ops", "calc",
                                 "nope.x", "..", "calc..add", ".calc.add", "calc.ops.add.extra", "link_etc.passwd"]))
    if kind in (0, 1):
        return line(f"{qual} {draw(st.sampled_from(IDENTS))}")
    if kind == 2:
        return line(f"{draw(paths)} {draw(st.sampled_from(IDENTS))}")
    if kind == 3:
        return draw(junk)
    if kind == 4:
        return draw(huge)
    return line(draw(st.text(max_size=50)))


def _json_text(draw) -> str:
    return draw(st.one_of(st.text(max_size=30), st.sampled_from(["", "\n", "\0", "x" * 5000, "é\u202e", "alpha",
                                                                "beta", "one", "def f():\n    return 1\n",
                                                                "def broken(:\n"])))


@st.composite
def edit(draw, fz: Fuzzer) -> dict:
    path = draw(st.one_of(st.sampled_from(POOL), st.sampled_from(POOL), paths))
    kind = draw(st.sampled_from(["old", "old", "content", "content", "delete", "rename_to", "weird"]))
    if kind == "old":
        from_file, at, size, other = draw(st.booleans()), draw(st.integers(0, 1 << 20)), draw(st.integers(1, 8)), \
            _json_text(draw)
        text = fz.contents.get(path, b"").decode("utf-8", "replace")
        old = text[at % len(text):at % len(text) + size] if from_file and text else other
        return {"path": path, "old": old, "new": _json_text(draw)}
    if kind == "content":
        return {"path": path, "content": _json_text(draw)}
    if kind == "delete":
        return {"path": path, "delete": draw(st.sampled_from([True, True, False, 1, "yes", None]))}
    if kind == "rename_to":
        return {"path": path, "rename_to": draw(st.one_of(st.sampled_from(POOL), paths))}
    return draw(st.sampled_from([
        {"path": path}, {"path": path, "old": "a"}, {"path": path, "new": "a"}, {"path": path, "content": 1},
        {"path": path, "content": None}, {"path": 5, "content": "x"}, {"path": "", "content": "x"},
        {"path": path, "content": "x", "delete": True}, {"path": path, "extra": 1}, {"content": "x"},
        {"path": path, "old": "", "new": "x"}, {"path": path, "rename_to": ""}, {"path": path, "rename_to": 3},
        {"path": [path], "content": "x"}, {"path": {"p": path}, "content": "x"},
    ]))


@st.composite
def batch_payload(draw, fz: Fuzzer) -> bytes:
    kind = draw(st.integers(0, 11))
    if kind == 10 and draw(st.integers(0, 30)) != 17:
        kind = 0  # the 64 MiB ones are rare
    if kind <= 4:
        edits = draw(st.lists(edit(fz), min_size=1, max_size=6))
        text = json.dumps(edits, ensure_ascii=draw(st.booleans()))
        return text.encode("utf-8", "surrogatepass") + (b"\n" if draw(st.integers(0, 4)) else b"")
    if kind == 5:  # malformed JSON
        good = json.dumps([{"path": "fz/a.txt", "content": "x"}])
        cut = draw(st.integers(0, len(good) - 1))
        return draw(st.sampled_from([
            good[:cut], good[:cut] + "\n", good.replace("[", "", 1), good + ",", good + "\n" + good, "[" + good,
            "{bad json\n", "[1, 2]\n", "[]\n", "{}\n", "null\n", "true\n", "\"x\"\n", "1e999\n", "NaN\n",
            "[{\"path\": \"fz/a.txt\", \"content\": \"x\",}]\n", "[{'path': 'fz/a.txt'}]\n",
            "[{\"path\": \"fz/a.txt\", \"content\": \"\\ud800\"}]\n", "[{\"path\": \"\\udcff\", \"content\": \"x\"}]\n",
            "[{\"path\": \"fz/a.txt\", \"content\": \"\\udcff\"}]\n", "[{\"path\": \"fz/\\u0000\", \"content\": \"x\"}]\n",
            "[{\"path\": \"fz/a.txt\", \"path\": \"../x\", \"content\": \"x\"}]\n",
        ])).encode()
    if kind == 6:  # deeply nested
        depth = draw(st.sampled_from([100, 1000, 5000, 100_000]))
        opener = draw(st.sampled_from([b"[", b"{\"a\":"]))
        return opener * depth + (b"\n" if draw(st.booleans()) else b"")
    if kind == 7:  # big but valid: content of a pool file
        n = draw(st.sampled_from([70_000, 500_000, 2_000_000]))
        edits = [{"path": draw(st.sampled_from(["fz/a.txt", "fz/b.txt", "fz/big.txt"])), "content": "b" * n}]
        return json.dumps(edits).encode() + b"\n"
    if kind == 8:  # conflicting edits on a few paths
        few = st.sampled_from(["fz/a.txt", "fz/b.txt", "fz/sub", "fz/sub/d.txt", "fz/moved", "fz/moved/d.txt",
                               "link_out", "link_out/x.txt", "fz"])
        ops = st.one_of(
            st.builds(lambda p, q: {"path": p, "rename_to": q}, few, few),
            st.builds(lambda p: {"path": p, "delete": True}, few),
            st.builds(lambda p: {"path": p, "content": "c\n"}, few),
            st.builds(lambda p: {"path": p, "old": "a", "new": "b"}, few),
        )
        return json.dumps(draw(st.lists(ops, min_size=2, max_size=6))).encode() + b"\n"
    if kind == 9:
        return draw(junk)
    if kind == 10:
        return draw(st.sampled_from([_huge(64 << 20, b" ") + b"x", b"[" + _huge((64 << 20) + 10, b" ")]))
    return json.dumps(draw(st.lists(edit(fz), min_size=1, max_size=3)), indent=2).encode() + b"\n"


PAYLOADS = {
    "rollback": rollback_payload, "checkpoint": checkpoint_payload, "sync": sync_payload, "mode": mode_payload,
    "batch": batch_payload, "resolve": resolve_payload, "rename": rename_payload,
}
READ_ONLY = ["status", "status.json", "README", "log", "diff", "changed", "errors", "conflicts", "branch",
             "versions/data/notes.txt/1", "diffs/fz/a.txt", "agents", "versions", "no-such-file", "events",
             "../.vfs/status", "symbols/calc/ops.py", "defs/add", "refs/calc.ops.add"]


@st.composite
def one_write(draw, fz: Fuzzer) -> Write:
    if draw(st.integers(0, 40)) == 23:  # (hypothesis favours small and boundary values)
        return Write(draw(st.sampled_from(READ_ONLY)), line("0"), 1, "not a command file")
    name = draw(st.sampled_from(fz.w.commands))
    payload = draw(PAYLOADS[name](fz))
    chunks = draw(st.sampled_from([1, 1, 1, 2, 3, 7]))  # (drawn always: see rollback_payload)
    return Write(name, payload, min(chunks, max(1, len(payload))), "generated")


def parallel_writes(fz: Fuzzer, writes: list[Write]) -> None:
    """Several writers at once, each on its own descriptor; lenient checks, then the state moves on."""
    results: list[tuple[Write, str, int | None]] = []
    lock = threading.Lock()

    def run(w: Write) -> None:
        stage, err = fz._raw_write(w)
        with lock:
            results.append((w, stage, err))

    fz.dog.begin("parallel: " + " | ".join(w.describe()[:80] for w in writes))
    threads = [threading.Thread(target=run, args=(w,)) for w in writes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(fuzz_world.BOUND + 5)
    fz.dog.end()
    assert len(results) == len(writes), "a parallel writer never returned"
    for w, _stage, err in results:
        fz._alive(w)
        assert err != errno.EIO, f"internal error (EIO) for {w.describe()}"
        fz.stats.writes += 1
        fz.stats.lenient += 1
        fz.stats.by_file[w.file] = fz.stats.by_file.get(w.file, 0) + 1
        if w.file in fz.w.commands and w.commands_run():
            last = fz.last_line(w.file)
            assert re.fullmatch(r"last: (ok: .*|error: .+ \[[A-Z0-9]+\])", last), last
    fz._moved_on(writes[-1], {w.file for w in writes})
    fz._outside_untouched(writes[-1])


# ---------------------------------------------------------------------------- the run
def run_fuzz(fz: Fuzzer, writes: int, *, seed: int | None = None, derandomize: bool = False,
             per_example: int = WRITES_PER_EXAMPLE) -> None:
    """Drive at least `writes` writes through hypothesis (no shrinking: the mount's state moves on)."""
    examples = -(-writes // per_example)

    @settings(max_examples=examples, deadline=None, derandomize=derandomize, database=None,
              phases=[Phase.explicit, Phase.generate], print_blob=False, report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def example(data) -> None:
        if fz.failure is not None:
            raise fz.failure  # (hypothesis replays a failing example: the mount has moved on since)
        try:
            for _ in range(per_example):
                if data.draw(st.integers(0, 60), label="parallel?") == 37:
                    parallel_writes(fz, [data.draw(one_write(fz)) for _ in range(data.draw(st.integers(2, 4)))])
                    continue
                w = data.draw(one_write(fz), label="write")
                fz.write(w)
        except Exception as exc:
            fz.failure = exc
            raise

    if seed is not None:
        example = hseed(seed)(example)
    while fz.stats.writes < writes:  # (hypothesis may end a round early: then another one)
        try:
            example()
        except Exception:
            if fz.failure is not None:
                raise fz.failure from None  # the first failure, not what a replay on a changed mount saw
            raise
