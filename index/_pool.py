"""Extraction in worker processes (private to `index.index`).

``ast.parse`` holds the GIL for its whole run, so parsing in a thread stalls
every other thread of the daemon (the FUSE loop included) for as long as the
parse takes.  Bulk builds therefore parse in a process pool (one worker per
core), and single files above `ISOLATE_BYTES` parse in a short-lived child
process while the calling thread waits with the GIL released.

Processes are started with the ``spawn`` method: the daemon is
multi-threaded, and forking a multi-threaded process can copy held locks.
Workers return marshalled packed facts, which cross the pipe far faster than
pickled dataclasses.
"""
from __future__ import annotations

import gc
import logging
import marshal
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from .language import Language, extract_packed

__all__ = ["ISOLATE_BYTES", "chunked", "extract_many", "extract_isolated"]

log = logging.getLogger(__name__)

ISOLATE_BYTES = 1 << 20  # a single source this large parses in a child process
_CHUNK_BYTES = 256 << 10

Job = tuple  # (job id, language, path, module, source)


def _extract_chunk(jobs: list[Job]) -> list[tuple[int, bytes]]:
    """Worker entry point: marshalled packed facts for each job."""
    enabled = gc.isenabled()
    gc.disable()  # trees die by refcount; cycle collection only costs time here
    try:
        return [(jid, marshal.dumps(extract_packed(lang, path, src, mod))) for jid, lang, path, mod, src in jobs]
    finally:
        if enabled:
            gc.enable()


def chunked(jobs: list[Job], workers: int) -> list[list[Job]]:
    """Group jobs into chunks, biggest sources first, so one huge file starts
    at once on its own and the rest spread evenly over the workers."""
    jobs = sorted(jobs, key=lambda j: len(j[4]), reverse=True)
    total = sum(len(j[4]) for j in jobs)
    limit = max(16 << 10, min(_CHUNK_BYTES, total // (workers * 8) or 1))
    chunks: list[list[Job]] = []
    current: list[Job] = []
    size = 0
    for job in jobs:
        current.append(job)
        size += len(job[4])
        if size >= limit:
            chunks.append(current)
            current, size = [], 0
    if current:
        chunks.append(current)
    return chunks


def _context():
    return multiprocessing.get_context("spawn")


def extract_many(jobs: list[Job], workers: int) -> Iterator[tuple[int, bytes]]:
    """Yield ``(job id, marshalled packed facts)`` as workers finish."""
    chunks = chunked(jobs, workers)
    with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=_context()) as pool:
        futures = [pool.submit(_extract_chunk, chunk) for chunk in chunks]
        for future in as_completed(futures):
            yield from future.result()


def extract_isolated(language: Language, path: str, module: str, source: bytes) -> tuple:
    """Packed facts of one big source, parsed in a child process."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_context()) as pool:
        [(_, data)] = pool.submit(_extract_chunk, [(0, language, path, module, source)]).result()
    return marshal.loads(data)
