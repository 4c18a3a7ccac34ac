"""The sections of the combined benchmark: how each is run, and how its JSON becomes rows.

Each section is one existing benchmark script run as a subprocess with a JSON output file
(`scripts/bench_fs --out`, `scripts/bench_index.py --json`, `scripts/bench_gitsync.py --json`,
`scripts/bench_ops.py --json`), so a crash or a hang in one cannot take the others down and every
script stays usable on its own.  A section that fails leaves an error row; the others still run.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from report import Row

SCRIPTS = Path(__file__).resolve().parent.parent

__all__ = ["Section", "SECTIONS", "run_section"]


@dataclass
class Section:
    name: str
    argv: Callable[[bool, Path, Path], list[str]]  # (quick, out_json, workdir) -> command
    rows: Callable[[dict, bool], list[Row]]  # (data, quick) -> rows
    timeout: Callable[[bool], float]  # quick -> seconds


def run_section(section: Section, quick: bool, work: Path, log: Callable[[str], None]) -> dict:
    """Run one section's script; {command, returncode, wall_s, loadavg, data | error, stdout_tail}.

    The script's stdout (its own report) is kept (tail) in the result; its stderr (progress) goes
    to ours.  On timeout it gets SIGTERM (the scripts unmount in `finally` on SIGTERM), then
    SIGKILL after 90 s.
    """
    out_json = work / f"{section.name}.json"
    argv = section.argv(quick, out_json, work)
    load0 = os.getloadavg()
    log(f"section {section.name}: {' '.join(argv)}")
    t0 = time.monotonic()
    result: dict = {"command": argv}
    with open(work / f"{section.name}.stdout", "w+b") as stdout:
        proc = subprocess.Popen(argv, stdout=stdout, cwd=SCRIPTS.parent)
        try:
            proc.wait(timeout=section.timeout(quick))
        except subprocess.TimeoutExpired:
            log(f"section {section.name}: timeout after {section.timeout(quick):.0f}s; stopping it")
            result["error"] = f"timeout after {section.timeout(quick):.0f} s"
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        except BaseException:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        stdout.seek(0)
        text = stdout.read().decode("utf-8", "replace")
    result.update(returncode=proc.returncode, wall_s=round(time.monotonic() - t0, 1),
                  loadavg={"start": load0, "end": os.getloadavg()}, stdout_tail=text[-12000:])
    if proc.returncode != 0 and "error" not in result:
        result["error"] = f"exit code {proc.returncode}: " + (text.strip().splitlines() or [""])[-1][:500]
    if out_json.exists():
        try:
            result["data"] = json.loads(out_json.read_text())
        except ValueError as exc:
            result.setdefault("error", f"unreadable JSON from {section.name}: {exc}")
    elif "error" not in result:
        result["error"] = f"{section.name} wrote no JSON"
    log(f"section {section.name}: done in {result['wall_s']:.0f}s"
        + (f" — ERROR {result['error']}" if "error" in result else ""))
    return result


def med(samples: list[float]) -> float:
    return statistics.median(samples)


# --------------------------------------------------------------------------- fs
# bench_fs's quick run without the test suites (pytest of more-itertools and attrs: 10-40 s a run
# each here, times 3 file systems, times 4 runs); the full run has them.
FS_QUICK_ONLY = ["rg", "import", "small"]


def fs_argv(quick: bool, out: Path, work: Path) -> list[str]:
    argv = [sys.executable, str(SCRIPTS / "bench_fs"), "--out", str(out), "--workdir", str(work)]
    if quick:
        argv += ["--quick", "--only", *FS_QUICK_ONLY]
    return argv


# The same file-system benchmarks on handles (`kernel_opens=false`): the mode of machines where the
# default (auto) cannot use kernel opens (stock pyfuse3, or no fanotify without root).  Without the
# test suites: they were within 1.10x in both modes.
FS_HANDLES_ONLY = ["rg", "import", "small"]


def fs_handles_argv(quick: bool, out: Path, work: Path) -> list[str]:
    argv = [sys.executable, str(SCRIPTS / "bench_fs"), "--out", str(out), "--workdir", str(work),
            "--vfs-set", "kernel_opens=false", "--only", *FS_HANDLES_ONLY]
    return argv + (["--quick"] if quick else [])


def fs_handles_rows(data: dict, quick: bool) -> list[Row]:
    return fs_rows(data, quick, section="fs-handles", suffix=" (handles)")


def fs_rows(data: dict, quick: bool, section: str = "fs", suffix: str = "") -> list[Row]:
    rows = []
    for name, r in data.get("benchmarks", {}).items():
        name += suffix
        if "error" in r:
            rows.append(Row(section, name, None, "s", error=r["error"]))
            continue
        target = (r.get("target") or {}).get("vfs/native <=")
        notes = [f"bindfs {r['bindfs/native']:.2f}×" if r.get("bindfs/native") else "",
                 f"paired vfs/native {r['vfs/native paired']:.2f}×" if r.get("vfs/native paired") else "",
                 f"{len(r['vfs']['samples'])} runs",
                 "results differ between file systems" if r.get("check_mismatch") else ""]
        rows.append(Row(section, name, r["vfs"]["median"], "s", baseline=r["native"]["median"], baseline_label="native",
                        target_ratio=target, notes="; ".join(n for n in notes if n),
                        detail={"bindfs": r["bindfs"]["median"], "bindfs/native": r.get("bindfs/native"),
                                "vfs/native paired": r.get("vfs/native paired")}))
    return rows


# --------------------------------------------------------------------------- index
def index_argv(quick: bool, out: Path, work: Path) -> list[str]:
    argv = [sys.executable, str(SCRIPTS / "bench_index.py"), "--json", str(out)]
    if quick:
        argv += ["--skip-parsers", "--jedi-symbols", "10", "--jedi-budget", "30"]
    return argv


def index_rows(d: dict, quick: bool) -> list[Row]:
    b, rx = d["build"], d["reindex"]
    st = b["stats"]
    corpus = f"{d['corpus']}, {st['files']:,} files, {st['lines']:,} lines"
    rows = [
        Row("index", "cold build (2 workers)", b["cold_s"], "s", target=10.0, notes=corpus),
        Row("index", "warm rebuild from the cache", med(b["warm_s"]), "s", target=1.0,
            notes=f"median of {len(b['warm_s'])}"),
        Row("index", "one-file reindex p50, body edit", rx["body_p50_s"], "s", target=0.020,
            notes=f"p95 {rx['body_p95_s'] * 1e3:.1f} ms; {rx['edits']} edits"),
        Row("index", "one-file reindex p50, API edit", rx["api_p50_s"], "s",
            notes=f"p95 {rx['api_p95_s'] * 1e3:.1f} ms (re-resolves dependents)"),
    ]
    pa = d.get("parsers")
    if pa:
        rows.append(Row("index", "extraction: ast + facts vs libcst with scope metadata", pa["ast+extract"], "s",
                        baseline=pa["libcst+metadata"], baseline_label="libcst+metadata",
                        notes=(f"CPU time on {pa['files']} files / {pa['lines']:,} lines; "
                               f"{pa['lines_per_s']['ast+extract']:,.0f} vs "
                               f"{pa['lines_per_s']['libcst+metadata']:,.0f} lines/s")))
    dv = d["definitions_vs_rg"]
    rows.append(Row("index", "definitions(NAME) vs rg -w NAME", dv["ours_median_s"], "s",
                    baseline=dv["rg_median_s"], baseline_label="rg", notes=f"median of {dv['names']} names"))
    rj = d.get("references_vs_jedi")
    if rj:
        rows.append(Row("index", "references vs jedi get_references", rj["ours_total_s"], "s",
                        baseline=rj["jedi_total_s"], baseline_label="jedi",
                        notes=(f"{rj['symbols']} symbols (total time); agreement {100 * rj['agreement']:.1f} % of "
                               f"jedi's {rj['jedi_hits']} hits ({100 * rj['agreement_with_candidates']:.1f} % "
                               f"with name-only candidates)"),
                        detail={"agreement": rj["agreement"], "extra": rj["extra"], "missed": rj["missed"]}))
    m = d["memory"]
    rows.append(Row("index", "memory per 100k lines (RSS)", m["rss_per_100k_lines"], "B",
                    notes=f"tracemalloc {m['traced_per_100k_lines'] / 2**20:.1f} MB; {m['lines']:,} lines"))
    return rows


# --------------------------------------------------------------------------- gitsync
def gitsync_argv(quick: bool, out: Path, work: Path) -> list[str]:
    sizes = ["3000", "6000"] if quick else ["3000", "30000"]
    return [sys.executable, str(SCRIPTS / "bench_gitsync.py"), "--json", str(out), "--dir", str(work),
            "--sizes", *sizes, "--runs", "7" if quick else "15"]


def gitsync_rows(d: dict, quick: bool) -> list[Row]:
    sizes = sorted(d["sizes"], key=int)
    small, big = d["sizes"][sizes[0]], d["sizes"][sizes[-1]]
    n_small, n_big = int(sizes[0]), int(sizes[-1])
    rows = [Row("gitsync", f"diff-branch commit, 10 changed, {n_small:,}-file repo", med(small["commit_s"]["10"]), "s",
                target=0.050, notes=f"median of {small['runs']}")]
    for k in ("1", "10", "100"):
        rows.append(Row("gitsync", f"diff-branch commit, {k} changed, {n_big:,} vs {n_small:,} files",
                        med(big["commit_s"][k]), "s", baseline=med(small["commit_s"][k]),
                        baseline_label=f"{n_small:,} files", target_ratio=1.5,
                        target_text="flat (≤ 1.5×)", notes=f"median of {big['runs']}"))
    return rows


# --------------------------------------------------------------------------- ops
def ops_argv(quick: bool, out: Path, work: Path) -> list[str]:
    return [sys.executable, str(SCRIPTS / "bench_ops.py"), "--json", str(out), "--workdir", str(work)] \
        + (["--quick"] if quick else [])


def _journal_rows(j: dict) -> list[Row]:
    return [Row("ops", "1,000 small-file creates, journal vs --no-journal", j["journal"]["median"], "s",
                baseline=j["no-journal"]["median"], baseline_label="--no-journal",
                notes=(f"paired ratio {j['ratio_paired']:.2f}×; native {j['native']['median'] * 1e3:.0f} ms; "
                       f"{j['repeats']} runs"))]


def _edit_rows(e: dict) -> list[Row]:
    rows = []
    for key, label, target in (
            ("mounted_agent", "edit→visible: CodeAgent.mounted edit_file + read", 0.001),
            ("raw_batch", "edit→visible: write to .vfs/batch + read", 0.001),
            ("raw_batch_index_off", "edit→visible: write to .vfs/batch + read, index off", 0.001),
            ("local_agent", "edit→visible: CodeAgent.local (in-process)", 0.001),
            ("mount_file_edit", "edit→visible: plain read-replace-write through the mount", None)):
        if key not in e:
            continue
        rows.append(Row("ops", label, e[key]["median"], "s", baseline=e["native"]["median"],
                        baseline_label="same edit on native disk", target=target,
                        notes=(f"p95 {e[key]['p95'] * 1e3:.1f} ms; the edit call alone "
                               f"{e[key].get('edit_call_median', 0) * 1e3:.1f} ms; {e[key]['n']} edits")))
    return rows


def _batch_rows(b: dict) -> list[Row]:
    return [Row("ops", "30-file batch applied + visible", b["vfs"]["median"], "s",
                baseline=b["native"]["median"], baseline_label="30 edits on native disk", target=0.100,
                notes=f"p95 {b['vfs']['p95'] * 1e3:.0f} ms; {b['repeats']} batches")]


def _crash_rows(c: dict) -> list[Row]:
    return [Row("ops", f"remount after kill -9, {c['entries']:,} journal entries", c["remount_s"], "s",
                baseline=c["clean_mount_s"], baseline_label="clean first mount",
                notes=(f"{c['recovered']:,} changed paths recovered, {c['content_mismatches']} lost; "
                       f"`vfs mount` returned after {c['mount_cmd_s']:.2f} s"))]


def _rename_rows(r: dict) -> list[Row]:
    n = f"{r['repeats']} runs, {r['sed_files']} files changed"
    return [
        Row("ops", "rename in 30 files: .vfs/rename vs rg -l + sed -i + pytest", r["vfs_rename"]["median"], "s",
            baseline=r["sed_with_tests"]["median"], baseline_label="rg+sed+pytest", notes=n),
        Row("ops", "rename in 30 files: .vfs/rename + pytest vs rg -l + sed -i + pytest",
            r["vfs_with_tests"]["median"], "s", baseline=r["sed_with_tests"]["median"],
            baseline_label="rg+sed+pytest", notes=n),
        Row("ops", "rename in 30 files: .vfs/rename vs rg -l + sed -i (no tests)", r["vfs_rename"]["median"], "s",
            baseline=r["sed"]["median"], baseline_label="rg+sed",
            notes="rg+sed renames by word, blind to scopes; .vfs/rename is libcst, validated, atomic"),
    ]


def _hotreload_rows(h: dict) -> list[Row]:
    return [Row("ops", "hot reload: edit on mount → patched function live", h["hot_reload"]["median"], "s",
                baseline=h["restart_process"]["median"], baseline_label="restart the process",
                notes=(f"p95 {h['hot_reload']['p95'] * 1e3:.1f} ms; reload itself "
                       f"{h['reload_seconds']['median'] * 1e3:.1f} ms; {h['edits']} edits"))]


def _memory_rows(m: dict) -> list[Row]:
    rows = []
    for key, label in (("index_off", "index off"), ("index_on", "index on")):
        r = m.get(key)
        if r is None:
            continue
        if "error" in r:
            rows.append(Row("ops", f"100k-file tree, {label}", None, "s", error=r["error"]))
            continue
        notes = f"{m['files']:,} files, 100 a directory"
        if "index_ready_s" in r:
            notes += f"; index built {r['index_ready_s']:.1f} s after mount ({r['index']['files']:,} files)"
        rows.append(Row("ops", f"100k-file tree, {label}: mount ready", r["mount_ready_s"], "s", target=2.0,
                        notes=notes))
        after = "mount and index build" if "index_ready_s" in r else "mount"
        rows.append(Row("ops", f"100k-file tree, {label}: daemon RSS after {after}", r["rss_mount"], "B"))
        for step, what in (("clustered_1pct", "1 % read, 10 whole directories"),
                           ("random_1pct", "+1 % read, random over the tree"),
                           ("random_10pct", "+8 % more, random (10 % in all)")):
            st = r[f"memory_status_{step}"] or {}
            rows.append(Row("ops", f"100k-file tree, {label}: RSS after {what}", r[f"rss_{step}"], "B",
                            baseline=r["rss_mount"], baseline_label=f"after {after}",
                            notes=(f"+{r[f'kb_per_file_{step}']:.1f} kB per file read; "
                                   f"{st.get('nodes', 0):,} inodes, {st.get('clean_buffers', 0):,} buffers; "
                                   f"read in {r[f'touch_{step}_s']:.1f} s")))
    return rows


def _rev_rows(v: dict) -> list[Row]:
    return [Row("ops", f"vfs mount --rev of a {v['files']:,}-file repo + first cat", v["ready_and_cat"]["median"],
                "s", baseline=v["worktree_and_cat"]["median"], baseline_label="git worktree add + cat",
                notes=(f"mount {v['mount']['median']:.2f} s, first cat {v['first_cat']['median'] * 1e3:.0f} ms; "
                       f"{v['repeats']} runs"))]


OPS_ROWS: dict[str, Callable[[dict], list[Row]]] = {
    "journal": _journal_rows, "edit": _edit_rows, "batch": _batch_rows, "crash": _crash_rows,
    "rename": _rename_rows, "hotreload": _hotreload_rows, "memory": _memory_rows, "rev": _rev_rows,
}


def ops_rows(d: dict, quick: bool) -> list[Row]:
    """One measure's failure (or an unexpected shape of its JSON) is one error row; the rest stand."""
    rows: list[Row] = []
    for name, fn in OPS_ROWS.items():
        m = d["measures"].get(name)
        if m is None:
            continue
        try:
            if "error" in m:
                raise RuntimeError(m["error"])
            rows += fn(m)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, RuntimeError) as exc:
            rows.append(Row("ops", name, None, "s", error=str(exc) if isinstance(exc, RuntimeError)
                            else f"unexpected results: {type(exc).__name__}: {exc}"))
    return rows


SECTIONS = [
    Section("fs", fs_argv, fs_rows, lambda quick: 1800 if quick else 7200),
    Section("fs-handles", fs_handles_argv, fs_handles_rows, lambda quick: 1200 if quick else 3600),
    Section("index", index_argv, index_rows, lambda quick: 900 if quick else 3600),
    Section("gitsync", gitsync_argv, gitsync_rows, lambda quick: 300 if quick else 1200),
    Section("ops", ops_argv, ops_rows, lambda quick: 1200 if quick else 3600),
]
