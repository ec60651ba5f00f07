"""`herd bench speed`: prompt processing, generation, TTFT and a concurrency sweep.

Every figure is measured several times and kept whole (median, min, max and the samples);
the server's own `timings` are preferred where llama-server gives them (they exclude the
network and the client), and the client's clock is used otherwise (hosted endpoints).

Each prompt starts with words drawn at random, so no request can reuse another's prompt
cache: a cached prompt would make prompt processing look hundreds of times faster.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from llamaherd.bench.chat import Reply, stream_chat
from llamaherd.bench.target import Target
from llamaherd.errors import HerdError
from llamaherd.store import Run, Store

# Filler text: plain words that every tokenizer splits into roughly one token each.
_WORDS = (
    "river", "stone", "cloud", "garden", "lantern", "meadow", "harbor", "pencil", "window",
    "bridge", "candle", "forest", "valley", "market", "engine", "silver", "orange", "planet",
    "rocket", "button", "mirror", "ladder", "basket", "feather",
)  # fmt: skip


@dataclass
class SpeedSettings:
    prompt_lengths: tuple[int, ...] = (512, 4096, 0)
    """Prompt sizes in tokens for prompt processing; 0 means near the context size."""
    gen_tokens: int = 128
    reps: int = 3
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    timeout: float = 600.0
    ctx_budget_s: float = 60.0
    """The near-ctx prompt is skipped when the sizes before it foretell a longer request."""

    def steps(self) -> int:
        """Requests (or rounds) the progress bar counts, warm-up included."""
        return 1 + len(self.prompt_lengths) * self.reps + self.reps * (1 + len(self.concurrency))


def spread(values: list[float]) -> dict[str, Any]:
    """Median with its range: few repetitions, so min/max say more than a deviation."""
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0, "samples": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "samples": values,
    }


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None}
    return {"p50": percentile(values, 50), "p99": percentile(values, 99)}


def percentile(samples: list[float], pct: float) -> float:
    """Linear-interpolated percentile (numpy's default method)."""
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _filler(words: int, rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(max(words, 1)))


class _Prompts:
    """Unique prompts of a wanted token count, calibrated on the target's own tokenizer
    and chat template (two requests: a 1-word and a 200-word prompt)."""

    def __init__(self) -> None:
        self.rng = random.Random()
        self.overhead = 0.0
        self.per_word = 1.0

    def calibrate(self, one: int | None, many: int | None, words: int) -> None:
        if one is not None and many is not None and many > one:
            self.overhead = one - 1
            self.per_word = (many - one) / (words - 1)

    def words_for(self, tokens: int) -> int:
        return max(1, round((tokens - self.overhead) / self.per_word))

    def messages(self, words: int, instruction: str = "") -> list[dict[str, str]]:
        # The random prefix comes first: a prompt cache matches from the start.
        text = f"{self.rng.randrange(10**9)} {_filler(words, self.rng)}"
        return [{"role": "user", "content": f"{text} {instruction}".strip()}]


async def measure(
    target: Target,
    settings: SpeedSettings,
    *,
    ctx: int | None = None,
    advance: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """All speed figures of one target. `ctx` is the context one request may fill (for
    the "near ctx" prompt length); unknown (an endpoint), that length is skipped."""
    streams = max(settings.concurrency, default=1)
    limits = httpx.Limits(max_connections=streams + 1, max_keepalive_connections=streams + 1)
    async with httpx.AsyncClient(timeout=settings.timeout, limits=limits) as http:
        # llama.cpp's own fields, only where they are known to be understood.
        llama = {"cache_prompt": False} if target.is_herd else {}
        generate = {**llama, "ignore_eos": True} if target.is_herd else {}
        prompts = _Prompts()

        async def ask(messages: list[dict[str, str]], tokens: int, extra: dict) -> Reply:
            return await stream_chat(http, target, messages, max_tokens=tokens, extra=extra)

        # Warm-up (loads weights into caches, compiles kernels) doubling as calibration.
        short = await ask(prompts.messages(1), 1, llama)
        long = await ask(prompts.messages(200), 1, llama)
        prompts.calibrate(short.prompt_processed, long.prompt_processed, 200)
        advance()

        prompt_results: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        pace = 0.0  # prompt tokens/s measured so far, to foresee how long "ctx" takes

        def skip(length: int, reason: str) -> None:
            skipped.append({"requested": length or "ctx", "reason": reason})
            for _ in range(settings.reps):
                advance()

        for length in settings.prompt_lengths:
            wanted = length or _near_ctx(ctx, settings.gen_tokens)
            if wanted is None:
                skip(length, "the context size is unknown")
                continue
            reason = None
            if ctx and wanted + 8 > ctx:
                reason = f"longer than one request's context ({ctx})"
            elif not length and pace and wanted / pace > settings.ctx_budget_s:
                # 240k tokens at 1,000 t/s is 4 minutes a repetition: not "when feasible".
                reason = f"{wanted} tokens would take ~{wanted / pace:.0f}s a repetition"
            if reason:
                skip(length, reason)
                continue
            replies = []
            for _ in range(settings.reps):
                replies.append(await ask(prompts.messages(prompts.words_for(wanted)), 1, llama))
                advance()
            prompt_results.append(
                {
                    "requested": length or "ctx",
                    "tokens": round(statistics.median(_prompt_tokens(r) for r in replies)),
                    "tps": spread([_prompt_tps(r) for r in replies]),
                    "ttft_s": spread([r.ttft_s for r in replies if r.ttft_s is not None]),
                }
            )
            pace = prompt_results[-1]["tps"]["median"] or pace

        generation = []
        for _ in range(settings.reps):
            generation.append(await ask(prompts.messages(16), settings.gen_tokens, generate))
            advance()
        _check_length(generation, settings.gen_tokens, target)

        sweep = []
        for count in settings.concurrency:
            rounds = []
            for _ in range(settings.reps):
                started = time.perf_counter()
                replies = await asyncio.gather(
                    *(
                        ask(prompts.messages(16), settings.gen_tokens, generate)
                        for _ in range(count)
                    )
                )
                rounds.append((time.perf_counter() - started, list(replies)))
                advance()
            sweep.append(_sweep_level(count, rounds))

    gen_tps = [_gen_tps(r) for r in generation]
    return {
        "source": "server" if all(r.timings for r in generation) else "client",
        "ctx": ctx,
        "prompt": prompt_results,
        "prompt_skipped": skipped,
        "generation": {
            "tokens": settings.gen_tokens,
            "tps": spread([v for v in gen_tps if v is not None]),
            "ttft_s": spread([r.ttft_s for r in generation if r.ttft_s is not None]),
            "tpot_ms": spread([t * 1000 for r in generation if (t := _tpot(r)) is not None]),
            "itl_ms": percentiles([gap * 1000 for r in generation for gap in _gaps(r)]),
        },
        "concurrency": sweep,
        "settings": asdict(settings),
    }


def _near_ctx(ctx: int | None, gen_tokens: int) -> int | None:
    """A prompt that fills most of one request's context, leaving room to answer."""
    if not ctx:
        return None
    return int(ctx * 0.9) - gen_tokens


def _prompt_tokens(reply: Reply) -> int:
    return reply.prompt_processed or 0


def _prompt_tps(reply: Reply) -> float:
    timings = reply.timings or {}
    if timings.get("prompt_per_second"):
        return float(timings["prompt_per_second"])
    # Client clock: everything before the first token is the prompt (plus the network).
    return _prompt_tokens(reply) / reply.ttft_s if reply.ttft_s else 0.0


def _gen_tps(reply: Reply) -> float | None:
    timings = reply.timings or {}
    if timings.get("predicted_per_second"):
        return float(timings["predicted_per_second"])
    tpot = _tpot(reply)
    return 1 / tpot if tpot else None


def _tpot(reply: Reply) -> float | None:
    """Time per output token after the first: the steady generation pace one user sees."""
    if len(reply.token_times) < 2 or reply.generated < 2:
        return None
    return (reply.token_times[-1] - reply.token_times[0]) / (reply.generated - 1)


def _gaps(reply: Reply) -> list[float]:
    times = reply.token_times
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def _check_length(replies: list[Reply], wanted: int, target: Target) -> None:
    """A generation figure over 3 tokens is noise: say so rather than store it."""
    short = [r.generated for r in replies if r.generated < min(wanted, 8)]
    if short and target.is_herd:
        raise HerdError(f"{target.model} generated only {short[0]} of {wanted} tokens")


def _sweep_level(count: int, rounds: list[tuple[float, list[Reply]]]) -> dict[str, Any]:
    replies = [r for _, batch in rounds for r in batch]
    return {
        "streams": count,
        # What all streams together got per second of wall time.
        "aggregate_tps": spread([sum(r.generated for r in batch) / wall for wall, batch in rounds]),
        "per_stream_tps": spread([v for r in replies if (v := _gen_tps(r)) is not None]),
        "ttft_s": percentiles([r.ttft_s for r in replies if r.ttft_s is not None]),
        "tpot_ms": percentiles([t * 1000 for r in replies if (t := _tpot(r)) is not None]),
        "itl_ms": percentiles([gap * 1000 for r in replies for gap in _gaps(r)]),
    }


def props(target: Target) -> dict[str, Any]:
    """llama-server's /props through the gateway (context per slot, slots); {} elsewhere."""
    if not target.is_herd:
        return {}
    root = target.base_url.removesuffix("/v1")
    try:
        response = httpx.get(f"{root}/props", headers=target.headers, timeout=30)
        return response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}


def run(
    target: Target,
    settings: SpeedSettings,
    store: Store,
    *,
    environment: Callable[[], dict[str, Any]],
    advance: Callable[[], None] = lambda: None,
) -> Run:
    """Make the target serve (`environment`, see target.prepare), measure, store the run.

    A failure is stored too (status 'failed', with the reason) and raised again."""
    env = environment()
    info = props(target)
    ctx = (info.get("default_generation_settings") or {}).get("n_ctx")
    env = {**env, "slots": info.get("total_slots"), "ctx_per_slot": ctx}
    run_id = store.start(
        "speed",
        target.model,
        label=target.label,
        endpoint=target.endpoint,
        environment=env,
        settings=asdict(settings),
    )
    try:
        results = asyncio.run(measure(target, settings, ctx=ctx, advance=advance))
    except BaseException as error:
        store.fail(run_id, f"{type(error).__name__}: {error}".rstrip(": "))
        raise
    store.finish(run_id, results, gen_tps=results["generation"]["tps"]["median"])
    finished = store.get(run_id)
    assert finished is not None
    return finished
