"""Block deltas: how the journal stores a big file's new version against its previous one.

A log that grows by a line at every close, or an SQLite database that rewrites a few pages at
every commit, would otherwise be stored whole at each version (O(size x versions)).  A delta
is a list of operations against a *base* (the previous version's content):

    COPY(offset, length)   bytes of the base
    INSERT(bytes)          literal bytes

`encode` cuts the new content into aligned BLOCK-byte blocks and matches each against the
base's block at the same offset first (appends, pages rewritten in place; the base's last,
partial block too), then against any aligned base block with the same bytes (moved pages); the
rest is inserted literally.
Adjacent copies merge.  `decode(base, encode(base, new)) == new` for all inputs.
"""
from __future__ import annotations

import struct

__all__ = ["BLOCK", "encode", "decode"]

BLOCK = 4096
_OP = struct.Struct("<cQQ")  # op, then COPY: offset, length / INSERT: length, 0
_COPY, _INSERT = b"C", b"I"


def encode(base: bytes, new: bytes) -> bytes:
    ops: list[tuple[bytes, int, int]] = []  # (op, a, b): COPY (offset, length), INSERT (start, end) in new
    index: dict[int, list[int]] | None = None
    view_base, view_new = memoryview(base), memoryview(new)
    pos, n = 0, len(new)
    while pos < n:
        end = min(pos + BLOCK, n)
        if pos < len(base) < end and view_base[pos:] == view_new[pos:len(base)]:
            end = len(base)  # the base's last, partial block, then what was appended
        chunk = view_new[pos:end]
        src = pos if end <= len(base) and view_base[pos:end] == chunk else None
        if src is None and end - pos == BLOCK:
            if index is None:
                index = {}
                for off in range(0, len(base) - BLOCK + 1, BLOCK):
                    index.setdefault(hash(bytes(view_base[off:off + BLOCK])), []).append(off)
            for off in index.get(hash(bytes(chunk)), ()):
                if view_base[off:off + BLOCK] == chunk:
                    src = off
                    break
        if src is None:
            if ops and ops[-1][0] == _INSERT:
                ops[-1] = (_INSERT, ops[-1][1], end)
            else:
                ops.append((_INSERT, pos, end))
        elif ops and ops[-1][0] == _COPY and ops[-1][1] + ops[-1][2] == src:
            ops[-1] = (_COPY, ops[-1][1], ops[-1][2] + end - pos)
        else:
            ops.append((_COPY, src, end - pos))
        pos = end
    out = bytearray()
    for op, a, b in ops:
        if op == _COPY:
            out += _OP.pack(op, a, b)
        else:
            out += _OP.pack(op, b - a, 0)
            out += view_new[a:b]
    return bytes(out)


def decode(base: bytes, delta: bytes) -> bytes:
    """The content `delta` describes over `base`; ValueError when it does not fit."""
    out = bytearray()
    pos, n = 0, len(delta)
    while pos < n:
        if pos + _OP.size > n:
            raise ValueError("truncated delta")
        op, a, b = _OP.unpack_from(delta, pos)
        pos += _OP.size
        if op == _COPY:
            if a + b > len(base):
                raise ValueError("delta copies past the end of its base")
            out += base[a:a + b]
        elif op == _INSERT:
            if pos + a > n:
                raise ValueError("truncated delta")
            out += delta[pos:pos + a]
            pos += a
        else:
            raise ValueError(f"unknown delta operation {op!r}")
    return bytes(out)
