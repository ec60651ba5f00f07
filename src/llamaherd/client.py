"""A small synchronous client for the management API, used by the CLI (and by scripts)."""

from __future__ import annotations

import httpx

from llamaherd.errors import HerdError, UsageError


class DaemonClient:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=10.0)

    def alive(self) -> bool:
        try:
            return self._http.get("/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _request(self, method: str, path: str, *, timeout: float = 10.0, **kwargs) -> dict:
        try:
            response = self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.ConnectError:
            raise HerdError(
                f"no herd daemon answers at {self.url}; start one with `herd up` or `herd serve`"
            ) from None
        except httpx.HTTPError as error:
            raise HerdError(f"{method} {self.url}{path} failed: {error}") from None
        body = response.json() if response.content else {}
        if response.status_code in (400, 404):
            raise UsageError(body.get("error", f"{path}: HTTP {response.status_code}"))
        if response.status_code == 401:
            raise UsageError(f"{self.url}: wrong or missing API key (set HERD_API_KEY)")
        if response.status_code >= 400 and not (path == "/switch" and response.status_code == 502):
            raise HerdError(f"{method} {path}: HTTP {response.status_code}: {body}")
        return body

    def status(self) -> dict:
        return self._request("GET", "/status")

    def models(self) -> list[dict]:
        return self._request("GET", "/models")["models"]

    def switch(self, model: str, *, restart: bool = False, timeout: float = 600.0) -> dict:
        """Returns the API's answer; `ok` is False (with `error`, `restored`) on failure."""
        body = {"model": model, "restart": restart}
        return self._request("POST", "/switch", json=body, timeout=timeout)

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
