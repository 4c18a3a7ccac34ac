"""The semantic index of a tree: definitions, references, imports.

An `Index` holds, per file, the last good packed facts (`index.facts`) and
their resolution: each reference's canonical target.  Queries answer from
memory; nothing is parsed at query time.

Incremental by construction:

- ``update(path)`` re-extracts that file only (or takes it from the cache);
- its references are re-resolved; other files are re-resolved only if they
  *consulted* one of its module names while resolving (`index.resolve`
  records that) **and** what the file defines or binds changed (an edit
  inside a function body refreshes nobody else);
- import edges are recomputed for the file, and for the files whose imports
  mention a module name that appeared or disappeared.

Concurrency: every public method may be called from any thread.  One
`threading.RLock` guards all state; extraction (the slow part) runs outside
it.  Calls are ordered per path by a sequence number taken on entry, so a
slow ``update`` that finishes after a later ``update`` or ``remove`` of the
same path is dropped: queries reflect the latest call.  ``ast.parse`` holds
the GIL, so a source above `_pool.ISOLATE_BYTES` is parsed in a child
process (see `index._pool`); the bulk ``build`` parses in a process pool.

Not here: reading files (callers pass bytes or readers), scheduling (see
`index.live.LiveIndex`), text formats (see `index.render`).
"""
from __future__ import annotations

import gc
import logging
import marshal
import pickle
import posixpath
import threading
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

from . import _pool
from ._maps import QueryMaps
from ._maps import last_component as _last
from .cache import FactsCache, cache_key
from .facts import (
    P_BASES, P_BINDINGS, P_DEFS, P_ERROR, P_EXPORTS, P_IMPORTS, P_LINES, P_REFS, Definition, FileFacts, Reference, unpack,
)
from .graph import DependencyGraph, candidate_modules, is_test_file
from .language import Language, extract_packed, language_version
from .modules import ModuleTable, is_package, module_name
from .python import PythonLanguage
from .resolve import Namespace, Resolver

__all__ = ["Index"]

log = logging.getLogger(__name__)

_POOL_MIN_BYTES = 1 << 20  # below this much uncached source, parse in-process


class _Record:
    """One indexed file.

    ``packed`` is the last good parse (or, for a file never parsed, the
    facts of an empty module); ``error`` is set while the latest source does
    not parse.  ``targets[i]`` is the canonical target of ``packed`` refs
    row ``i`` (None: a name-only candidate); ``consulted`` the module names
    its resolution looked at.
    """

    __slots__ = ("path", "language", "key", "packed", "error", "lines", "ns", "targets", "consulted")

    def __init__(self, path: str, language: Language, key: str, packed: tuple) -> None:
        self.path = path
        self.language = language
        self.key = key
        self.packed = packed
        self.error: str | None = packed[P_ERROR]
        self.lines: int = packed[P_LINES]
        self.ns = Namespace(
            module_name(path), packed[P_DEFS], packed[P_BINDINGS], packed[P_BASES], packed[P_IMPORTS], packed[P_EXPORTS]
        )
        self.targets: tuple = ()
        self.consulted: frozenset[str] = frozenset()


class Index:
    """The semantic index (see module docstring)."""

    def __init__(self, cache_dir: str | Path | None = None, languages: Iterable[Language] | None = None) -> None:
        self._languages = list(languages) if languages is not None else [PythonLanguage()]
        self._by_suffix = {s: lang for lang in self._languages for s in lang.suffixes}
        self._cache = FactsCache(cache_dir) if cache_dir is not None else None
        self._lock = threading.RLock()
        # Invariant: _records, _modules and _namespaces hold the same paths.
        self._records: dict[str, _Record] = {}
        self._modules = ModuleTable()
        self._namespaces: dict[str, Namespace] = {}
        self._graph = DependencyGraph()
        # Invariant: _maps holds exactly the current rows and targets of _records.
        self._maps = QueryMaps()
        self._seq = 0
        self._latest: dict[str, int] = {}  # path -> sequence number of the latest call on it
        self._parsed = 0
        self._cache_hits = 0
        self._unsaved = False  # resolution changed since the last snapshot
        self._resolved = 0  # file resolutions since construction

    # ---- mutation ------------------------------------------------------------

    def build(
        self,
        files: Iterable[tuple[str, Callable[[], bytes]]],
        workers: int = 2,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        """Index many files at once: ``(path, reader)`` pairs.

        Cache hits skip parsing; misses are parsed in a pool of ``workers``
        processes when there is at least ~1 MB of them, else in-process.
        Files already indexed but not listed are kept.  A reader raising
        OSError skips its file (logged).  ``progress(done, total)`` is called
        from this thread as files complete.  Languages must be picklable for
        the pool (else parsing falls back to this process).

        Cyclic GC is paused meanwhile and what survives is frozen
        (`gc.freeze`) at the end, in the whole process: see `_gc_paused`.
        """
        todo = [(path, reader) for path, reader in files if self._language_for(path) is not None]
        total = len(todo)
        with self._lock:
            seqs = {path: self._next_seq(path) for path, _ in todo}
        done = 0
        ready: list[tuple[str, Language, str, tuple]] = []
        jobs: list[tuple] = []
        pack = self._cache.load_pack() if self._cache is not None else {}
        with _gc_paused(freeze=True):
            for path, reader in todo:
                try:
                    source = reader()
                except OSError as exc:
                    log.warning("index: cannot read %s: %s", path, exc)
                    done += 1
                    continue
                lang = self._language_for(path)
                module = module_name(path)
                key = cache_key(lang.name, language_version(lang), path, module, source)
                packed = pack.get(key)
                if packed is None and self._cache is not None:
                    packed = self._cache.get(key)
                if packed is not None:
                    with self._lock:
                        self._cache_hits += 1
                    ready.append((path, lang, key, packed))
                    done += 1
                    if progress is not None:
                        progress(done, total)
                else:
                    jobs.append((len(jobs), lang, path, module, source, key))
            for path, lang, key, packed in self._extract_jobs(jobs, workers, store=False):
                ready.append((path, lang, key, packed))
                done += 1
                if progress is not None:
                    progress(done, total)
            snapshot = None
            if self._cache is not None and not self._records:
                snapshot = self._cache.load_state()
            with self._lock:
                current = [item for item in ready if self._latest.get(item[0]) == seqs[item[0]]]
                self._install(current, snapshot if not self._records else None)
        if self._cache is not None and (jobs or len(pack) != len(ready)):
            self._cache.save_pack({key: packed for _path, _lang, key, packed in ready})
        if self._unsaved:
            self.save()
        if progress is not None and done < total:
            progress(total, total)

    def _extract_jobs(self, jobs: list[tuple], workers: int, store: bool = True):
        """Yield ``(path, language, key, packed)`` for each job, parsed in a
        pool when worthwhile; ``store`` writes single-file cache entries."""
        size = sum(len(job[4]) for job in jobs)
        if workers > 1 and len(jobs) > 1 and size >= _POOL_MIN_BYTES:
            keys = {job[0]: job for job in jobs}
            finished = set()
            try:
                for jid, data in _pool.extract_many([job[:5] for job in jobs], workers):
                    _, lang, path, _module, _source, key = keys[jid]
                    with self._lock:
                        self._parsed += 1
                    if store and self._cache is not None:
                        self._cache.put_bytes(key, data)
                    finished.add(jid)
                    yield path, lang, key, marshal.loads(data)
                return
            except (BrokenProcessPool, OSError, pickle.PicklingError) as exc:
                log.warning("index: process pool failed (%s); parsing in-process", exc)
                jobs = [job for job in jobs if job[0] not in finished]
        for _jid, lang, path, module, source, key in jobs:
            yield path, lang, key, self._extract(lang, path, module, source, key, store)

    def _extract(self, lang: Language, path: str, module: str, source: bytes, key: str, store: bool = True) -> tuple:
        if len(source) >= _pool.ISOLATE_BYTES:
            try:
                packed = _pool.extract_isolated(lang, path, module, source)
            except (BrokenProcessPool, OSError, pickle.PicklingError) as exc:
                log.warning("index: cannot parse %s in a child process (%s); parsing here", path, exc)
                packed = extract_packed(lang, path, source, module)
        else:
            packed = extract_packed(lang, path, source, module)
        with self._lock:
            self._parsed += 1
        if store and self._cache is not None:
            self._cache.put(key, packed)
        return packed

    def update(self, path: str, source: bytes) -> None:
        """Index the current ``source`` of ``path`` (added or changed).

        Safe from any thread; blocks for the parse (run it off the event
        loop).  A path no language claims is ignored.
        """
        lang = self._language_for(path)
        if lang is None:
            return
        with self._lock:
            seq = self._next_seq(path)
        module = module_name(path)
        key = cache_key(lang.name, language_version(lang), path, module, source)
        packed = self._cache.get(key) if self._cache is not None else None
        hit = packed is not None
        if packed is None:
            packed = self._extract(lang, path, module, source, key)
        with self._lock:
            self._cache_hits += hit
            if self._latest.get(path) != seq:
                log.debug("index: dropping superseded update of %s", path)
                return
            self._install([(path, lang, key, packed)])

    def remove(self, path: str) -> None:
        """Forget ``path`` (no-op when it is not indexed)."""
        with self._lock:
            # No sequence entry: an update of this path still in flight finds
            # none matching its own and is dropped.
            self._latest.pop(path, None)
            if path in self._records:
                self._uninstall([path])

    def rename(self, old: str, new: str, source: bytes) -> None:
        """``old`` is now ``new`` with ``source``: a remove and an update."""
        self.remove(old)
        self.update(new, source)

    def save(self) -> None:
        """Write the resolution snapshot to the cache directory, so the next
        warm `build` skips re-resolving unchanged files.  No-op without a
        cache directory or when nothing changed since the last save.
        `build` calls it; `LiveIndex.close` calls it to keep later updates."""
        if self._cache is None:
            return
        with self._lock:
            if not self._unsaved:
                return
            self._unsaved = False
            state = {
                path: (
                    record.key,
                    record.targets,
                    tuple(record.consulted),
                    self._graph.dependencies(path),
                    tuple(self._graph.mentions(path)),
                )
                for path, record in self._records.items()
                if record.error is None
            }
        self._cache.save_state(state)

    # ---- queries -------------------------------------------------------------

    def symbols(self, path: str) -> list[Definition]:
        """Definitions of ``path``: the module first, then by position;
        KeyError if not indexed."""
        with self._lock:
            record = self._records[path]
            rows = sorted(record.packed[P_DEFS], key=lambda d: (d[0] != "module", d[2], d[3]))
            return [Definition(k, q, path, l, c, el, ec) for k, q, l, c, el, ec in rows]

    def definitions(self, name: str) -> list[Definition]:
        """Where a bare name (``helper``) or a qualified name is defined.

        A qualified name that is not itself defined is resolved first, so
        ``pkg.helper`` finds ``pkg.util.helper`` when ``pkg`` re-exports it.
        Sorted by path and position; [] when nothing matches.
        """
        with self._lock:
            if "." not in name:
                return self._defs_where(name, lambda q: _last(q) == name)
            found = self._defs_where(_last(name), lambda q: q == name)
            if not found:
                target = self._canonical(name)
                if target is not None and target != name:
                    found = self._defs_where(_last(target), lambda q: q == target)
            return found

    def references(self, qualname: str) -> list[Reference]:
        """Every reference resolving to ``qualname`` (after resolving the name
        itself, as `definitions` does), plus the name-only candidates whose
        last component matches.  Import statements and ``__all__`` entries
        count as references of what they name.  A bare name that is not a
        module (``helper``) stands for every definition so named.  Sorted by
        path and position; one entry per position."""
        with self._lock:
            targets = [qualname]
            if "." not in qualname and not self._modules.lookup(qualname):
                named = {d.qualname for d in self._defs_where(qualname, lambda q: _last(q) == qualname)}
                targets = sorted(named) or targets
            found: dict[tuple, Reference] = {}
            for target in targets:
                for ref in self._references(target):
                    found.setdefault((ref.path, ref.line, ref.col), ref)
            return sorted(found.values(), key=lambda r: (r.path, r.line, r.col))

    def _references(self, qualname: str) -> list[Reference]:
        target = qualname
        if target not in self._maps.ref_paths and not self._defs_where(_last(target), lambda q: q == target):
            target = self._canonical(qualname) or qualname
        last = _last(target)
        out: list[Reference] = []
        for path in self._maps.ref_paths.get(target, ()):
            record = self._records[path]
            for row, resolved in zip(record.packed[P_REFS], record.targets):
                if resolved == target:
                    out.append(Reference(row[0], path, row[1], row[2], row[3], target, True))
        for path in self._maps.cand_paths.get(last, ()):
            record = self._records[path]
            for row, resolved in zip(record.packed[P_REFS], record.targets):
                if resolved is None and _last(row[0]) == last:
                    out.append(Reference(row[0], path, row[1], row[2], row[3], None, False))
        return out

    def dependencies(self, path: str) -> list[str]:
        """In-tree files ``path`` imports directly (see `index.graph`); KeyError if not indexed."""
        with self._lock:
            if path not in self._records:
                raise KeyError(path)
            return list(self._graph.dependencies(path))

    def dependents(self, path: str, transitive: bool = False) -> list[str]:
        """Files importing ``path``, directly or (``transitive``) through any
        chain, sorted.  Works for a path no longer indexed (a deleted module):
        then the importers are found by its module names."""
        with self._lock:
            return sorted(self._dependents(path, transitive))

    def affected_tests(self, changed_paths: Iterable[str]) -> list[str]:
        """Test files to run after ``changed_paths`` changed (sorted).

        A test file is affected when it is itself changed, when it imports a
        changed file through any chain, or when a ``conftest.py`` in its
        directory or above is changed or imports one.  Only indexed test
        files are listed (a deleted test has nothing to run).
        """
        with self._lock:
            affected: set[str] = set()
            for path in changed_paths:
                affected.add(path)
                affected |= self._dependents(path, True)
            tests = {p for p in affected if is_test_file(p) and p in self._records}
            conftest_dirs = {posixpath.dirname(p) for p in affected if posixpath.basename(p) == "conftest.py"}
            if conftest_dirs:
                prefixes = tuple(d + "/" if d else "" for d in conftest_dirs)
                tests |= {p for p in self._records if is_test_file(p) and p.startswith(prefixes)}
            return sorted(tests)

    def errors(self) -> list[str]:
        """``path:line:col: message`` for each file whose latest source does not parse, by path."""
        with self._lock:
            return [self._records[p].error for p in sorted(self._records) if self._records[p].error]

    def is_stale(self, path: str) -> bool:
        """True when ``path``'s facts are from an older source (the latest does
        not parse); KeyError if not indexed."""
        with self._lock:
            return self._records[path].error is not None

    def facts(self, path: str) -> FileFacts:
        """The stored facts of ``path`` with canonical targets; KeyError if not indexed."""
        with self._lock:
            record = self._records[path]
            facts = unpack(record.packed)
            refs = tuple(
                Reference(r.name, r.path, r.line, r.col, r.enclosing, t, t is not None)
                for r, t in zip(facts.references, record.targets)
            )
            return FileFacts(
                facts.path, facts.module, facts.definitions, refs, facts.imports, record.error,
                facts.bindings, facts.bases, facts.exports, record.lines,
            )

    def paths(self) -> list[str]:
        """Every indexed path, sorted."""
        with self._lock:
            return sorted(self._records)

    def stats(self) -> dict:
        """Counts: files, definitions, references, unresolved (name-only
        candidates), errors, lines; and since construction: parsed (actual
        parses), cache_hits, resolved (files whose references were resolved)."""
        with self._lock:
            records = self._records.values()
            return {
                "files": len(self._records),
                "definitions": sum(len(r.packed[P_DEFS]) for r in records),
                "references": sum(len(r.targets) for r in records),
                "unresolved": sum(r.targets.count(None) for r in records),
                "errors": sum(1 for r in records if r.error),
                "lines": sum(r.lines for r in records),
                "parsed": self._parsed,
                "cache_hits": self._cache_hits,
                "resolved": self._resolved,
            }

    def check_invariants(self) -> None:
        """Assert the internal maps agree (tests call this; O(size))."""
        with self._lock:
            assert set(self._records) == set(self._namespaces)
            assert all(p in self._modules for p in self._records) and len(self._modules) == len(self._records)
            self._modules.check_invariants()
            self._graph.check_invariants()
            for path, record in self._records.items():
                assert len(record.targets) == len(record.packed[P_REFS]), path
            self._maps.check(
                {
                    path: (r.packed[P_DEFS], r.packed[P_REFS], r.targets, r.consulted)
                    for path, r in self._records.items()
                }
            )

    # ---- internals (call with the lock held) ---------------------------------

    def _language_for(self, path: str) -> Language | None:
        return self._by_suffix.get(posixpath.splitext(path)[1])

    def _next_seq(self, path: str) -> int:
        self._seq += 1
        self._latest[path] = self._seq
        return self._seq

    def _canonical(self, name: str) -> str | None:
        return Resolver(self._modules, self._namespaces).resolve(name)[0]

    def _defs_where(self, last: str, keep: Callable[[str], bool]) -> list[Definition]:
        out = []
        for path in self._maps.def_names.get(last, ()):
            for k, q, l, c, el, ec in self._records[path].packed[P_DEFS]:
                if keep(q):
                    out.append(Definition(k, q, path, l, c, el, ec))
        out.sort(key=lambda d: (d.path, d.line, d.col))
        return out

    def _dependents(self, path: str, transitive: bool) -> set[str]:
        if path in self._records:
            return self._graph.dependents(path, transitive)
        direct = self._graph.importers_of(self._modules.names_for(path))
        if not transitive:
            return direct
        out = set(direct)
        for user in direct:
            out |= self._graph.dependents(user, True)
        out.discard(path)
        return out

    def _install(self, items: list[tuple[str, Language, str, tuple]], snapshot: dict | None = None) -> None:
        """Store new facts for some paths and refresh what depends on them.

        ``snapshot`` (only for an empty index) is a saved resolution state:
        files whose facts key matches take their resolution from it, and
        only what a difference can affect is resolved again.
        """
        if not items:
            return
        changed_names = self._modules.add([path for path, *_ in items])
        own: set[str] = set()
        restored: list[tuple[_Record, tuple]] = []
        for path, lang, key, packed in items:
            old = self._records.get(path)
            if packed[P_ERROR] is not None and old is not None:
                # Keep the last good facts; only the error and size are new.
                old.key, old.error, old.lines = key, packed[P_ERROR], packed[P_LINES]
                continue
            record = _Record(path, lang, key, packed)
            if old is not None:
                self._forget_defs(old)
                self._forget_resolution(old)
                if not record.ns.same_as(old.ns):
                    changed_names |= set(self._modules.names(path))
            else:
                changed_names |= set(self._modules.names(path))
            self._records[path] = record
            self._namespaces[path] = record.ns
            self._maps.add_definitions(path, packed[P_DEFS])
            entry = snapshot.get(path) if snapshot is not None else None
            if entry is not None and entry[0] == key and record.error is None:
                restored.append((record, entry))
            else:
                own.add(path)
        if snapshot is not None:
            since = self._changed_since(snapshot, own)
            if since is None:
                own |= {record.path for record, _ in restored}
            else:
                changed_names = since
                for record, (_key, targets, consulted, deps, mentions) in restored:
                    self._index_resolution(record, targets, consulted)
                    self._graph.set(record.path, deps, mentions)
        self._refresh(own, changed_names)

    def _changed_since(self, snapshot: dict, own: set[str]) -> set[str] | None:
        """Module names whose meaning may differ from when ``snapshot`` was
        saved, or None when it cannot be used (a package appeared or went)."""
        now, then = set(self._records), set(snapshot)
        if any(is_package(p) for p in now ^ then):
            return None
        changed: set[str] = set()
        for path in own:
            changed.update(self._modules.names(path))
        if now != then:
            old = ModuleTable()
            old.add(then)
            for path in then - now:
                changed.update(old.names(path))
            changed |= old.namespace_names() ^ self._modules.namespace_names()
        return changed

    def _uninstall(self, paths: list[str]) -> None:
        changed_names: set[str] = set()
        for path in paths:
            changed_names |= set(self._modules.names(path))
        changed_names |= self._modules.remove(paths)
        for path in paths:
            record = self._records.pop(path)
            del self._namespaces[path]
            self._forget_defs(record)
            self._forget_resolution(record)
            self._graph.discard(path)
        self._refresh(set(), changed_names)

    def _refresh(self, own: set[str], changed_names: set[str]) -> None:
        resolve = own | self._maps.consulters_of(changed_names)
        if resolve or changed_names:
            self._unsaved = True
        with _gc_paused():
            resolver = Resolver(self._modules, self._namespaces)
            for path in resolve:
                record = self._records.get(path)
                if record is not None:
                    self._resolve_record(record, resolver)
                    self._resolved += 1
        for path in own | self._graph.importers_of(changed_names):
            if path in self._records:
                self._link(path)

    def _forget_defs(self, record: _Record) -> None:
        self._maps.forget_definitions(record.path, record.packed[P_DEFS])

    def _forget_resolution(self, record: _Record) -> None:
        self._maps.forget_resolution(record.path, record.packed[P_REFS], record.targets, record.consulted)

    def _resolve_record(self, record: _Record, resolver: Resolver) -> None:
        self._forget_resolution(record)  # pairs the record's own rows with its own targets
        targets, consulted = resolver.resolve_rows(record.packed[P_REFS], 4)
        self._index_resolution(record, targets, consulted)

    def _index_resolution(self, record: _Record, targets, consulted) -> None:
        """Set a record's resolution and enter it in the query maps."""
        record.targets = tuple(targets)
        record.consulted = frozenset(consulted)
        self._maps.add_resolution(record.path, record.packed[P_REFS], record.targets, record.consulted)

    def _link(self, path: str) -> None:
        """Recompute the import edges out of ``path``."""
        own_dir = posixpath.dirname(path)
        deps: set[str] = set()
        mentions: set[str] = set()
        for name in candidate_modules(self._records[path].packed[P_IMPORTS]):
            mentions.add(name)
            found = self._modules.lookup(name)
            if not found:
                continue
            if is_package(found):
                # A package containing the importer is loaded before it.
                package_dir = posixpath.dirname(found)
                if not package_dir or own_dir == package_dir or own_dir.startswith(package_dir + "/"):
                    continue
            deps.add(found)
        self._graph.set(path, deps, mentions)


@contextmanager
def _gc_paused(freeze: bool = False):
    """Pause cyclic GC while creating many small tuples (see DESIGN.md's
    pitfall on ``ast.parse`` with trees kept); refcounting still frees.

    With ``freeze``, what survives is moved to the permanent generation
    (`gc.freeze`) before collection resumes: the index's facts live as long
    as the index, and otherwise the first collection would walk millions of
    tuples (~0.4 s for Django's 400k references) and later full collections
    again.  Frozen objects are still freed by reference counting; only
    reference cycles among them would outlive their use, and the index's
    data has none."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()
