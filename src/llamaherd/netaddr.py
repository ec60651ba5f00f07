"""host:port text and loopback addresses: what herd.toml's checks, the daemon's trust
rules and the RPC workers (runtime/rpc.py) agree on."""

from __future__ import annotations

import ipaddress
import re


def parse_endpoint(text: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' -> (host, port); ValueError says what is wrong."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", text.strip())
    if not match:
        raise ValueError(f"'{text}' is not host:port")
    host, port = (match[1], match[2]) if match[1] else (match[3], match[4])
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"'{text}': port {port} is not 1-65535")
    return host, int(port)


def format_endpoint(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """localhost or a loopback address ([::1] too); a host name may resolve to anything."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def local_url(host: str, port: int) -> str:
    """A URL a local client can use for a server bound to host:port; a wildcard bind is
    reached through loopback."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
