"""The PNG charts of `herd bench report` (matplotlib, imported only when drawing)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from llamaherd.bench import references
from llamaherd.errors import UsageError
from llamaherd.store import Run

CHARTS = {
    "quality_vs_speed": "HumanEval+ vs generation speed",
    "concurrency": "Tokens/s vs parallel streams",
    "speed_history": "Generation speed over time",
}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "herd bench report draws charts with matplotlib: pip install 'llamaherd[bench]'"
        ) from None
    return plt


def chart_quality_vs_speed(quality: list[Run], speeds: list[Run], path: Path) -> Path:
    plt = _pyplot()
    speed_of = {(r.model, r.endpoint): r.gen_tps for r in speeds}
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    points = [
        (speed_of[(r.model, r.endpoint)], (r.plus_pass or 0) * 100, r.label)
        for r in quality
        if speed_of.get((r.model, r.endpoint))
    ]
    for x, y, label in points:
        ax.scatter([x], [y], s=50)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    for value, name, label_y in _reference_lines():
        ax.axhline(value, linestyle=":", linewidth=0.8, color="grey")
        ax.annotate(
            name,
            (1, label_y),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=6,
            color="grey",
        )
    if not points:
        ax.text(0.5, 0.5, "no model has both a speed and a HumanEval+ result yet",
                transform=ax.transAxes, ha="center", fontsize=9)  # fmt: skip
    ax.set_xlabel("generation tokens/s (one stream, median)")
    ax.set_ylabel("HumanEval+ pass@1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(CHARTS["quality_vs_speed"] + " (dotted: published proprietary models)")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def _reference_lines(spacing: float = 2.4) -> list[tuple[float, str, float]]:
    """Published proprietary HumanEval+ scores as (value, names, label height): equal
    scores share one line, and labels are pushed apart so none overlap."""
    names: dict[float, list[str]] = {}
    for ref in references.references():
        if ref.kind == "proprietary" and ref.humaneval_plus is not None:
            names.setdefault(ref.humaneval_plus, []).append(ref.name)
    lines = []
    label_y = 200.0
    for value in sorted(names, reverse=True):
        label_y = min(value, label_y - spacing)
        lines.append((value, " / ".join(names[value]), label_y))
    return lines


def chart_concurrency(speeds: list[Run], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ticks: set[int] = set()
    for run in speeds:
        levels = run.results.get("concurrency", [])
        if not levels:
            continue
        xs = [level["streams"] for level in levels]
        stats = [level["aggregate_tps"] for level in levels]
        ys = [s["median"] for s in stats]
        # Bars span the repetitions' range: how much to trust each point.
        spread = [
            [y - s["min"] for y, s in zip(ys, stats, strict=True)],
            [s["max"] - y for y, s in zip(ys, stats, strict=True)],
        ]
        slots = run.environment.get("slots")
        label = f"{run.label} ({slots} slots)" if slots else run.label
        ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=label)
        ticks.update(xs)
    if ticks:
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    ax.set_xlabel("parallel streams")
    ax.set_ylabel("total tokens/s (median)")
    ax.set_title(CHARTS["concurrency"])
    ax.grid(alpha=0.3)
    if speeds:
        ax.legend(fontsize=8)
    return _save(plt, fig, path)


def chart_history(history: list[Run], path: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    by_model: dict[str, list[Run]] = {}
    for run in history:
        by_model.setdefault(run.label, []).append(run)
    for label, runs in by_model.items():
        xs = [datetime.datetime.fromtimestamp(r.finished_at or r.started_at) for r in runs]
        ax.plot(xs, [r.gen_tps for r in runs], marker="o", label=label)
    ax.set_ylabel("generation tokens/s (median)")
    ax.set_title(CHARTS["speed_history"])
    ax.grid(alpha=0.3)
    if by_model:
        ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
