"""The clients of the management API: what the CLI's (standard-library HTTP) sends, and
how each kind of failure reaches the user, the same way through the dashboard's."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llamaherd.client import DaemonClient, Unreachable
from llamaherd.errors import HerdError, UsageError
from llamaherd.runtime.process import free_port
from llamaherd.tui.remote import Remote

STOPPED = {"model": None, "state": "stopped", "loaded": [], "stale": [], "waiting": 0}
ANSWERS = {  # what a daemon with no model running answers
    "/switch": {"ok": True, **STOPPED, "last_error": None},
    "/stop": {"stopped": ["moe"]},
    "/logs": {"model": None, "lines": [], "total": None},
}
PROXY_PAGE = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class _Api(BaseHTTPRequestHandler):
    """Records each request and answers as a daemon would; under /proxy it answers as a
    reverse proxy whose daemon is down (an HTML 502), /missing a 404 with an error,
    /locked a 401, /odd a body in another shape."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        self.server.seen.append(  # type: ignore[attr-defined]
            {
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        endpoint = "/" + self.path.split("?")[0].rsplit("/", 1)[-1]
        content_type = "application/json"
        if self.path.startswith("/proxy"):
            status, data, content_type = 502, PROXY_PAGE, "text/html"
        elif self.path.startswith("/missing"):
            unknown = {"error": "unknown model: x", "model": "x", "hint": "did you mean 'y'?"}
            status, data = 404, json.dumps(unknown).encode()
        elif self.path.startswith("/locked"):
            status, data = 401, json.dumps({"error": "missing or wrong API key"}).encode()
        else:
            status, data = 200, json.dumps(ANSWERS.get(endpoint, {"model": 1})).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, list[dict]]]:
    """The fake daemon's URL and the requests it has seen."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server.seen  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def test_requests_carry_the_key_the_json_body_the_query_and_a_proxy_sub_path(api) -> None:
    url, seen = api
    client = DaemonClient(f"{url}/herd/", "s3cret")
    assert client.switch("dense", restart=True).ok
    assert seen[-1] == {
        "path": "/herd/switch",
        "auth": "Bearer s3cret",
        "type": "application/json",
        "body": {"model": "dense", "restart": True},
    }
    assert client.stop("moe").stopped == ["moe"]
    assert seen[-1]["path"] == "/herd/stop?model=moe"
    assert client.logs(5, since=3).total is None
    assert seen[-1]["path"] == "/herd/logs?tail=5&since=3"
    DaemonClient(f"{url}/herd").logs()
    assert seen[-1]["auth"] is None  # no key: no header


def test_api_errors_become_one_line_usage_errors(api) -> None:
    url, _ = api
    # The daemon's suggestion follows its error, on the same line.
    with pytest.raises(UsageError, match=r"^unknown model: x; did you mean 'y'\?$"):
        DaemonClient(f"{url}/missing").switch("x")
    with pytest.raises(UsageError, match="wrong or missing API key"):
        DaemonClient(f"{url}/locked").status()


def test_an_answer_in_another_shape_names_the_field(api) -> None:
    url, _ = api
    with pytest.raises(HerdError, match=r"/status answered in an unexpected shape \(daemon: "):
        DaemonClient(f"{url}/odd").status()


def _failure(call) -> tuple[type, str]:
    with pytest.raises(HerdError) as caught:
        call()
    return type(caught.value), str(caught.value)


def _async_failure(url: str) -> tuple[type, str]:
    async def status() -> None:
        remote = Remote(url)
        try:
            await remote.status()
        finally:
            await remote.aclose()

    return _failure(lambda: asyncio.run(status()))


@pytest.mark.parametrize("where", ["proxy", "missing", "locked", "odd", "refused"])
def test_the_cli_and_the_dashboard_report_each_failure_alike(api, where: str) -> None:
    url, _ = api
    url = f"http://127.0.0.1:{free_port()}" if where == "refused" else f"{url}/{where}"
    sync = _failure(DaemonClient(url).status)
    assert _async_failure(url) == sync
    kind, message = sync
    expected = {
        "proxy": (HerdError, "HTTP 502, not an answer from herd: '<html><head><title>502"),
        "missing": (UsageError, "unknown model: x; did you mean 'y'?"),
        "locked": (UsageError, "wrong or missing API key (set HERD_API_KEY)"),
        "odd": (HerdError, "answered in an unexpected shape"),
        "refused": (Unreachable, "no herd daemon answers at"),
    }[where]
    assert kind is expected[0] and expected[1] in message, sync


def test_nothing_listening_says_no_daemon_and_how_to_start_one() -> None:
    client = DaemonClient(f"http://127.0.0.1:{free_port()}")
    assert client.alive() is False
    with pytest.raises(HerdError, match="no herd daemon answers at .*`herd up`"):
        client.status()


def test_a_listener_that_never_answers_times_out_instead_of_hanging() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        client = DaemonClient(f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        assert client.alive() is False  # /health waits 1 s at most
        assert time.monotonic() - started < 5
        with pytest.raises(HerdError, match="GET .*/status failed: timed out"):
            client.call("GET", "/status", timeout=0.5)
