"""Shared helpers for the file-system benchmarks (`scripts/bench_fs`).

- Corpora: sdists from PyPI, pinned by version and sha256, downloaded once into
  the cache directory (`$VFS_BENCH_CACHE`, default `~/.cache/vfs-bench`) and
  extracted there.  A throwaway virtualenv for the corpora's own dependencies
  lives in the same cache.
- Timing: wall-clock of whole commands, summarised by the median.
- Mounts: context managers for a `vfs` mount and a `bindfs` mount that always
  unmount in `finally` (lazy unmount and ending the daemon they started as the
  last resort), plus a process-wide safety net at exit.
- FUSE request tracing: `FuseTrace` counts the requests a mount receives by
  opcode, with their latency, from the kernel's `fuse:fuse_request_send` and
  `fuse:fuse_request_end` tracepoints (a private tracefs instance, root only).
  No instrumentation of the daemon is needed.
- Output: Markdown tables and JSON.

Standard library only.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

__all__ = [
    "cache_dir", "Sdist", "ensure_venv", "copy_tree", "Timing", "time_command", "summarize",
    "is_mounted", "Mount", "vfs_mount", "bindfs_mount", "unmount_everything", "FuseTrace",
    "markdown_table", "write_json", "machine_facts", "log", "install_signal_handlers",
]

_T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- cache and corpora
def cache_dir() -> Path:
    root = os.environ.get("VFS_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "vfs-bench")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _urlopen(url: str, tries: int = 3):
    last: Exception | None = None
    for i in range(tries):
        try:
            return urllib.request.urlopen(url, timeout=60)
        except OSError as exc:  # URLError is an OSError
            last = exc
            time.sleep(1 + i)
    raise RuntimeError(f"cannot fetch {url}: {last}")


@dataclass(frozen=True)
class Sdist:
    """A source distribution on PyPI, pinned by version and content hash."""

    name: str
    version: str
    sha256: str

    def tarball(self) -> Path:
        """The sdist in the cache, downloaded (and verified) on first use."""
        cache = cache_dir()
        for cand in cache.glob("*.tar.gz"):
            if _norm(cand.name).startswith(_norm(f"{self.name}-{self.version}.")) and _sha256(cand) == self.sha256:
                return cand
        url, filename = self._pypi_url()
        dest = cache / filename
        log(f"downloading {url}")
        tmp = dest.with_suffix(dest.suffix + f".part{os.getpid()}")
        try:
            with _urlopen(url) as resp, open(tmp, "wb") as out:
                shutil.copyfileobj(resp, out)
            got = _sha256(tmp)
            if got != self.sha256:
                raise RuntimeError(f"{filename}: sha256 {got} != pinned {self.sha256}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def _pypi_url(self) -> tuple[str, str]:
        index = f"https://pypi.org/pypi/{self.name}/json"
        with _urlopen(index) as resp:
            meta = json.load(resp)
        files = meta.get("releases", {}).get(self.version) or []
        for f in files:
            if f.get("packagetype") == "sdist" and f.get("digests", {}).get("sha256") == self.sha256:
                return urllib.parse.urljoin(index, f["url"]), f["filename"]
        for f in files:
            if f.get("packagetype") == "sdist":
                return urllib.parse.urljoin(index, f["url"]), f["filename"]
        raise RuntimeError(f"no sdist of {self.name}=={self.version} on PyPI")

    def extract(self) -> Path:
        """The unpacked sdist (a directory in the cache), unpacked once."""
        tarball = self.tarball()
        with tarfile.open(tarball) as tf:
            top = {m.name.split("/", 1)[0] for m in tf.getmembers()}
            if len(top) != 1:
                raise RuntimeError(f"{tarball.name}: expected one top-level directory, got {sorted(top)[:5]}")
            (topname,) = top
            root = cache_dir() / "src"
            root.mkdir(exist_ok=True)
            dest = root / topname
            marker = root / f".{topname}.extracted"
            if dest.is_dir() and marker.is_file() and marker.read_text() == self.sha256:
                return dest
            log(f"extracting {tarball.name}")
            tmp = Path(tempfile.mkdtemp(prefix=f".{topname}.", dir=root))
            try:
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tf.extractall(tmp)
                if dest.exists():
                    shutil.rmtree(dest)
                os.replace(tmp / topname, dest)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            marker.write_text(self.sha256)
            return dest


def _norm(s: str) -> str:
    return re.sub(r"[-_.]+", "-", s).lower()


def ensure_venv(requirements: Sequence[str], python: str | None = None) -> Path:
    """A virtualenv in the cache with exactly `requirements` installed; returns its python."""
    python = python or sys.executable
    tag = hashlib.sha1(("\n".join(sorted(requirements)) + "\n" + sys.version).encode()).hexdigest()[:10]
    venv = cache_dir() / f"venv-{tag}"
    py = venv / "bin" / "python"
    marker = venv / ".bench-ok"
    if py.exists() and marker.exists():
        return py
    log(f"creating throwaway venv {venv} with {' '.join(requirements)}")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                   check=True)
    marker.write_text("\n".join(requirements) + "\n")
    return py


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True)


# --------------------------------------------------------------------------- timing
@dataclass
class Timing:
    samples: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)

    @property
    def median(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def to_json(self) -> dict:
        s = self.samples
        return {"median": self.median, "min": min(s) if s else None, "max": max(s) if s else None,
                "stdev": statistics.stdev(s) if len(s) > 1 else 0.0, "samples": s}


def time_command(argv: Sequence[str], *, cwd: str | os.PathLike | None = None, env: dict | None = None,
                 check: bool = True, timeout: float = 1800, ok_codes: Sequence[int] = (0,)) -> tuple[float, bytes]:
    """Run a command; (wall seconds, stdout).  stdout is a pipe, never /dev/null (rg shortcuts /dev/null)."""
    t0 = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout)
    dt = time.perf_counter() - t0
    if check and proc.returncode not in ok_codes:
        tail = (proc.stdout[-1500:] + b"\n" + proc.stderr[-1500:]).decode("utf-8", "replace")
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(map(str, argv))}\n{tail}")
    return dt, proc.stdout


def summarize(values: Iterable[float]) -> float | None:
    v = list(values)
    return statistics.median(v) if v else None


# --------------------------------------------------------------------------- mounts
def _unescape_mountinfo(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def is_mounted(path: str | os.PathLike) -> bool:
    path = os.path.abspath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and _unescape_mountinfo(parts[4]) == path:
                    return True
    except OSError:
        pass
    return False


def _wait(cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def _pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


_ACTIVE: dict[str, "Mount"] = {}  # mount point -> mount, for the exit-time safety net


@dataclass
class Mount:
    kind: str  # "vfs" | "bindfs"
    source: Path
    path: Path
    pid: int | None  # the daemon serving it (started by us)

    @property
    def connection(self) -> int:
        """The FUSE connection number (= minor device number of the mount)."""
        return os.minor(os.stat(self.path).st_dev)


def _lazy_unmount(path: Path) -> None:
    if is_mounted(path):
        subprocess.run(["fusermount3", "-uz", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _end_daemon(pid: int | None, timeout: float = 10.0) -> None:
    """End a daemon this process started (by pid only): TERM, then KILL."""
    if pid is None or not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait(lambda: not _pid_alive(pid), timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait(lambda: not _pid_alive(pid), 5.0)


@contextlib.contextmanager
def vfs_mount(source: Path, mountpoint: Path, *, python: str, env: dict | None = None,
              extra_args: Sequence[str] = ()) -> Iterator[Mount]:
    """`vfs mount SOURCE MOUNTPOINT` (the default on-demand mode); always `vfs unmount` after."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if is_mounted(mountpoint):
        raise RuntimeError(f"already mounted: {mountpoint}")
    proc = subprocess.run([python, "-m", "vfs", "mount", *extra_args, str(source), str(mountpoint)],
                          env=env, capture_output=True, text=True, timeout=180)
    m = re.search(r"\(pid (\d+)\)", proc.stdout)
    mount = Mount("vfs", source, mountpoint, int(m.group(1)) if m else None)
    _ACTIVE[str(mountpoint)] = mount
    try:
        if proc.returncode != 0 or not is_mounted(mountpoint):
            msg = proc.stderr.strip() or proc.stdout.strip()
            logm = re.search(r"see (\S+daemon\.log)", msg)
            if logm and os.path.exists(logm.group(1)):
                msg += "\n--- daemon.log (tail) ---\n" + Path(logm.group(1)).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"vfs mount failed ({proc.returncode}): {msg}")
        yield mount
    finally:
        try:
            if is_mounted(mountpoint):
                res = subprocess.run([python, "-m", "vfs", "unmount", "--timeout", "60", str(mountpoint)],
                                     env=env, capture_output=True, text=True, timeout=90)
                if res.returncode != 0:
                    log(f"vfs unmount {mountpoint} failed: {res.stderr.strip()}; lazy unmount")
            _lazy_unmount(mountpoint)
            if mount.pid is not None and not _wait(lambda: not _pid_alive(mount.pid), 15.0):
                log(f"vfs daemon {mount.pid} still alive after unmount; ending it")
                _end_daemon(mount.pid)
        finally:
            _ACTIVE.pop(str(mountpoint), None)


@contextlib.contextmanager
def bindfs_mount(source: Path, mountpoint: Path, *, extra_args: Sequence[str] = (),
                 log_path: Path | None = None) -> Iterator[Mount]:
    """`bindfs SOURCE MOUNTPOINT`, kept in the foreground (-f) so we own its pid; always unmounted after."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if is_mounted(mountpoint):
        raise RuntimeError(f"already mounted: {mountpoint}")
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(["bindfs", "-f", *extra_args, str(source), str(mountpoint)],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    mount = Mount("bindfs", source, mountpoint, proc.pid)
    _ACTIVE[str(mountpoint)] = mount
    try:
        if not _wait(lambda: is_mounted(mountpoint) or proc.poll() is not None, 20.0) or not is_mounted(mountpoint):
            raise RuntimeError(f"bindfs did not mount {mountpoint} (exit {proc.poll()})")
        yield mount
    finally:
        try:
            for _ in range(20):
                if not is_mounted(mountpoint):
                    break
                if subprocess.run(["fusermount3", "-u", str(mountpoint)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.25)
            _lazy_unmount(mountpoint)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
            _ACTIVE.pop(str(mountpoint), None)


def unmount_everything() -> None:
    """Safety net: lazily unmount what is still registered and end the daemons we started."""
    for key, mount in list(_ACTIVE.items()):
        _lazy_unmount(mount.path)
        _end_daemon(mount.pid, 5.0)
        _ACTIVE.pop(key, None)


atexit.register(unmount_everything)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP raise KeyboardInterrupt, so every `finally` (unmounts) runs."""
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


# --------------------------------------------------------------------------- FUSE request tracing
TRACEFS = Path("/sys/kernel/tracing")

_SEND_RE = re.compile(r"\s(\d+\.\d+): fuse_request_send: connection (\d+) req (\d+) opcode (\d+) \((\w+)\)")
_END_RE = re.compile(r"\s(\d+\.\d+): fuse_request_end: connection (\d+) req (\d+) len \d+ error (-?\d+)")


class FuseTrace:
    """Count FUSE requests of one connection by opcode, with latency (send -> reply), via tracefs.

    Usage: `with FuseTrace(mount.connection) as t: ...; t.summary()`.  Needs root and a kernel
    with the fuse tracepoints (Linux >= 6.15).  Uses a private tracefs instance, removed after.
    """

    @staticmethod
    def available() -> bool:
        return os.geteuid() == 0 and (TRACEFS / "events" / "fuse" / "fuse_request_send").is_dir()

    def __init__(self, connection: int, buffer_kb: int = 262144) -> None:
        self.connection = connection
        self.buffer_kb = buffer_kb
        self.inst = TRACEFS / "instances" / f"vfs-bench-{os.getpid()}"
        self.counts: dict[str, int] = {}
        self.latency: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.lost = 0
        self.wall = 0.0

    def _w(self, rel: str, text: str) -> None:
        (self.inst / rel).write_text(text)

    def __enter__(self) -> "FuseTrace":
        with contextlib.suppress(FileExistsError):
            self.inst.mkdir()
        try:
            self._w("buffer_size_kb", str(self.buffer_kb))
            for ev in ("fuse_request_send", "fuse_request_end"):
                self._w(f"events/fuse/{ev}/filter", f"connection == {self.connection}")
                self._w(f"events/fuse/{ev}/enable", "1")
            self._w("trace", "")
            self._w("tracing_on", "1")
        except BaseException:
            self._remove()
            raise
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        try:
            self._w("tracing_on", "0")
            self._parse((self.inst / "trace").read_text(errors="replace"))
            stats = (self.inst / "per_cpu").glob("cpu*/stats")
            for st in stats:
                m = re.search(r"overrun: (\d+)", st.read_text())
                if m:
                    self.lost += int(m.group(1))
        finally:
            self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            for ev in ("fuse_request_send", "fuse_request_end"):
                with contextlib.suppress(OSError):
                    self._w(f"events/fuse/{ev}/enable", "0")
            self.inst.rmdir()

    def _parse(self, text: str) -> None:
        pending: dict[int, tuple[str, float]] = {}
        for line in text.splitlines():
            m = _SEND_RE.search(line)
            if m:
                op = m.group(5).removeprefix("FUSE_")
                self.counts[op] = self.counts.get(op, 0) + 1
                pending[int(m.group(3))] = (op, float(m.group(1)))
                continue
            m = _END_RE.search(line)
            if m:
                got = pending.pop(int(m.group(3)), None)
                if got is None:
                    continue
                op, t0 = got
                self.latency.setdefault(op, []).append(float(m.group(1)) - t0)
                if int(m.group(4)) != 0:
                    self.errors[op] = self.errors.get(op, 0) + 1

    def summary(self) -> dict:
        ops = {}
        for op, n in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            lat = self.latency.get(op, [])
            ops[op] = {"count": n, "errors": self.errors.get(op, 0),
                       "mean_us": round(1e6 * statistics.fmean(lat), 1) if lat else None,
                       "median_us": round(1e6 * statistics.median(lat), 1) if lat else None,
                       "total_ms": round(1e3 * sum(lat), 1) if lat else None}
        return {"requests": sum(self.counts.values()), "lost_events": self.lost,
                "wall_s": round(self.wall, 3), "ops": ops}


# --------------------------------------------------------------------------- output
def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, r)) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)])


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def _tool_version(argv: Sequence[str]) -> str | None:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


def machine_facts() -> dict:
    u = os.uname()
    mem = None
    with contextlib.suppress(OSError):
        with open("/proc/meminfo") as f:
            mem = f.readline().split(":", 1)[1].strip()
    cpu = None
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {"nproc": os.cpu_count(), "kernel": u.release, "machine": u.machine, "cpu": cpu, "mem_total": mem,
            "python": sys.version.split()[0], "rg": _tool_version(["rg", "--version"]),
            "bindfs": _tool_version(["bindfs", "--version"]),
            "fusermount3": _tool_version(["fusermount3", "--version"]), "pyfuse3": pyfuse3_facts()}


def pyfuse3_facts() -> str:
    """The daemon's pyfuse3: version, and whether it carries scripts/pyfuse3/vfs.patch."""
    try:
        import pyfuse3
        from importlib.metadata import version
    except ImportError:
        return "not importable"
    level = getattr(pyfuse3, "__vfs_patch__", 0)
    return f"{version('pyfuse3')} ({f'vfs patch level {level}' if level else 'stock: more round trips'})"
