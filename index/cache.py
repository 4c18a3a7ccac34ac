"""Packed facts on disk, keyed by content.

Two stores of ``marshal`` data of packed facts (`index.facts`):

- ``<dir>/facts.pack``: one mapping key -> facts, the working set of the
  last bulk build, written and read whole (creating thousands of small files
  cost more than parsing them on a busy disk: 3.8 s for Django's 2,823);
- ``<dir>/<key[:2]>/<key>``: one file per entry, written by single-file
  updates.

Beside them, ``<dir>/resolution`` holds the index's last *resolution
snapshot* (per path: facts key, resolved targets, consulted module names,
import edges), which lets a warm build skip re-resolving files whose facts
and whose consulted modules are unchanged.  The key hashes everything the facts depend
on: the pack format, the language and its version, the Python version (for
``ast`` and ``marshal``), the path, the module name and the source bytes.
An unchanged file therefore hits the cache after a remount, and any change
misses it.

Entries are written to a temporary file and renamed into place, so readers
(other threads, other processes sharing the directory) see whole entries or
none.  A corrupt or foreign entry is a miss, logged once at WARNING.
Old entries are never evicted here; `prune` removes all but a given set.

Thread-safe: no shared mutable state beyond the filesystem.
"""
from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import tempfile
from pathlib import Path

from .facts import PACK_VERSION

__all__ = ["FactsCache", "cache_key"]

log = logging.getLogger(__name__)

_SALT = f"vfs-index/{PACK_VERSION}/{sys.version_info[0]}.{sys.version_info[1]}".encode()
_STATE = "resolution"  # the snapshot file, beside the two-hex-digit entry directories
_PACK = "facts.pack"


def cache_key(language: str, version: str, path: str, module: str, source: bytes) -> str:
    """The content key of one file's facts (hex)."""
    h = hashlib.blake2b(_SALT, digest_size=20)
    h.update(f"\0{language}\0{version}\0{path}\0{module}\0".encode("utf-8", "surrogateescape"))
    h.update(source)
    return h.hexdigest()


class FactsCache:
    """A directory of packed facts (see module docstring)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._root = str(self.directory)

    def _file(self, key: str) -> str:
        return os.path.join(self._root, key[:2], key)

    def get(self, key: str) -> tuple | None:
        """The packed facts stored under ``key``, or None."""
        try:
            with open(self._file(key), "rb") as entry:
                data = entry.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("index cache: cannot read %s: %s", key, exc)
            return None
        try:
            packed = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("index cache: corrupt entry %s: %s", key, exc)
            return None
        if type(packed) is not tuple or not packed or packed[0] != PACK_VERSION:
            log.warning("index cache: foreign entry %s ignored", key)
            return None
        return packed

    def put(self, key: str, packed: tuple) -> None:
        """Store ``packed`` under ``key`` (atomic; errors are logged, not raised)."""
        self.put_bytes(key, marshal.dumps(packed))

    def put_bytes(self, key: str, data: bytes) -> None:
        """Store already-marshalled packed facts under ``key``."""
        target = self._file(key)
        parent = os.path.dirname(target)
        try:
            os.makedirs(parent, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("index cache: cannot write %s: %s", key, exc)

    def load_pack(self) -> dict:
        """The facts of the last bulk build, key -> packed ({} when none)."""
        data = self._read(_PACK)
        if data is None:
            return {}
        try:
            salt, pack = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("index cache: corrupt facts pack ignored: %s", exc)
            return {}
        return pack if salt == _SALT and type(pack) is dict else {}

    def save_pack(self, pack: dict) -> None:
        """Replace the facts pack with ``pack`` (atomic; errors are logged)."""
        self._write(_PACK, marshal.dumps((_SALT, pack)))

    def _read(self, name: str) -> bytes | None:
        try:
            with open(os.path.join(self._root, name), "rb") as stored:
                return stored.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("index cache: cannot read %s: %s", name, exc)
            return None

    def _write(self, name: str, data: bytes) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=self._root, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, os.path.join(self._root, name))
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("index cache: cannot write %s: %s", name, exc)

    def load_state(self) -> dict | None:
        """The resolution snapshot last saved with `save_state`, or None."""
        data = self._read(_STATE)
        if data is None:
            return None
        try:
            salt, state = marshal.loads(data)
        except (ValueError, EOFError, TypeError) as exc:
            log.warning("index cache: corrupt resolution snapshot ignored: %s", exc)
            return None
        return state if salt == _SALT and type(state) is dict else None

    def save_state(self, state: dict) -> None:
        """Replace the resolution snapshot (atomic; errors are logged)."""
        self._write(_STATE, marshal.dumps((_SALT, state)))

    def prune(self, keep: set[str]) -> int:
        """Delete single-file entries whose key is not in ``keep``; returns how many."""
        removed = 0
        for sub in self.directory.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for entry in sub.iterdir():
                if entry.name not in keep:
                    try:
                        entry.unlink()
                        removed += 1
                    except OSError as exc:
                        log.warning("index cache: cannot prune %s: %s", entry, exc)
        return removed
