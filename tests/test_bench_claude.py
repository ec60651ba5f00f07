"""herd bench against Claude as the original setup did: HumanEval+ through the real Claude
Code CLI (`claude -p`), here pointed at herd's own gateway serving a demo model; the
published reference rows; the report's HumanEval and HumanEval+ rankings."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from conftest import run_herd
from test_bench import humaneval_data  # noqa: F401 (a fixture)
from test_claude import claude_binary, user_home  # noqa: F401 (user_home: a fixture)
from test_observability import metric_samples

from llamaherd.agents import launch as claude_launch
from llamaherd.agents.claude.agent import CLAUDE
from llamaherd.bench import claude_code, references, report
from llamaherd.bench.chat import Reply
from llamaherd.errors import HerdError
from llamaherd.store import Store


def test_claude_code_runs_each_task_through_the_gateway_into_the_report(
    make_herd,
    user_home: Path,  # noqa: F811 (the fixture imported above)
    humaneval_data: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    binary = claude_binary()
    # Claude Code's own system prompt and reminders are ~2k tokens with the demo model's
    # byte-level vocabulary, and an answer it continues past the token cap grows on that.
    long = '\n[models.long]\nfile = "dense.gguf"\nctx = 16384\nparallel = 1\n'
    config = make_herd(f'{long}\n[claude]\nbinary = "{binary}"\n')
    # Claude Code as a user would have pointed it at herd (the variables `herd claude`
    # sets); `opus` then names the long profile, as ANTHROPIC_DEFAULT_OPUS_MODEL says.
    variables = claude_launch.herd_environment(CLAUDE, config, "long")
    env = {**variables, "HUMANEVAL_OVERRIDE_PATH": str(humaneval_data)}
    herd = ["--config", str(config.path)]
    assert run_herd(*herd, "up", "long").returncode == 0
    key = ("herd_endpoint_requests_total", (("endpoint", "/v1/messages"), ("model", "long")))
    before = metric_samples(config.server.api_url).get(key, 0)

    result = run_herd(
        *herd, "bench", "humaneval", "--via", "claude-code", "--model", "opus",
        "--limit", "2", "--max-tokens", "16", "--json", cwd=tmp_path, **env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = json.loads(result.stdout)
    assert run["status"] == "done"
    assert (run["model"], run["label"]) == ("opus", "claude-code:opus")
    assert run["endpoint"] == "claude-code"
    assert run["results"]["tasks"] == 2 and run["settings"]["max_tokens"] == 16
    assert run["environment"]["claude_code"] and run["environment"]["gpus"] is None
    # Each task was a Claude Code run whose requests reached the gateway and were answered
    # by the demo model (Claude Code may continue an answer cut off at the token cap with
    # another request, so at least one request per task).
    assert metric_samples(config.server.api_url)[key] - before >= 2
    lines = Path(run["results"]["samples"]).read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    assert sorted(s["task_id"] for s in samples) == ["HumanEval/0", "HumanEval/1"]
    # An answer Claude Code gave up on at the cap comes back as an error, not text: it is
    # scored as cut off (and fails), the run goes on.
    for sample in samples:
        assert sample["completion_tokens"] > 0, sample
        assert sample["answer"] or sample["finish_reason"] == "length", sample
    assert run["results"]["cut_off"] == sum(s["finish_reason"] == "length" for s in samples)

    written = run_herd("bench", "report", "--out", str(tmp_path / "report"), "--json")
    assert written.returncode == 0, written.stderr
    text = Path(json.loads(written.stdout)["report"]).read_text()
    version = run["environment"]["claude_code"]
    assert "| claude-code:opus (opus) | 0.0% | 0.0% | 2/164 | 16 |" in text
    assert f"Claude Code {version}" in text


def test_missing_claude_code_is_exit_2_with_how_to_install(tmp_path: Path) -> None:
    path = tmp_path / "herd.toml"
    path.write_text('[models.a]\nfile = "a.gguf"\n')
    result = run_herd(
        "--config", str(path), "bench", "humaneval", "--via", "claude-code", "--model", "opus",
        PATH=str(Path(sys.executable).parent),
    )  # fmt: skip
    assert result.returncode == 2
    assert "--via claude-code" in result.stderr
    assert "npm install -g @anthropic-ai/claude-code" in result.stderr
    no_model = run_herd("--config", str(path), "bench", "humaneval", "--via", "claude-code")
    assert no_model.returncode == 2 and "--via claude-code needs --model" in no_model.stderr
    both = run_herd(
        "--config", str(path), "bench", "humaneval", "--via", "claude-code",
        "--endpoint", "http://127.0.0.1:9/v1", "--model", "m",
    )  # fmt: skip
    assert both.returncode == 2 and "give one of them" in both.stderr


def fake_claude(folder: Path, answer: dict, code: int = 0) -> Path:
    """A `claude` that prints one `--output-format json` result: for what the real one does
    only now and then (give up at the token cap) or only with a bad login."""
    (folder / "answer.json").write_text(json.dumps(answer))
    script = folder / "claude"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\ncat {folder}/answer.json\nexit {code}\n")
    script.chmod(0o755)
    return script


def ask(binary: Path) -> Reply:
    target = claude_code.target("opus", binary, {})
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    return asyncio.run(claude_code.ask(target, messages, max_tokens=16))


def test_claude_code_answers_errors_and_cut_offs_are_told_apart(tmp_path: Path) -> None:
    usage = {"input_tokens": 900, "output_tokens": 64}
    reply = ask(fake_claude(tmp_path, {"is_error": False, "result": "def f(): pass",
                                       "stop_reason": "end_turn", "usage": usage}))  # fmt: skip
    assert (reply.content, reply.finish_reason, reply.generated) == ("def f(): pass", "stop", 64)
    # What Claude Code prints when it gave up on an answer at CLAUDE_CODE_MAX_OUTPUT_TOKENS.
    over = "API Error: Claude's response exceeded the 16 output token maximum. To configure..."
    cut = ask(fake_claude(tmp_path, {"is_error": True, "result": over, "usage": usage}, 1))
    assert (cut.content, cut.finish_reason, cut.generated) == ("", "length", 64)
    login = {"is_error": True, "result": "Invalid API key · Please run /login"}
    with pytest.raises(HerdError, match="claude -p --model opus failed .*Invalid API key"):
        ask(fake_claude(tmp_path, login, 1))


# -- published references and the rankings ------------------------------------------------

# The original setup's reference-scores.json, row by row: (HumanEval, HumanEval+).
ORIGINAL_REFERENCES = {
    "Claude Opus 4.5": (94.2, None),
    "GPT-5.2 Codex": (91.7, None),
    "o1-preview (Sep 2024)": (96.3, 89.0),
    # The original gave index.dev's HumanEval with the leaderboard's HumanEval+ in one
    # row; here each figure is its own row, with its own source.
    "Claude 3.5 Sonnet (index.dev)": (92.0, None),
    "Claude 3.5 Sonnet (Jun 2024)": (87.2, 81.7),
    "GPT-4o (index.dev)": (90.2, None),
    "GPT-4o (Aug 2024)": (92.7, 87.2),
    "DeepSeek-V3": (None, 86.6),
    "GPT-4 Turbo (Apr 2024)": (90.2, 86.6),
    "Qwen2.5-Coder-32B-Instruct": (None, 87.2),
    "Codestral 25.01": (86.6, None),
    "GLM-4.7 (full, not Flash)": (87.0, None),
    "Gemini 1.5 Pro": (84.1, None),
    "Llama 3.1 405B": (82.0, None),
    "Qwen3-Coder-Next (FP16, official)": (94.1, None),
    "GPT-OSS 120B (official)": (88.3, None),
    "GLM-4.7 Flash (no published score)": (None, None),  # the original: "official"
}


def test_reference_rows_are_the_originals_each_with_its_source() -> None:
    refs = {ref.name: ref for ref in references.references()}
    for name, scores in ORIGINAL_REFERENCES.items():
        assert name in refs, name
        assert (refs[name].humaneval, refs[name].humaneval_plus) == scores, name
    # The original's local Claude results, thinking too (its README's table).
    thinking = refs["Claude Opus 4.6 (thinking) (original setup)"]
    assert (thinking.humaneval, thinking.humaneval_plus) == (99.4, 93.9)
    sources = references.sources()
    for ref in refs.values():
        assert sources[ref.source]["title"] and sources[ref.source]["url"], ref.name

    def matched(*names: str) -> set[str]:
        return {ref.name for ref in references.matching(*names)}

    # 94.2 is Opus 4.5's; 87.0 is the full GLM-4.7's, never GLM-4.7 Flash's (no published
    # score: a Flash run is compared with nothing published).
    assert "Claude Opus 4.5" in matched("claude-opus-4.5") and not any(
        ref.humaneval == 94.2 for ref in references.matching("Claude Opus 4.6")
    )
    flash = references.matching("glm-flash-q4", "GLM-4.7 Flash Q4_K_M")
    assert "GLM-4.7 (full, not Flash)" not in {ref.name for ref in flash}
    assert all(ref.humaneval != 87.0 for ref in flash)
    assert "GLM-4.7 (full, not Flash)" in matched("glm-4.7", "GLM-4.7 UD-Q2_K_XL")
    assert "GPT-4o" not in {n.split(" (")[0] for n in matched("gpt-4o-mini")}


def test_report_ranks_runs_among_the_published_scores(tmp_path: Path) -> None:
    store = Store()
    run_id = store.start(
        "humaneval", "glm-flash-q4", label="GLM-4.7 Flash Q4_K_M", endpoint=None,
        environment={}, settings={"max_tokens": 4096},
    )  # fmt: skip
    store.finish(run_id, {"tasks": 164}, base_pass=0.95, plus_pass=0.5)
    parts = report.tables(store.runs("speed"), report.latest(store.runs("humaneval")))
    local = "GLM-4.7 Flash Q4_K_M (glm-flash-q4)"
    for key, score, metric in (("ranking", 95.0, "humaneval"), ("ranking_plus", 50.0, "plus")):
        table = parts[key]
        assert [row[0] for row in table.rows] == [str(n) for n in range(1, len(table.rows) + 1)]
        values = [float(row[2].rstrip("%")) for row in table.rows]
        assert values == sorted(values, reverse=True)
        (mine,) = [row for row in table.rows if row[1] == local]
        assert mine[2] == f"{score:.1f}%" and mine[3].startswith("measured here (164/164 tasks)")
        # Every reference with that figure is ranked, and none without it.
        field = "humaneval" if metric == "humaneval" else "humaneval_plus"
        published = [r for r in references.references() if getattr(r, field) is not None]
        assert len(table.rows) == len(published) + 1
    base = [row[1] for row in parts["ranking"].rows]
    # 95.0 sits below o1-preview's 96.3 and above Claude Opus 4.5's 94.2.
    assert base.index("o1-preview (Sep 2024)") < base.index(local) < base.index("Claude Opus 4.5")
    assert "Claude Opus 4.5" not in [row[1] for row in parts["ranking_plus"].rows]

    result = run_herd("bench", "report", "--out", str(tmp_path / "out"), "--html", "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    text = Path(written["report"]).read_text()
    assert "## HumanEval ranking" in text and "## HumanEval+ ranking" in text
    assert f"| {base.index(local) + 1} | {local} | 95.0% | measured here" in text
    assert "<h2>HumanEval+ ranking</h2>" in Path(written["html"]).read_text()
