"""Git-style patches of one path, that `git apply` accepts.

`file_patch(path, old, new)` renders the difference of one path between two
(mode, content) states, `None` meaning absent: the extended header as git
writes it (`new file mode`, `deleted file mode`, `old mode`/`new mode`,
`index`, `/dev/null` for the absent side), text hunks from dulwich's
`unified_diff` (which handles "\\ No newline at end of file"), binary
content as a `GIT binary patch` with full blob ids.  Paths are quoted as git
quotes them when they hold control characters, `"` or `\\`.  Directories
are not part of patches (git does not track them).

dulwich's `write_blob_diff` is not used for the header: it writes `--- a/p`
instead of `--- /dev/null` for a created file and `old file mode` instead of
`old mode`, which `git apply` refuses.
"""
from __future__ import annotations

import base64
import stat
import zlib

from dulwich.objects import Blob
from dulwich.patch import is_binary, unified_diff

__all__ = ["file_patch", "git_mode"]

Side = tuple[int, bytes] | None


def git_mode(mode: int) -> int:
    """The mode git records: 100644, 100755 or 120000."""
    if stat.S_ISLNK(mode):
        return 0o120000
    return 0o100755 if mode & 0o100 else 0o100644


def _blob(data: bytes) -> Blob:
    return Blob.from_string(data)


def file_patch(path: str, old: Side, new: Side) -> bytes:
    """Patch taking `path` from `old` to `new` (b"" when git sees no difference)."""
    p = path.encode("utf-8", "surrogateescape")
    old_mode = git_mode(old[0]) if old else None
    new_mode = git_mode(new[0]) if new else None
    old_data = old[1] if old else b""
    new_data = new[1] if new else b""
    if old is not None and new is not None and old_mode == new_mode and old_data == new_data:
        return b""  # e.g. 644 -> 600: git records neither
    if old is not None and new is not None and old_mode != new_mode and \
            (old_mode == 0o120000) != (new_mode == 0o120000):
        # A type change (file <-> symlink) is a deletion plus a creation for git.
        return file_patch(path, old, None) + file_patch(path, None, new)
    a, b = _quote(b"a/" + p), _quote(b"b/" + p)
    lines = [b"diff --git %s %s" % (a, b)]
    if old is None:
        lines.append(b"new file mode %o" % new_mode)
    elif new is None:
        lines.append(b"deleted file mode %o" % old_mode)
    elif old_mode != new_mode:
        lines += [b"old mode %o" % old_mode, b"new mode %o" % new_mode]
    if old is not None and new is not None and old_data == new_data:
        return b"\n".join(lines) + b"\n"  # a mode change only
    if is_binary(old_data) or is_binary(new_data):
        return _binary_patch(lines, old_mode, old_data if old else None, new_mode, new_data if new else None)
    old_id, new_id = (_blob(old_data).id if old else b"0" * 40), (_blob(new_data).id if new else b"0" * 40)
    index = b"index %s..%s" % (old_id[:7], new_id[:7])
    if old is not None and new is not None and old_mode == new_mode:
        index += b" %o" % new_mode
    lines.append(index)
    hunks = list(unified_diff(_lines(old_data), _lines(new_data)))[2:]  # without dulwich's ---/+++
    if hunks:
        lines += [b"--- " + (a if old is not None else b"/dev/null"),
                  b"+++ " + (b if new is not None else b"/dev/null")]
    return b"\n".join(lines) + b"\n" + b"".join(hunks)


def _lines(data: bytes) -> list[bytes]:
    """Lines as git splits them: at "\\n" only (a lone "\\r" is part of its line), ends kept."""
    parts = data.split(b"\n")
    out = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


_ESCAPES = {0x07: b"\\a", 0x08: b"\\b", 0x09: b"\\t", 0x0A: b"\\n", 0x0B: b"\\v", 0x0C: b"\\f",
            0x0D: b"\\r", 0x22: b'\\"', 0x5C: b"\\\\"}


def _quote(name: bytes) -> bytes:
    """A path as git writes it in a patch: C-quoted when it needs to be, else as is."""
    if not any(c < 0x20 or c == 0x7F or c in (0x22, 0x5C) for c in name):
        return name
    out = bytearray(b'"')
    for c in name:
        if c in _ESCAPES:
            out += _ESCAPES[c]
        elif c < 0x20 or c == 0x7F:
            out += b"\\%03o" % c
        else:
            out.append(c)
    out += b'"'
    return bytes(out)


def _binary_patch(header: list[bytes], old_mode, old: bytes | None, new_mode, new: bytes | None) -> bytes:
    zero = b"0" * 40
    old_id = _blob(old).id if old is not None else zero
    new_id = _blob(new).id if new is not None else zero
    lines = list(header)
    index = b"index %s..%s" % (old_id, new_id)
    if old is not None and new is not None and old_mode == new_mode:
        index += b" %o" % new_mode
    lines.append(index)
    lines.append(b"GIT binary patch")
    lines += _literal(new or b"")
    lines.append(b"")
    lines += _literal(old or b"")
    lines.append(b"")
    return b"\n".join(lines) + b"\n"


def _literal(data: bytes) -> list[bytes]:
    packed = zlib.compress(data, 9)
    out = [b"literal %d" % len(data)]
    for i in range(0, len(packed), 52):
        chunk = packed[i:i + 52]
        n = len(chunk)
        prefix = bytes([ord("A") + n - 1]) if n <= 26 else bytes([ord("a") + n - 27])
        # git encodes the last group zero-padded in full and trims by the length prefix.
        out.append(prefix + base64.b85encode(chunk, pad=True))
    return out
