"""The dashboard's face of the management API client (client.ApiCore: the same URL, key,
schema models and errors as the CLI's), and value formatting.

The dashboard must keep drawing when the daemon goes away (restart, network): it shows
`client.Unreachable` as "disconnected" and an error answer as a note, and keeps polling.
A missing endpoint (`/system` on an older daemon) is `None`.
"""

from __future__ import annotations

from typing import Any

import httpx

from llamaherd import schema
from llamaherd.client import ApiCore

DASH = "—"
SPARKLINE_WIDTH = 30  # samples in the widest sparkline (one a second)


class Remote(ApiCore):
    def __init__(self, url: str, api_key: str | None = None) -> None:
        super().__init__(url, api_key)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _exchange(
        self, method: str, path: str, *, timeout: float, json_body: Any = None
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, timeout=timeout, json=json_body)
        except httpx.ConnectError:
            raise self.no_daemon() from None
        except httpx.HTTPError as error:
            raise self.failed(method, path, str(error) or type(error).__name__) from None

    async def call(
        self,
        method: str,
        path: str,
        *,
        timeout: float = 10.0,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """The JSON answer of one call, or the core's error for what went wrong."""
        target = self.target(path, params)
        response = await self._exchange(method, target, timeout=timeout, json_body=json_body)
        return self.read(method, path, response.status_code, response.content)

    async def status(self) -> schema.Status:
        return self.parse(schema.Status, "/status", await self.call("GET", "/status"))

    async def models(self) -> list[schema.ModelRow]:
        return self.parse(schema.ModelList, "/models", await self.call("GET", "/models")).models

    async def system(self) -> schema.SystemSnapshot | None:
        # Only the history a sparkline shows: the rest would be parsed every second.
        target = self.target("/system", {"points": SPARKLINE_WIDTH})
        response = await self._exchange("GET", target, timeout=5.0)
        if response.status_code == 404:
            return None  # an older daemon without samplers: "no samples"
        answer = self.read("GET", "/system", response.status_code, response.content)
        return self.parse(schema.SystemSnapshot, "/system", answer)

    async def activity(self, limit: int) -> list[schema.ActivityRecord] | None:
        """The latest gateway requests; None from a daemon without an activity log."""
        target = self.target("/activity", {"limit": limit})
        response = await self._exchange("GET", target, timeout=5.0)
        if response.status_code in (404, 503):
            return None
        answer = self.read("GET", "/activity", response.status_code, response.content)
        return self.parse(schema.ActivityPage, "/activity", answer).records

    async def logs(self, *, tail: int, since: int | None, model: str | None) -> schema.LogPage:
        params = {"tail": tail, "since": since, "model": model}
        answer = await self.call("GET", "/logs", params=params)
        return self.parse(schema.LogPage, "/logs", answer)

    async def switch(self, model: str) -> schema.SwitchDone | schema.SwitchFailed:
        body = {"model": model}
        answer = await self.call("POST", "/switch", json_body=body, timeout=900.0)
        return self.parse(schema.SwitchReply, "/switch", answer).root

    async def stop(self) -> schema.Stopped:
        answer = await self.call("POST", "/stop", timeout=120.0)
        return self.parse(schema.Stopped, "/stop", answer)


def num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def fmt_bytes(value: object) -> str:
    number = num(value)
    if number is None:
        return DASH
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(number) < 1024 or unit == "TiB":
            return f"{number:.0f} {unit}" if unit in ("B", "KiB") else f"{number:.1f} {unit}"
        number /= 1024
    return DASH  # unreachable


def fmt(value: object, spec: str = ".0f", suffix: str = "") -> str:
    number = num(value)
    return DASH if number is None else f"{number:{spec}}{suffix}"


def fmt_duration(seconds: object) -> str:
    number = num(seconds)
    if number is None:
        return DASH
    number = int(number)
    hours, rest = divmod(number, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def fmt_ctx(ctx: object) -> str:
    number = num(ctx)
    if number is None:
        return "model"
    return f"{number / 1024:.0f}K" if number >= 1024 else f"{number:.0f}"


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: object, width: int = SPARKLINE_WIDTH, top: float | None = None) -> str:
    """The last `width` samples as block characters (None/missing samples as spaces)."""
    if not isinstance(values, list):
        return ""
    points = [num(v) for v in values[-width:]]
    known = [p for p in points if p is not None]
    if not known:
        return ""
    high = top if top else max(known) or 1.0
    return "".join(
        " " if p is None else SPARK[min(len(SPARK) - 1, max(0, int(p / high * (len(SPARK) - 1))))]
        for p in points
    )


def bar(fraction: float | None, width: int = 20) -> str:
    """A text bar; cheaper to redraw every second than a widget per GPU."""
    if fraction is None:
        return "·" * width
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)
