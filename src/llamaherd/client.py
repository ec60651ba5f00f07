"""A small synchronous client for the management API, used by the CLI (and by scripts).

It speaks HTTP with the standard library: every `herd` command builds one, and httpx
(its import and its TLS context) would cost a command more than the rest of its start.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

from llamaherd.errors import HerdError, UsageError


class _Unreachable(OSError):
    """Nothing answers at the address (refused, unknown host, no route): no daemon there."""


class DaemonClient:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        parts = urlsplit(self.url)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path  # a daemon behind a reverse proxy's sub-path
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def alive(self) -> bool:
        try:
            status, _ = self._exchange("GET", "/health", timeout=1.0)
        except OSError:
            return False
        return status == 200

    def _exchange(
        self, method: str, path: str, *, timeout: float, body: bytes | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of one request on a fresh connection; OSError when it fails
        (_Unreachable: nothing listens; TimeoutError; a broken connection)."""
        if self._scheme not in ("http", "https"):
            raise OSError(f"{self.url!r} is not an http:// or https:// URL")
        https = self._scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        connection = kind(self._netloc, timeout=timeout)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            try:
                connection.connect()
            except (TimeoutError, ssl.SSLError):
                raise  # something answers (slowly, or with TLS trouble): not "no daemon"
            except OSError as error:
                raise _Unreachable(error) from None
            connection.request(method, self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as error:  # a malformed or cut-off answer
            raise ConnectionAbortedError(f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        timeout: float = 10.0,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> dict:
        target = f"{path}?{urlencode(params)}" if params else path
        body = json.dumps(json_body).encode() if json_body is not None else None
        try:
            status, content = self._exchange(method, target, timeout=timeout, body=body)
        except _Unreachable:
            raise HerdError(
                f"no herd daemon answers at {self.url}; start one with `herd up` or `herd serve`"
            ) from None
        except OSError as error:
            raise HerdError(f"{method} {self.url}{path} failed: {error}") from None
        answer = json.loads(content) if content else {}
        if status in (400, 404):
            raise UsageError(answer.get("error", f"{path}: HTTP {status}"))
        if status == 401:
            raise UsageError(f"{self.url}: wrong or missing API key (set HERD_API_KEY)")
        if status >= 400 and not (path == "/switch" and status == 502):
            raise HerdError(f"{method} {path}: HTTP {status}: {answer}")
        return answer

    def status(self) -> dict:
        return self._request("GET", "/status")

    def models(self) -> list[dict]:
        return self._request("GET", "/models")["models"]

    def switch(self, model: str, *, restart: bool = False, timeout: float = 600.0) -> dict:
        """Returns the API's answer; `ok` is False (with `error`, `restored`) on failure."""
        body = {"model": model, "restart": restart}
        return self._request("POST", "/switch", json_body=body, timeout=timeout)

    def reload(self) -> dict:
        """Re-read herd.toml; a bad file raises UsageError with its error (old one stays)."""
        return self._request("POST", "/reload")

    def stop(self, model: str | None = None) -> dict:
        """Stop every model (or one); answers {"stopped": [ids]}."""
        params = {"model": model} if model else {}
        return self._request("POST", "/stop", params=params, timeout=120.0)

    def system(self) -> dict:
        """GPUs, host and per-server live numbers with their history (GET /system)."""
        return self._request("GET", "/system")

    def logs(self, tail: int = 100, since: int | None = None, model: str | None = None) -> dict:
        params = {"tail": tail, "since": since, "model": model}
        return self._request(
            "GET", "/logs", params={k: v for k, v in params.items() if v is not None}
        )

    def shutdown(self) -> dict:
        return self._request("POST", "/shutdown", timeout=120.0)
