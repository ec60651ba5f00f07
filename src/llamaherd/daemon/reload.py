"""Re-reading herd.toml while the daemon runs (POST /reload, SIGHUP, the file changing)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from llamaherd.config import load_config
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.daemon.trust import check_reload
from llamaherd.errors import ConfigError

log = logging.getLogger(__name__)


class ConfigReloader:
    """Re-reads herd.toml on POST /reload, SIGHUP, or when the file changes on disk.

    A bad file is rejected with its error (published as a `reload` event, and logged)
    and the config in force stays.
    """

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.path = supervisor.config.path
        self.bound_host = supervisor.config.server.host  # where the sockets stay bound
        self.mtime = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def reload(self) -> dict:
        if self.path is None:
            raise ConfigError("the daemon was started without a config file to re-read")
        self.mtime = self._mtime()
        try:
            config = load_config(self.path)
            if not config.models:  # an editor truncates before it writes: never drop them all
                raise ConfigError(
                    "has no [models.<id>] profile (empty, or caught while being saved?)",
                    path=self.path,
                    hint="keep at least one profile; the config in force stays",
                )
            check_reload(self.supervisor.config, config, self.path, self.bound_host)
        except ConfigError as error:
            self.supervisor.events.publish("reload", ok=False, error=str(error))
            log.warning("reload rejected, the old config stays: %s", error)
            raise
        answer = self.supervisor.apply_config(config)
        if answer.get("needs_daemon_restart"):
            log.warning(
                "reload: %s changed, which takes a daemon restart (herd down, then herd up); "
                "the daemon keeps listening where it started",
                ", ".join(answer["needs_daemon_restart"]),
            )
        self.supervisor.events.publish("reload", **answer)
        return answer

    def reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):
            self.reload()

    async def watch_forever(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            if self._mtime() != self.mtime:
                self.reload_quietly()
