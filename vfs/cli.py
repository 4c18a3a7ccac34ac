"""The `vfs` command: mount, unmount, status, demo.

Every failure is one line on stderr (`vfs: error: ...`) and a non-zero exit.
"""
from __future__ import annotations

import argparse
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from .errors import FsError
from .mounts import UNMOUNT_NOTE, find_mount, is_mounted, live_mounts, state_dir_for

__all__ = ["main"]

READY_TIMEOUT = 60.0


class CliError(Exception):
    pass


def _check_dir(path: str, what: str) -> str:
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CliError(f"{what} does not exist: {path}")
    if not os.path.isdir(path):
        raise CliError(f"{what} is not a directory: {path}")
    return path


def cmd_mount(args: argparse.Namespace) -> int:
    source = _check_dir(args.source, "source")
    mountpoint = _check_dir(args.mountpoint or args.source, "mount point")
    if is_mounted(mountpoint):
        raise CliError(f"already mounted: {mountpoint}")
    if not os.path.exists("/dev/fuse"):
        raise CliError("/dev/fuse is missing: FUSE is not available on this machine")
    flags: dict = {}
    if args.mode is not None:
        flags["sync_frequency"] = args.mode
    if args.branch is not None:
        flags["diff_branch"] = args.branch
    if args.passthrough:
        flags["passthrough"] = list(args.passthrough)
    for item in args.set or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise CliError(f"--set needs KEY=VALUE, got {item!r}")
        flags[key.strip()] = _toml_value(raw)
    workspace = {"rev": args.rev, "journal": not args.no_journal, "flags": flags}
    options = {"workspace": workspace, "allow_other": args.allow_other, "debug": args.debug}
    if args.foreground:
        from .daemon import MountOptions, serve
        from .workspace import WorkspaceOptions

        import logging
        logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        opts = MountOptions(source, mountpoint, WorkspaceOptions(**workspace), args.allow_other, args.debug)
        return serve(opts, lambda msg: print(f"vfs: {msg}" if msg != "ok" else
                                             f"vfs: serving {source} at {mountpoint}", file=sys.stderr))
    return _spawn_daemon(source, mountpoint, options)


def _fuse_says(log_path: Path, start: int) -> str:
    """What libfuse or fusermount3 wrote to the daemon's log since `start` (the reason a
    mount failed: a missing `user_allow_other`, no access to /dev/fuse), as a suffix."""
    try:
        with open(log_path, "rb") as f:
            f.seek(start)
            lines = f.read(1 << 16).decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    said = [line.strip() for line in lines if line.startswith(("fusermount3:", "fusermount:", "fuse:"))]
    return f" ({'; '.join(said)})" if said else ""


def _toml_value(raw: str):
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare word: take it as a string


def _spawn_daemon(source: str, mountpoint: str, options: dict) -> int:
    log_path = state_dir_for(source) / "daemon.log"
    start = log_path.stat().st_size if log_path.exists() else 0
    r, w = os.pipe()
    # 0600 like the journal: the log names paths and agents.
    with open(os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600), "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vfs.daemon", source, mountpoint, "--ready-fd", str(w),
             "--options-json", json.dumps(options)],
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, pass_fds=(w,),
            start_new_session=True, cwd="/")
    os.close(w)
    deadline = time.monotonic() + READY_TIMEOUT
    message = b""
    with os.fdopen(r, "rb") as ready:
        while time.monotonic() < deadline:
            rlist, _, _ = select.select([ready], [], [], 0.2)
            if rlist:
                message = ready.readline()
                break
            if proc.poll() is not None:
                break
    text = message.decode("utf-8", "replace").strip()
    if text != "ok":
        if proc.poll() is None and not text:
            proc.terminate()
        reason = text[len("error: "):] if text.startswith("error: ") else (text or f"daemon exited; see {log_path}")
        raise CliError(reason + _fuse_says(log_path, start))
    print(f"mounted {source} at {mountpoint} (pid {proc.pid})")
    if sys.stdout.isatty():
        _index_progress(Path(mountpoint))
    return 0


def _index_progress(mountpoint: Path, timeout: float = 600.0) -> None:
    """In a terminal, draw the initial index build as a progress bar (the mount already works).

    Ctrl-C stops only the bar; the build goes on in the daemon.
    """
    status = mountpoint / ".vfs" / "status.json"
    deadline = time.monotonic() + timeout
    shown = False
    try:
        while time.monotonic() < deadline:
            try:
                index = json.loads(status.read_text()).get("index", {})
            except (OSError, ValueError):
                return
            done, total = index.get("done", 0), index.get("total", 0)
            if index.get("state") != "building":
                if total == 0 and time.monotonic() < deadline - timeout + 3.0:
                    time.sleep(0.1)  # the listing of the tree has not scheduled the build yet
                    continue
                break
            if total >= 500:
                width = 30
                filled = width * done // max(total, 1)
                print(f"\rindexing [{'#' * filled}{'.' * (width - filled)}] {done}/{total} files",
                      end="", flush=True)
                shown = True
            time.sleep(0.2)
        if shown:
            print("\rindexing done" + " " * 40)
    except KeyboardInterrupt:
        if shown:
            print()


def cmd_unmount(args: argparse.Namespace) -> int:
    mountpoint = os.path.abspath(args.mountpoint)
    rec = find_mount(mountpoint)
    if rec is None:
        if is_mounted(mountpoint):
            res = subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True, text=True)
            if res.returncode != 0:
                raise CliError(res.stderr.strip() or f"cannot unmount {mountpoint}")
            return 0
        raise CliError(f"not a vfs mount: {mountpoint}")
    os.kill(rec.pid, 15)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(rec.pid) and not is_mounted(mountpoint):
            print(f"unmounted {mountpoint}")
            note = Path(rec.state_dir) / UNMOUNT_NOTE
            try:
                message = note.read_text().strip()
            except OSError:
                return 0
            note.unlink(missing_ok=True)
            raise CliError(message)
        time.sleep(0.05)
    raise CliError(f"daemon {rec.pid} did not stop within {args.timeout:.0f}s; "
                   f"release the mount with: fusermount3 -uz {mountpoint}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def cmd_status(args: argparse.Namespace) -> int:
    mounts = live_mounts()
    if args.json:
        print(json.dumps([m.__dict__ for m in mounts], indent=2))
        return 0
    if not mounts:
        print("no vfs mounts")
        return 0
    for m in mounts:
        print(f"{m.mountpoint}\tsource={m.source}\tpid={m.pid}" + (f"\trev={m.rev}" if m.rev else ""))
        status = Path(m.mountpoint) / ".vfs" / "status"
        try:
            text = status.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            print(f"  {line}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vfs", description="Serve a project from in-memory buffers through FUSE.")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("mount", help="mount SRC at MOUNTPOINT (default: over SRC itself)")
    m.add_argument("source")
    m.add_argument("mountpoint", nargs="?")
    m.add_argument("--foreground", "-f", action="store_true", help="stay attached; Ctrl-C unmounts")
    m.add_argument("--mode", choices=["on-demand", "write-through", "lazy"], help="sync mode (default on-demand)")
    m.add_argument("--rev", help="serve this commit of the repository SRC (no worktree needed)")
    m.add_argument("--branch", help="name of the diff branch (default in-memory-edits)")
    m.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a setting, as in [tool.vfs] of pyproject.toml (repeatable)")
    m.add_argument("--passthrough", action="append", metavar="GLOB",
                   help="also pass paths matching GLOB straight to disk (repeatable)")
    m.add_argument("--allow-other", action="store_true", help="let other users see the mount")
    m.add_argument("--no-journal", action="store_true", help=argparse.SUPPRESS)
    m.add_argument("--debug", action="store_true")
    m.set_defaults(func=cmd_mount)

    u = sub.add_parser("unmount", aliases=["umount"], help="stop the daemon serving MOUNTPOINT")
    u.add_argument("mountpoint")
    u.add_argument("--timeout", type=float, default=30.0)
    u.set_defaults(func=cmd_unmount)

    s = sub.add_parser("status", help="list live mounts")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    d = sub.add_parser("demo", help="mount a sample project, edit it, run its tests in memory")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (CliError, FsError) as exc:
        print(f"vfs: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
