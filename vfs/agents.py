"""Agent names for requests: who made a change.

The name of a process is its `VFS_AGENT` environment variable, read from
`/proc/PID/environ`, else its command name (`/proc/PID/comm`).  Names are
cached per (pid, process start time), so a reused pid is looked up afresh.

Thread safety: `AgentNames.name` may be called from any thread.
"""
from __future__ import annotations

import threading

__all__ = ["AgentNames", "clean_agent_name"]

_MAX_CACHE = 4096


def clean_agent_name(name: str) -> str:
    """Agent names become directory names under `.vfs/agents/`: keep them safe and short."""
    out = "".join(ch if ch.isalnum() or ch in "-_.@+" else "_" for ch in name.strip())[:64]
    out = out.lstrip(".")
    return out or "unknown"


class AgentNames:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, str], str] = {}

    @staticmethod
    def _start_time(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            return ""
        # Field 22 (starttime) counted after the ')' that ends the command name.
        fields = raw[raw.rfind(b")") + 2:].split()
        return fields[19].decode() if len(fields) > 19 else ""

    def name(self, pid: int) -> str:
        if pid <= 0:
            return "vfs"
        key = (pid, self._start_time(pid))
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        name = self._lookup(pid)
        with self._lock:
            if len(self._cache) >= _MAX_CACHE:
                self._cache.clear()
            self._cache[key] = name
        return name

    @staticmethod
    def _lookup(pid: int) -> str:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                for item in f.read().split(b"\0"):
                    if item.startswith(b"VFS_AGENT="):
                        value = item[len(b"VFS_AGENT="):].decode("utf-8", "replace")
                        if value.strip():
                            return clean_agent_name(value)
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/comm", "rb") as f:
                return clean_agent_name(f.read().decode("utf-8", "replace"))
        except OSError:
            return "unknown"
