"""Session changes that do not come through the kernel: `ExternalChanges`.

- absolute states applied to the tree (`apply_states`): the building block of
  rollback, batch and crash recovery;
- syncs (`mark_synced`): paths the disk now holds as the tree does;
- outside edits (`base_changed`): the backing file changed behind the mount.

`ExternalChanges` is a mixin of `Session` (it uses the session's tree, overlay,
journal, lock and recorder); it holds no state of its own.  The kernel learns
of these changes through invalidations (`Session._invalidate`).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable

from .caller import API_CALLER, Caller, join
from .node import Node
from .states import State, node_state
from .tree import ROOT

if TYPE_CHECKING:
    from .session import Change

_MISSING = object()


class ExternalChanges:
    """The changes of a `Session` made from outside the kernel (see module docstring)."""

    def apply_states(self, states: dict[str, State], contents: Callable[[str, State], bytes]) -> list[str]:
        """Make each path hold its state (None = absent), creating parents as needed.

        The building block of rollback, batch and crash recovery.  Removals run
        deepest first, creations shallowest first.  Returns the paths changed.
        Callers hold the lock and run this inside `compound()` (or quietly).
        """
        self.settle()  # writes readers saw come first, under their writers' names
        changed = []
        removals = sorted((p for p, s in states.items() if s is None), key=lambda p: -p.count("/"))
        for path in removals:
            node = self.tree.try_resolve(path)
            if node is None or node.disk or node.ino == ROOT:
                continue
            self.delete_tree_node(self.tree.nodes[node.parent], node.name, node)
            changed.append(path)
        for path in sorted((p for p, s in states.items() if s is not None), key=lambda p: p.count("/")):
            state = states[path]
            if self.current_state(path) == state:
                continue
            if path == "":
                root = self.tree.nodes[ROOT]  # the root's own mode (chmod of the mount point)
                if state.get("kind") == "dir":
                    root.mode = state["mode"]
                    root.touch(content=False)
                    self.changed("apply", [path], API_CALLER)
                    changed.append(path)
                continue
            parent_path, _, name = path.rpartition("/")
            parent = self._ensure_dirs(parent_path)
            node = self.tree.lookup(parent, name)
            kind = state["kind"]
            if node is not None and not ((kind == "file" and node.is_reg) or (kind == "dir" and node.is_dir)):
                self.delete_tree_node(parent, name, node)
                node = None
            if kind == "dir":
                if node is None:
                    node = self.tree.mkdir(parent, name, 0o777, API_CALLER)
                node.mode = state["mode"]
                node.touch(content=False)
            elif kind == "file":
                data = contents(path, state)
                if node is None:
                    node = self.tree.create(parent, name, 0o666, API_CALLER)
                else:
                    node = self._fresh_inode(parent, name, node)
                self.tree.dirtied(node)
                node.data = bytearray(data)
                node.mode = state["mode"]
                node.unsaved = False
                node.touch()
            elif kind == "symlink":
                self.tree.symlink(parent, name, contents(path, state), API_CALLER)
            else:
                self.tree.mknod(parent, name, state["mode"], state.get("rdev", 0), API_CALLER)
            self.changed("apply", [path], API_CALLER)
            changed.append(path)
        return changed

    def _fresh_inode(self, parent: Node, name: str, node: Node) -> Node:
        """A new, empty inode in place of the regular file `node` (named `name` in `parent`),
        with its owner and mode: new content goes there, as a save by rename does.

        Why: changes that do not come through the kernel reach it by asynchronous
        invalidations.  Until they ran, a reader may still hold the file's old size,
        and new bytes read under an old size come out cut (a torn read).  A new inode
        leaves the old one whole for whoever still sees it, and the kernel learns the
        new one by lookup.  A file with other hard links is changed in place (its
        other names must see the new content).
        """
        if node.nlink != 1 or node.disk or not node.is_reg:
            return node
        self.tree.unlink(parent, name, API_CALLER)
        fresh = self.tree.create(parent, name, node.mode, Caller(API_CALLER.uid, API_CALLER.gid, 0, 0))
        fresh.uid, fresh.gid, fresh.mode = node.uid, node.gid, node.mode
        return fresh

    def delete_tree_node(self, parent: Node, name: str, node: Node) -> None:
        """Remove `node` (named `name` in `parent`) and everything below it in memory.

        Passthrough entries below it stay on disk, and so do the directories that hold them
        (as git leaves ignored files and their directories): rolling back a new package
        keeps its `__pycache__/`."""
        path = join(self.tree.path_of(parent) or "", name)
        for _sub, child in reversed(list(self.tree.walk(node, path))):
            p = self.tree.nodes[child.parent]
            if child.is_dir:
                if len(self.tree.entries(child)):
                    continue  # only passthrough entries (or directories holding them) are left
                self.tree.rmdir(p, child.name, API_CALLER)
            else:
                self.tree.unlink(p, child.name, API_CALLER)

    def mark_synced(self, paths: list[str], *, agent: str = "api") -> Change:
        """The disk now holds `paths` as the tree does: they leave the overlay; one `sync` entry."""
        self.settle()
        with self.lock:
            for path in paths:
                self.base_states.forget(path)
            self.synced.update(paths)
            if self.journal is not None:
                with self.journal.transaction():
                    change = self._record("sync", [], agent, info={"paths": sorted(paths)})
                    for path in paths:
                        self.overlay.pop(path, None)
                        self.journal.set_state(path, None)
                        self.journal.set_attrs(path, None)  # the disk has them now
                    self.journal.set_meta("synced", json.dumps(sorted(self.synced)))
            else:
                change = self._record("sync", [], agent, info={"paths": sorted(paths)})
                for path in paths:
                    self.overlay.pop(path, None)
            return change

    def base_changed(self, path: str) -> str:
        """The backing file at `path` changed outside the mount; returns what happened.

        Clean path: the tree takes the new disk state (lazily re-read), an
        `external` entry is journaled, kernel caches are invalidated.  Dirty
        path: the disk state is kept as a conflict (`conflicts`), unless the
        disk now equals the buffer.  Returns 'unchanged', 'updated',
        'caught-up' or 'conflict'.
        """
        self.settle()  # a write readers already see makes the path dirty
        for _attempt in range(3):
            try:
                return self._base_changed(path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # the disk moved on while we read it: its next event is queued, look again
        return self._base_changed(path)

    def _base_changed(self, path: str) -> str:
        with self.lock:
            node = self.tree.try_resolve(path)
            if node is not None and node.disk:
                return "unchanged"
            old_base = self.base_states.cached(path)
            self.base_states.forget(path)
            disk = self.base_states.state(path)
            if path in self.overlay or (node is not None and node.unsaved):
                mine = self.overlay.get(path, _MISSING)
                if old_base is not None and disk is not None and old_base.get("blob") == disk.get("blob") \
                        and path not in self.conflicts:
                    # The disk holds what we already knew it held: a late event of our own
                    # sync's write (the buffer changed again since), not an outside edit.
                    return "unchanged"
                if mine == disk:
                    self._update_overlay([(path, mine, mine)])
                    self.conflicts.pop(path, None)
                    return "caught-up"
                if old_base is None and mine is _MISSING:
                    old_base = self.base_states.state(path)
                entry = self.conflicts.setdefault(path, {"ancestor": old_base})
                entry["theirs"] = disk
                return "conflict"
            before = self._tree_state(node)
            if before == disk:
                return "unchanged"
            if self.journal is not None and node is not None:
                with self.journal.transaction():
                    self._store(path, before, node)  # the buffer is about to be dropped
            self._take_base(path, node, disk)
            after = self.current_state(path)
            # When the tree now shows `disk`, the overlay compares with that same `disk`, not
            # with a newer disk state: a file deleted just after it appeared must not look like
            # an addition of ours (its deletion's event is on its way).
            self._record("external", [(path, before, after)], "external", path=path,
                         bases={path: disk} if after == disk else None)
            self._invalidate([path])
            return "updated"

    def relink(self, paths: list[str]) -> None:
        """Make `paths` hard links of one file again (a remount: the journal keeps states per path,
        so they came back as separate files).  Only names that hold the same state (file content
        and mode, or symlink target) are joined; nothing is recorded (the states do not change)."""
        nodes = [(p, self.tree.try_resolve(p)) for p in paths]
        nodes = [(p, n) for p, n in nodes if n is not None and (n.is_reg or n.is_lnk) and not n.disk]
        if len(nodes) < 2:
            return
        first_path, first = nodes[0]
        want = self.current_state(first_path)
        self._quiet += 1
        try:
            for path, node in nodes[1:]:
                if node is first or self.current_state(path) != want:
                    continue
                parent = self.tree.nodes[node.parent]
                self.tree.unlink(parent, node.name, API_CALLER)
                self.tree.link(first, parent, path.rpartition("/")[2], API_CALLER)
        finally:
            self._quiet -= 1

    def passthrough_changed(self, path: str) -> str:
        """Passthrough entry `path` (`pkg/__pycache__`) was made, removed or replaced on disk
        outside the mount (outside watcher): when its directory lives in memory, the tree's
        entry follows the disk and the kernel forgets what it cached (it keeps listings).
        Returns 'updated' or 'unchanged'."""
        with self.lock:
            parent_path, _, name = path.rpartition("/")
            parent = self.tree.try_resolve(parent_path)
            if parent is None or not self.tree.refresh_disk_child(parent, name):
                return "unchanged"
            self._invalidate([path])
            return "updated"

    def disk_changed(self, path: str) -> None:
        """The tree made or removed directory `path` on disk itself (Recorder hook): settle it
        now, as the outside watcher would a moment later, so that the overlay never holds a
        path whose state equals the base's (`.vfs/changed` would list it meanwhile)."""
        self.base_changed(path)

    def _tree_state(self, node: Node | None) -> State:
        if node is None:
            return None
        if node.is_reg and node.data is None:
            return {"kind": "file", "mode": node.mode, "blob": None}  # never read: content unknown
        return node_state(node, self._content(node))

    def _take_base(self, path: str, node: Node | None, disk: State) -> None:
        """Make the tree show the base's `disk` state at `path`, re-read lazily (not recorded)."""
        self._quiet += 1
        try:
            parent_path, _, name = path.rpartition("/")
            parent = self.tree.try_resolve(parent_path)
            if node is not None and (disk is None or (disk["kind"] == "dir") != node.is_dir
                                     or (disk["kind"] == "file") != node.is_reg):
                self.delete_tree_node(self.tree.nodes[node.parent], node.name, node)
                node = None
            if disk is None or parent is None or parent.children is None:
                return
            st = self.base.stat(path)
            if st is None:
                return
            if node is None:
                child = self.tree._child_from_base(parent, name, path)
                if child is not None:
                    self.tree._attach(parent, name, child)
                    if child.is_dir:
                        parent.nlink += 1
                return
            if node.is_reg:
                self.tree.dirtied(node)
                node.data = None
                node.base_rel = path
                node.base_size = st.size
            elif node.is_lnk:
                node.target = None
                node.base_rel = path
            node.mode = st.mode
            node.mtime_ns = node.ctime_ns = st.mtime_ns
        finally:
            self._quiet -= 1
