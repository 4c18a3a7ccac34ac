"""LiveIndex: background application of changes."""
from __future__ import annotations

import threading
import time

import pytest

from index import Index, LiveIndex
from index_tree import RENAMED, TREE, defs, generated, refs


class Store:
    """What the session would be: current contents, readable from any thread."""

    def __init__(self, tree: dict[str, str]) -> None:
        self.files = {path: text.encode() for path, text in tree.items()}
        self.reads: list[str] = []
        self.gate: dict[str, threading.Event] = {}

    def read(self, path: str) -> bytes | None:
        self.reads.append(path)
        gate = self.gate.get(path)
        if gate is not None:
            assert gate.wait(10)
        return self.files.get(path)


@pytest.fixture
def live():
    store = Store(TREE)
    service = LiveIndex(Index(), store.read)
    service.start()
    service.initial_build(sorted(store.files))
    assert service.wait_fresh(30)
    yield service, store
    service.close()


def test_initial_build_then_ready(live):
    service, store = live
    assert service.status() == {"state": "ready", "done": 17, "total": 17, "pending": 0}
    assert defs(service.index, "helper") == [("pkg/util.py", 1, 5, "function", "pkg.util.helper")]


def test_changes_are_applied_and_queries_are_fresh(live):
    service, store = live
    store.files.update({path: text.encode() for path, text in RENAMED.items()})
    for path in RENAMED:
        service.changed(path)
    assert service.wait_fresh(10)
    assert defs(service.index, "assist") == [("pkg/util.py", 1, 5, "function", "pkg.util.assist")]
    assert [r[:3] for r in refs(service.index, "pkg.util.assist")] == [
        ("app.py", 3, 22), ("app.py", 8, 28), ("pkg/util.py", 6, 12), ("pkg/util.py", 6, 19),
    ]
    del store.files["app.py"]
    service.changed("app.py")
    assert service.wait_fresh(10)
    assert "app.py" not in service.index.paths()
    assert service.index.affected_tests(["app.py"]) == ["tests/test_app.py"]


def test_repeated_changes_coalesce():
    store = Store({"a.py": "X = 1\n"})
    service = LiveIndex(Index(), store.read)
    for i in range(50):
        store.files["a.py"] = f"X{i} = 1\n".encode()
        service.changed("a.py")
    assert service.status()["pending"] == 1
    service.start()
    try:
        assert service.wait_fresh(10)
        assert service.index.stats()["parsed"] == 1
        assert [d.qualname for d in service.index.symbols("a.py")] == ["a", "a.X49"]
    finally:
        service.close()


def test_status_while_building_and_wait_timeout():
    store = Store(TREE)
    store.gate["pkg/util.py"] = threading.Event()
    service = LiveIndex(Index(), store.read)
    service.start()
    try:
        service.initial_build(sorted(store.files))
        assert not service.wait_fresh(0.2)
        assert service.status()["state"] == "building"
        store.gate["pkg/util.py"].set()
        assert service.wait_fresh(30)
        assert service.status()["state"] == "ready"
    finally:
        service.close()


def test_a_huge_file_does_not_hold_up_small_ones():
    store = Store({"small.py": "A = 1\n"})
    store.files["gen/big.py"] = generated(10)
    service = LiveIndex(Index(), store.read)
    service.start()
    try:
        service.changed("gen/big.py")
        while "gen/big.py" not in store.reads:
            time.sleep(0.01)
        service.changed("small.py")
        deadline = time.monotonic() + 10
        while "small.py" not in service.index.paths():
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert "gen/big.py" not in service.index.paths()  # still parsing in its child process
        assert service.wait_fresh(30)
        assert "gen/big.py" in service.index.paths()
    finally:
        service.close()


def test_errors_in_read_are_logged_and_skipped(caplog):
    def read(path: str) -> bytes:
        raise OSError("gone")

    service = LiveIndex(Index(), read)
    service.start()
    try:
        service.changed("x.py")
        assert service.wait_fresh(5)
        assert "cannot read x.py: gone" in caplog.text
        assert service.index.paths() == []
    finally:
        service.close()
