"""A stand-in runtime for the fast test layer: behind the same `Runtime` protocol as the
native and docker runtimes, each "llama-server" is a tiny HTTP server inside the test
process, with knobs for what a real one cannot do on demand (a slow load, a failure at a
chosen instant, a hang).

    fake = FakeRuntime()
    fake.knobs["slow"] = Knobs(load_delay=5)
    supervisor = Supervisor(config, Path("llama-server"), run_dir, runtime_for=fake.runtime_for)

Each server answers `/health` (503 while loading, as llama-server does), the OpenAI chat
and completion paths (streamed or not, `tokens_per_second`), `GET /slots` (`Knobs.slots`)
`POST /tokenize` and `POST /slots/{id}?action=restore` (`Knobs.prompt_tokens`), and echoes
any other path (`POST /slots/{id}` after `slot_action_delay`).
`fake.generating` counts requests being generated right now, so a test sees the upstream
being cancelled when a client leaves.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from llamaherd.config import Profile
from llamaherd.runtime.loading import LoadProgress
from llamaherd.runtime.process import wait_healthy

FAKE_PIDS = itertools.count(10_000_000)  # above any pid_max: never a real process


@dataclass
class Knobs:
    load_delay: float = 0.0  # seconds /health answers 503 before the model is loaded
    fail_at_start: int | None = None  # exit with this code instead of finishing the load
    crash_after: float | None = None  # exit (code 139) this many seconds after loading
    hang: bool = False  # never finishes loading (and so never answers 200 on /health)
    cannot_start: bool = False  # the program cannot be run at all (OSError)
    raise_at_start: Exception | None = None  # any other error while starting
    tokens: int = 8  # tokens per answer
    tokens_per_second: float = 1000.0
    stall_headers: bool = False  # accept requests, never answer (a hung llama-server)
    load_log: tuple[str, ...] = ()  # lines logged while loading (e.g. buffer sizes)
    slots: tuple[dict, ...] = ()  # what GET /slots answers (the prompt cache per slot)
    slot_action_delay: float = 0.0  # seconds POST /slots/{id} (save, restore) takes
    prompt_tokens: tuple[int, ...] = ()  # what /tokenize answers, and a restore restores


class FakeServer:
    """One fake llama-server: an aiohttp app on 127.0.0.1:port inside the test process."""

    def __init__(self, profile: Profile, port: int, knobs: Knobs, log_path: Path) -> None:
        self.profile = profile
        self.knobs = knobs
        self.port = port
        self.argv = ["fake-llama-server", "-m", str(profile.file), "--port", str(port)]
        self.log_path = log_path
        self.started_at = time.time()
        self.api_key: str | None = None
        self._pid = next(FAKE_PIDS)
        self.lines: list[str] = []
        self.loading = LoadProgress()
        self.loaded = False
        self.generating = 0  # requests being answered right now
        self.cancelled = 0  # requests whose client (the gateway) went away mid-answer
        self.requests: list[dict] = []  # method, path, headers and body of each request
        self._returncode: int | None = None
        self._exited = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the Server protocol -------------------------------------------------------
    @property
    def pid(self) -> int:
        return self._pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self._returncode

    @property
    def line_count(self) -> int:
        return len(self.lines)

    def log_tail(self, lines: int = 20, since: int | None = None) -> list[str]:
        if since is not None:
            lines = min(lines, max(0, self.line_count - since))
        return self.lines[-lines:] if lines > 0 else []

    async def wait_ready(
        self, timeout: float, progress: Callable[[float], None] | None = None
    ) -> None:
        async def exit_code() -> int | None:
            return self._returncode

        await wait_healthy(self.url, exit_code, timeout, progress)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self._returncode is not None
        return self._returncode

    async def stop(self, grace: float) -> int | None:
        if self._returncode is None:
            await self._exit(-15, "received SIGTERM, shutting down")
        return self._returncode

    # -- the fake itself -------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._returncode is None

    def log(self, line: str) -> None:
        self.lines.append(line)
        self.loading.take(line)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{path:.*}", self._answer)
        # handler_cancellation: a handler is cancelled when its client leaves, as
        # llama-server stops generating when its connection closes.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.log(f"main: loading model '{self.profile.file}'")
        self._spawn(self._load())

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _load(self) -> None:
        knobs = self.knobs
        await asyncio.sleep(knobs.load_delay)
        if knobs.hang:
            return
        if knobs.fail_at_start is not None:
            await self._exit(knobs.fail_at_start, "llama_model_load: error loading model")
            return
        for line in knobs.load_log:
            self.log(line)
        self.loaded = True
        self.log("main: server is listening, model loaded")
        if knobs.crash_after is not None:
            await asyncio.sleep(knobs.crash_after)
            await self._exit(139, "Segmentation fault")

    async def _exit(self, code: int, line: str) -> None:
        self.log(line)
        self._returncode = code
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        self._exited.set()

    async def _health(self, request: web.Request) -> web.Response:
        if not self.loaded:
            return web.json_response({"error": {"message": "Loading model"}}, status=503)
        return web.json_response({"status": "ok"})

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
            }
        )
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            data = {}
        self.generating += 1
        try:
            if self.knobs.stall_headers:
                await asyncio.Event().wait()
            if request.path.endswith(("/chat/completions", "/completion", "/completions")):
                return await self._complete(request, data)
            if request.path == "/slots":
                return web.json_response(list(self.knobs.slots))
            if request.path == "/tokenize":
                return web.json_response({"tokens": list(self.knobs.prompt_tokens)})
            if request.path.startswith("/slots/"):  # a slot save or restore on a slow disk
                await asyncio.sleep(self.knobs.slot_action_delay)
                if request.query.get("action") == "restore":
                    return web.json_response({"n_restored": len(self.knobs.prompt_tokens)})
            return web.json_response(
                {"path": request.path, "method": request.method, "model": self.profile.id}
            )
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.generating -= 1

    async def _complete(self, request: web.Request, data: dict) -> web.StreamResponse:
        delay = 1.0 / self.knobs.tokens_per_second
        n_tokens = int(data.get("max_tokens") or data.get("n_predict") or self.knobs.tokens)
        # As llama-server counts: a prompt token per message, `timings` beside `usage`.
        n_prompt = len(data.get("messages") or []) + 1
        usage = {"prompt_tokens": n_prompt, "completion_tokens": n_tokens}
        timings = {
            "cache_n": 0,
            "prompt_n": n_prompt,
            "prompt_per_second": 500.0,
            "predicted_n": n_tokens,
            "predicted_per_second": self.knobs.tokens_per_second,
        }
        if not data.get("stream"):
            await asyncio.sleep(delay * n_tokens)
            message = {"role": "assistant", "content": " tok" * n_tokens}
            return web.json_response(
                {
                    "object": "chat.completion",
                    "model": self.profile.id,
                    "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
                    "usage": usage,
                    "timings": timings,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(n_tokens):
            await asyncio.sleep(delay)
            chunk = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": " tok"}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        last: dict = {"object": "chat.completion.chunk", "choices": [], "timings": timings}
        if (data.get("stream_options") or {}).get("include_usage"):
            last["usage"] = usage
        await response.write(f"data: {json.dumps(last)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


@dataclass
class FakeRuntime:
    """Starts FakeServers; `knobs[profile_id]` sets how each profile's server behaves."""

    knobs: dict[str, Knobs] = field(default_factory=dict)
    servers: list[FakeServer] = field(default_factory=list)

    def runtime_for(self, profile: Profile) -> FakeRuntime:
        """What the supervisor calls instead of runtime.pick."""
        return self

    def command(self, profile: Profile, port: int) -> list[str]:
        return ["fake-llama-server", "-m", str(profile.file), "--port", str(port)]

    async def start(self, profile: Profile, *, port: int, run_dir: Path) -> FakeServer:
        knobs = self.knobs.get(profile.id, Knobs())
        if knobs.cannot_start:
            raise FileNotFoundError(2, "No such file or directory", "fake-llama-server")
        if knobs.raise_at_start is not None:
            raise knobs.raise_at_start
        log_path = run_dir / "logs" / f"{profile.id}.log"
        server = FakeServer(profile, port, knobs, log_path)
        self.servers.append(server)
        try:
            await server.start()
        except BaseException:
            # As asyncio kills a process whose start was cancelled: a start that does not
            # return its server leaves none behind (the test once raced this window).
            await server.stop(0)
            raise
        return server

    def alive(self, profile_id: str | None = None) -> list[FakeServer]:
        """The servers still running (of one profile): what would hold memory."""
        return [s for s in self.servers if s.alive and profile_id in (None, s.profile.id)]
