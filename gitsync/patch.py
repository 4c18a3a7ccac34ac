"""Git-style patches of one path, that `git apply` accepts.

`file_patch(path, old, new)` renders the difference of one path between two
(mode, content) states, `None` meaning absent: text through dulwich's
`write_blob_diff` (which handles "\\ No newline at end of file"), binary
content as a `GIT binary patch` with full blob ids, mode-only changes as
`old mode`/`new mode` headers.  Directories are not part of patches (git does
not track them).
"""
from __future__ import annotations

import base64
import io
import stat
import zlib

from dulwich.objects import Blob
from dulwich.patch import is_binary, write_blob_diff

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
    """Patch taking `path` from `old` to `new` (b"" when they are the same)."""
    if old == new:
        return b""
    p = path.encode("utf-8", "surrogateescape")
    old_mode = git_mode(old[0]) if old else None
    new_mode = git_mode(new[0]) if new else None
    old_data = old[1] if old else b""
    new_data = new[1] if new else b""
    if old is not None and new is not None and old_mode != new_mode and \
            (old_mode == 0o120000) != (new_mode == 0o120000):
        # A type change (file <-> symlink) is a deletion plus a creation for git.
        return file_patch(path, old, None) + file_patch(path, None, new)
    if old is not None and new is not None and old_data == new_data:
        return (b"diff --git a/%s b/%s\nold mode %o\nnew mode %o\n" % (p, p, old_mode, new_mode))
    if is_binary(old_data) or is_binary(new_data):
        return _binary_patch(p, old_mode, old_data if old else None, new_mode, new_data if new else None)
    out = io.BytesIO()
    write_blob_diff(out, (p, old_mode, _blob(old_data) if old else None),
                    (p, new_mode, _blob(new_data) if new else None))
    return out.getvalue()


def _binary_patch(p: bytes, old_mode, old: bytes | None, new_mode, new: bytes | None) -> bytes:
    zero = b"0" * 40
    old_id = _blob(old).id if old is not None else zero
    new_id = _blob(new).id if new is not None else zero
    lines = [b"diff --git a/%s b/%s" % (p, p)]
    if old is None:
        lines.append(b"new file mode %o" % new_mode)
        lines.append(b"index %s..%s" % (old_id, new_id))
    elif new is None:
        lines.append(b"deleted file mode %o" % old_mode)
        lines.append(b"index %s..%s" % (old_id, new_id))
    elif old_mode != new_mode:
        lines += [b"old mode %o" % old_mode, b"new mode %o" % new_mode, b"index %s..%s" % (old_id, new_id)]
    else:
        lines.append(b"index %s..%s %o" % (old_id, new_id, new_mode))
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
        pad = (-n) % 4
        encoded = base64.b85encode(chunk + b"\0" * pad)
        if pad:
            encoded = encoded[: len(encoded)]  # git decodes whole groups and trims by the length prefix
        out.append(prefix + encoded)
    return out
