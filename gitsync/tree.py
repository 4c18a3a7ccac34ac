"""Building a new tree from an old one and a set of path changes.

`apply_changes` is the tree half of a diff-branch commit.  It rebuilds only
the trees on the paths that change and reuses every other subtree by sha, so
its cost grows with the number of changed paths and the depth of the tree, not
with the size of the repository.  It is the equivalent of
`dulwich.object_store.commit_tree_changes`, with three differences that the
diff branch needs:

- it never mutates tree objects that came from the store (dulwich's version
  edits the object it read, which is unsafe if the store ever caches it);
- deleting a path that does not exist is a no-op, so the same change set can
  be applied again (the diff branch is idempotent, not incremental);
- a directory that ends up empty is dropped from its parent instead of being
  written as an empty tree (git cannot represent empty directories).  Only the
  root may be empty.

It only reads the store: the new trees are returned, and the caller writes
them together with the blobs (`gitsync.objects.write_objects`).

Thread safety: none of its own; the caller serialises use of `store`.
"""
from __future__ import annotations

import logging
import stat
from collections.abc import Mapping

from dulwich.object_store import BaseObjectStore
from dulwich.objects import Tree

__all__ = ["TreeChange", "apply_changes"]

log = logging.getLogger(__name__)

#: (git mode, hex sha of the blob) to set a path, None to delete it.
TreeChange = tuple[int, bytes] | None

_MISSING = object()


def apply_changes(
    store: BaseObjectStore, tree_id: bytes, changes: Mapping[bytes, TreeChange]
) -> tuple[bytes, list[Tree]]:
    """Apply `changes` to the tree `tree_id`: (new root id, trees that are new).

    `changes` maps '/'-separated paths (bytes, already validated: no empty,
    "." or ".." components) to `(mode, blob_sha)` or None.  The returned
    trees are every tree the new root needs that `tree_id` did not have
    (some may already be in the store); the blobs are the caller's.

    For one name, a change of the name itself is applied before changes
    below it: `{"a": None, "a/b": ...}` replaces whatever `a` was by a
    directory holding `b`.  Setting a file at a path that also has additions
    below it, or adding below a path that is a file in the tree and is not
    deleted, is a contradiction and raises ValueError naming the path.
    """
    empty = Tree()
    new_trees: list[Tree] = []
    # git knows the empty tree without storing it; an unborn branch's base may be absent.
    new_id = _apply(store, None if tree_id == empty.id else tree_id, changes, b"", new_trees)
    if new_id is None:
        return empty.id, [empty]
    return new_id, new_trees


def _apply(
    store: BaseObjectStore,
    tree_id: bytes | None,
    changes: Mapping[bytes, TreeChange],
    prefix: bytes,
    new_trees: list[Tree],
) -> bytes | None:
    """Apply `changes` to the tree `tree_id` (None: empty); None if the result is empty."""
    leaves: dict[bytes, TreeChange] = {}
    below: dict[bytes, dict[bytes, TreeChange]] = {}
    for path, change in changes.items():
        name, slash, rest = path.partition(b"/")
        if slash:
            below.setdefault(name, {})[rest] = change
        else:
            leaves[name] = change

    tree = Tree()
    if tree_id is not None:
        old = store[tree_id]
        if not isinstance(old, Tree):
            raise TypeError(f"object {tree_id.decode()} is not a tree")
        # Copy: the object read from the store is never mutated.
        for entry in old.iteritems():
            tree.add(entry.path, entry.mode, entry.sha)

    for name in leaves.keys() | below.keys():
        leaf = leaves.get(name, _MISSING)
        sub = below.get(name)
        existing = tree[name] if name in tree else None
        if leaf is not _MISSING:
            if leaf is not None:
                if sub is not None and any(c is not None for c in sub.values()):
                    raise ValueError(
                        f"'{(prefix + name).decode(errors='replace')}' is set as a file"
                        " and has paths added below it"
                    )
                tree[name] = leaf
                continue
            if existing is not None:
                del tree[name]
            existing = None
        if sub is None:
            continue
        if existing is None:
            start = None
        elif stat.S_ISDIR(existing[0]):
            start = existing[1]
        elif all(c is None for c in sub.values()):
            continue  # deleting below a file: nothing there to delete
        else:
            raise ValueError(
                f"'{(prefix + name).decode(errors='replace')}' is a file in the tree;"
                " delete it to add paths below it"
            )
        new_sub = _apply(store, start, sub, prefix + name + b"/", new_trees)
        if new_sub is None:
            if existing is not None:
                del tree[name]
        elif existing is None or new_sub != existing[1]:
            tree[name] = (stat.S_IFDIR, new_sub)

    if len(tree) == 0:
        return None
    if tree.id == tree_id:
        return tree_id
    new_trees.append(tree)
    return tree.id
