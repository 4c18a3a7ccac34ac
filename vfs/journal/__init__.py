"""The durable, append-only journal of every edit, and the content it names.

A `Journal` is one SQLite database in WAL mode holding:

- *entries*: immutable `Entry` records numbered 1, 2, 3, ... (`seq`), never
  renumbered or reused.  Old entries may be trimmed from the front (limits
  below), so the retained entries are always the contiguous range
  `first_seq() .. head()`.
- *blobs*: file contents addressed by their git blob id (`blob_id`), stored
  once however many entries name them; a big content that follows an earlier
  version of its file is stored as a block delta against it (`delta.py`: a log
  or an SQLite database costs the changed blocks per version, not a copy).
- *state*: the session's current difference from its base, one JSON record per
  path, written in the same transaction as the entries that explain it, so a
  remount after `kill -9` finds the two in agreement.
- *checkpoints*, *pins* (blobs kept alive on request) and free-form *meta*.
- *summaries* of trimmed history: when entries are trimmed, the optional
  `summarize(entry, summaries)` hook folds each of them, oldest first, into
  opaque JSON records keyed by string (history keeps per-path version counts
  there, so version numbers survive trimming); written in the trimming
  transaction, read back with `summary(key)`.

What it is not: it does not interpret entries, state records or summaries (the
session does), and it never reads the served tree.

Durability: every public mutator commits before it returns (or, inside
`transaction()`, when the outermost block exits).  With the default
`synchronous=NORMAL` a committed transaction survives the death of the process
(`kill -9`), which is what vfs promises; `durable=True` (`synchronous=FULL`)
also survives power loss, at the price of an fsync per commit.

Limits: after each commit, entries beyond `max_entries` are trimmed from the
front; then, while stored blob bytes exceed `max_bytes`, the shortest prefix of
entries whose removal brings them under the limit is trimmed as well.  When no
prefix suffices (what the state and the pins keep alive is itself over the
limit) history is kept and a warning logged.  A blob is deleted only when it
loses its last reference (trimmed entries, replaced state records, `unpin_blob`)
and nothing else names it: no remaining entry (its `before`/`after`, or a
`"blob"` value anywhere in its `info`), no state record (`"blob"`), no pin.  A blob nobody ever referenced is never deleted, so
`put_blob` followed by the referencing `append` in a later transaction is safe.

Thread safety: every public method may be called from any thread; one
`threading.RLock` serialises them.  `transaction()` holds that lock for the
whole `with` block, so other threads' calls wait until it exits.  Ownership is
per *thread*: a transaction must not span an `await` in async code, or another
task on the same thread would silently join it.
"""
from .records import OPS, Entry, JournalError, blob_id
from .store import Journal, Summaries

__all__ = ["OPS", "Entry", "Journal", "JournalError", "Summaries", "blob_id"]
