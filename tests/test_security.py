"""A web page, a foreign Host and slow or huge clients against a real daemon (raw HTTP
with the headers a browser sends; issue 12)."""

from __future__ import annotations

import os
import socket
import time

import httpx
import psutil
import pytest
from conftest import alive, server_key, wait_until

from llamaherd import control, paths
from llamaherd.config import Config
from llamaherd.daemon import guard
from llamaherd.errors import ConfigError

EVIL = "http://evil.example"
# What Chrome sends with a cross-origin "simple" request (no preflight) from a page.
SIMPLE = {
    "Origin": EVIL,
    "Content-Type": "text/plain;charset=UTF-8",
    "Sec-Fetch-Site": "cross-site",
    "Sec-Fetch-Mode": "no-cors",
}


def test_a_cross_origin_page_cannot_drive_or_read_the_management_api(daemon) -> None:
    herd = daemon()
    control.up(herd, "dense")
    api = herd.server.api_url
    for path in ("/shutdown", "/stop", "/reload", "/switch"):
        body = '{"model": "dense"}'
        response = httpx.post(f"{api}{path}", content=body, headers=SIMPLE, timeout=10)
        assert response.status_code == 403, path
        assert "allowed_origins" in response.json()["error"]
        assert "access-control-allow-origin" not in response.headers
    for path in ("/status", "/logs", "/events"):
        response = httpx.get(f"{api}{path}", headers={"Origin": EVIL}, timeout=10)
        assert response.status_code == 403, path
    # A GET without Origin that a page's <img>/<script> sends is refused too.
    no_origin = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    assert httpx.get(f"{api}/status", headers=no_origin, timeout=10).status_code == 403
    assert alive(herd)  # /shutdown did not run
    status = httpx.get(f"{api}/status", timeout=10).json()
    assert (status["model"], status["state"]) == ("dense", "ready")  # nothing was stopped


def test_a_cross_origin_page_cannot_swap_models_through_the_gateway(daemon) -> None:
    herd = daemon()
    control.up(herd, "dense")
    url = f"{herd.server.public_url}/v1/chat/completions"
    body = '{"model": "moe", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}'
    response = httpx.post(url, content=body, headers=SIMPLE, timeout=30)
    assert response.status_code == 403
    assert "allowed_origins" in response.json()["error"]["message"]
    img = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    models = f"{herd.server.public_url}/props?model=moe"
    assert httpx.get(models, headers=img, timeout=30).status_code == 403
    assert httpx.get(f"{herd.server.api_url}/status", timeout=10).json()["model"] == "dense"


def test_a_foreign_host_is_refused_on_both_ports(daemon) -> None:
    herd = daemon()
    rebound = {"Host": f"attacker.example:{herd.server.api_port}"}
    response = httpx.get(f"{herd.server.api_url}/status", headers=rebound, timeout=10)
    assert response.status_code == 403
    assert "allowed_hosts" in response.json()["error"]
    rebound = {"Host": f"attacker.example:{herd.server.port}"}
    response = httpx.get(f"{herd.server.public_url}/v1/models", headers=rebound, timeout=10)
    assert response.status_code == 403
    assert "allowed_hosts" in response.json()["error"]["message"]
    for host in ("localhost", f"localhost:{herd.server.port}", f"127.0.0.1:{herd.server.port}"):
        response = httpx.get(f"{herd.server.public_url}/v1/models", headers={"Host": host})
        assert response.status_code == 200, host


def test_allowed_hosts_admit_a_reverse_proxy_name(daemon) -> None:
    herd = daemon(allowed_hosts=["herd.internal"])
    proxied = {"Host": "herd.internal"}
    assert httpx.get(f"{herd.server.api_url}/status", headers=proxied).status_code == 200


def test_scripts_without_origin_keep_working(daemon) -> None:
    herd = daemon()
    # What `curl -X POST 127.0.0.1:8081/switch -d '{"model": ...}'` sends.
    curl = {
        "Host": f"127.0.0.1:{herd.server.api_port}",
        "User-Agent": "curl/8.5.0",
        "Accept": "*/*",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = httpx.post(
        f"{herd.server.api_url}/switch", content='{"model": "dense"}', headers=curl, timeout=120
    )
    assert response.status_code == 200
    assert response.json()["model"] == "dense"


def test_the_web_ui_works_from_its_own_origin(daemon) -> None:
    herd = daemon()
    control.up(herd, "dense")
    own = {
        "Origin": herd.server.public_url,
        "Sec-Fetch-Site": "same-origin",
        "Content-Type": "application/json",
    }
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    url = f"{herd.server.public_url}/v1/chat/completions"
    response = httpx.post(url, json=body, headers=own, timeout=60)
    assert response.status_code == 200
    # llama-server allows any origin itself; herd drops that.
    assert "access-control-allow-origin" not in response.headers
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}  # a link to the UI
    assert httpx.get(f"{herd.server.public_url}/", headers=link, timeout=30).status_code == 200


def test_an_allowed_origin_gets_cors_headers_and_its_preflight_answered(daemon) -> None:
    page = "http://localhost:3000"
    herd = daemon(allowed_origins=[page])
    api = herd.server.api_url
    preflight = {
        "Origin": page,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization",
    }
    response = httpx.options(f"{api}/switch", headers=preflight, timeout=10)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == page
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "content-type, authorization"
    response = httpx.get(f"{api}/status", headers={"Origin": page}, timeout=10)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == page
    evil = httpx.options(f"{api}/switch", headers={**preflight, "Origin": EVIL}, timeout=10)
    assert evil.status_code == 403


def raw_response(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the daemon sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_huge_or_too_many_headers_get_431(daemon) -> None:
    herd = daemon(max_header_kb=8, max_headers=20)
    for port in (herd.server.port, herd.server.api_port):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            big = b"x-big: " + b"a" * 64 * 1024
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + big + b"\r\n\r\n")
            assert raw_response(sock).startswith(b"HTTP/1.1 431 ")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            many = b"".join(b"x-h%d: 1\r\n" % i for i in range(30))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")
            assert raw_response(sock).startswith(b"HTTP/1.1 431 ")
    assert alive(herd)


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the daemon closes `sock` (EOF or reset) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_slow_header_connection_is_closed_by_the_header_timeout(daemon) -> None:
    herd = daemon(header_timeout=1)
    with socket.create_connection(("127.0.0.1", herd.server.api_port)) as sock:
        began = time.monotonic()
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest

        def trickle_until_closed() -> bool:
            try:
                sock.sendall(b"x")  # a byte now and then, as a slowloris client does
            except OSError:
                return True
            return closed_within(sock, 0.2)

        assert wait_until(trickle_until_closed, timeout=10)
        assert 0.9 < time.monotonic() - began < 5
    assert alive(herd)


def test_a_stalled_body_is_closed_by_the_body_timeout(daemon) -> None:
    herd = daemon(body_timeout=1)
    with socket.create_connection(("127.0.0.1", herd.server.port)) as sock:
        began = time.monotonic()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        assert wait_until(lambda: closed_within(sock, 0.2), timeout=10)
        assert 0.9 < time.monotonic() - began < 5
    assert alive(herd)


def test_connections_past_max_connections_are_closed(daemon) -> None:
    herd = daemon(max_connections=5, header_timeout=30)
    held = [socket.create_connection(("127.0.0.1", herd.server.api_port)) for _ in range(5)]
    try:
        with socket.create_connection(("127.0.0.1", herd.server.api_port)) as extra:
            assert closed_within(extra, 5)
        for sock in held:
            sock.close()
        assert wait_until(lambda: alive(herd), timeout=10)
    finally:
        for sock in held:
            sock.close()


@pytest.mark.parametrize(
    ("host", "bound", "ok"),
    [
        ("127.0.0.1:8081", "127.0.0.1", True),
        ("localhost", "127.0.0.1", True),
        ("[::1]:8080", "127.0.0.1", True),
        ("rebind.attacker.example:8081", "127.0.0.1", False),
        ("192.168.1.5:8080", "127.0.0.1", False),
        ("192.168.1.5:8080", "0.0.0.0", True),  # an IP literal cannot be rebound
        ("rebind.attacker.example", "0.0.0.0", False),
        ("192.168.1.5", "192.168.1.5", True),
        ("localhost", "192.168.1.5", False),
        ("box.lan:8080", "box.lan", True),
    ],
)
def test_host_must_name_the_bound_address(host: str, bound: str, ok: bool) -> None:
    assert guard.host_allowed(host, bound, set()) is ok


def test_an_allowed_origin_that_is_not_an_origin_is_a_config_error(tmp_path, make_herd) -> None:
    with pytest.raises(ConfigError, match="allowed_origins entry 'localhost:3000'"):
        make_herd(allowed_origins=["localhost:3000"])


def test_llama_servers_own_port_refuses_callers_without_herds_key(daemon) -> None:
    herd = daemon(api_key="s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    answer = control.connect(herd).switch("dense")
    internal = answer.url
    chat = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{internal}/v1/chat/completions", json=chat, timeout=30).status_code == 401
    assert httpx.get(f"{internal}/slots", timeout=10).status_code == 401
    # herd's key is not llama-server's: the gateway swaps one for the other.
    assert httpx.get(f"{internal}/slots", headers=bearer, timeout=10).status_code == 401
    url = f"{herd.server.public_url}/v1/chat/completions"
    assert httpx.post(url, json=chat, headers=bearer, timeout=60).status_code == 200
    anthropic = {"x-api-key": "s3cret"}
    assert httpx.post(url, json=chat, headers=anthropic, timeout=60).status_code == 200
    # The samplers still read /metrics and /slots with the key.
    api = herd.server.api_url
    page = httpx.get(f"{api}/metrics", headers=bearer, timeout=10).text
    assert 'llamacpp:prompt_tokens_total{model="dense"}' in page

    def system_has_slots() -> bool:
        servers = httpx.get(f"{api}/system", headers=bearer, timeout=10).json()["servers"]
        return any(s["model"] == "dense" and s["slots_idle"] is not None for s in servers)

    assert wait_until(system_has_slots, timeout=10)
    # The key is passed in the environment: not on argv, not in /status.
    status = httpx.get(f"{api}/status", headers=bearer, timeout=10)
    key = server_key(answer)
    assert key not in status.text
    assert not any(key in word for word in psutil.Process(answer.pid).cmdline())


# -- reloads ---------------------------------------------------------------------------


def daemon_log() -> str:
    return (paths.state_dir() / "daemon.log").read_text()


def reload(config: Config, **headers: str) -> httpx.Response:
    return httpx.post(f"{config.server.api_url}/reload", headers=headers, timeout=30)


def test_a_reload_cannot_remove_the_key_of_a_daemon_on_the_network(daemon) -> None:
    herd = daemon(api_key="s3cret", host="0.0.0.0")
    assert herd.path is not None
    text = herd.path.read_text()
    herd.path.write_text(text.replace('api_key = "s3cret"', "").replace("0.0.0.0", "127.0.0.1"))
    answer = reload(herd, authorization="Bearer s3cret")
    assert answer.status_code == 400
    assert "listens on 0.0.0.0" in answer.json()["error"] and "api_key" in answer.json()["error"]
    assert httpx.get(f"{herd.server.api_url}/status", timeout=10).status_code == 401


def test_a_host_change_says_it_needs_a_daemon_restart(daemon) -> None:
    herd = daemon(host="127.0.0.1")
    assert herd.path is not None
    herd.path.write_text(herd.path.read_text().replace('"127.0.0.1"', '"127.0.0.2"'))
    answer = reload(herd).json()
    assert answer["needs_daemon_restart"] == ["host"]
    assert wait_until(lambda: "host changed, which takes a daemon restart" in daemon_log())


def with_preload(config: Config) -> None:
    assert config.path is not None
    text = config.path.read_text()
    profile = '[models.dense]\nname = "Tiny dense"\n'
    config.path.write_text(text.replace(profile, profile + 'env = { LD_PRELOAD = "/x/evil.so" }\n'))


@pytest.mark.parametrize("how", ["others may write it", "another user owns it"])
def test_a_reload_from_an_untrusted_file_cannot_change_what_llama_server_runs(
    daemon, how: str
) -> None:
    herd = daemon()
    assert herd.path is not None
    if how == "others may write it":
        herd.path.chmod(0o666)
        expected = "writable by group or others (mode 666)"
    else:
        os.chown(herd.path, 12345, -1)  # the tests run as root: a stand-in other user
        expected = "owned by uid 12345"
    with_preload(herd)
    answer = reload(herd)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "dense: env LD_PRELOAD" in error and expected in error and "chmod go-w" in error
    assert "/x/evil.so" not in error
    status = httpx.get(f"{herd.server.api_url}/status", timeout=10).json()
    assert status["stale"] == []
    # Fixed as the error says: taken, and the log names the key, never the value.
    os.chown(herd.path, os.geteuid(), -1)
    herd.path.chmod(0o644)
    assert reload(herd).status_code == 200
    assert wait_until(lambda: "dense: env LD_PRELOAD" in daemon_log())
    assert "/x/evil.so" not in daemon_log()
