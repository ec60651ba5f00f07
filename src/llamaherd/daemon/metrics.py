"""`GET /metrics` on the management port, in Prometheus' text format.

Three sources, one page:
- herd's own counters and histograms: switches (and how long they took), crashes and
  restarts (fed by the supervisor's events), gateway requests and time to first byte
  (fed by the gateway);
- live gauges read at scrape time: queue depth, in-flight requests, which models are up;
- each running llama-server's own /metrics (tokens in and out, tokens/s, KV cache use),
  with a `model` label added, so one scrape covers every model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from llamaherd.daemon.supervisor import State, Supervisor
from llamaherd.runtime import Server, auth_headers

# Seconds; switches load whole models, first bytes can be fast or wait behind a switch.
SWITCH_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TTFB_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# A llama-server's /metrics answers in milliseconds; one that hangs is left out of the page
# after this long rather than holding up the scrape (Prometheus gives up after 10 s).
SERVER_SCRAPE_TIMEOUT_S = 1.0
# The API endpoints counted by name; any other path (web UI assets, /props ...) is "other",
# so a client cannot grow the label set without bound.
ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/messages",
    "/v1/messages/count_tokens",
)


class Metrics:
    def __init__(self, supervisor: Supervisor, http: httpx.AsyncClient) -> None:
        self.supervisor = supervisor
        self.http = http
        self.registry = CollectorRegistry()
        self.switches = Counter(
            "herd_switches", "Model switches by result", ["result"], registry=self.registry
        )
        self.switch_seconds = Histogram(
            "herd_switch_duration_seconds",
            "Time a switch took, stopping the old model included",
            buckets=SWITCH_BUCKETS,
            registry=self.registry,
        )
        self.crashes = Counter(
            "herd_crashes", "llama-server exits nobody asked for", ["model"], registry=self.registry
        )
        self.restarts = Counter(
            "herd_restarts", "Restarts after a crash", ["model"], registry=self.registry
        )
        self.requests = Counter(
            "herd_requests",
            "Gateway requests by model and HTTP status",
            ["model", "code"],
            registry=self.registry,
        )
        self.endpoint_requests = Counter(
            "herd_endpoint_requests",
            "Gateway requests by model and API endpoint (e.g. /v1/messages from Claude Code)",
            ["model", "endpoint"],
            registry=self.registry,
        )
        self.first_byte_seconds = Histogram(
            "herd_time_to_first_byte_seconds",
            "From the gateway receiving a request to the first response byte (for a "
            "stream: the first token), switch waits included",
            ["model"],
            buckets=TTFB_BUCKETS,
            registry=self.registry,
        )
        self.scrape_failures = Counter(
            "herd_server_scrape_failures",
            f"llama-server /metrics pages left out: an error, or no answer within "
            f"{SERVER_SCRAPE_TIMEOUT_S:g}s",
            ["model"],
            registry=self.registry,
        )
        # Prompt caches kept across swaps (daemon/kvkeep.py, docs/kv-keep.md).
        self.kv_saved_tokens = Counter(
            "herd_kv_saved_tokens",
            "Prompt tokens saved to disk at a stop",
            ["model"],
            registry=self.registry,
        )
        self.kv_saved_bytes = Counter(
            "herd_kv_saved_bytes",
            "Bytes of prompt cache written to disk",
            ["model"],
            registry=self.registry,
        )
        self.kv_restored_tokens = Counter(
            "herd_kv_restored_tokens",
            "Prompt tokens restored at a start: prompt processing a request did not redo",
            ["model"],
            registry=self.registry,
        )
        self.kv_seconds_saved = Counter(
            "herd_kv_prompt_seconds_saved",
            "Seconds of prompt processing restored caches saved (at the server's prompt speed)",
            ["model"],
            registry=self.registry,
        )
        self.kv_discarded = Counter(
            "herd_kv_discarded",
            "Saved prompt caches thrown away as invalid",
            ["model"],
            registry=self.registry,
        )
        self.registry.register(_LiveGauges(supervisor))
        supervisor.events.listen(self._on_event)

    def _on_event(self, event: dict) -> None:
        kind = event["type"]
        if kind == "switch":
            self.switches.labels("ok" if event["ok"] else "failed").inc()
            self.switch_seconds.observe(event["duration_s"])
        elif kind == "crash":
            self.crashes.labels(event["model"]).inc()
        elif kind == "restart":
            self.restarts.labels(event["model"]).inc()
        elif kind == "kv_saved":
            self.kv_saved_tokens.labels(event["model"]).inc(event["tokens"])
            self.kv_saved_bytes.labels(event["model"]).inc(event["bytes"])
        elif kind == "kv_restored":
            self.kv_restored_tokens.labels(event["model"]).inc(event["tokens"])
            self.kv_seconds_saved.labels(event["model"]).inc(event.get("seconds_saved", 0))
        elif kind == "kv_discarded":
            self.kv_discarded.labels(event["model"]).inc()

    def request_done(
        self, model: str, code: int, first_byte_s: float | None, path: str | None = None
    ) -> None:
        self.requests.labels(model, str(code)).inc()
        if path is not None:
            self.endpoint_requests.labels(model, path if path in ENDPOINTS else "other").inc()
        if first_byte_s is not None:
            self.first_byte_seconds.labels(model).observe(first_byte_s)

    async def render(self) -> bytes:
        """The whole page: herd's metrics, then every running llama-server's, labelled."""
        pages = await scrape_servers(self.http, self.supervisor.models.values())
        for model_id, page in pages.items():
            if page is None:
                self.scrape_failures.labels(model_id).inc()
        return generate_latest(self.registry) + _merge(
            {model_id: page for model_id, page in pages.items() if page}
        )


class _LiveGauges:
    """Gauges read from the supervisor when scraped, so they are never stale."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        supervisor = self.supervisor
        queue = GaugeMetricFamily("herd_queue_depth", "Requests waiting for a model switch")
        queue.add_metric([], supervisor.waiting)
        queued = GaugeMetricFamily(
            "herd_queued", "Requests waiting, by the model they wait for", labels=["model"]
        )
        for model_id in supervisor.config.models:
            queued.add_metric([model_id], supervisor.queued[model_id])
        in_flight = GaugeMetricFamily(
            "herd_in_flight", "Gateway requests being served", labels=["model"]
        )
        up = GaugeMetricFamily("herd_model_up", "1 while the model is ready", labels=["model"])
        for model_id in supervisor.config.models:
            model = supervisor.models.get(model_id)
            in_flight.add_metric([model_id], model.in_flight if model else 0)
            up.add_metric([model_id], 1 if model and model.state == State.READY else 0)
        yield from (queue, queued, in_flight, up)


async def scrape_servers(http: httpx.AsyncClient, models: Iterable) -> dict[str, str | None]:
    """model id -> the /metrics page of its llama-server, for every ready model, all at
    once; None for one that failed or did not answer within SERVER_SCRAPE_TIMEOUT_S."""
    ready = [m for m in models if m.state == State.READY and m.server]
    pages = await asyncio.gather(*(_fetch(http, m.server) for m in ready))
    return {m.id: page for m, page in zip(ready, pages, strict=True)}


async def _fetch(http: httpx.AsyncClient, server: Server) -> str | None:
    headers = auth_headers(server.api_key)
    try:
        # wait_for bounds the whole exchange; httpx's timeout is per read.
        response = await asyncio.wait_for(
            http.get(f"{server.url}/metrics", headers=headers, timeout=SERVER_SCRAPE_TIMEOUT_S),
            SERVER_SCRAPE_TIMEOUT_S,
        )
    except (httpx.HTTPError, TimeoutError):
        return None
    return response.text if response.status_code == 200 else None


def _merge(pages: dict[str, str]) -> bytes:
    """Combine llama-server pages into one, each sample labelled with its model.

    Prometheus wants one HELP/TYPE per metric name, so samples are grouped by family.
    """
    families: dict[str, tuple[str, str, list[str]]] = {}
    for model, page in pages.items():
        for family in text_string_to_metric_families(page):
            name = family.name
            _help, kind, lines = families.setdefault(name, (family.documentation, family.type, []))
            for sample in family.samples:
                labels = {**sample.labels, "model": model}
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
                lines.append(f"{sample.name}{{{text}}} {sample.value}")
    out = []
    for name, (doc, kind, lines) in families.items():
        out += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", *lines]
    return ("\n".join(out) + "\n").encode() if out else b""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
