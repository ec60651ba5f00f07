"""Limits against slow and huge clients, on both ports (uvicorn has none of these).

One client could stall or starve everyone: a 96 MiB header froze both ports for 13 s
(httptools joins a header's pieces as they arrive, so a huge one costs time quadratic
in its size), and 1,000 connections sending their headers byte by byte were held
forever until the open-file limit stopped the daemon accepting any more. So each
connection of `LimitedHttp` (uvicorn's httptools protocol plus these checks):

- is closed when it holds more than `[server] max_connections` together with the others;
- gets `431` when its request line and headers pass `max_header_kb`, or `max_headers` lines;
- is closed when its headers take longer than `header_timeout` seconds to arrive, or its
  body stalls (no byte while herd is reading) for `body_timeout` seconds.

`raise_open_file_limit` lifts the daemon's soft RLIMIT_NOFILE to the hard limit, so the
cap on connections, not the fd limit, is what bounds a flood.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from llamaherd.config import ServerSettings

log = logging.getLogger(__name__)


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit to the hard one; (old, new), or None if not possible."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Linux refuses an infinite NOFILE soft limit; 2**20 is its usual nr_open ceiling.
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):  # e.g. macOS above OPEN_MAX
        return soft, soft
    return soft, target


LINGER_S = 2.0  # how long a refused client's remaining bytes are read and dropped


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a request herd has already answered."""


class LimitedHttp(HttpToolsProtocol):
    # Bound by `factory`: uvicorn makes each connection's protocol with its own arguments.
    settings: ClassVar[Callable[[], ServerSettings]]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = type(self).settings()
        self._header_bytes = 0
        self._header_count = self._header_size = 0
        self._awaiting_headers = True
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    @classmethod
    def factory(cls, settings: Callable[[], ServerSettings]) -> type[LimitedHttp]:
        """What uvicorn.Config(http=...) takes: a protocol class with the settings bound."""
        return type(cls.__name__, (cls,), {"settings": staticmethod(settings)})

    # asyncio types it BaseTransport; uvicorn's protocol narrows it to Transport the same way.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            log.warning(
                "over [server] max_connections (%d): closing a new connection",
                self.limits.max_connections,
            )
            transport.abort()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        # One header still arriving: refuse before it grows (each piece is joined on).
        if self._awaiting_headers and self._header_bytes > self.limits.max_header_kb * 1024:
            self._refuse_headers()
        elif self._body_timer is not None:
            self._arm_body_timer()  # body bytes arrived: the stall clock starts over

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal stopped the parser: it was answered already
            super().send_400_response(msg)

    # Parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._awaiting_headers = True
        self._header_count = self._header_size = 0
        if self._header_timer is None:
            self._arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_size += len(name) + len(value) + 4  # ": " and CRLF
        if (
            self._header_count > self.limits.max_headers
            or self._header_size > self.limits.max_header_kb * 1024
        ):
            self._refuse_headers()
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._header_bytes = 0
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().on_headers_complete()
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    # Timers and refusals
    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._headers_late)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_stalled)

    def _cancel_timers(self) -> None:
        for timer in (self._header_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._header_timer = self._body_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            log.warning(
                "headers not complete after %gs ([server] header_timeout): closing",
                self.limits.header_timeout,
            )
            self._close()

    def _body_stalled(self) -> None:
        self._body_timer = None
        if self.flow.read_paused:  # herd is not reading (its buffer is full): not a stall
            self._arm_body_timer()
            return
        log.warning(
            "request body stalled for %gs ([server] body_timeout): closing",
            self.limits.body_timeout,
        )
        self._close()

    def _close(self) -> None:
        self._cancel_timers()
        self._refused = True
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_headers(self) -> None:
        """Answer 431 and close: the request is not read any further."""
        if self._refused:
            return
        message = (
            f"request headers over [server] max_header_kb ({self.limits.max_header_kb} KiB) "
            f"or max_headers ({self.limits.max_headers})"
        ).encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(message)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + message
        )
        # Closing with the client's bytes unread would reset the connection and lose the
        # 431; half-close instead and drop what still arrives, for LINGER_S at most.
        self._refused = True
        self._cancel_timers()
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._header_timer = self.loop.call_later(LINGER_S, self._close)
        else:
            self._close()
