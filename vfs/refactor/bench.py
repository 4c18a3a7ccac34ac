"""`python -m vfs.refactor`: time a rename in a generated tree."""
from __future__ import annotations

import time

from .planner import _Planner


def benchmark(files: int = 30) -> dict[str, float]:
    """Time a rename of a function used in `files` generated modules.

    The tree also holds as many modules that do not mention the function and
    as many that mention the name but import it from elsewhere.  Returns
    seconds for the plan, the tree's size, and the planner's counts (files
    read, outlined with `ast`, parsed with libcst, changed).  No I/O: the tree
    lives in a dict.
    """
    tree = {"pkg/__init__.py": b"", "pkg/core.py": _BENCH_CORE, "pkg/other.py": _BENCH_CORE}
    for i in range(files):
        tree[f"pkg/user{i:02}.py"] = _BENCH_USER.replace(b"{i}", str(i).encode())
        tree[f"pkg/plain{i:02}.py"] = _BENCH_USER.replace(b"compute", b"measure").replace(b"{i}", b"0")
        tree[f"pkg/same{i:02}.py"] = _BENCH_USER.replace(b"core", b"other").replace(b"{i}", b"0")
    planner = _Planner(tree.get, list(tree), None)
    start = time.perf_counter()
    planner.plan("pkg.core.compute", "calculate")
    seconds = time.perf_counter() - start
    lines = sum(data.count(b"\n") for data in tree.values())
    return {"seconds": round(seconds, 3), "files": len(tree), "lines": lines, **planner.stats}


_BENCH_CORE = b'''"""Core."""

def compute(values, factor=1):
    total = 0
    for v in values:
        total += v * factor
    return total


def twice(values):
    return compute(values, 2)
'''

_BENCH_USER = b'''"""User {i}."""
import pkg.core
import pkg.core as core_alias
from pkg.core import compute
from pkg.core import compute as calc
from pkg import core


class Widget{i}:
    def __init__(self, values):
        self.values = list(values)

    def total(self):
        return compute(self.values)

    def scaled(self, k):
        return pkg.core.compute(self.values, k)


def shadow(compute):
    # a parameter named like the function: left alone
    return compute + 1


def local_shadow(values):
    compute = len(values)
    return compute


def run(values):
    a = compute(values)
    b = calc(values)
    c = core.compute(values)
    d = core_alias.compute(values, 3)
    return a + b + c + d


def helper_{i}(x):
    return [compute([x]), shadow(1), local_shadow([x])]
'''
