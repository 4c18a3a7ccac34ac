"""Settings of a mount: defaults, then the project's file, then `vfs mount` flags.

The project's settings live in `[tool.vfs]` of its `pyproject.toml`, or in a
`.vfs.toml` at its root (top-level keys).  Every key of the seed's
`session.yaml` has a home here.  An unknown key or a bad value stops the
mount with a message naming the key.  `Settings.sources` says where each
effective value came from (`default`, the file's name, or `flag`), and
`.vfs/status` shows it.
"""
from __future__ import annotations

import errno
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import FsError

__all__ = ["KEYS", "Settings", "load_settings"]


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    raise ValueError("must be true or false")


def _bool_or_auto(v: Any) -> bool | str:
    if isinstance(v, bool) or v == "auto":
        return v
    raise ValueError("must be true, false or \"auto\"")


def _int_pos(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    raise ValueError("must be a positive integer")


def _num_pos(v: Any) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
        return float(v)
    raise ValueError("must be a number >= 0")


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v in options:
            return v
        raise ValueError(f"must be one of {', '.join(options)}")
    return check


def _str_list(v: Any) -> list[str]:
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return list(v)
    raise ValueError("must be a list of strings")


def _branch(v: Any) -> str:
    if isinstance(v, str) and v:
        return v
    raise ValueError("must be a non-empty string")


# key -> (default, validator, WorkspaceOptions field)
KEYS: dict[str, tuple[Any, Callable[[Any], Any], str]] = {
    "sync_frequency": ("on-demand", _choice("on-demand", "write-through", "lazy"), "mode"),
    "diff_branch": ("in-memory-edits", _branch, "branch"),
    "auto_commit": (True, _bool, "auto_commit"),
    "commit_quiet_seconds": (2.0, _num_pos, "commit_quiet_seconds"),
    "fail_on_syntax_error": (True, _bool, "fail_on_syntax_error"),
    "warn_on_type_error": (False, _bool, "warn_on_type_error"),
    "run_tests_before_sync": (False, _bool, "run_tests_before_sync"),
    "lazy_parse": (False, _bool, "lazy_parse"),
    "cache_symbols": (True, _bool, "cache_symbols"),
    "languages": (["python"], _str_list, "languages"),
    "max_memory_mb": (1024, _int_pos, "max_memory_mb"),
    "max_file_mb": (512, _int_pos, "max_file_mb"),
    "lru_eviction": (True, _bool, "lru_eviction"),
    "kernel_opens": ("auto", _bool_or_auto, "kernel_opens"),
    "passthrough": ([], _str_list, "passthrough"),
    "audit_policy": ("warn", _choice("warn", "deny"), "audit_policy"),
    "audit_disabled": ([], _str_list, "audit_disabled"),
    "max_journal_entries": (1_000_000, _int_pos, "max_journal_entries"),
    "max_journal_mb": (2048, _int_pos, "max_journal_bytes"),
    "watch": (True, _bool, "watch"),
    "index": (True, _bool, "index"),
}


@dataclass
class Settings:
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def options_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for WorkspaceOptions."""
        out = {}
        for key, value in self.values.items():
            target = KEYS[key][2]
            out[target] = value * (1 << 20) if key == "max_journal_mb" else value
        return out


def _project_table(read: Callable[[str], bytes | None]) -> tuple[dict[str, Any], str]:
    raw = read(".vfs.toml")
    if raw is not None:
        return _parse(raw, ".vfs.toml"), ".vfs.toml"
    raw = read("pyproject.toml")
    if raw is not None:
        data = _parse(raw, "pyproject.toml")
        table = data.get("tool", {}).get("vfs", {})
        if not isinstance(table, dict):
            raise FsError(errno.EINVAL, "pyproject.toml: [tool.vfs] must be a table")
        return table, "pyproject.toml [tool.vfs]"
    return {}, ""


def _parse(raw: bytes, name: str) -> dict[str, Any]:
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FsError(errno.EINVAL, f"{name}: {exc}") from None


def load_settings(read: Callable[[str], bytes | None], flags: dict[str, Any] | None = None) -> Settings:
    """Effective settings: defaults < project file < flags (keys as in KEYS)."""
    settings = Settings()
    for key, (default, _check, _target) in KEYS.items():
        settings.values[key] = default
        settings.sources[key] = "default"
    table, where = _project_table(read)
    for layer, origin in ((table, where), (flags or {}, "flag")):
        for key, value in layer.items():
            if key not in KEYS:
                raise FsError(errno.EINVAL, f"{origin}: unknown setting {key!r}")
            try:
                settings.values[key] = KEYS[key][1](value)
            except ValueError as exc:
                raise FsError(errno.EINVAL, f"{origin}: setting {key!r} {exc} (got {value!r})") from None
            settings.sources[key] = origin
    return settings
