"""`herd bench humaneval`: EvalPlus HumanEval+ against a profile or an endpoint.

The steps are EvalPlus's own, so scores compare with its leaderboard: the same
instruction and system prompt as `evalplus.codegen --backend openai`, greedy decoding,
code extracted with `evalplus.sanitize`, then `evalplus.evaluate.check_correctness` on the
base and the plus tests. A base model (a GGUF without a chat template) is asked as
EvalPlus asks one: the task's prompt sent raw to /v1/completions, cut at its base-model
stop strings, and prompt + completion scored. What herd adds: the requests go through
the gateway with the profile's bench settings, samples are written as they arrive (an
interrupted run resumes where it stopped), any subset of tasks can be scored, and results
land in the store.

evalplus is the `llamaherd[bench]` extra; it is imported only here, when a run starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import pickle
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from llamaherd import paths
from llamaherd.bench import claude_code
from llamaherd.bench.chat import Reply, stream_chat, stream_completion
from llamaherd.bench.target import Target
from llamaherd.errors import ConfigError, HerdError, UsageError
from llamaherd.gguf import header as gguf_header
from llamaherd.store import Run, Store

# EvalPlus keeps these inside `run_codegen` and `openai_request.make_request`, not as
# importable names; they are repeated here word for word so prompts match its leaderboard.
INSTRUCTION = (
    "Please provide a self-contained Python script that solves the following problem "
    "in a markdown code block:"
)
SYSTEM_PROMPT = "You are a helpful assistant good at coding."
# The original setup's: evalplus's own 768 (DecoderBase.max_new_tokens) cuts reasoning
# models off mid-thought, and a cut-off answer fails its tests.
DEFAULT_MAX_TOKENS = 4096
# A base model does not reason, and greedy text that misses every stop string tends to
# loop: EvalPlus's own limit (DecoderBase.max_new_tokens) ends such an answer sooner.
COMPLETION_MAX_TOKENS = 768
# Arguments that give llama-server a chat template the GGUF lacks.
TEMPLATE_ARGS = ("--chat-template", "--chat-template-file")
DATA_ENV = "HUMANEVAL_OVERRIDE_PATH"  # evalplus's own variable for a local copy
TASKS_IN_FULL_SET = 164


@dataclass
class HumanEvalSettings:
    mini: bool = False
    tasks: tuple[str, ...] = ()
    """Only these task ids (e.g. HumanEval/0); empty: all, or the first `limit`."""
    limit: int | None = None
    parallel: int = 1
    max_tokens: int | None = None
    """Overrides the profile's bench.max_tokens for this run."""
    mode: str | None = None
    """"chat" or "completion"; None: completion for a profile whose GGUF has no chat
    template (choose_mode), chat otherwise."""


@dataclass
class Dataset:
    problems: dict[str, dict[str, Any]]
    hash: str
    name: str


def _evalplus() -> Any:
    try:
        import evalplus.data.humaneval as humaneval
    except ImportError:
        raise UsageError(
            "herd bench humaneval needs evalplus: pip install 'llamaherd[bench]'"
        ) from None
    return humaneval


def data_file(configured: Path | None, mini: bool) -> Path | None:
    """The local HumanEval+ copy: $HUMANEVAL_OVERRIDE_PATH, else the config's
    `humaneval_data`; a folder holding the release files is searched for the full or
    the Mini set. None: evalplus downloads the release (online machines)."""
    explicit = os.environ.get(DATA_ENV)
    source = Path(explicit).expanduser() if explicit else configured
    origin = f"${DATA_ENV}" if explicit else "humaneval_data"
    if source is None:
        return None
    if source.is_dir():
        pattern = "HumanEvalPlus-Mini-v*.jsonl*" if mini else "HumanEvalPlus-v*.jsonl*"
        found = sorted(source.glob(pattern))
        if not found:
            raise ConfigError(
                f"{origin}: no {pattern} in {source}",
                hint="download the release from github.com/evalplus/humanevalplus_release",
            )
        return found[-1]
    if not source.is_file():
        raise ConfigError(f"{origin}: {source} not found", hint="point it at the .jsonl.gz")
    return source


def load_dataset(data: Path | None, mini: bool = False) -> Dataset:
    """HumanEval+ through evalplus (checked complete), from `data` or downloaded."""
    humaneval = _evalplus()
    # evalplus reads HUMANEVAL_OVERRIDE_PATH once, at import: set what it will use now.
    humaneval.HUMANEVAL_OVERRIDE_PATH = str(data) if data else None
    try:
        # evalplus prints its download progress on stdout, where --json output goes.
        with contextlib.redirect_stdout(sys.stderr):
            problems = humaneval.get_human_eval_plus(mini=mini)
            digest = humaneval.get_human_eval_plus_hash(mini=mini)
    except (OSError, ValueError) as error:
        raise HerdError(
            f"cannot load HumanEval+ ({error}); offline, set {DATA_ENV} or humaneval_data "
            "in herd.toml to a local copy"
        ) from None
    name = data.name if data else f"HumanEvalPlus{'-Mini' if mini else ''}"
    return Dataset(problems, digest, name)


def select(dataset: Dataset, settings: HumanEvalSettings) -> dict[str, dict[str, Any]]:
    problems = dataset.problems
    if settings.tasks:
        unknown = [t for t in settings.tasks if t not in problems]
        if unknown:
            raise UsageError(f"unknown task {unknown[0]!r}; ids look like HumanEval/0")
        problems = {t: problems[t] for t in settings.tasks}
    if settings.limit is not None:
        problems = dict(list(problems.items())[: settings.limit])
    return problems


def messages_for(problem: dict[str, Any], target: Target) -> list[dict[str, str]]:
    """EvalPlus's instruct prompt; the profile's system prompt replaces its default."""
    system = target.bench.system_prompt or SYSTEM_PROMPT
    user = INSTRUCTION + f"\n```python\n{problem['prompt'].strip()}\n```"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def choose_mode(target: Target, forced: str | None) -> str:
    """How to ask: `forced` if given, else completion for a herd profile that serves its
    GGUF without a chat template (the check `herd add` warns with), else chat."""
    if forced == "completion" and target.claude_code:
        raise UsageError("--mode completion: Claude Code answers chat only")
    if forced:
        return forced
    profile = target.profile
    if profile is None or any(arg in TEMPLATE_ARGS for arg in profile.args):
        return "chat"
    try:
        info = gguf_header.read(profile.file)
    except UsageError:  # not on disk: starting it fails first, with the reason
        return "chat"
    return "chat" if info.chat_template else "completion"


def completion_prompt(problem: dict[str, Any]) -> str:
    """The task's prompt as EvalPlus sends it to a base model (codegen.py)."""
    return problem["prompt"].strip() + "\n"


def completion_stops() -> list[str]:
    """EvalPlus's stop strings for a base model on HumanEval: the end-of-text markers,
    then any new top-level statement (the function is finished)."""
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion

    return EOS + extra_eos_for_direct_completion("humaneval")


def request_extra(target: Target) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if target.bench.reasoning:
        extra["reasoning_effort"] = target.bench.reasoning
    if target.bench.reasoning_format and target.is_herd:
        extra["reasoning_format"] = target.bench.reasoning_format
    return extra


def extract(answer: str, problem: dict[str, Any], mode: str = "chat") -> str:
    """The program in a model's answer, as EvalPlus extracts it (longest valid code, the
    entry point and what it depends on). A completion continues the prompt: the two
    together are the program (with tabs as EvalPlus's base-model providers write them)."""
    from evalplus.sanitize import sanitize

    if mode == "completion":
        answer = completion_prompt(problem) + answer.replace("\t", "    ")
    return sanitize(answer, entrypoint=problem["entry_point"])


# -- scoring ----------------------------------------------------------------------------


def expected_outputs(
    problems: dict[str, dict[str, Any]], dataset_hash: str
) -> dict[str, dict[str, Any]]:
    """The canonical solutions' outputs (and times, for the time limits) on every input.

    evalplus computes these for the whole set at once; here only for the tasks scored,
    cached per dataset so a handful of tasks costs a handful of executions.
    """
    from evalplus.gen.util import trusted_exec

    cache = paths.cache_dir() / "humaneval" / f"{dataset_hash}.pkl"
    known: dict[str, dict[str, Any]] = {}
    if cache.is_file():
        try:
            known = pickle.loads(cache.read_bytes())
        except (OSError, pickle.UnpicklingError, EOFError):
            known = {}
    missing = [t for t in problems if t not in known]
    for task_id in missing:
        problem = problems[task_id]
        code = problem["prompt"] + problem["canonical_solution"]
        oracle: dict[str, Any] = {}
        for part in ("base", "plus"):
            oracle[part], oracle[f"{part}_time"] = trusted_exec(
                code, problem[f"{part}_input"], problem["entry_point"], record_time=True
            )
        known[task_id] = oracle
    if missing:
        cache.parent.mkdir(parents=True, exist_ok=True)
        temp = cache.with_suffix(".tmp")
        temp.write_bytes(pickle.dumps(known))
        temp.replace(cache)
    return {t: known[t] for t in problems}


def score(
    problems: dict[str, dict[str, Any]],
    solutions: dict[str, str],
    dataset_hash: str,
    *,
    parallel: int = 1,
    advance: Callable[[], None] = lambda: None,
) -> dict[str, dict[str, str]]:
    """Run every solution against the base and plus tests: task -> {base, plus} status
    ("pass", "fail" or "timeout"). A task without a solution fails."""
    from evalplus.evaluate import check_correctness

    expected = expected_outputs(problems, dataset_hash)

    def check(task_id: str) -> tuple[str, dict[str, str]]:
        solution = solutions.get(task_id)
        if not solution:
            return task_id, {"base": "fail", "plus": "fail"}
        result = check_correctness(
            "humaneval", 0, problems[task_id], solution, expected[task_id], fast_check=True
        )
        return task_id, {"base": result["base"][0], "plus": result["plus"][0]}

    # Each check runs the untrusted code in its own process (evalplus); threads only wait.
    statuses = {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for task_id, status in pool.map(check, problems):
            statuses[task_id] = status
            advance()
    return statuses


def pass_rates(statuses: dict[str, dict[str, str]]) -> tuple[float, float]:
    """pass@1 on the base tests, and on base + plus tests (EvalPlus's HumanEval+)."""
    if not statuses:
        return 0.0, 0.0
    base = sum(s["base"] == "pass" for s in statuses.values())
    plus = sum(s["base"] == "pass" and s["plus"] == "pass" for s in statuses.values())
    return base / len(statuses), plus / len(statuses)


# -- a run ------------------------------------------------------------------------------


def run(
    target: Target,
    dataset: Dataset,
    settings: HumanEvalSettings,
    store: Store,
    *,
    environment: Callable[[], dict[str, Any]],
    progress: Callable[[str, int, int], None] = lambda phase, done, total: None,
) -> Run:
    """Generate (resuming an unfinished run with the same settings), score, store.

    `environment` makes the target serve and describes it (target.prepare); it is called
    before any request. `progress(phase, done, total)` reports "generate" and "evaluate".
    """
    problems = select(dataset, settings)
    env = environment()  # first: the mode reads the GGUF the profile serves
    mode = choose_mode(target, settings.mode)
    chat = mode == "chat"
    default_tokens = DEFAULT_MAX_TOKENS if chat else COMPLETION_MAX_TOKENS
    max_tokens = settings.max_tokens or target.bench.max_tokens or default_tokens
    recorded = {
        "dataset": dataset.name,
        "dataset_hash": dataset.hash,
        "mini": settings.mini,
        "tasks": list(problems),
        "mode": mode,
        "max_tokens": max_tokens,
        "system_prompt": (target.bench.system_prompt or SYSTEM_PROMPT) if chat else None,
        "request": request_extra(target) if chat else {"stop": completion_stops()},
        "greedy": True,
    }
    key = hashlib.sha256(
        json.dumps([target.model, target.endpoint, recorded], sort_keys=True).encode()
    ).hexdigest()[:16]
    previous = store.unfinished("humaneval", key)
    if previous:
        run_id = previous.id
        store.reopen(run_id)
    else:
        run_id = store.start(
            "humaneval",
            target.model,
            label=target.label,
            endpoint=target.endpoint,
            environment=env,
            settings={**recorded, "parallel": settings.parallel},
            key=key,
        )
    folder = paths.state_dir() / "bench" / "humaneval" / str(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    samples = folder / "samples.jsonl"
    try:
        done = _read_samples(samples)
        todo = [t for t in problems if t not in done]
        progress("generate", len(problems) - len(todo), len(problems))
        asyncio.run(
            _generate(
                target, problems, todo, samples, max_tokens, mode, settings.parallel, progress
            )
        )
        solutions = {t: s["solution"] for t, s in _read_samples(samples).items()}
        counter = _Counter(progress, "evaluate", len(problems))
        statuses = score(
            problems, solutions, dataset.hash, parallel=settings.parallel, advance=counter
        )
    except BaseException as error:  # interrupted too: the run stays resumable
        store.fail(run_id, f"{type(error).__name__}: {error}".rstrip(": "))
        raise
    base, plus = pass_rates(statuses)
    (folder / "eval.json").write_text(json.dumps(statuses, indent=1))
    # Answers cut off at max_tokens usually fail: a count worth seeing beside the score.
    cut_off = sum(s.get("finish_reason") == "length" for s in _read_samples(samples).values())
    store.finish(
        run_id,
        {
            "tasks": len(problems),
            "full_set": len(problems) == TASKS_IN_FULL_SET and not settings.mini,
            "base_passed": round(base * len(problems)),
            "plus_passed": round(plus * len(problems)),
            "cut_off": cut_off,
            "statuses": statuses,
            "samples": str(samples),
            "resumed": previous is not None,
        },
        base_pass=base,
        plus_pass=plus,
    )
    finished = store.get(run_id)
    assert finished is not None
    return finished


class _Counter:
    def __init__(self, progress: Callable[[str, int, int], None], phase: str, total: int):
        self.progress, self.phase, self.total, self.done = progress, phase, total, 0

    def __call__(self) -> None:
        self.done += 1
        self.progress(self.phase, self.done, self.total)


def _read_samples(path: Path) -> dict[str, dict[str, Any]]:
    """Samples written so far; a line cut short by an interruption is ignored."""
    found: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return found
    for line in path.read_text().splitlines():
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        found[sample["task_id"]] = sample
    return found


async def _generate(
    target: Target,
    problems: dict[str, dict[str, Any]],
    todo: list[str],
    samples: Path,
    max_tokens: int,
    mode: str,
    parallel: int,
    progress: Callable[[str, int, int], None],
) -> None:
    gate = asyncio.Semaphore(parallel)
    done = len(problems) - len(todo)
    extra = request_extra(target)
    stops = completion_stops()

    async def ask(http: httpx.AsyncClient, problem: dict[str, Any]) -> Reply:
        if mode == "completion":
            prompt = completion_prompt(problem)
            return await stream_completion(http, target, prompt, max_tokens=max_tokens, stop=stops)
        messages = messages_for(problem, target)
        if target.claude_code:
            return await claude_code.ask(target, messages, max_tokens=max_tokens)
        return await stream_chat(http, target, messages, max_tokens=max_tokens, extra=extra)

    async with httpx.AsyncClient(timeout=1800) as http:

        async def one(task_id: str) -> None:
            nonlocal done
            problem = problems[task_id]
            async with gate:
                reply = await ask(http, problem)
            sample = {
                "task_id": task_id,
                "solution": extract(reply.content, problem, mode),
                "answer": reply.content,
                "reasoning": reply.reasoning,
                "finish_reason": reply.finish_reason,
                "completion_tokens": reply.generated,
                "seconds": round(reply.total_s, 3),
            }
            # One line per finished task, appended at once: an interruption loses at
            # most the answers still in flight.
            with samples.open("a") as out:
                out.write(json.dumps(sample) + "\n")
            done += 1
            progress("generate", done, len(problems))

        tasks = [asyncio.create_task(one(t)) for t in todo]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            # Stop the requests still in flight and wait for them, so nothing is left
            # half-closed when the error (or Ctrl-C) goes up.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
