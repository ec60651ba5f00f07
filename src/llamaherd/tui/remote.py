"""An async client of the management API for the dashboard, and value formatting.

The dashboard must keep drawing when the daemon goes away (restart, network), so every
call here turns transport failures into `Disconnected` instead of a traceback, and a
missing endpoint (`/system` on an older daemon) into `None`.
"""

from __future__ import annotations

import httpx

DASH = "—"
SPARKLINE_WIDTH = 30  # samples in the widest sparkline (one a second)


class Disconnected(Exception):
    """The daemon did not answer; the dashboard shows it and keeps retrying."""


class RemoteError(Exception):
    """The daemon answered with an error (bad key, unknown model)."""


class Remote:
    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self, method: str, path: str, *, timeout: float = 10.0, **kwargs: object
    ) -> dict | None:
        try:
            response = await self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            raise Disconnected(f"no answer from {self.url}: {reason}") from None
        if response.status_code == 404 and path == "/system":
            return None  # an older daemon without samplers: "no samples"
        try:
            body = response.json() if response.content else {}
        except ValueError:
            body = {}
        if response.status_code == 401:
            raise RemoteError(f"{self.url}: wrong or missing API key (set HERD_API_KEY)")
        if response.status_code >= 400 and not (path == "/switch" and response.status_code == 502):
            raise RemoteError(body.get("error") or f"{path}: HTTP {response.status_code}")
        return body

    async def status(self) -> dict:
        return await self._call("GET", "/status") or {}

    async def models(self) -> list[dict]:
        return (await self._call("GET", "/models") or {}).get("models", [])

    async def system(self) -> dict | None:
        # Only the history a sparkline shows: the rest would be parsed every second.
        params = {"points": SPARKLINE_WIDTH}
        return await self._call("GET", "/system", timeout=5.0, params=params)

    async def logs(self, *, tail: int, since: int | None, model: str | None) -> dict:
        params = {"tail": tail, "since": since, "model": model}
        query = {key: value for key, value in params.items() if value is not None}
        return await self._call("GET", "/logs", params=query) or {}

    async def switch(self, model: str) -> dict:
        return await self._call("POST", "/switch", json={"model": model}, timeout=900.0) or {}

    async def stop(self) -> dict:
        return await self._call("POST", "/stop", timeout=120.0) or {}


def get(data: object, *keys: object) -> object:
    """data[k1][k2]... or None when any step is missing: the /system shape may grow or shrink."""
    for key in keys:
        if isinstance(data, dict):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data


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
