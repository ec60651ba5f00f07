"""Clients of the management API: one core (URL, key, how an answer or a failure reads)
with a synchronous face here, for the CLI and scripts, and an asynchronous one in
tui/remote.py, for the dashboard. Both return the models in schema/ and raise the
same errors for the same failures.

The sync face speaks HTTP with the standard library: every `herd` command builds one,
and httpx (its import and its TLS context) would cost a command more than the rest of
its start. For the same reason pydantic and schema/ load when the first answer is
parsed: `herd status` with no daemon, or `herd switch` failing to reach one, never
builds a model class.
"""

from __future__ import annotations

import http.client
import json
import ssl
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from llamaherd.errors import HerdError, UsageError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from llamaherd import schema

Shape = TypeVar("Shape", bound="BaseModel")
_ERROR_PAGE_CHARS = 120  # of a non-JSON error page (a proxy's), quoted in the message


class Unreachable(HerdError):
    """No answer from the daemon's address (nothing listens, a timeout, a cut-off
    connection): the dashboard shows "disconnected" and retries."""


class ApiCore:
    """What both faces share: the address, the key, and the one mapping from what came
    back (or did not) to a schema model or an error."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    @staticmethod
    def target(path: str, params: dict[str, Any] | None = None) -> str:
        """The path with its query (parameters that are None are left out)."""
        query = {key: value for key, value in (params or {}).items() if value is not None}
        return f"{path}?{urlencode(query)}" if query else path

    def no_daemon(self) -> Unreachable:
        """The connection was refused (or the host is unknown): no daemon there."""
        return Unreachable(
            f"no herd daemon answers at {self.url}; start one with `herd up` or `herd serve`"
        )

    def failed(self, method: str, path: str, reason: str) -> Unreachable:
        """Something listens but no answer came (timed out, TLS trouble, cut off)."""
        return Unreachable(f"{method} {self.url}{path} failed: {reason}")

    def read(self, method: str, path: str, status: int, content: bytes) -> Any:
        """The JSON of an answer; an error answer (4xx, 5xx; a failed switch is a 200)
        raises: UsageError for bad input (400, 404; with the daemon's `hint`) and a wrong
        key (401), HerdError for the rest, a proxy's HTML error page included."""
        try:
            body = json.loads(content) if content else {}
        except ValueError:
            text = content.decode(errors="replace").strip().splitlines()
            snippet = text[0][:_ERROR_PAGE_CHARS] if text else ""
            raise HerdError(
                f"{method} {self.url}{path}: HTTP {status}, not an answer from herd: {snippet!r}"
            ) from None
        if status == 401:
            raise UsageError(f"{self.url}: wrong or missing API key (set HERD_API_KEY)")
        if status < 400:
            return body
        message = body.get("error") if isinstance(body, dict) else None
        if message and body.get("hint"):
            message = f"{message}; {body['hint']}"
        if status in (400, 404):
            raise UsageError(message or f"{path}: HTTP {status}")
        raise HerdError(f"{method} {path}: HTTP {status}: {message or body}")

    def parse(self, shape: type[Shape], path: str, body: Any) -> Shape:
        """The body as its schema model; a daemon that answers another shape (another
        version, another program on the port) is an error with the field that differs."""
        from pydantic import ValidationError  # loaded with `shape` already

        try:
            return shape.model_validate(body)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise HerdError(
                f"{self.url}{path} answered in an unexpected shape ({where}: {first['msg']}); "
                "is it a herd daemon of this version?"
            ) from None


class _Refused(OSError):
    """Nothing answers at the address (refused, unknown host, no route)."""


class DaemonClient(ApiCore):
    """The synchronous face: each call opens a fresh connection (the CLI makes a few).
    Each method imports schema/ once an answer has arrived to parse."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        super().__init__(url, api_key)
        parts = urlsplit(self.url)
        self._scheme = parts.scheme
        self._netloc = parts.netloc
        self._prefix = parts.path  # a daemon behind a reverse proxy's sub-path

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
        (_Refused: nothing listens; TimeoutError; a broken connection)."""
        if self._scheme not in ("http", "https"):
            raise OSError(f"{self.url!r} is not an http:// or https:// URL")
        https = self._scheme == "https"
        kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
        connection = kind(self._netloc, timeout=timeout)
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            try:
                connection.connect()
            except (TimeoutError, ssl.SSLError):
                raise  # something answers (slowly, or with TLS trouble): not "no daemon"
            except OSError as error:
                raise _Refused(error) from None
            connection.request(method, self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except http.client.HTTPException as error:  # a malformed or cut-off answer
            raise ConnectionAbortedError(f"{type(error).__name__}: {error}") from None
        finally:
            connection.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        timeout: float = 10.0,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON answer of one call, or the core's error for what went wrong."""
        body = json.dumps(json_body).encode() if json_body is not None else None
        try:
            status, content = self._exchange(
                method, self.target(path, params), timeout=timeout, body=body
            )
        except _Refused:
            raise self.no_daemon() from None
        except OSError as error:
            raise self.failed(method, path, str(error) or type(error).__name__) from None
        return self.read(method, path, status, content)

    def status(self) -> schema.Status:
        answer = self.call("GET", "/status")
        from llamaherd import schema

        return self.parse(schema.Status, "/status", answer)

    def models(self) -> list[schema.ModelRow]:
        answer = self.call("GET", "/models")
        from llamaherd import schema

        return self.parse(schema.ModelList, "/models", answer).models

    def switch(
        self, model: str, *, restart: bool = False, timeout: float = 600.0
    ) -> schema.SwitchDone | schema.SwitchFailed:
        """SwitchFailed (with `error`, `restored`) when the model did not start."""
        body = {"model": model, "restart": restart}
        answer = self.call("POST", "/switch", json_body=body, timeout=timeout)
        from llamaherd import schema

        return self.parse(schema.SwitchReply, "/switch", answer).root

    def admission(self, query: schema.AdmissionQuery) -> schema.Admission:
        """Would this profile or GGUF fit beside the running models? Nothing starts."""
        body = query.model_dump(exclude_none=True)
        answer = self.call("POST", "/admission", json_body=body, timeout=60.0)
        from llamaherd import schema

        return self.parse(schema.Admission, "/admission", answer)

    def reload(self) -> schema.Reloaded:
        """Re-read herd.toml; a bad file raises UsageError with its error (old one stays)."""
        answer = self.call("POST", "/reload")
        from llamaherd import schema

        return self.parse(schema.Reloaded, "/reload", answer)

    def stop(self, model: str | None = None) -> schema.Stopped:
        """Stop every model (or one)."""
        answer = self.call("POST", "/stop", params={"model": model}, timeout=120.0)
        from llamaherd import schema

        return self.parse(schema.Stopped, "/stop", answer)

    def system(self, points: int | None = None) -> schema.SystemSnapshot:
        """GPUs, host and per-server live numbers with their history (its last `points`)."""
        answer = self.call("GET", "/system", params={"points": points})
        from llamaherd import schema

        return self.parse(schema.SystemSnapshot, "/system", answer)

    def logs(
        self, tail: int = 100, since: int | None = None, model: str | None = None
    ) -> schema.LogPage:
        params = {"tail": tail, "since": since, "model": model}
        answer = self.call("GET", "/logs", params=params)
        from llamaherd import schema

        return self.parse(schema.LogPage, "/logs", answer)

    def activity(self, **filters: str | int | float | None) -> schema.ActivityPage:
        """Gateway requests, newest first (with `after`: oldest first); filters as
        GET /activity takes them (model, status, since, until, before, after, limit)."""
        answer = self.call("GET", "/activity", params=filters)
        from llamaherd import schema

        return self.parse(schema.ActivityPage, "/activity", answer)

    def shutdown(self) -> schema.ShuttingDown:
        answer = self.call("POST", "/shutdown", timeout=120.0)
        from llamaherd import schema

        return self.parse(schema.ShuttingDown, "/shutdown", answer)
