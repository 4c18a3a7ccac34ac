"""Rows of the combined benchmark report, and their Markdown table and chart.

A `Row` is one benchmark: the vfs figure, an optional baseline measured in the same run (the
headline is the ratio vfs / baseline), and an optional target — either on the ratio
(`target_ratio`, e.g. "vfs/native <= 1.10") or on the vfs figure itself (`target`, e.g.
"<= 1 ms").  Every target here is an upper bound.  Standard library only, except the chart
(matplotlib, imported when the chart is drawn).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

__all__ = ["Row", "fmt_value", "markdown", "chart"]


@dataclass
class Row:
    section: str
    name: str
    vfs: float | None
    unit: str  # "s" (seconds) or "B" (bytes)
    baseline: float | None = None
    baseline_label: str = ""  # what the baseline is: "native", "--no-journal", ...
    target: float | None = None  # upper bound on `vfs`, same unit
    target_ratio: float | None = None  # upper bound on `ratio`
    target_text: str = ""  # overrides the rendered target
    notes: str = ""
    error: str | None = None
    detail: dict = field(default_factory=dict)  # extra numbers for the JSON

    @property
    def ratio(self) -> float | None:
        if self.vfs is None or not self.baseline:
            return None
        return self.vfs / self.baseline

    @property
    def met(self) -> bool | None:
        if self.error is not None or self.vfs is None:
            return None
        if self.target_ratio is not None:
            return self.ratio is not None and self.ratio <= self.target_ratio
        if self.target is not None:
            return self.vfs <= self.target
        return None

    @property
    def chart_target(self) -> float | None:
        """The target as a ratio to the baseline (where the bar must end to meet it)."""
        if self.target_ratio is not None:
            return self.target_ratio
        if self.target is not None and self.baseline:
            return self.target / self.baseline
        return None

    def target_str(self) -> str:
        if self.target_text:
            return self.target_text
        if self.target_ratio is not None:
            return f"≤ {self.target_ratio:g}×"
        if self.target is not None:
            return "≤ " + fmt_value(self.target, self.unit)
        return "—"

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(ratio=self.ratio, met=self.met, target_str=self.target_str())
        return d


def fmt_value(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "s":
        if v < 0.001:
            return f"{v * 1e6:.0f} µs"
        if v < 1:
            return f"{v * 1e3:.3g} ms" if v < 0.01 else f"{v * 1e3:.0f} ms"
        return f"{v:.2f} s"
    if unit == "B":
        return f"{v / 2**20:.1f} MB"
    return f"{v:g} {unit}"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    if r >= 100:
        return f"{r:,.0f}×"
    return f"{r:.2g}×" if r < 0.1 else f"{r:.2f}×"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(rows: Sequence[Row]) -> str:
    head = ["benchmark", "vfs", "baseline", "ratio", "target", "met", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    section = None
    for r in rows:
        if r.section != section:
            section = r.section
            lines.append(f"| **{section}** |  |  |  |  |  |  |")
        if r.error is not None:
            cells = [r.name, "error", "—", "—", r.target_str(), "—", r.error.splitlines()[0][:200]]
        else:
            base = fmt_value(r.baseline, r.unit) + (f" ({r.baseline_label})" if r.baseline_label else "") \
                if r.baseline is not None else "—"
            met = {True: "yes", False: "**no**", None: "—"}[r.met]
            cells = [r.name, fmt_value(r.vfs, r.unit), base, fmt_ratio(r.ratio), r.target_str(), met, r.notes]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def chart(rows: Sequence[Row], path: Path, title: str) -> None:
    """One horizontal bar per benchmark on a log axis, drawn from 1× to the ratio vfs / baseline.

    Rows without a baseline but with an absolute target show vfs / target instead (hatched,
    labelled "÷ target").  Bar colour: green = target met, red = not met, grey = no target.  A
    black tick marks the target (for an absolute target: target / baseline, where the bar would
    have to end).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items: list[tuple[Row, float, float | None, bool]] = []  # row, value, target mark, against target
    for r in rows:
        if r.ratio is not None:
            items.append((r, r.ratio, r.chart_target, False))
        elif r.target is not None and r.vfs is not None:
            items.append((r, r.vfs / r.target, 1.0, True))
    if not items:
        return
    colour = {True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}
    fig, ax = plt.subplots(figsize=(13, 0.3 * len(items) + 1.6))
    y = list(range(len(items)))[::-1]
    values = [v for _, v, _, _ in items]
    ax.barh(y, [v - 1 for v in values], left=1, height=0.7, color=[colour[r.met] for r, *_ in items],
            hatch=["//" if t else "" for *_, t in items], edgecolor="white")
    marks = [m for _, _, m, _ in items]
    for yi, m in zip(y, marks):
        if m is not None and m > 0:
            ax.plot([m, m], [yi - 0.45, yi + 0.45], color="black", linewidth=2.5)
    for yi, v in zip(y, values):
        ax.annotate(fmt_ratio(v), (v, yi), xytext=(3 if v >= 1 else -3, 0), textcoords="offset points",
                    va="center", ha="left" if v >= 1 else "right", fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="#555555", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r.section}: {r.name}" + (" (÷ target)" if t else "") for r, *_, t in items], fontsize=7)
    ax.set_ylim(-0.7, len(items) - 0.3)
    ax.set_xlabel("vfs / baseline, log scale (< 1: vfs faster or smaller); black tick = target; "
                  "hatched: vfs / target where there is no baseline", fontsize=8)
    known = [*values, *(m for m in marks if m)]
    ax.set_xlim(10 ** math.floor(math.log10(min(known)) - 0.3), 10 ** math.ceil(math.log10(max(known)) + 0.3))
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_title(title, fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
