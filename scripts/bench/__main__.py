"""Every vfs benchmark in one run, side by side: `python scripts/bench [--quick]`.

Sections (each an existing script run as a subprocess, see `sections.py`):

- fs       `scripts/bench_fs`: pytest of real sdists, rg warm and cold over Django, imports,
           1,000 small files — vfs and bindfs against native disk;
- index    `scripts/bench_index.py`: cold/warm build, one-file reindex, defs vs rg, refs vs jedi
           (time and agreement), memory per 100k lines;
- gitsync  `scripts/bench_gitsync.py`: diff-branch commit of 1/10/100 changed files against
           repository size;
- ops      `scripts/bench_ops.py`: journal overhead, edit->visible latency through the control
           API, a 30-file batch, remount after kill -9, rename vs rg+sed, hot reload, memory on a
           100k-file tree, `vfs mount --rev`.

Writes, next to this file: `results.json` (every figure, every section's own JSON, the machine,
the load averages, the exact command), `results.md` (one table: benchmark, vfs, baseline, ratio,
target, met) and `chart.png` (ratios on a log axis with the targets marked).  Medians of repeated
runs throughout; ratios are the headline.

`--quick` (a few minutes on an idle machine): fewer repeats, bench_fs without its pytest suites
(more-itertools, attrs: the slowest part), jedi capped at 30 s, fewer journal entries, the 100k-file tree
with the index off only.  `--only SECTION ...` runs some sections.  Nothing is left mounted: each
script unmounts in `finally`, and whatever is still mounted under this run's work directory
afterwards is released with `fusermount3 -uz`.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = HERE.parent
REPO = SCRIPTS.parent


def _reexec_if_needed() -> None:
    """Run under a Python that can import the vfs daemon (the sections use this interpreter)."""
    def usable(python: str) -> bool:
        return subprocess.run([python, "-c", "import vfs.daemon"], cwd="/", stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0

    if usable(sys.executable):
        return
    if not os.environ.get("VFS_BENCH_ALL_REEXEC"):
        for cand in (REPO / ".venv" / "bin" / "python", Path("/tmp/venv/bin/python")):
            if cand.exists() and os.path.abspath(sys.executable) != str(cand) and usable(str(cand)):
                os.environ["VFS_BENCH_ALL_REEXEC"] = "1"
                os.execv(str(cand), [str(cand), str(HERE), *sys.argv[1:]])
    sys.exit("bench: no Python here can import vfs.daemon (tried this one, the repo's .venv and /tmp/venv); "
             "run scripts/setup first")


_reexec_if_needed()

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, str(HERE))
sys.path.insert(0, str(SCRIPTS))

import benchlib as bl  # noqa: E402
import report  # noqa: E402
from sections import SECTIONS, run_section  # noqa: E402


def mounted_under(root: Path) -> list[str]:
    """Mount points at or below `root` (from /proc/self/mountinfo)."""
    prefix = str(root.resolve()) + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point.startswith(prefix):
                out.append(point)
    return out


def release_leftovers(work: Path) -> list[str]:
    """Lazily unmount whatever a section left mounted under our work directory; the list."""
    left = mounted_under(work)
    for point in sorted(left, key=len, reverse=True):
        bl.log(f"WARNING: {point} was left mounted; releasing it (fusermount3 -uz)")
        subprocess.run(["fusermount3", "-uz", point], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return left


def machine(load_start: tuple, load_end: tuple) -> dict:
    facts = bl.machine_facts()
    facts["loadavg_start"] = [round(x, 2) for x in load_start]
    facts["loadavg_end"] = [round(x, 2) for x in load_end]
    return facts


def fmt_load(v) -> str:
    return "/".join(f"{x:.1f}" for x in v)


def render_markdown(meta: dict, rows: list[report.Row], sections: dict) -> str:
    m = meta["machine"]
    out = [
        "# vfs benchmarks",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`" + (" (quick)" if meta["quick"] else ""),
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}, {m['mem_total']} RAM, Python {m['python']}",
        f"- load average (1/5/15 min): {fmt_load(m['loadavg_start'])} at start, {fmt_load(m['loadavg_end'])} at end",
        f"- wall time: {meta['wall_s'] / 60:.1f} min",
        *([f"- table and chart redone on {meta['rendered']['date']} from the stored results "
           f"(`{meta['rendered']['command']}`); the figures are the run's"] if meta.get("rendered") else []),
        "",
        "Medians of repeated runs; ratio = vfs / baseline (< 1: vfs is faster or smaller). A target is an upper "
        "bound on the ratio (×) or on the vfs figure itself; `met` compares the median with it.",
        "",
        report.markdown(rows),
        "",
        "## Sections",
        "",
    ]
    for name, s in sections.items():
        line = f"- **{name}**: `{' '.join(shlex.quote(a) for a in s['command'])}` — {s['wall_s'] / 60:.1f} min, " \
               f"load {fmt_load(s['loadavg']['start'])} → {fmt_load(s['loadavg']['end'])}"
        if "error" in s:
            line += f" — **error**: {s['error']}"
        out.append(line)
    notes = meta.get("notes") or []
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def section_rows(name: str, res: dict, quick: bool) -> list[report.Row]:
    """The rows of one section's result (its data, or an error row)."""
    section = next(s for s in SECTIONS if s.name == name)
    rows: list[report.Row] = []
    if "data" in res:
        try:
            rows += section.rows(res["data"], quick)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            rows.append(report.Row(name, "(results)", None, "s",
                                   error=f"could not read the section's JSON: {type(exc).__name__}: {exc}"))
    if "error" in res:
        rows.append(report.Row(name, "(section)", None, "s", error=res["error"]))
    return rows


def write_outputs(meta: dict, sections: dict, out_dir: Path) -> str:
    """results.json, results.md and chart.png in `out_dir` from the sections' results; the Markdown."""
    rows = [r for name, res in sections.items() for r in section_rows(name, res, meta["quick"])]
    meta = {k: v for k, v in meta.items() if k not in ("rows", "sections", "chart")}
    out_dir.mkdir(parents=True, exist_ok=True)
    chart_path = out_dir / "chart.png"
    m = meta["machine"]
    try:
        report.chart(rows, chart_path, f"vfs benchmarks {meta['date']} — {meta['command']} — {m['nproc']} CPUs, "
                                       f"Linux {m['kernel']}, load {fmt_load(m['loadavg_start'])} → "
                                       f"{fmt_load(m['loadavg_end'])}")
        meta["chart"] = str(chart_path)
    except ImportError as exc:
        meta["notes"] = [*meta["notes"], f"no chart: {exc} (pip install matplotlib; it is in the test extra)"]
    md = render_markdown(meta, rows, sections)
    bl.write_json(out_dir / "results.json", {**meta, "rows": [r.to_json() for r in rows], "sections": sections})
    (out_dir / "results.md").write_text(md)
    return md


def main(argv: list[str] | None = None) -> int:
    names = [s.name for s in SECTIONS]
    p = argparse.ArgumentParser(prog="python scripts/bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few minutes: fewer repeats, smaller workloads")
    p.add_argument("--only", nargs="+", choices=names, metavar="SECTION", help=f"run only these ({', '.join(names)})")
    p.add_argument("--out-dir", type=Path, default=HERE, help="where results.json/.md and chart.png go")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                   help="run nothing: redo the table and the chart from an earlier results.json")
    args = p.parse_args(argv)
    command = "python scripts/bench" + "".join(" " + shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    if args.render:
        old = json.loads(args.render.read_text())
        old["rendered"] = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command}
        md = write_outputs(old, old["sections"], args.out_dir)
        print(md)
        return 0
    bl.install_signal_handlers()
    load0 = os.getloadavg()
    t0 = time.monotonic()
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command, "quick": args.quick,
            "python": sys.executable, "cwd": os.getcwd()}
    work = Path(tempfile.mkdtemp(prefix="vfs-bench-all-"))
    sections: dict = {}
    notes: list[str] = []
    if args.quick:
        notes.append("quick: bench_fs with --quick and without the pytest suites (the full run has them); "
                     "bench_index without the parser comparison and with jedi capped at 30 s; gitsync at 3,000 "
                     "and 6,000 files; ops with fewer repeats, 3,000 journal entries for the crash remount "
                     "(10,000 in the full run) and the 100k-file tree with the index off only.")
    try:
        for section in SECTIONS:
            if args.only and section.name not in args.only:
                continue
            sdir = work / section.name
            sdir.mkdir()
            try:
                res = run_section(section, args.quick, sdir, bl.log)
            finally:
                left = release_leftovers(sdir)
            if left:
                res["leftover_mounts"] = left
                notes.append(f"{section.name} left {len(left)} mount(s) behind; released with fusermount3 -uz")
            sections[section.name] = res
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta.update(wall_s=round(time.monotonic() - t0, 1), machine=machine(load0, os.getloadavg()), notes=notes)
    md = write_outputs(meta, sections, args.out_dir)
    print(md)
    print(f"results: {', '.join(str(args.out_dir / f) for f in ('results.json', 'results.md', 'chart.png'))}")
    return 0 if not any("error" in s for s in sections.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
