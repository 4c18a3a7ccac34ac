"""Hot module replacement (`vfs.hotreload`) and the in-memory import hook (`vfs.importer`).

In-process tests import modules from a `ModuleRegistry` (a Session over an
empty in-memory base, no FUSE) and check what a reload did to live objects.
The mount tests run a real Python process from a real mount, edit its module
through the mount with an ordinary file write, and watch the process pick the
change up through `.vfs/events`; they also measure that latency.
"""
from __future__ import annotations

import importlib.machinery
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import types
from pathlib import Path

import pytest

from vfs.hotreload import Reloader, watch_mount, watch_session
from vfs.importer import MemoryBase, ModuleRegistry, SessionFinder
from vfs.session import Session

REPO = Path(__file__).resolve().parents[2]
RUNNING = "running on the stack (thread {}): not patched, the old code stays until a later reload"


@pytest.fixture
def registry():
    reg = ModuleRegistry()
    try:
        yield reg
    finally:
        reg.close()


def load(registry: ModuleRegistry, name: str, source: str) -> types.ModuleType:
    registry.create_module(name, textwrap.dedent(source))
    return registry.import_module(name)


def update(registry: ModuleRegistry, name: str, source: str):
    registry.update_module(name, textwrap.dedent(source))
    return registry.reload_module(name)


# ---------------------------------------------------------------------------- the import hook
def test_memory_base_is_an_empty_tree():
    base = MemoryBase()
    assert base.stat("").mode & 0o170000 == 0o040000
    assert base.listdir("") == []
    assert base.stat("x.py") is None
    with pytest.raises(FileNotFoundError):
        base.read("x.py")
    seeded = MemoryBase({"pkg/a.py": b"A = 1\n"})
    assert seeded.listdir("") == ["pkg"] and seeded.listdir("pkg") == ["a.py"]
    assert Session(seeded).read_file("pkg/a.py") == b"A = 1\n"


def test_packages_and_submodules_come_from_the_session(registry):
    registry.create_package("hr_pkg", "from .ops import add\n")
    registry.create_module("hr_pkg.ops", "def add(a, b):\n    return a + b\n")
    registry.create_module("hr_pkg.implicit.leaf", "LEAF = 'leaf'\n")
    pkg = registry.import_module("hr_pkg")
    leaf = registry.import_module("hr_pkg.implicit.leaf")
    assert pkg.add(2, 3) == 5
    assert pkg.__file__ == f"vfs-session://{registry.finder.label}/hr_pkg/__init__.py"
    assert sys.modules["hr_pkg.ops"].__file__.endswith("/hr_pkg/ops.py")
    assert leaf.LEAF == "leaf" and sys.modules["hr_pkg.implicit"].__path__ == [
        f"vfs-session://{registry.finder.label}/hr_pkg/implicit"]
    assert registry.session.read_file("hr_pkg/ops.py").startswith(b"def add")

    registry.update_module("hr_pkg.ops", "def add(a, b):\n    return a + b + 100\n")
    report = registry.reloader.reload("hr_pkg/ops.py")  # by session path
    assert (report.module, report.patched, report.error) == ("hr_pkg.ops", ["add"], None)
    assert pkg.add(2, 3) == 105  # the package's binding is the patched function


def test_the_hook_serves_only_its_root_and_refuses_foreign_modules(registry):
    session = Session(MemoryBase({"lib/hr_inside.py": b"X = 1\n", "hr_outside.py": b"X = 2\n"}))
    with ModuleRegistry(session, root="lib") as scoped:
        assert scoped.import_module("hr_inside").X == 1
        with pytest.raises(ModuleNotFoundError):
            scoped.import_module("hr_outside")
    assert "hr_inside" not in sys.modules  # close() drops what it served
    registry.create_module("json", "X = 1\n")
    with pytest.raises(ImportError) as err:
        registry.import_module("json")
    assert str(err.value) == f"json is already imported from {sys.modules['json'].__file__}, not from this registry"
    with pytest.raises(FileExistsError):
        registry.create_module("json", "X = 2\n")
    with pytest.raises(LookupError) as err:
        registry.reload_module("hr_never")
    assert str(err.value) == "hr_never is not imported from this registry"


def test_tracebacks_show_in_memory_source(registry):
    mod = load(registry, "hr_tb", """\
        def boom():
            raise ValueError("from memory")
        """)
    with pytest.raises(ValueError) as err:
        mod.boom()
    assert 'raise ValueError("from memory")' in "".join(traceback.format_tb(err.value.__traceback__))


# ---------------------------------------------------------------------------- patching in place
def test_function_patched_in_place_for_every_reference(registry):
    mod = load(registry, "hr_f", """\
        def f(x=1):
            '''old'''
            return ("old", x)
        """)
    user = load(registry, "hr_user", """\
        from hr_f import f

        def call():
            return f()
        """)
    held, callbacks = mod.f, [mod.f]
    report = update(registry, "hr_f", """\
        def f(x=2, *, y=3):
            '''new'''
            return ("new", x, y)
        """)
    assert (report.patched, report.added, report.removed, report.skipped, report.error) == (["f"], [], [], [], None)
    assert held is mod.f and user.f is mod.f
    assert held() == ("new", 2, 3) and user.call() == ("new", 2, 3) and callbacks[0](5, y=6) == ("new", 5, 6)
    assert mod.f.__doc__ == "new" and mod.f.__kwdefaults__ == {"y": 3}


def test_class_methods_changed_added_removed_on_live_instances(registry):
    mod = load(registry, "hr_cls", """\
        class Widget:
            def __init__(self, n):
                self.n = n
            def describe(self):
                return f"widget {self.n} v1"
            def old_method(self):
                return "old"
            @property
            def double(self):
                return self.n * 2
            @staticmethod
            def kind():
                return "s1"
            @classmethod
            def make(cls):
                return cls(0)
        """)
    w = mod.Widget(7)
    bound = w.describe
    report = update(registry, "hr_cls", """\
        class Widget:
            def __init__(self, n):
                self.n = n
            def describe(self):
                return f"widget {self.n} v2"
            def new_method(self):
                return self.describe().upper()
            @property
            def double(self):
                return self.n * 20
            @staticmethod
            def kind():
                return "s2"
            @classmethod
            def make(cls):
                return cls(1)
        """)
    assert report.error is None and report.skipped == []
    assert sorted(report.patched) == ["Widget.describe", "Widget.double", "Widget.kind", "Widget.make"]
    assert (report.added, report.removed) == (["Widget.new_method"], ["Widget.old_method"])
    assert w.describe() == "widget 7 v2" and bound() == "widget 7 v2"
    assert w.new_method() == "WIDGET 7 V2" and not hasattr(w, "old_method")
    assert (w.double, w.kind(), w.make().n) == (140, "s2", 1)
    assert isinstance(w, mod.Widget) and type(w.make()) is type(w)


def test_module_state_survives_and_new_names_appear(registry):
    mod = load(registry, "hr_state", """\
        counter = 0
        cache = {}
        _MISSING = object()

        def bump():
            global counter
            counter += 1
            cache[counter] = "v1"
            return counter

        def is_missing(x=_MISSING):
            return x is _MISSING
        """)
    assert (mod.bump(), mod.bump()) == (1, 2)
    cache = mod.cache
    report = update(registry, "hr_state", """\
        counter = 0
        cache = {}
        _MISSING = object()
        LIMIT = 10

        def bump():
            global counter
            counter += LIMIT
            cache[counter] = helper()
            return counter

        def helper():
            return "v2"

        def is_missing(x=_MISSING):
            return x is _MISSING
        """)
    assert report.error is None and report.skipped == []
    # is_missing moved down a few lines: new line numbers are a change too.
    assert (report.patched, report.added, report.kept) == (["bump", "is_missing"], ["LIMIT", "helper"],
                                                           ["counter", "cache"])
    assert mod.bump() == 12 and mod.cache is cache and cache == {1: "v1", 2: "v1", 12: "v2"}
    assert mod.LIMIT == 10 and mod.is_missing()  # the default stands for the kept sentinel


def test_removed_function_and_changed_kind(registry):
    mod = load(registry, "hr_rm", """\
        def gone():
            return 1

        def handler():
            return 1
        """)
    report = update(registry, "hr_rm", """\
        handler = None
        """)
    assert report.removed == ["gone"] and not hasattr(mod, "gone")
    assert report.skipped == [("handler", "changed from function to data: rebound in the module; "
                                          "references held elsewhere keep the old object")]
    assert mod.handler is None


def test_syntax_error_and_failing_import_leave_old_code(registry):
    mod = load(registry, "hr_err", """\
        STATE = [1]

        def f():
            return "old"
        """)
    before = dict(mod.__dict__)
    report = update(registry, "hr_err", "def f(:\n    return 'new'\n")
    assert report.error.splitlines()[-1] == "SyntaxError: invalid syntax"
    assert f'File "vfs-session://{registry.finder.label}/hr_err.py", line 1' in report.error
    assert (report.patched, mod.f()) == ([], "old")

    report = update(registry, "hr_err", """\
        STATE = []
        NEW = 1

        def f():
            return "new"

        raise RuntimeError("boom at import")
        """)
    assert report.error.splitlines()[-1] == "RuntimeError: boom at import"
    assert report.summary() == "hr_err: reload failed, old code kept: RuntimeError: boom at import"
    assert mod.f() == "old" and mod.__dict__ == before and mod.STATE == [1]

    report = update(registry, "hr_err", "STATE = []\n\ndef f():\n    return 'fixed'\n")
    assert (report.error, report.patched, mod.f()) == (None, ["f"], "fixed")


def test_function_on_the_callers_stack_is_skipped(registry):
    mod = load(registry, "hr_stack", """\
        def run(reloader):
            return reloader.reload("hr_stack")

        def other():
            return 1
        """)
    registry.update_module("hr_stack", textwrap.dedent("""\
        def run(reloader):
            return "new run"

        def other():
            return 2
        """))
    report = mod.run(registry.reloader)
    assert report.skipped == [("run", RUNNING.format(threading.current_thread().name))]
    assert report.patched == ["other"] and mod.other() == 2
    report = registry.reload_module("hr_stack")  # once it returned, it patches
    assert report.patched == ["run"] and mod.run(None) == "new run"


def test_function_running_in_another_thread_is_skipped(registry):
    mod = load(registry, "hr_thread", """\
        def block(started, release):
            started.set()
            release.wait(10)
            return "old"
        """)
    started, release = threading.Event(), threading.Event()
    results = []
    t = threading.Thread(target=lambda: results.append(mod.block(started, release)), name="blocker")
    t.start()
    try:
        assert started.wait(5)
        report = update(registry, "hr_thread", """\
            def block(started, release):
                return "new"
            """)
        assert report.skipped == [("block", RUNNING.format("blocker"))]
    finally:
        release.set()
        t.join(5)
    assert results == ["old"]
    report = registry.reload_module("hr_thread")  # it returned: a later reload patches it
    assert (report.patched, report.skipped, mod.block(None, None)) == (["block"], [], "new")


def test_a_function_briefly_on_another_stack_is_waited_for(registry):
    mod = load(registry, "hr_brief", "import time\n\ndef nap():\n    time.sleep(0.02)\n    return 1\n")
    t = threading.Thread(target=mod.nap)
    t.start()
    report = update(registry, "hr_brief", "import time\n\ndef nap():\n    return 2\n")
    t.join()
    assert (report.patched, report.skipped, mod.nap()) == (["nap"], [], 2)


def test_a_function_called_in_a_tight_loop_is_patched(registry):
    mod = load(registry, "hr_spin", "def f():\n    return 1\n")
    seen = []
    t = threading.Thread(target=lambda: seen.append(next(i for i in range(10 ** 9) if mod.f() == 2)))
    t.start()
    try:
        report = update(registry, "hr_spin", "def f():\n    return 2\n")  # each call comes and goes
        assert (report.patched, report.skipped) == (["f"], [])
    finally:
        t.join(5)
    assert seen and not t.is_alive()


def test_changed_slots_and_closure_are_reported(registry):
    mod = load(registry, "hr_slots", """\
        class Point:
            __slots__ = ("x",)
            def show(self):
                return "p1"

        class Base:
            def hello(self):
                return "base"

        class Child(Base):
            def hello(self):
                return "child"
        """)
    p, c = mod.Point(), mod.Child()
    report = update(registry, "hr_slots", """\
        class Point:
            __slots__ = ("x", "y")
            def show(self):
                return "p2"

        class Base:
            def hello(self):
                return "base"

        class Child(Base):
            def hello(self):
                return "child+" + super().hello()
        """)
    assert report.skipped == [
        ("Point", "__slots__ changed from ('x',) to ('x', 'y'): existing instances cannot change layout; "
                  "class not patched"),
        ("Child.hello", "closure cells changed (0 -> 1): the new function is bound in its place; "
                        "references held elsewhere keep the old code"),
    ]
    assert p.show() == "p1" and mod.Point is type(p)
    assert c.hello() == "child+base"  # super() resolves against the live class


def test_decorated_and_cached_functions_are_followed(registry):
    mod = load(registry, "hr_deco", """\
        import functools

        def tag(fn):
            @functools.wraps(fn)
            def wrapper(*a):
                return ("tagged", fn(*a))
            return wrapper

        @tag
        def f(x):
            return x + 1

        @functools.lru_cache(maxsize=None)
        def g(x):
            return x * 2
        """)
    f, g = mod.f, mod.g
    assert (f(1), g(2)) == (("tagged", 2), 4)
    report = update(registry, "hr_deco", mod.__loader__.get_source("hr_deco")
                    .replace("x + 1", "x + 100").replace("x * 2", "x * 200"))
    assert (report.patched, report.skipped) == (["f", "g"], [])
    assert f is mod.f and f(1) == ("tagged", 101) and g(2) == 400  # the cache was cleared
    assert f.__wrapped__ is mod.f.__wrapped__


DECO2 = """\
def times(n):
    def deco(fn):
        def wrapper(x):
            return fn(x) * n
        return wrapper
    return deco


@times({n})
def f(x):
    return x


def make():
    j, k = 10, 1

    @times(1)
    def inner(x):
        return x + {inner}
    return inner


h = make()
"""


def test_decorator_arguments_and_wrapped_closures(registry):
    mod = load(registry, "hr_deco2", DECO2.format(n=2, inner="k"))
    f, h = mod.f, mod.h
    assert (f(5), h(5)) == (10, 6)
    report = update(registry, "hr_deco2", DECO2.format(n=3, inner="k"))
    assert (report.patched, report.skipped, f(5)) == (["f"], [], 15)  # the decorator's argument changed

    report = update(registry, "hr_deco2", DECO2.format(n=3, inner="k + j"))
    assert report.skipped == [("h", "closure cells changed (1 -> 2) in the wrapped make.<locals>.inner: the new "
                                    "function is bound in its place; references held elsewhere keep the old code")]
    assert report.patched == ["make"] and mod.h(5) == 16 and h(5) == 6


def test_c_extension_is_reported(registry, tmp_path):
    fake = types.ModuleType("hr_fake_ext")
    fake.__file__ = str(tmp_path / "hr_fake_ext.cpython-311-x86_64-linux-gnu.so")
    fake.__spec__ = importlib.machinery.ModuleSpec(
        "hr_fake_ext", importlib.machinery.ExtensionFileLoader("hr_fake_ext", fake.__file__), origin=fake.__file__)
    report = Reloader(tmp_path).reload(fake)
    assert report.skipped == [("hr_fake_ext", "C extension module: its code cannot be patched")]
    report = Reloader(tmp_path / "elsewhere").reload(fake)
    assert report.error == f"hr_fake_ext is not a module of <Reloader {tmp_path / 'elsewhere'}>"


def test_watch_session_reloads_after_each_change(registry):
    mod = load(registry, "hr_watch", "def f():\n    return 1\n")
    held = mod.f
    seen = []
    watcher = registry.watch(seen.append)
    try:
        change = registry.session.write_file("hr_watch.py", b"def f():\n    return 2\n")
        assert watcher.wait(change.seq, timeout=5)
        assert held() == 2 and [r.patched for r in seen] == [["f"]] and seen[0].seq == change.seq
        change = registry.session.write_file("unrelated.txt", b"x")
        assert watcher.wait(change.seq, timeout=5) and len(seen) == 1
    finally:
        watcher.stop()
    assert not watcher.thread.is_alive()


def test_watch_session_with_a_plain_session():
    session = Session(MemoryBase({"hr_plain.py": b"def f():\n    return 'a'\n"}))
    finder = SessionFinder(session)
    finder.install()
    try:
        import hr_plain  # noqa: F401 — served by the finder

        watcher = watch_session(session)
        try:
            change = session.write_file("hr_plain.py", b"def f():\n    return 'b'\n")
            assert watcher.wait(change.seq) and hr_plain.f() == "b"
            assert watcher.reports[-1].summary() == "hr_plain: patched f"
        finally:
            watcher.stop()
    finally:
        finder.uninstall()
        sys.modules.pop("hr_plain", None)


def test_watch_mount_refuses_a_plain_directory(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        watch_mount(tmp_path)
    assert str(err.value) == f"not a vfs mount (no .vfs/events): {tmp_path}"


def test_seed_example_runs_without_fuse():
    script = REPO / "scripts" / "examples" / "in_memory_modules.py"
    assert os.access(script, os.X_OK)
    # Make any import of pyfuse3 fail: the library mode must not need it.
    guard = "import runpy, sys; sys.modules['pyfuse3'] = None; runpy.run_path(sys.argv[1], run_name='__main__')"
    res = subprocess.run([sys.executable, "-c", guard, str(script)], capture_output=True, text=True, timeout=60,
                         cwd="/")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "3. math.add(5, 10) = 15" in lines
    i = lines.index("Adding 5 + 10")
    assert lines[i + 1] == "6. math.add(5, 10) = 15" and "7. math.subtract(10, 5) = 5" in lines
    assert "5. reloaded: math_utils: patched add; added subtract" in lines


# ---------------------------------------------------------------------------- through a real mount
HOTMOD_V = """\
counter = 0


def bump():
    global counter
    counter += 1
    return counter


def greet():
    return "hello {v}"


class Widget:
    def __init__(self):
        self.created = bump()

    def describe(self):
        return "widget {v}"
"""

CHILD = r"""
import json, sys, time
mount = sys.argv[1]
sys.path.insert(0, mount)
import hotmod
from hotmod import greet
from vfs.hotreload import watch_mount

reports = []
watcher = watch_mount(mount, callback=lambda r: reports.append((time.time(), r)))
widget = hotmod.Widget()
print(json.dumps({"ready": hotmod.__file__}), flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "state":
        print(json.dumps({"describe": widget.describe(), "greet": greet(), "count": hotmod.bump(),
                          "extra": getattr(widget, "extra", lambda: None)()}), flush=True)
    elif cmd == "poll":
        print(json.dumps({"polling": arg}), flush=True)
        deadline = time.monotonic() + 10
        while arg not in widget.describe() and time.monotonic() < deadline:
            time.sleep(0.0005)
        print(json.dumps({"seen": time.time(), "describe": widget.describe()}), flush=True)
    elif cmd == "reports":
        print(json.dumps([{"t": t, "summary": r.summary(), "seconds": r.seconds, "event_time": r.event_time,
                           "skipped": r.skipped, "error": r.error} for t, r in reports]), flush=True)
    elif cmd == "quit":
        break
"""


class Child:
    """A Python process running from the mount, driven line by line over stdin/stdout."""

    def __init__(self, mount: Path) -> None:
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen([sys.executable, "-u", "-c", CHILD, str(mount)], cwd=mount, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def read(self, timeout: float = 10.0):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the child did not answer in time") from None
        if line is None:
            raise AssertionError(f"the child died ({self.proc.wait()}):\n{self.proc.stderr.read()}")
        return json.loads(line)

    def ask(self, command: str, timeout: float = 10.0):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def close(self) -> int:
        """Quit; the watcher thread blocked in `.vfs/events` must not hold the exit up."""
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            return self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()
            self.proc.wait(5)
            raise


def test_live_process_on_a_mount_is_patched_by_a_file_write(mounted):
    module = mounted.path / "hotmod.py"
    module.write_text(HOTMOD_V.format(v="v0"))
    child = Child(mounted.path)
    try:
        assert child.read()["ready"] == str(module)
        assert child.ask("state") == {"describe": "widget v0", "greet": "hello v0", "count": 2, "extra": None}

        # The new version, with a method added; the same widget object must use it.
        child.ask("poll v1")
        module.write_text(HOTMOD_V.format(v="v1") + "\n    def extra(self):\n        return 'extra v1'\n")
        assert child.read()["describe"] == "widget v1"
        assert child.ask("state") == {"describe": "widget v1", "greet": "hello v1", "count": 3,
                                      "extra": "extra v1"}

        # Latency: from the start of the write to the live process seeing the new method.
        latencies, after_close = [], []
        for i in range(2, 42):
            assert child.ask(f"poll v{i}")["polling"] == f"v{i}"
            time.sleep(random.uniform(0, 0.1))  # edits come at any moment, not in step with the reader
            t0 = time.time()
            module.write_text(HOTMOD_V.format(v=f"v{i}"))
            t1 = time.time()
            seen = child.read()
            assert seen["describe"] == f"widget v{i}"
            latencies.append(seen["seen"] - t0)
            after_close.append(seen["seen"] - t1)
        state = child.ask("state")
        assert state == {"describe": "widget v41", "greet": "hello v41", "count": 4, "extra": None}

        reports = child.ask("reports")
        assert len(reports) == 41 and all(r["error"] is None and r["skipped"] == [] for r in reports)
        assert reports[0]["summary"] == "hotmod: patched greet, Widget.describe; added Widget.extra; kept counter"
        assert reports[1]["summary"] == "hotmod: patched greet, Widget.describe; removed Widget.extra; kept counter"
        reload_ms = [r["seconds"] * 1e3 for r in reports]
        event_to_done = [(r["t"] - r["event_time"]) * 1e3 for r in reports if r["event_time"]]
        ms = lambda xs: f"median {statistics.median(xs) * 1e3:.1f} ms, max {max(xs) * 1e3:.1f} ms"
        print(f"\nhot-reload latency over {len(latencies)} edits: write start -> seen: {ms(latencies)}; "
              f"close -> seen: {ms(after_close)}; reload itself: median {statistics.median(reload_ms):.2f} ms; "
              f"event recorded -> reload done: median {statistics.median(event_to_done):.1f} ms")
        assert statistics.median(latencies) < 1.0
    finally:
        assert child.close() == 0


def test_failed_reload_on_a_mount_keeps_the_process_running(mounted):
    module = mounted.path / "hotmod.py"
    module.write_text(HOTMOD_V.format(v="v0"))
    child = Child(mounted.path)
    try:
        child.read()
        module.write_text("def greet(:\n")
        deadline = time.monotonic() + 10
        while not (reports := child.ask("reports")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reports[0]["error"].splitlines()[-1] == "SyntaxError: invalid syntax"
        assert child.ask("state") == {"describe": "widget v0", "greet": "hello v0", "count": 2, "extra": None}
        child.ask("poll v9")
        module.write_text(HOTMOD_V.format(v="v9"))
        assert child.read()["describe"] == "widget v9"
        assert child.ask("state")["count"] == 3
    finally:
        assert child.close() == 0
