"""History over the journal: versions of a path, checkpoints, rollback.

Every journal entry written by the Session carries, in `info["d"]`, the
before and after state of each path it changed (`vfs.states`).  That makes
history a pure function of the journal:

- the *versions* of a path are the distinct contents it held: version 1 is
  its content before its first recorded change (when it existed), then one
  version per entry that left it holding a file.  Trimming the journal folds
  the trimmed entries into a per-path tally (`summarize_trimmed`), so numbers
  never shift: version N keeps its content or is gone;
- rolling the session back to entry SEQ puts every path touched after SEQ
  back to its state before the earliest such entry;
- a rollback is itself one journal entry (op `rollback`), so it can be
  rolled back in turn.

An entry's main `path` names only the first path it changed (a batch, a
rename of a directory or a rollback changes many), so finding a path's
entries takes its deltas, not the `path` column: `_PathIndex` maps each path
to the seqs of the entries that changed it, built once per journal and then
extended with each new entry.

Thread safety: functions take the session lock through `Session.compound`;
the path index has its own lock.
"""
from __future__ import annotations

import errno
import stat
import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import FsError
from .session import check_rel_path
from .states import State
from .syncer import passthrough_at

if TYPE_CHECKING:
    from .session import Change, Session

__all__ = ["Version", "versions", "rollback_path", "rollback_to_seq", "rollback_to_checkpoint",
           "checkpoint", "CHECKPOINT_NAME", "require_journal", "summarize_trimmed"]

CHECKPOINT_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"


@dataclass(frozen=True)
class Version:
    n: int
    seq: int          # the entry that produced it (0: held before the journal began)
    time: float
    agent: str
    op: str
    state: State


def require_journal(session: "Session"):
    if session.journal is None:
        raise FsError(errno.EOPNOTSUPP, "this session has no journal")
    return session.journal


def _deltas(entry) -> list[tuple[str, State, State]]:
    return [tuple(d) for d in entry.info.get("d", [])]


def versions(session: "Session", path: str) -> list[Version]:
    """The contents `path` held, oldest first (see module docstring)."""
    path = check_rel_path(path)
    journal = require_journal(session)
    out, retained = _journal_versions(journal, path)
    out = list(out)
    if out and not retained:
        # Only the tally of trimmed history is left: it names the content now
        # held, or nothing that can still be read.
        with session.lock:
            return out if session.current_state(path) == out[0].state else []
    if not out:
        with session.lock:
            if path in session.overlay:
                state = session.overlay[path]
            else:
                try:
                    if _base_reachable(session, path):
                        state = session.base_states.state(path)
                    else:
                        state = None  # a parent on disk is a symlink (or a file): never read through it
                except FsError:
                    raise
                except OSError as exc:  # e.g. ENAMETOOLONG: what the user typed is no path of the base
                    raise FsError(exc.errno or errno.EIO, f"{path}: {exc.strerror}") from None
        if state is not None and state.get("kind") == "file":
            out.append(Version(1, 0, 0.0, "base", "base", state))
    return out


def _base_reachable(session: "Session", path: str) -> bool:
    """True when every parent of `path` is a directory in the base.

    Then reading the base at `path` follows no symlink: a path such as
    `link/passwd`, with `link -> /etc` on disk, must never read /etc/passwd.
    """
    done = ""
    for part in path.split("/")[:-1]:
        done = f"{done}/{part}" if done else part
        st = session.base.stat(done)
        if st is None or not stat.S_ISDIR(st.mode):
            return False
    return True


class _PathIndex:
    """path -> seqs of the committed entries whose deltas change it (see module docstring)."""

    _BATCH = 5000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.upto = 0  # Invariant: every committed entry with seq <= upto is indexed
        self.seqs: dict[str, list[int]] = {}
        # path -> ((count, first, last) of its seqs, its versions): see _journal_versions.
        self.versions: dict[str, tuple[tuple[int, int, int], list[Version]]] = {}

    def seqs_of(self, journal, path: str) -> list[int]:
        with self.lock:
            head = journal.head()
            if head < self.upto:  # a different journal history (cannot happen while open)
                self.upto, self.seqs = 0, {}
            while self.upto < head:
                batch = journal.entries(since=self.upto, until=head, limit=self._BATCH)
                if not batch:
                    break
                for entry in batch:
                    for p in dict.fromkeys(d[0] for d in entry.info.get("d", [])):
                        self.seqs.setdefault(p, []).append(entry.seq)
                self.upto = batch[-1].seq
            self.upto = max(self.upto, head)
            first = journal.first_seq()
            return [s for s in self.seqs.get(path, ()) if s >= first]


_INDEXES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_INDEXES_LOCK = threading.Lock()


def _is_file(state: State | None) -> bool:
    return state is not None and state.get("kind") == "file"


def _step(n: int, last: Version | None, entry, before: State | None,
          after: State | None) -> tuple[int, Version | None, list[Version]]:
    """Advance a path's tally (`n` versions so far, the newest `last`) over one
    of its deltas; returns the new tally and the versions the delta adds."""
    added = []
    if n == 0 and _is_file(before):
        last = Version(1, 0, 0.0, "base", "base", before)
        n = 1
        added.append(last)
    if _is_file(after) and not (last is not None and last.state == after):
        n += 1
        last = Version(n, entry.seq, entry.time, entry.agent, entry.op, after)
        added.append(last)
    return n, last, added


def _summary_key(path: str) -> str:
    return "versions:" + path


def _tally(record) -> tuple[int, Version | None]:
    if record is None:
        return 0, None
    last = record.get("last")
    return record["n"], None if last is None else Version(**last)


def summarize_trimmed(entry, summaries) -> None:
    """The journal's `summarize` hook: fold an entry being trimmed into the
    tallies of the paths it changed, so numbering continues where the trimmed
    history left it.  Invariant: a version's number never changes; a version
    whose entry was trimmed is either still listed under its number (the
    content the retained history starts from) or gone (ENOENT), never renamed."""
    for path, before, after in _deltas(entry):
        n, last, _added = _step(*_tally(summaries.get(_summary_key(path))), entry, before, after)
        summaries.put(_summary_key(path), {"n": n, "last": None if last is None else {
            "n": last.n, "seq": last.seq, "time": last.time, "agent": last.agent, "op": last.op,
            "state": last.state}})


def _journal_versions(journal, path: str) -> tuple[list[Version], bool]:
    """The versions the journal gives `path`: the tally of its trimmed history,
    then its retained entries (shared: do not mutate); and whether any retained
    entry changed `path`.

    Kept per path until an entry touching it is appended or trimmed: listing
    `versions/PATH` asks for them once per version file (lookup, size, read),
    and rebuilding them each time made an `ls` cost O(versions x entries) --
    seconds of a blocked FUSE loop for a busy file, while other paths change.
    """
    with _INDEXES_LOCK:
        index = _INDEXES.get(journal)
        if index is None:
            index = _INDEXES[journal] = _PathIndex()
    for _attempt in range(8):  # a trim between reading the tally and the entries: read again
        first = journal.first_seq()
        seqs = index.seqs_of(journal, path)
        key = (len(seqs), seqs[0] if seqs else 0, seqs[-1] if seqs else 0)
        with index.lock:
            hit = index.versions.get(path)
        if hit is not None and hit[0] == key:
            return hit[1], bool(seqs)
        out = _versions_from(journal, path, seqs)
        if out is not None and journal.first_seq() == first:
            break
    else:
        raise FsError(errno.EAGAIN, f"the journal kept trimming while reading the versions of {path}")
    with index.lock:
        if len(index.versions) >= 256:
            index.versions.clear()
        index.versions[path] = (key, out)
    return out, bool(seqs)


def _versions_from(journal, path: str, seqs: list[int]) -> list[Version] | None:
    """Versions from the trimmed tally and the entries `seqs`; None when one of
    them was trimmed meanwhile."""
    n, last = _tally(journal.summary(_summary_key(path)))
    if not seqs:
        return [last] if last is not None else []
    out: list[Version] = []
    starting = True
    for seq in seqs:
        try:
            entry = journal.entry(seq)
        except KeyError:
            return None
        for p, before, after in _deltas(entry):
            if p != path:
                continue
            if starting and last is not None and _is_file(before) and before == last.state:
                out.append(last)
            starting = False
            n, last, added = _step(n, last, entry, before, after)
            out.extend(added)
    return out


def rollback_path(session: "Session", path: str, version: int | None = None, *,
                  agent: str = "api") -> "Change | None":
    """Restore `path` to version N (default: the version before its current content)."""
    path = check_rel_path(path)
    if passthrough_at(session, path):
        raise FsError(errno.EXDEV, f"{path} is a passthrough path (on disk, not in memory): it has no versions")
    history = versions(session, path)
    if not history:
        raise FsError(errno.ENOENT, f"no versions of {path}")
    with session.lock:
        current = session.current_state(path)
        if version is None:
            older = [v for v in history if v.state != current]
            if current is None:
                target = history[-1]
            elif not older or history[-1].state != current:
                raise FsError(errno.ENOENT, f"{path} has no earlier version")
            else:
                idx = max(i for i, v in enumerate(history) if v.state == current)
                prior = [v for v in history[:idx] if v.state != current]
                if not prior:
                    raise FsError(errno.ENOENT, f"{path} has no earlier version")
                target = prior[-1]
        else:
            matches = [v for v in history if v.n == version]
            if not matches:
                raise FsError(errno.ENOENT, f"{path} has no version {version} "
                                            f"(versions {history[0].n}..{history[-1].n})")
            target = matches[0]
        with session.compound("rollback", agent, info={"target": f"{path}@{target.n}"}) as result:
            session.apply_states({path: target.state}, session.state_content)
        return result["change"]


def rollback_to_seq(session: "Session", seq: int, *, agent: str = "api", label: str | None = None) -> "Change | None":
    """Return the whole session to its state right after journal entry `seq`."""
    journal = require_journal(session)
    with session.lock:
        head = journal.head()
        if seq < 0 or seq > head:
            raise FsError(errno.ENOENT, f"no journal entry {seq} (head is {head})")
        if seq < journal.first_seq() - 1:
            raise FsError(errno.ENOENT, f"journal entry {seq} was trimmed (oldest kept: {journal.first_seq()})")
        desired: dict[str, State] = {}
        for entry in reversed(journal.entries(since=seq)):
            for p, before, _after in _deltas(entry):
                desired[p] = before
        with session.compound("rollback", agent, info={"target": label or str(seq)}) as result:
            session.apply_states(desired, session.state_content)
        return result["change"]


def rollback_to_checkpoint(session: "Session", name: str, *, agent: str = "api") -> "Change | None":
    journal = require_journal(session)
    try:
        seq = journal.checkpoint_seq(name)
    except KeyError:
        raise FsError(errno.ENOENT, f"no checkpoint named {name!r}") from None
    return rollback_to_seq(session, seq, agent=agent, label=f"@{name}")


def checkpoint(session: "Session", name: str, *, agent: str = "api") -> "Change":
    """Record a named point in the journal (the state after this entry)."""
    import re

    journal = require_journal(session)
    if not re.fullmatch(CHECKPOINT_NAME, name):
        raise FsError(errno.EINVAL, f"bad checkpoint name {name!r}: use letters, digits, '.', '_', '-' (max 64)")
    with session.lock:
        if any(n == name for n, _, _ in journal.checkpoints()):
            raise FsError(errno.EEXIST, f"checkpoint {name!r} exists")
        with journal.transaction():
            with session.compound("checkpoint", agent, info={"name": name}) as result:
                pass
            journal.add_checkpoint(name, result["change"].seq, {"agent": agent})
        return result["change"]
