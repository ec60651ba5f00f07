"""Who may talk to the daemon from a browser: Host and Origin checks, and herd's own CORS.

Both ports sit on loopback next to a browser. Without these checks any web page could
POST /shutdown with a "simple" cross-origin request (no preflight), force a model swap
through the gateway, or read /status through DNS rebinding (a page whose name resolves
to 127.0.0.1 sends its own name as Host). So, per request, before the app sees it:

- `Host` must name the address herd is bound to (localhost names and loopback IPs when
  bound to loopback; IP literals and this machine's name on a wildcard bind; the bound
  name otherwise) or one of `[server] allowed_hosts` (a reverse proxy's name). 403.
- A request from another origin (`Origin` not the request's own scheme://Host, or no
  Origin but `Sec-Fetch-Site` saying another site sent it and it is not the user
  navigating) is refused unless `[server] allowed_origins` lists that origin. 403.
- CORS headers come from herd alone: the app's (llama-server's, which allow any origin
  with credentials) are dropped; an allowed origin gets `Access-Control-Allow-Origin`,
  and its preflight OPTIONS is answered here.

curl, SDKs and scripts send no Origin and no Sec-Fetch-*, so they pass as before.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Collection
from functools import lru_cache
from typing import TYPE_CHECKING

from llamaherd.config import ServerSettings

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
WILDCARDS = {"0.0.0.0", "::", ""}
PREFLIGHT_MAX_AGE = b"600"
ALLOWED_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSED = b"x-herd-model, retry-after"


def split_host(value: str) -> tuple[str, str]:
    """("name", "port") of a Host header or an origin's authority; IPv6 without brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        return name, rest.removeprefix(":")
    name, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return name, port


def _is_ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


@lru_cache(maxsize=1)
def _machine_names() -> frozenset[str]:
    """This machine's own names, which a client reaches a wildcard bind by."""
    return frozenset({socket.gethostname().lower(), socket.getfqdn().lower()})


def host_allowed(host: str, bound: str, extra: Collection[str]) -> bool:
    """Whether a Host header names this daemon (bound to `bound`), with or without port."""
    name, _ = split_host(host)
    if name in extra or host.strip().lower() in extra:
        return True
    bound = bound.strip("[]").lower()
    ip = _is_ip(name)
    local = name in LOCAL_NAMES or name.endswith(".localhost") or bool(ip and ip.is_loopback)
    bound_ip = _is_ip(bound)
    if bound in LOCAL_NAMES or (bound_ip and bound_ip.is_loopback):
        return local
    if bound in WILDCARDS:
        # An IP literal cannot be rebound by DNS; a name must be this machine's own.
        return local or ip is not None or name in _machine_names()
    return name == bound or (ip is not None and ip == bound_ip)


def _origin_of_request(scope: Scope, host: str) -> str:
    return f"{scope.get('scheme', 'http')}://{host.strip().lower()}"


def _same_origin(origin: str, own: str) -> bool:
    """Compare scheme://host:port, with the scheme's default port made explicit."""

    def normal(value: str) -> tuple[str, str, str]:
        scheme, _, authority = value.partition("://")
        name, port = split_host(authority.rstrip("/"))
        return scheme, name, port or {"http": "80", "https": "443"}.get(scheme, "")

    return normal(origin.lower()) == normal(own)


class Guard:
    """ASGI middleware around one of the daemon's apps. `settings()` is read per request,
    so a reload that changes allowed_hosts/allowed_origins applies at once; `bound` is
    the host the sockets were bound to (a reload cannot move them)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Callable[[], ServerSettings],
        bound: str,
        *,
        openai_errors: bool = False,
    ) -> None:
        self.app = app
        self.settings = settings
        self.bound = bound
        self.openai_errors = openai_errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = self.settings()
        headers = {k: v for k, v in scope["headers"] if k in _CHECKED}
        host = headers.get(b"host", b"").decode("latin-1")
        allowed_hosts = {h.lower() for h in settings.allowed_hosts}
        if host and not host_allowed(host, self.bound, allowed_hosts):
            await self._refuse(
                send,
                f"Host '{host}' does not name this daemon (bound to {self.bound}); "
                "behind a reverse proxy, add its name to [server] allowed_hosts",
            )
            return
        origin = headers.get(b"origin", b"").decode("latin-1").strip()
        fetch_site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        allowed = _listed(origin, settings.allowed_origins)
        if origin and not allowed and not _same_origin(origin, _origin_of_request(scope, host)):
            await self._refuse(
                send,
                f"requests from origin '{origin}' are refused; to let pages from it use "
                f'herd, add it to [server] allowed_origins (e.g. ["{origin}"])',
            )
            return
        if not origin and fetch_site in ("cross-site", "same-site") and not _navigation(scope):
            await self._refuse(
                send,
                "requests sent by another site's page are refused; to let a page use herd, "
                "add its origin to [server] allowed_origins",
            )
            return
        if allowed and scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            await _preflight(send, origin, headers)
            return
        await self.app(scope, receive, _with_cors(send, origin if allowed else None))

    async def _refuse(self, send: Send, message: str) -> None:
        data: dict[str, object]
        if self.openai_errors:
            data = {"error": {"message": message, "type": "permission_error", "code": 403}}
        else:
            data = {"error": message}
        body = json.dumps(data).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


_CHECKED = {
    b"host",
    b"origin",
    b"sec-fetch-site",
    b"sec-fetch-mode",
    b"access-control-request-method",
    b"access-control-request-headers",
}


def _listed(origin: str, allowed: Collection[str]) -> bool:
    if not origin or origin == "null":  # a sandboxed iframe or file:// page: never listed
        return False
    return "*" in allowed or any(_same_origin(origin, entry) for entry in allowed)


def _navigation(scope: Scope) -> bool:
    """The user following a link to the web UI or /docs: a top-level GET, not a script."""
    mode = next((v for k, v in scope["headers"] if k == b"sec-fetch-mode"), b"")
    return scope["method"] == "GET" and mode == b"navigate"


async def _preflight(send: Send, origin: str, headers: dict[bytes, bytes]) -> None:
    response = [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-methods", ALLOWED_METHODS),
        (b"access-control-max-age", PREFLIGHT_MAX_AGE),
        (b"vary", b"Origin"),
        (b"content-length", b"0"),
    ]
    requested = headers.get(b"access-control-request-headers")
    if requested:
        response.append((b"access-control-allow-headers", requested))
    await send({"type": "http.response.start", "status": 204, "headers": response})
    await send({"type": "http.response.body", "body": b""})


def _with_cors(send: Send, origin: str | None) -> Send:
    """`send` with the app's Access-Control-* headers replaced by herd's own."""
    ours: list[tuple[bytes, bytes]] = []
    if origin:
        ours = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSED),
            (b"vary", b"Origin"),
        ]

    async def guarded_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            kept = [(k, v) for k, v in message["headers"] if not _is_cors(k)]
            message = {**message, "headers": kept + ours}
        await send(message)

    return guarded_send


def _is_cors(name: bytes) -> bool:
    return name[:15].lower() == b"access-control-"
