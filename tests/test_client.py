"""The CLI's client of the management API (standard-library HTTP): what it sends, and how
each kind of failure reaches the user."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llamaherd.client import DaemonClient
from llamaherd.errors import HerdError, UsageError
from llamaherd.runtime.process import free_port


class _Api(BaseHTTPRequestHandler):
    """Echoes what it got; /missing answers 404 with an error, /locked 401."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        if self.path.endswith("/missing"):
            status, answer = 404, {"error": "unknown model 'x'"}
        elif self.path.endswith("/locked"):
            status, answer = 401, {"error": "unauthorized"}
        else:
            status = 200
            answer = {
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_requests_carry_the_key_the_json_body_the_query_and_a_proxy_sub_path(api: str) -> None:
    client = DaemonClient(f"{api}/herd/", "s3cret")
    answer = client.switch("dense", restart=True)
    assert answer["path"] == "/herd/switch"
    assert answer["auth"] == "Bearer s3cret" and answer["type"] == "application/json"
    assert answer["body"] == {"model": "dense", "restart": True}
    assert client.stop("moe")["path"] == "/herd/stop?model=moe"
    assert client.logs(5, since=3)["path"] == "/herd/logs?tail=5&since=3"
    assert DaemonClient(api).status()["auth"] is None  # no key: no header


def test_api_errors_become_one_line_usage_errors(api: str) -> None:
    client = DaemonClient(api)
    with pytest.raises(UsageError, match="^unknown model 'x'$"):
        client._request("GET", "/missing")
    with pytest.raises(UsageError, match="wrong or missing API key"):
        client._request("GET", "/locked")


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
            client._request("GET", "/status", timeout=0.5)
