"""The mount daemon: build a session for a source, serve it through FUSE, shut down cleanly.

Lifecycle (as in pyfuse3's examples): open the source directory first (so a
mount over the source itself still reads the backing files), build the
session, `pyfuse3.init`, report readiness, `trio.run(main)`, and on SIGTERM /
SIGINT / `vfs unmount` leave the loop and `pyfuse3.close(unmount=True)`.

`vfs mount` (without `--foreground`) starts this module as a detached process
and waits on a pipe for the one-line readiness report: `ok` once the mount
answers, `error: ...` otherwise.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyfuse3
import trio

from .close_watch import CloseWatch, can_watch
from .control_mount import ControlOperations, control_dir
from .fuse_ops import HANDLELESS, VfsOperations
from .invalidator import Invalidator
from .mounts import MountRecord, register, unregister
from .settler import Settler
from .workspace import Workspace, WorkspaceOptions

__all__ = ["MountOptions", "serve", "main"]

log = logging.getLogger(__name__)


@dataclass
class MountOptions:
    source: str
    mountpoint: str
    workspace: WorkspaceOptions = field(default_factory=WorkspaceOptions)
    allow_other: bool = False
    debug: bool = False


def fuse_options(opts: MountOptions) -> set[str]:
    options = set(pyfuse3.default_options)  # default_permissions: the kernel checks modes
    options.add("fsname=vfs")
    options.add("subtype=vfs")
    if opts.allow_other:
        options.add("allow_other")
    if opts.debug:
        options.add("debug")
    return options


def serve(opts: MountOptions, ready=None, on_workspace=None) -> int:
    """Mount and serve until told to stop. `ready(msg)` is called once with 'ok' or 'error: ...'.

    `on_workspace(ws)` (for in-process mounts) receives the workspace before mounting.
    """
    report = ready or (lambda msg: None)
    try:
        ws = Workspace.open(opts.source, opts.workspace, opts.mountpoint)
    except Exception as exc:  # any failure to open is reported to the waiting parent, then raised
        report(f"error: {exc}")
        raise
    if on_workspace is not None:
        on_workspace(ws)
    ctl_dir = control_dir() if _kernel_opens(ws.options.kernel_opens, ws.source) else None
    if ctl_dir is not None:
        ws.log_pending_writes()
    if ctl_dir is None:
        ops = VfsOperations(ws.session, ws.control)
    else:
        ops = VfsOperations(ws.session, control_link=os.fsencode(ctl_dir))
    mounted = False
    try:
        pyfuse3.init(ops, opts.mountpoint, fuse_options(opts))
        mounted = True
        if ctl_dir is not None:
            _init_control(ws, ctl_dir, opts)
    except Exception as exc:
        report(f"error: cannot mount {opts.mountpoint}: {exc}")  # the reason first: closing may fail too
        if mounted:
            pyfuse3.close(unmount=True)
        _remove_dir(ctl_dir)
        ws.close()
        return 1
    invalidator = Invalidator()
    invalidator.start()
    ws.session.invalidator = invalidator
    settler = Settler(ws.session.settle).start() if ctl_dir is not None else None
    ws.session.settler = settler
    mountpoint = os.path.abspath(opts.mountpoint)
    ws.session.mount_path = mountpoint
    close_watch = CloseWatch(mountpoint, ws.session.closed, ws.session.lock).start() if ctl_dir is not None else None
    ws.session.close_watch = close_watch
    register(MountRecord(os.getpid(), ws.source, mountpoint, str(ws.state_dir), time.time(),
                         opts.workspace.rev))
    clean = False
    try:
        trio.run(_main, ws, report)
        clean = True
    finally:
        ws.session.invalidator = None
        invalidator.stop()
        ws.session.settler = None
        if settler is not None:
            settler.stop()
        ws.session.close_watch = None
        if close_watch is not None:
            close_watch.stop()
        try:
            ws.before_unmount()
        finally:
            pyfuse3.close(unmount=True)
            _remove_dir(ctl_dir)
            ws.close(clean=clean)
            unregister(mountpoint)
    return 0


def _kernel_opens(setting: bool | str, source: str) -> bool:
    """Resolve the `kernel_opens` setting: "auto" is on where the pyfuse3 is patched (level 2)
    and closes can be watched (vfs.close_watch; root), so each close ends a version."""
    if not HANDLELESS:
        if setting is True:
            log.warning("kernel_opens needs the pyfuse3 that scripts/setup builds (patch level 2)")
        return False
    return can_watch(source) if setting == "auto" else bool(setting)


def _init_control(ws: Workspace, ctl_dir: Path, opts: MountOptions) -> None:
    """Mount the control tree on `ctl_dir` (vfs.control_mount)."""
    options = set(pyfuse3.default_options)
    options |= {"fsname=vfs-control", "subtype=vfs", "auto_unmount"}
    if opts.allow_other:
        options.add("allow_other")
    pyfuse3.init_control(ControlOperations(ws.control, ws.session.settle), str(ctl_dir), options)


def _remove_dir(path: Path | None) -> None:
    if path is not None:
        try:
            path.rmdir()
        except OSError:
            pass


async def _main(ws: Workspace, report) -> None:
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():
            nursery.start_soon(_stop_on_signal, nursery, ws)
        ws.start_background(nursery)
        report("ok")
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(nursery: trio.Nursery, ws: Workspace) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for _ in signals:
            log.info("signal received: unmounting")
            # A blocked `.vfs/events` read would keep the FUSE loop from returning.
            await ws.control.drain_streams()
            pyfuse3.terminate()
            return


class InProcessMount:
    """A mount served by a thread of this process (tests, notebooks): `ws.session` is live.

    pyfuse3 allows one mount per process.  `stop()` unmounts and joins the thread.
    """

    def __init__(self, opts: MountOptions) -> None:
        self.opts = opts
        self.ws: Workspace | None = None
        self._ready = threading.Event()
        self._message = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vfs-mount", daemon=True)

    def _run(self) -> None:
        def ready(msg: str) -> None:
            self._message = msg
            self._ready.set()

        def got(ws: Workspace) -> None:
            self.ws = ws
        try:
            serve(self.opts, ready, got)
        except BaseException as exc:  # surfaced to the starting thread
            self._error = exc
            self._ready.set()

    def start(self, timeout: float = 30.0) -> "InProcessMount":
        self._thread.start()
        if not self._ready.wait(timeout) or self._message != "ok":
            raise RuntimeError(f"in-process mount failed: {self._message or self._error}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            async def stop() -> None:
                await self.ws.control.drain_streams()
                pyfuse3.terminate()
            trio.from_thread.run(stop, trio_token=pyfuse3.trio_token)
            self._thread.join(30)


def main(argv: list[str] | None = None) -> int:
    """`python -m vfs.daemon` — the detached daemon process `vfs mount` starts."""
    p = argparse.ArgumentParser(prog="vfs-daemon")
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--options-json", default="{}")
    args = p.parse_args(argv)
    import json

    raw = json.loads(args.options_json)
    opts = MountOptions(args.source, args.mountpoint,
                        WorkspaceOptions(**raw.get("workspace", {})),
                        allow_other=raw.get("allow_other", False), debug=raw.get("debug", False))
    logging.basicConfig(level=logging.DEBUG if opts.debug else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ready_file = os.fdopen(args.ready_fd, "w") if args.ready_fd is not None else None

    def ready(msg: str) -> None:
        nonlocal ready_file
        if ready_file is not None:
            try:
                ready_file.write(msg + "\n")
                ready_file.close()
            except OSError:
                pass
            ready_file = None

    try:
        return serve(opts, ready)
    except Exception as exc:
        log.exception("daemon failed")
        ready(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
