"""llama.cpp's RPC workers: one model served by GPUs on several machines.

A worker is llama.cpp's own `rpc-server` (built with GGML_RPC, as `herd build` does)
exposing its devices on a TCP port; a profile's `rpc = ["host:port", ...]` becomes
llama-server's `--rpc`, and llama.cpp spreads layers over local and remote devices.
The protocol has no authentication and no encryption: a worker must only ever be
reachable from the machines that coordinate it (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The endpoint text is shared with herd.toml's checks, which sit below the runtime.
from llamaherd.netaddr import format_endpoint as format_endpoint
from llamaherd.netaddr import is_loopback as is_loopback
from llamaherd.netaddr import parse_endpoint

DEFAULT_PORT = 50052
CONNECT_TIMEOUT = 3.0


@dataclass
class WorkerCheck:
    endpoint: str
    reachable: bool
    error: str | None = None

    def as_json(self) -> dict:
        return {"endpoint": self.endpoint, "reachable": self.reachable, "error": self.error}


async def check(endpoint: str, timeout: float = CONNECT_TIMEOUT) -> WorkerCheck:
    """Whether a TCP connection to the worker opens. Nothing is sent: rpc-server serves
    one client at a time, and a half-spoken handshake would only confuse it."""
    import asyncio  # here, not at the top: `herd worker` and doctor need no event loop

    try:
        host, port = parse_endpoint(endpoint)
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, ValueError, TimeoutError) as error:
        reason = "timed out" if isinstance(error, TimeoutError) else str(error)
        return WorkerCheck(endpoint, False, reason or type(error).__name__)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return WorkerCheck(endpoint, True)


async def check_all(endpoints: list[str]) -> list[WorkerCheck]:
    import asyncio

    return list(await asyncio.gather(*(check(e) for e in endpoints)))


def check_all_sync(endpoints: list[str]) -> list[WorkerCheck]:
    """For `herd doctor`, which has no event loop."""
    import asyncio

    return asyncio.run(check_all(endpoints)) if endpoints else []


def unreachable_reason(checks: list[WorkerCheck]) -> str | None:
    """One line for a switch that cannot start because workers are down."""
    down = [c for c in checks if not c.reachable]
    if not down:
        return None
    listing = ", ".join(f"{c.endpoint} ({c.error})" for c in down)
    return f"RPC worker unreachable: {listing}; start it there with `herd worker`"


def worker_argv(binary: Path, host: str, port: int, *, cache: bool = False) -> list[str]:
    """rpc-server's command line (flags of tools/rpc/rpc-server.cpp)."""
    argv = [str(binary), "--host", host, "--port", str(port)]
    return argv + (["--cache"] if cache else [])


def worker_env(base: Mapping[str, str], gpu: str | None) -> dict[str, str]:
    """`--gpu 0,1` shows the worker only those CUDA devices."""
    return {**base, "CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else dict(base)


def advertised_host(host: str) -> str:
    """What a coordinator should dial: the bind address, or this machine's name when the
    worker listens on every interface."""
    return os.uname().nodename if host in ("0.0.0.0", "::") else host
