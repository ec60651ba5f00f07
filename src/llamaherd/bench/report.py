"""`herd bench report`: REPORT.md, PNG charts and an optional single-page HTML, all from
the stored runs (nothing here measures anything).

Tables are built once as rows (`Table`) and rendered to Markdown or HTML, so the two
formats cannot disagree. The CLI's `--json`-less output of `bench speed` and
`bench humaneval` uses the same tables.
"""

from __future__ import annotations

import base64
import datetime
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaherd.bench import references
from llamaherd.bench.charts import (
    CHARTS,
    chart_concurrency,
    chart_history,
    chart_quality_vs_speed,
)
from llamaherd.bench.target import describe
from llamaherd.errors import UsageError
from llamaherd.store import Run, Store

DASH = "—"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""
    empty: str = "No results yet."

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.note:
            lines += [self.note, ""]
        if not self.rows:
            return "\n".join([*lines, f"_{self.empty}_", ""])
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("|" + "|".join("---" for _ in self.headers) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in self.rows]
        return "\n".join([*lines, ""])

    def html(self) -> str:
        parts = [f"<h2>{html.escape(self.title)}</h2>"]
        if self.note:
            parts.append(f"<p>{html.escape(self.note)}</p>")
        if not self.rows:
            return "\n".join([*parts, f"<p><em>{html.escape(self.empty)}</em></p>"])
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
            for row in self.rows
        )
        return "\n".join([*parts, f"<table><tr>{head}</tr>{body}</table>"])


# -- formatting ---------------------------------------------------------------------------


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{value * 100:.1f}%"


def _range(stat: dict[str, Any] | None) -> str:
    """'147 (142–151)': median with the range of the repetitions."""
    if not stat or stat.get("median") is None:
        return DASH
    if stat.get("n", 0) < 2:
        return _num(stat["median"])
    return f"{_num(stat['median'])} ({_num(stat['min'])}–{_num(stat['max'])})"


def _ms(seconds: float | None) -> str:
    return DASH if seconds is None else _num(seconds * 1000)


def _date(timestamp: float | None) -> str:
    if timestamp is None:
        return DASH
    return datetime.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M")


def _name(run: Run) -> str:
    return run.label if run.label == run.model else f"{run.label} ({run.model})"


def _tasks(run: Run) -> str:
    mini = " (Mini)" if run.settings.get("mini") else ""
    return f"{run.results.get('tasks', 0)}/164{mini}"


def latest(runs: list[Run]) -> list[Run]:
    """The newest finished run per model (a profile and an endpoint never merge)."""
    newest: dict[tuple[str, str | None], Run] = {}
    for run in runs:
        if run.status == "done":
            newest[(run.model, run.endpoint)] = run  # runs come oldest first
    return list(newest.values())


# -- tables -------------------------------------------------------------------------------


def speed_table(runs: list[Run]) -> Table:
    lengths: list[str] = []
    for run in runs:
        for p in run.results.get("prompt", []) + run.results.get("prompt_skipped", []):
            if str(p["requested"]) not in lengths:
                lengths.append(str(p["requested"]))
    table = Table(
        "Speed by model",
        ["model", "generation t/s", "TTFT ms", *(f"prompt t/s @{n}" for n in lengths)]
        + ["measured on", "date"],
        note="Median of the repetitions, range in brackets. One stream; prompt processing "
        "at each prompt size (tokens; @ctx: near the context size).",
    )
    for run in runs:
        gen = run.results.get("generation", {})
        prompt = {str(p["requested"]): p for p in run.results.get("prompt", [])}
        skipped = {str(p["requested"]): p for p in run.results.get("prompt_skipped", [])}
        cells = []
        for n in lengths:
            if n in prompt:
                cells.append(f"{_range(prompt[n]['tps'])} [{prompt[n]['tokens']}]")
            else:
                cells.append(f"skipped: {skipped[n]['reason']}" if n in skipped else DASH)
        ttft = (gen.get("ttft_s") or {}).get("median")
        table.rows.append(
            [_name(run), _range(gen.get("tps")), _ms(ttft), *cells]
            + [describe(run.environment), _date(run.finished_at)]
        )
    return table


def concurrency_table(runs: list[Run]) -> Table:
    table = Table(
        "Speed by concurrency",
        ["model", "streams", "total t/s", "per stream t/s", "TTFT p50 ms", "TPOT p50/p99 ms"]
        + ["ITL p50/p99 ms"],
        note="All streams start together and generate the same number of tokens. total: "
        "tokens all streams received per second of wall time; TPOT: time per output "
        "token after the first, per request; ITL: gap between two chunks as the client "
        "sees them.",
    )
    for run in runs:
        for level in run.results.get("concurrency", []):
            tpot, itl = level["tpot_ms"], level["itl_ms"]
            table.rows.append(
                [
                    _name(run),
                    str(level["streams"]),
                    _range(level["aggregate_tps"]),
                    _range(level["per_stream_tps"]),
                    _ms(level["ttft_s"]["p50"]),
                    f"{_num(tpot['p50'], 2)} / {_num(tpot['p99'], 2)}",
                    f"{_num(itl['p50'], 2)} / {_num(itl['p99'], 2)}",
                ]
            )
    return table


def quality_table(runs: list[Run]) -> Table:
    table = Table(
        "Quality by model (EvalPlus HumanEval+)",
        ["model", "HumanEval", "HumanEval+", "tasks", "max tokens", "cut off", "measured on"]
        + ["date"],
        note="pass@1, greedy decoding. HumanEval+: passes the original tests and EvalPlus's "
        "extra ones. Fewer than 164 tasks (or the Mini set) is not comparable with "
        "published scores. cut off: answers that reached max tokens.",
    )
    for run in sorted(runs, key=lambda r: -(r.plus_pass or 0)):
        # A base model asked by raw completion: say so beside its name.
        completion = run.settings.get("mode") == "completion"
        table.rows.append(
            [
                f"{_name(run)}, completion" if completion else _name(run),
                _pct(run.base_pass),
                _pct(run.plus_pass),
                _tasks(run),
                str(run.settings.get("max_tokens", DASH)),
                str(run.results.get("cut_off", DASH)),
                describe(run.environment),
                _date(run.finished_at),
            ]
        )
    return table


def versus_table(runs: list[Run]) -> Table:
    table = Table(
        "vs published",
        ["model", "reference", "HumanEval", "Δ", "HumanEval+", "Δ", "source"],
        note="Δ: local minus reference, in percentage points. References are matched by "
        "name; see the sources below for how each was measured.",
        empty="No measured model matches a published reference.",
    )
    sources = references.sources()
    for run in runs:
        for ref in references.matching(run.model, run.label):
            local_base = run.base_pass * 100 if run.base_pass is not None else None
            local_plus = run.plus_pass * 100 if run.plus_pass is not None else None
            table.rows.append(
                [
                    _name(run),
                    ref.name,
                    _num(ref.humaneval),
                    _delta(local_base, ref.humaneval),
                    _num(ref.humaneval_plus),
                    _delta(local_plus, ref.humaneval_plus),
                    sources[ref.source]["title"].split(",")[0],
                ]
            )
    return table


def _delta(local: float | None, published: float | None) -> str:
    if local is None or published is None:
        return DASH
    return f"{local - published:+.1f}pp"


def references_table() -> Table:
    sources = references.sources()
    table = Table(
        "Published scores",
        ["model", "kind", "HumanEval", "HumanEval+", "source"],
        note="pass@1 in percent, from references.json in the package.",
    )
    for ref in sorted(references.references(), key=lambda r: -(r.humaneval_plus or 0)):
        source = sources[ref.source]
        where = source["title"] + (f" <{source['url']}>" if source.get("url") else "")
        table.rows.append(
            [ref.name, ref.kind, _num(ref.humaneval), _num(ref.humaneval_plus), where]
        )
    return table


def ranking_table(runs: list[Run], plus: bool) -> Table:
    """The original setup's rankings: the runs here and every published score on one
    scale, highest first (`plus`: HumanEval+, else HumanEval)."""
    metric = "HumanEval+" if plus else "HumanEval"
    table = Table(
        f"{metric} ranking",
        ["#", "model", metric, "source"],
        note=f"pass@1. Runs measured here and published scores together; a reference "
        f"without a {metric} figure is left out. A run over fewer than 164 tasks (or the "
        "Mini set) ranks on what it covered, not on the full benchmark.",
    )
    entries: list[tuple[float, str, str]] = []
    for run in runs:
        share = run.plus_pass if plus else run.base_pass
        if share is not None:
            where = f"measured here ({_tasks(run)} tasks), {describe(run.environment)}"
            entries.append((share * 100, _name(run), where))
    sources = references.sources()
    for ref in references.references():
        value = ref.humaneval_plus if plus else ref.humaneval
        if value is not None:
            entries.append((value, ref.name, sources[ref.source]["title"].split(",")[0]))
    # Stable: at equal scores the runs measured here come first.
    for rank, (value, name, source) in enumerate(sorted(entries, key=lambda e: -e[0]), 1):
        table.rows.append([str(rank), name, f"{value:.1f}%", source])
    return table


def history_table(runs: list[Run]) -> Table:
    table = Table(
        "Speed history",
        ["model", "date", "generation t/s", "llama.cpp", "run"],
        note="Every stored speed run, oldest first: a change after a llama.cpp update or a "
        "profile change shows here.",
    )
    for run in runs:
        gen = run.results.get("generation", {})
        build = (run.environment.get("llama_cpp") or DASH).removeprefix("version: ")
        table.rows.append(
            [_name(run), _date(run.finished_at), _range(gen.get("tps")), build, str(run.id)]
        )
    return table


# -- the report ---------------------------------------------------------------------------


def tables(speed_runs: list[Run], quality: list[Run]) -> dict[str, Table]:
    """Every table of the report; `quality` holds the latest HumanEval+ run per model."""
    speeds = latest(speed_runs)
    return {
        "quality": quality_table(quality),
        "versus": versus_table(quality),
        "ranking": ranking_table(quality, plus=False),
        "ranking_plus": ranking_table(quality, plus=True),
        "speed": speed_table(speeds),
        "concurrency": concurrency_table(speeds),
        "history": history_table(speed_runs),
        "references": references_table(),
    }


def write(store: Store, out: Path, *, html_page: bool = False) -> dict[str, Any]:
    """Write REPORT.md and charts/*.png into `out` (and report.html); returns the paths."""
    speed_runs = store.runs("speed")
    quality = latest(store.runs("humaneval"))
    speeds = latest(speed_runs)
    if not speed_runs and not quality:
        raise UsageError(
            f"no benchmark results in {store.path}; run `herd bench speed` or "
            "`herd bench humaneval` first"
        )
    out.mkdir(parents=True, exist_ok=True)
    charts = {
        "quality_vs_speed": chart_quality_vs_speed(
            quality, speeds, out / "charts" / "quality_vs_speed.png"
        ),
        "concurrency": chart_concurrency(speeds, out / "charts" / "concurrency.png"),
        "speed_history": chart_history(speed_runs, out / "charts" / "speed_history.png"),
    }
    parts = tables(speed_runs, quality)
    generated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    intro = (
        f"Generated by `herd bench report` on {generated} from {store.path}. "
        "Every figure was measured by `herd bench` and stored with the hardware, the "
        "llama.cpp build and the profile's command line it was measured with."
    )
    order = ["quality", "versus", "ranking", "ranking_plus", "speed", "concurrency", "history"]
    order.append("references")
    markdown = ["# Benchmark report", "", intro, ""]
    for key in order[:4]:
        markdown.append(parts[key].markdown())
    markdown += [f"![{CHARTS['quality_vs_speed']}](charts/quality_vs_speed.png)", ""]
    for key in order[4:6]:
        markdown.append(parts[key].markdown())
    markdown += [f"![{CHARTS['concurrency']}](charts/concurrency.png)", ""]
    markdown.append(parts["history"].markdown())
    markdown += [f"![{CHARTS['speed_history']}](charts/speed_history.png)", ""]
    markdown.append(parts["references"].markdown())
    report = out / "REPORT.md"
    report.write_text("\n".join(markdown))
    store.last_report_note.parent.mkdir(parents=True, exist_ok=True)
    store.last_report_note.write_text(str(report.resolve()))
    written: dict[str, Any] = {
        "report": str(report),
        "charts": {k: str(v) for k, v in charts.items()},
    }
    if html_page:
        page = out / "report.html"
        page.write_text(_html(parts, order, charts, intro))
        written["html"] = str(page)
    return written


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _html(parts: dict[str, Table], order: list[str], charts: dict[str, Path], intro: str) -> str:
    def image(key: str) -> str:
        data = base64.b64encode(charts[key].read_bytes()).decode()
        return f'<p><img alt="{html.escape(CHARTS[key])}" src="data:image/png;base64,{data}"></p>'

    after = {
        "ranking_plus": "quality_vs_speed",
        "concurrency": "concurrency",
        "history": "speed_history",
    }
    body = [f"<h1>Benchmark report</h1><p>{html.escape(intro)}</p>"]
    for key in order:
        body.append(parts[key].html())
        if key in after:
            body.append(image(after[key]))
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>herd benchmark report</title>'
        f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
