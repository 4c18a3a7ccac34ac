"""Line-based three-way merge (diff3) of one file's contents.

`merge3(base, mine, theirs)` merges two descendants of `base`.  It is the
classic diff3 algorithm: find the regions where neither side changed `base`
(the *sync regions*), and between them take whichever side changed, or both
when they made the same change, or report a conflict when they made
different changes.  Changes that touch adjacent lines count as overlapping,
as in git.

Conflicts are written with git's markers::

    <<<<<<< mine
    ...
    =======
    ...
    >>>>>>> theirs

dulwich's own merge module needs the optional `merge3` package, which is not
a vfs dependency, so this is a small standalone implementation on
`difflib.SequenceMatcher` (with autojunk off, so long files are diffed
exactly).  It treats content as bytes split after each b"\\n"; a side whose
conflicting text does not end with a newline gets one before the next
marker, as git does.

Thread safety: pure function.
"""
from __future__ import annotations

import logging
from difflib import SequenceMatcher

__all__ = ["merge3", "MINE_MARKER", "SEPARATOR", "THEIRS_MARKER"]

log = logging.getLogger(__name__)

MINE_MARKER = b"<<<<<<< mine\n"
SEPARATOR = b"=======\n"
THEIRS_MARKER = b">>>>>>> theirs\n"


def merge3(base: bytes, mine: bytes, theirs: bytes) -> tuple[bytes, bool]:
    """Merge `mine` and `theirs`, both derived from `base`; return (merged, conflicted).

    When `conflicted` is False the result contains both sides' changes; when
    True it contains conflict markers around each region both sides changed
    differently.
    """
    if mine == theirs:
        return mine, False
    if mine == base:
        return theirs, False
    if theirs == base:
        return mine, False
    b, m, t = (x.splitlines(keepends=True) for x in (base, mine, theirs))
    out: list[bytes] = []
    conflicted = False
    bi = mi = ti = 0
    for bs, ms, ts, length in _sync_regions(b, m, t):
        # The unstable chunk before this sync region.
        b_chunk, m_chunk, t_chunk = b[bi:bs], m[mi:ms], t[ti:ts]
        if m_chunk == t_chunk or t_chunk == b_chunk:
            out.extend(m_chunk)
        elif m_chunk == b_chunk:
            out.extend(t_chunk)
        else:
            conflicted = True
            out.append(MINE_MARKER)
            _extend_terminated(out, m_chunk)
            out.append(SEPARATOR)
            _extend_terminated(out, t_chunk)
            out.append(THEIRS_MARKER)
        out.extend(b[bs:bs + length])
        bi, mi, ti = bs + length, ms + length, ts + length
    return b"".join(out), conflicted


def _extend_terminated(out: list[bytes], lines: list[bytes]) -> None:
    out.extend(lines)
    if lines and not lines[-1].endswith(b"\n"):
        out.append(b"\n")


def _sync_regions(b: list[bytes], m: list[bytes], t: list[bytes]) -> list[tuple[int, int, int, int]]:
    """Regions of `b` unchanged on both sides: (base start, mine start, theirs start, length).

    The last entry is always the empty region at the three ends, so every
    unstable chunk is followed by a region.
    """
    bm = SequenceMatcher(None, b, m, autojunk=False).get_matching_blocks()
    bt = SequenceMatcher(None, b, t, autojunk=False).get_matching_blocks()
    regions: list[tuple[int, int, int, int]] = []
    i = j = 0
    while i < len(bm) and j < len(bt):
        # Intersect the base ranges of the two matching blocks.
        a_base, a_other, a_len = bm[i]
        c_base, c_other, c_len = bt[j]
        start = max(a_base, c_base)
        end = min(a_base + a_len, c_base + c_len)
        if start < end:
            regions.append((start, a_other + start - a_base, c_other + start - c_base, end - start))
        if a_base + a_len < c_base + c_len:
            i += 1
        else:
            j += 1
    regions.append((len(b), len(m), len(t), 0))
    return regions
