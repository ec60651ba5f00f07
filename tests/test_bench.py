"""herd bench: speed against real llama-servers on the generated models, HumanEval+ end to
end on a handful of tasks, the scoring path proven on the canonical solutions, the report.

Kept small for CI: short prompts, a few tokens, two repetitions, 1-2 streams, 3 tasks.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_herd, server_key, write_config

from llamaherd import cli, control
from llamaherd.bench import humaneval, report, speed
from llamaherd.bench.target import Target, endpoint_target, herd_targets, prepare
from llamaherd.config import Config, parse_config
from llamaherd.errors import ConfigError, HerdError, UsageError
from llamaherd.runtime.process import free_port
from llamaherd.store import Store, latest_speeds

REPO = Path(__file__).resolve().parents[1]
FAST_SPEED = ["--prompt-lengths", "64,ctx", "--gen-tokens", "16", "--reps", "2"]
FAST_SPEED += ["--concurrency", "1,2"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="session")
def humaneval_data() -> Path:
    """The offline HumanEval+ copy: $HERD_TEST_HUMANEVAL_DATA, else <repo>/../shared/."""
    folder = Path(
        os.environ.get("HERD_TEST_HUMANEVAL_DATA") or REPO.parent / "shared/data/humanevalplus"
    )
    if not any(folder.glob("HumanEvalPlus-v*.jsonl*")):
        message = f"no HumanEval+ copy in {folder} (set HERD_TEST_HUMANEVAL_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def dataset(humaneval_data: Path) -> humaneval.Dataset:
    return humaneval.load_dataset(humaneval.data_file(humaneval_data, mini=False))


def stop(config: Config) -> None:
    control.down(control.connect(config), stop_daemon=True)


# -- speed --------------------------------------------------------------------------------


def test_bench_speed_measures_stores_and_herd_models_shows_it(
    tmp_path: Path, model_files: Path, llama_server: Path
) -> None:
    config_path = write_config(tmp_path, model_files, llama_server)
    config = ["--config", str(config_path)]
    try:
        result = run_herd(
            *config, "bench", "speed", "dense", "moe", "broken", *FAST_SPEED, "--json"
        )
        # The broken profile fails and says so; the others are measured all the same.
        assert result.returncode == 1
        assert "broken" in result.stderr and "Traceback" not in result.stderr
        runs = {run["model"]: run for run in json.loads(result.stdout)}
        assert set(runs) == {"dense", "moe"}
        for model, run in runs.items():
            figures = run["results"]
            assert figures["source"] == "server"  # llama-server's own timings
            assert figures["generation"]["tps"]["median"] > 0
            assert figures["generation"]["tps"]["n"] == 2
            assert run["gen_tps"] == figures["generation"]["tps"]["median"]
            short, near_ctx = figures["prompt"]
            assert 40 <= short["tokens"] <= 90  # calibrated on the model's own tokenizer
            assert 64 < near_ctx["tokens"] <= figures["ctx"]
            assert short["tps"]["median"] > 0 and near_ctx["tps"]["median"] > 0
            levels = [level["streams"] for level in figures["concurrency"]]
            assert levels == [1, 2]
            for level in figures["concurrency"]:
                assert level["aggregate_tps"]["median"] > 0
                assert level["tpot_ms"]["p50"] > 0
            assert str(model_files / f"{model}.gguf") in run["environment"]["argv"]
            assert run["environment"]["llama_cpp"]

        listed = json.loads(run_herd(*config, "models", "--json").stdout)
        speeds = {row["id"]: row["speed_tps"] for row in listed}
        assert speeds == {
            "dense": runs["dense"]["gen_tps"],
            "moe": runs["moe"]["gen_tps"],
            "broken": None,
        }
        table = run_herd(*config, "models").stdout
        assert f"{runs['dense']['gen_tps']:.0f} t/s" in table
        # The daemon's GET /models (what the picker shows) reads the same store.
        served = {m.id: m.speed_tps for m in control.connect().models()}
        assert served == speeds
    finally:
        stop(parse_config(config_path.read_text(), config_path))


def test_an_endpoint_is_measured_the_same_way_and_stored_apart(
    herd: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # llama-server itself is an OpenAI-compatible endpoint: reach it without herd's help.
    answer = control.up(herd, "dense")
    direct = answer.url + "/v1"
    monkeypatch.setenv("ENDPOINT_KEY", server_key(answer))  # the key herd started it with
    target = endpoint_target(direct, "dense", "ENDPOINT_KEY")
    settings = speed.SpeedSettings(prompt_lengths=(64, 0), gen_tokens=16, reps=1, concurrency=(1,))
    run = speed.run(target, settings, Store(), environment=lambda: prepare(None, target))
    assert run.endpoint == direct and run.gen_tps and run.gen_tps > 0
    assert run.environment["argv"] is None  # nothing is known about a remote server
    (skipped,) = run.results["prompt_skipped"]  # an endpoint's context is unknown
    assert skipped == {"requested": "ctx", "reason": "the context size is unknown"}
    assert latest_speeds() == {}  # never shown as a profile's speed


def test_bench_switches_back_to_the_model_that_was_serving(herd: Config) -> None:
    control.up(herd, "dense")
    result = run_herd(
        "--config", str(herd.path), "bench", "speed", "moe", "--prompt-lengths", "64",
        "--gen-tokens", "8", "--reps", "1", "--concurrency", "1", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["model"] == "moe"
    assert control.connect(herd).status().model == "dense"


def test_latest_finished_profile_run_is_the_speed_shown(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.sqlite")
    assert latest_speeds(store.path) == {}

    def speed_run(model: str, tps: float, endpoint: str | None = None) -> int:
        run_id = store.start(
            "speed", model, label=model, endpoint=endpoint, environment={}, settings={}
        )
        store.finish(run_id, {}, gen_tps=tps)
        return run_id

    speed_run("a", 10.0)
    speed_run("a", 12.5)
    speed_run("a", 99.0, endpoint="https://api.example.com/v1")  # not herd's profile
    failed = store.start("speed", "a", label="a", endpoint=None, environment={}, settings={})
    store.fail(failed, "crashed")
    assert latest_speeds(store.path) == {"a": 12.5}
    assert [r.status for r in store.runs("speed", "a", status=None)] == [
        "done",
        "done",
        "done",
        "failed",
    ]


# -- HumanEval+ ---------------------------------------------------------------------------


def test_canonical_solutions_pass_through_the_scoring_path(dataset: humaneval.Dataset) -> None:
    problems = humaneval.select(dataset, humaneval.HumanEvalSettings(limit=8))
    # Written the way a chat model answers, so extraction is part of what is proven.
    answers = {
        task: f"Here it is:\n```python\n{p['prompt']}{p['canonical_solution']}\n```\nDone."
        for task, p in problems.items()
    }
    solutions = {task: humaneval.extract(answers[task], p) for task, p in problems.items()}
    statuses = humaneval.score(problems, solutions, dataset.hash, parallel=2)
    assert humaneval.pass_rates(statuses) == (1.0, 1.0)

    # Each task given its neighbour's solution: the same path must fail them all.
    tasks = list(problems)
    swapped = {task: solutions[tasks[(i + 1) % len(tasks)]] for i, task in enumerate(tasks)}
    statuses = humaneval.score(problems, swapped, dataset.hash, parallel=2)
    assert humaneval.pass_rates(statuses) == (0.0, 0.0)


def test_mini_set_is_found_beside_the_full_one(humaneval_data: Path) -> None:
    mini = humaneval.data_file(humaneval_data, mini=True)
    assert mini is not None and "Mini" in mini.name
    assert len(humaneval.load_dataset(mini, mini=True).problems) == 164


BENCH_TABLE = """
[models.dense.bench]
system_prompt = "You write Python."
max_tokens = 24
"""


def test_bench_humaneval_end_to_end_on_three_tasks(
    tmp_path: Path, model_files: Path, llama_server: Path, humaneval_data: Path
) -> None:
    config_path = write_config(tmp_path, model_files, llama_server, BENCH_TABLE)
    config = ["--config", str(config_path)]
    env = {"HUMANEVAL_OVERRIDE_PATH": str(humaneval_data)}
    try:
        result = run_herd(*config, "bench", "humaneval", "dense", "--limit", "3", "--json", **env)
        assert result.returncode == 0, result.stderr
        (run,) = json.loads(result.stdout)
        assert run["status"] == "done" and run["model"] == "dense"
        # Random weights write no Python: zero, but scored on all three tasks.
        assert run["base_pass"] == 0.0 and run["plus_pass"] == 0.0
        assert run["results"]["tasks"] == 3
        assert set(run["results"]["statuses"]) == {"HumanEval/0", "HumanEval/1", "HumanEval/2"}
        assert run["settings"]["system_prompt"] == "You write Python."
        assert run["settings"]["max_tokens"] == 24
        samples = [
            json.loads(line) for line in Path(run["results"]["samples"]).read_text().splitlines()
        ]
        assert sorted(s["task_id"] for s in samples) == [
            "HumanEval/0",
            "HumanEval/1",
            "HumanEval/2",
        ]
        assert all(0 < s["completion_tokens"] <= 24 for s in samples)

        written = run_herd(*config, "bench", "report", "--out", str(tmp_path / "report"), "--json")
        assert written.returncode == 0, written.stderr
        text = Path(json.loads(written.stdout)["report"]).read_text()
        assert "| Tiny dense (dense) | 0.0% | 0.0% | 3/164 | 24 |" in text
    finally:
        stop(parse_config(config_path.read_text(), config_path))


class Interrupted(Exception):
    pass


def test_interrupted_humaneval_resumes_where_it_stopped(
    make_herd, dataset: humaneval.Dataset
) -> None:
    config = make_herd(BENCH_TABLE)
    (target,) = herd_targets(config, ["dense"], every=False)
    store = Store()
    settings = humaneval.HumanEvalSettings(limit=3)
    generated: list[int] = []

    def interrupt_after_first(phase: str, done: int, total: int) -> None:
        generated.append(done)
        if phase == "generate" and done == 1:
            raise Interrupted  # what Ctrl-C or a lost connection does mid-run

    with pytest.raises(Interrupted):
        humaneval.run(
            target,
            dataset,
            settings,
            store,
            environment=lambda: prepare(config, target),
            progress=interrupt_after_first,
        )
    (stopped,) = store.runs("humaneval", status="failed")
    generated.clear()
    run = humaneval.run(
        target,
        dataset,
        settings,
        store,
        environment=lambda: prepare(config, target),
        progress=lambda phase, done, total: generated.append(done) if phase == "generate" else None,
    )
    assert run.id == stopped.id and run.status == "done" and run.results["resumed"]
    assert generated[0] >= 1  # the first answer was kept, not asked again
    assert len(run.results["statuses"]) == 3
    lines = Path(run.results["samples"]).read_text().splitlines()
    assert len({json.loads(line)["task_id"] for line in lines}) == 3


def test_humaneval_asks_for_4096_tokens_unless_the_bench_table_says_otherwise(
    tmp_path: Path, dataset: humaneval.Dataset
) -> None:
    # The original setup sent 4096; EvalPlus's 768 cut reasoning models off mid-answer.
    text = '[models.plain]\nfile = "a.gguf"\n[models.short]\nfile = "a.gguf"\n'
    config = parse_config(text + "bench = { max_tokens = 24 }\n", tmp_path / "herd.toml")
    store = Store()

    def stop_before_asking(phase: str, done: int, total: int) -> None:
        raise Interrupted  # the run and its settings are stored by now

    for target in herd_targets(config, ["plain", "short"], every=False):
        with pytest.raises(Interrupted):
            humaneval.run(
                target,
                dataset,
                humaneval.HumanEvalSettings(limit=1),
                store,
                environment=dict,
                progress=stop_before_asking,
            )
    stopped = store.runs("humaneval", status="failed")
    asked = {run.model: run.settings["max_tokens"] for run in stopped}
    assert asked == {"plain": 4096, "short": 24}


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[models.bench-a]\nextends = "a"\n[models.bench-c]\nextends = "c"\n',
         ["bench-a", "bench-c"]),
        ("", ["a", "c"]),
    ],
)  # fmt: skip
def test_local_means_the_bench_profiles_else_every_profile(
    tmp_path: Path,
    humaneval_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    extra: str,
    expected: list[str],
) -> None:
    path = tmp_path / "herd.toml"
    ports = f"[server]\napi_port = {free_port()}\nport = {free_port()}\n"
    path.write_text(ports + '[models.a]\nfile = "a.gguf"\n[models.c]\nfile = "c.gguf"\n' + extra)
    (tmp_path / "models").mkdir()  # models_dir: beside herd.toml
    for name in ("a", "c"):
        (tmp_path / "models" / f"{name}.gguf").write_bytes(b"GGUF")  # none is skipped
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", str(humaneval_data))
    benchmarked: list[str] = []

    def record(target: Target, *args: object, **kwargs: object) -> None:
        benchmarked.append(target.model)
        raise HerdError("not run here")  # each target is tried; the command goes on

    monkeypatch.setattr(humaneval, "run", record)
    result = CliRunner().invoke(cli.cli, ["--config", str(path), "bench", "humaneval", "--local"])
    assert result.exit_code == 1, result.output
    assert benchmarked == expected


def test_every_profile_means_those_on_disk_and_the_others_are_named(
    tmp_path: Path, humaneval_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "herd.toml"
    ports = f"[server]\napi_port = {free_port()}\nport = {free_port()}\n"
    path.write_text(ports + '[models.a]\nfile = "a.gguf"\n[models.c]\nfile = "c.gguf"\n')
    (tmp_path / "models").mkdir()  # models_dir: beside herd.toml
    (tmp_path / "models" / "a.gguf").write_bytes(b"GGUF")  # c is still downloading
    monkeypatch.setenv("HUMANEVAL_OVERRIDE_PATH", str(humaneval_data))
    benchmarked: list[str] = []

    def record(target: Target, *args: object, **kwargs: object) -> None:
        benchmarked.append(target.model)
        raise HerdError("not run here")

    monkeypatch.setattr(humaneval, "run", record)
    runner = CliRunner()
    result = runner.invoke(cli.cli, ["--config", str(path), "bench", "humaneval", "--all"])
    assert benchmarked == ["a"], result.output
    assert "skipping c: " in result.output and "model file not found" in result.output
    (tmp_path / "models" / "a.gguf").unlink()
    result = runner.invoke(cli.cli, ["--config", str(path), "bench", "humaneval", "--all"])
    assert isinstance(result.exception, UsageError)  # exit 2 through herd's main()
    assert "every model file is missing" in str(result.exception)


# -- report, config, bad input ------------------------------------------------------------


def test_report_compares_with_published_scores_and_draws_charts(tmp_path: Path) -> None:
    store = Store()
    run_id = store.start(
        "humaneval", "glm-flash-q4", label="GLM-4.7 Flash Q4_K_M", endpoint=None,
        environment={}, settings={"max_tokens": 4096},
    )  # fmt: skip
    store.finish(run_id, {"tasks": 164}, base_pass=0.9, plus_pass=0.85)
    parts = report.tables(store.runs("speed"), report.latest(store.runs("humaneval")))
    rows = {row[1]: row for row in parts["versus"].rows}
    # GLM-4.7 Flash has no published score (87.0 is the full GLM-4.7's): nothing to
    # subtract. The original setup measured 87.8 / 83.5.
    assert rows["GLM-4.7 Flash (no published score)"][2:6] == ["—"] * 4
    assert rows["GLM-4.7 Flash Q4_K_M (original setup)"][3] == "+2.2pp"
    assert rows["GLM-4.7 Flash Q4_K_M (original setup)"][5] == "+1.5pp"

    result = run_herd("bench", "report", "--out", str(tmp_path / "out"), "--html", "--json")
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)
    for chart in written["charts"].values():
        assert Path(chart).read_bytes().startswith(PNG)
    assert (
        "| GLM-4.7 Flash Q4_K_M (glm-flash-q4) | 90.0% | 85.0% | 164/164 |"
        in Path(written["report"]).read_text()
    )
    page = Path(written["html"]).read_text()
    assert page.count("data:image/png;base64,") == 3 and 'src="charts/' not in page


def test_bench_table_is_checked_and_inherited(tmp_path: Path) -> None:
    text = (
        '[models.a]\nfile = "a.gguf"\n[models.a.bench]\nmax_tokens = 4096\nreasoning = "high"\n'
        '[models.b]\nextends = "a"\n[models.b.bench]\nreasoning_format = "none"\n'
    )
    config = parse_config(text, tmp_path / "herd.toml", check_files=False)
    bench = config.models["b"].bench
    assert (bench.max_tokens, bench.reasoning, bench.reasoning_format) == (4096, "high", "none")

    with pytest.raises(ConfigError) as typo:
        parse_config(text.replace("max_tokens", "max_token"), check_files=False)
    assert "[models.a] bench.max_token" in str(typo.value) and "max_tokens" in str(typo.value)
    with pytest.raises(ConfigError) as bad:
        parse_config(text.replace('"high"', '"extreme"'), check_files=False)
    assert "'low', 'medium' or 'high'" in str(bad.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["humaneval", "--parallel", "999"], "--parallel 999: at most"),
        (["speed", "--concurrency", "1,zero"], "--concurrency '1,zero'"),
        (["speed", "--endpoint", "http://127.0.0.1:9/v1"], "--endpoint needs --model"),
        (["speed", "--endpoint", "x", "--model", "m"], "expected an http(s) URL"),
        (["speed", "--endpoint", "http://h/v1", "--model", "m", "--api-key-env", "NOPE_KEY"],
         "NOPE_KEY"),
        (["report"], "no benchmark results"),
    ],
)  # fmt: skip
def test_bad_bench_input_is_one_line_and_exit_2(
    args: list[str], message: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("NOPE_KEY", "")
    monkeypatch.setattr(sys, "argv", ["herd", "bench", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()  # in-process: the same exit-code mapping as the installed command
    assert exited.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("command", ["speed", "humaneval", "report"])
def test_bench_commands_have_help(command: str) -> None:
    result = CliRunner().invoke(cli.cli, ["bench", command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_humaneval_data_key_points_at_a_local_copy(
    tmp_path: Path, humaneval_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUMANEVAL_OVERRIDE_PATH", raising=False)
    text = f'humaneval_data = "{humaneval_data}"\n[models.a]\nfile = "a.gguf"\n'
    config = parse_config(text, tmp_path / "herd.toml", check_files=False)
    found = humaneval.data_file(config.humaneval_data, mini=False)
    assert found is not None and found.name.startswith("HumanEvalPlus-v")

    missing = parse_config('humaneval_data = "nowhere"\n', tmp_path / "herd.toml")
    with pytest.raises(ConfigError) as error:
        humaneval.data_file(missing.humaneval_data, mini=False)
    assert "humaneval_data" in str(error.value) and str(tmp_path / "nowhere") in str(error.value)
