"""The gateway, and only the gateway, inside the sandbox's own network namespace.

The sandbox has no network but its own loopback, so neither the management API nor a
llama-server port can be reached from it. The gateway comes in through a Unix socket (as
Claude Code's own sandbox does it): a socat outside listens on a socket in a private
directory and connects to the gateway; a socat inside listens on 127.0.0.1 at the
gateway's port and connects to that socket, so ANTHROPIC_BASE_URL inside is
http://127.0.0.1:<gateway port>.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from llamaherd.errors import HerdError

INSTALL_HINT = "install socat (Debian/Ubuntu: `sudo apt install socat`)"
START_TIMEOUT_S = 10.0


def socat_path() -> str | None:
    return shutil.which("socat")


@dataclass
class Relay:
    """A relay for the gateway at `target` (host, port) through `directory`/gateway.sock."""

    target: tuple[str, int]
    directory: Path

    @classmethod
    def for_gateway(cls, url: str) -> Relay:
        """A relay for the gateway at `url`, with a fresh private directory (mode 0700)
        that only this user can enter."""
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname is None:
            raise HerdError(f"the sandbox relays only a plain http:// gateway, not {url}")
        port = parts.port or 80
        return cls((parts.hostname, port), Path(tempfile.mkdtemp(prefix="herd-sandbox-")))

    @property
    def socket(self) -> Path:
        return self.directory / "gateway.sock"

    @property
    def inside_url(self) -> str:
        """ANTHROPIC_BASE_URL inside the sandbox."""
        return f"http://127.0.0.1:{self.target[1]}"

    def inside(self, command: list[str], socat: str = "socat") -> list[str]:
        """`command` run after the inside socat listens (a shell that then execs it)."""
        port = self.target[1]
        listen = f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"
        script = (
            f"{shlex.quote(socat)} {listen} UNIX-CONNECT:{shlex.quote(str(self.socket))} &\n"
            # Wait until it accepts (an empty connection), at most START_TIMEOUT_S.
            f"n=0; until {shlex.quote(socat)} -u OPEN:/dev/null TCP:127.0.0.1:{port} "
            "2>/dev/null; do\n"
            f"  n=$((n+1)); if [ $n -ge {int(START_TIMEOUT_S * 100)} ]; then\n"
            '    echo "herd: the sandbox\'s gateway relay did not start" >&2; exit 1; fi\n'
            "  sleep 0.01\n"
            "done\n"
            'exec "$@"\n'
        )
        return ["/bin/sh", "-c", script, "herd-sandbox", *command]

    def start(self, socat: str = "socat") -> subprocess.Popen:
        """The outside socat, once its socket exists (raise if it does not come up)."""
        host, port = self.target
        target = f"TCP:[{host}]:{port}" if ":" in host else f"TCP:{host}:{port}"
        listen = f"UNIX-LISTEN:{self.socket},fork,mode=600"
        # Errors to a file, not a pipe: a pipe nobody reads would stall socat when full.
        log = self.directory / "socat.log"
        with log.open("wb") as errors:
            process = subprocess.Popen([socat, listen, target], stderr=errors)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait()
                error = log.read_text(errors="replace").strip()
                raise HerdError(f"the sandbox's gateway relay (socat) did not start: {error}")
            time.sleep(0.01)
        return process

    def close(self, process: subprocess.Popen | None) -> None:
        """Stop the outside socat (and the connections it forked) and remove the socket."""
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
