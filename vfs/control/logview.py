"""`.vfs/log` and `.vfs/agents/NAME/log`, rendered incrementally.

Journal entries are immutable and only ever appended at the head or trimmed
from the front, so a rendering is kept and extended: each read renders only
the entries committed since the last one (and forgets the trimmed ones),
instead of decoding the whole journal again -- `tail -f` polls the file at its
end every second, and `stat` asks for its size.

Thread-safe (one lock per view): renderings are asked for from the FUSE loop
and from API threads.
"""
from __future__ import annotations

import bisect
import threading
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from ..journal import Entry
    from ..workspace import Workspace

__all__ = ["LogView"]


class LogView:
    """The log lines of every entry (or of one agent's), oldest first."""

    def __init__(self, ws: "Workspace", render_line: Callable[["Entry"], str], agent: str | None = None) -> None:
        self._ws = ws
        self._line = render_line
        self._agent = agent
        self._lock = threading.Lock()
        # Invariant: _seqs[i] is the seq of the entry rendered as _lines[i]; ascending.
        self._seqs: list[int] = []
        self._lines: list[bytes] = []
        self._upto = 0  # every entry with seq <= _upto is rendered (or trimmed, or another agent's)

    def render(self) -> bytes:
        journal = self._ws.journal
        if journal is None:
            return b""
        with self._lock:
            new = self._ws.log(agent=self._agent, since=self._upto)
            for e in new:
                self._seqs.append(e.seq)
                self._lines.append((self._line(e) + "\n").encode("utf-8", "surrogateescape"))
            if new:
                self._upto = new[-1].seq
            cut = bisect.bisect_left(self._seqs, journal.first_seq())
            if cut:
                del self._seqs[:cut], self._lines[:cut]
            return b"".join(self._lines)
