#!/usr/bin/env python3
"""Measure gitsync's costs on generated repositories of several sizes.

For each size it builds a repository with `git fast-import` (so the base
objects are in a pack, as in a real clone), then prints:

- GitBase open, and open + first read of one file (median of several opens);
- DiffBranch.commit with 1, 10 and 100 changed files (median of several
  commits; each commit passes the whole difference, as the session does).

Target: <= 50 ms for 10 changed files in a 3,000-file repository, flat in
repository size.  Usage:

    python scripts/bench_gitsync.py [--sizes 3000 6000] [--runs 15] [--dir /tmp] [--json PATH]

`--json PATH` also writes the measurements (seconds) as JSON.

The git CLI is used only to build the repositories.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gitsync import DiffBranch, GitBase, open_source  # noqa: E402

log = logging.getLogger("bench_gitsync")


def generate_paths(n_files: int, seed: int = 0) -> list[str]:
    """A Django-like layout: packages of modules, ~3-5 levels deep, ~15 files a directory."""
    rng = random.Random(seed)
    paths: list[str] = []
    dirs = [""]
    while len(paths) < n_files:
        parent = rng.choice(dirs)
        depth = parent.count("/")
        if depth < 4 and rng.random() < 0.08:
            dirs.append(f"{parent}pkg{len(dirs)}/")
            continue
        paths.append(f"{parent}module_{len(paths)}.py")
    return paths


def build_repo(path: Path, n_files: int) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    chunks: list[bytes] = []
    files = generate_paths(n_files)
    for i, rel in enumerate(files):
        content = (f'"""Module {i}."""\n\n' + "".join(f"def f{j}(x):\n    return x + {i * j}\n\n" for j in range(30))).encode()
        chunks.append(b"blob\nmark :%d\ndata %d\n%s\n" % (i + 1, len(content), content))
    chunks.append(b"commit refs/heads/main\nmark :%d\n" % (n_files + 1))
    chunks.append(b"author Bench <bench@localhost> 1700000000 +0000\n")
    chunks.append(b"committer Bench <bench@localhost> 1700000000 +0000\ndata 5\nbase\n")
    for i, rel in enumerate(files):
        chunks.append(b"M 100644 :%d %s\n" % (i + 1, rel.encode()))
    subprocess.run(["git", "fast-import", "--quiet"], cwd=path, input=b"".join(chunks), check=True)


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def bench_size(root: Path, n_files: int, runs: int) -> dict:
    path = root / f"repo{n_files}"
    build_repo(path, n_files)
    info = open_source(path)
    assert info is not None and info.base_commit is not None
    files = generate_paths(n_files)
    probe = files[len(files) // 2]

    opens, firsts = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        base = GitBase(path, info.base_commit)
        t1 = time.perf_counter()
        base.stat(probe)
        base.read(probe)
        t2 = time.perf_counter()
        base.close()
        opens.append(t1 - t0)
        firsts.append(t2 - t0)
    print(f"{n_files:>6} files | GitBase open {median_ms(opens):6.2f} ms | open + first stat/read {median_ms(firsts):6.2f} ms")
    result = {"files": n_files, "runs": runs, "open_s": opens, "open_first_read_s": firsts, "commit_s": {}}

    rng = random.Random(1)
    for k in (1, 10, 100):
        branch = DiffBranch(path, f"bench-{k}", base_commit=info.base_commit)
        changed = rng.sample(files, k)
        times = []
        for run in range(runs):
            changes = {rel: (0o100644, f"# run {run}\n{rel}\n".encode()) for rel in changed}
            t0 = time.perf_counter()
            head = branch.commit(changes, f"run {run}")
            times.append(time.perf_counter() - t0)
            assert head is not None
        branch.close()
        print(f"{n_files:>6} files | DiffBranch.commit {k:>3} changed: median {median_ms(times):6.2f} ms"
              f" (min {1000 * min(times):6.2f}, max {1000 * max(times):6.2f})")
        result["commit_s"][str(k)] = times
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 6000])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--dir", default=None, help="where to build the repositories (default: system temp)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements as JSON to this file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    report = {"sizes": {}, "runs": args.runs, "loadavg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="bench_gitsync-", dir=args.dir) as tmp:
        print(f"repositories under {tmp}")
        for n in args.sizes:
            report["sizes"][str(n)] = bench_size(Path(tmp), n, args.runs)
    if args.json:
        report["loadavg_end"] = os.getloadavg()
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
