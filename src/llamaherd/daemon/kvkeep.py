"""Prompt caches that survive a swap (docs/kv-keep.md).

Before the supervisor stops a ready model it calls `save`: each idle slot holding at least
`kv_keep_min_tokens` is written by llama-server itself (`POST /slots/{id}?action=save`,
into the `--slot-save-path` that `launched` adds) and recorded in daemon/kvstore.py, all
within `kv_keep_save_timeout`. When the model starts again, `restore` puts the saved
slots back before it is declared ready. Neither ever raises: a cache is an optimisation,
so any failure is a log line and the model serves as it would have without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from llamaherd.config import Profile
from llamaherd.config.schema import ServerSettings
from llamaherd.daemon import kvstore
from llamaherd.daemon.events import EventBus
from llamaherd.daemon.kvstore import Entry
from llamaherd.runtime import Server, auth_headers
from llamaherd.runtime.server_metrics import parse_metrics

log = logging.getLogger(__name__)

SLOT_SAVE_FLAG = "--slot-save-path"


@dataclass
class LastRestore:
    """What the last start of a profile restored (for /status)."""

    at: float
    tokens: int = 0
    files: int = 0
    discarded: int = 0
    error: str | None = None
    seconds_saved: float = 0.0  # the restored tokens at their server's prompt speed


class KvKeep:
    def __init__(self, llama_server: Path, state_dir: Path, events: EventBus) -> None:
        self.llama_server = llama_server
        self.root = kvstore.kv_dir(state_dir)
        self.events = events
        self.last_restore: dict[str, LastRestore] = {}

    def enabled(self, profile: Profile, settings: ServerSettings) -> bool:
        """Kept unless the profile opts out or the budget is 0. Native only: a container
        would need the directory mounted; a profile naming its own save path keeps it."""
        return (
            profile.kv_keep
            and settings.kv_keep_budget_mb > 0
            and profile.runtime != "docker"
            and SLOT_SAVE_FLAG not in profile.args
        )

    def launched(self, profile: Profile, settings: ServerSettings) -> Profile:
        """The profile as started: with llama-server's slot save directory when kept.
        (llama-server joins it and the file name as strings: hence the trailing /.)"""
        if not self.enabled(profile, settings):
            return profile
        self.root.mkdir(parents=True, exist_ok=True)
        return profile.model_copy(update={"args": [*profile.args, SLOT_SAVE_FLAG, f"{self.root}/"]})

    # -- on the way out ---------------------------------------------------------------
    async def save(self, profile: Profile, server: Server, settings: ServerSettings) -> None:
        """Save the slots worth keeping; gives up after kv_keep_save_timeout."""
        if not self.enabled(profile, settings) or server.returncode is not None:
            return
        timeout = settings.kv_keep_save_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._save(profile, server, settings)
        except TimeoutError:
            log.warning("saving %s's prompt cache took over %gs: given up", profile.id, timeout)
        except Exception as error:  # a cache is never worth a failed stop
            log.warning("saving %s's prompt cache failed: %s", profile.id, _say(error))
        kvstore.enforce_budget(self.root, settings.kv_keep_budget_mb * 2**20)

    async def _save(self, profile: Profile, server: Server, settings: ServerSettings) -> None:
        kvstore.remove_orphans(self.root)  # an earlier save given up
        ident = kvstore.identity(profile, self.llama_server)
        async with _client(server) as http:
            slots = await _slots(http)
            speed = await _prompt_speed(http)
            for slot in slots:
                tokens = int(slot.get("n_prompt_tokens") or 0)
                if slot.get("is_processing") or tokens < settings.kv_keep_min_tokens:
                    continue
                await self._save_slot(http, profile, ident, int(slot["id"]), speed)
        # A start restores one file per slot: older ones would never be used again.
        for old in kvstore.entries(self.root, profile.id)[max(1, len(slots)) :]:
            kvstore.discard(self.root, old)

    async def _save_slot(
        self,
        http: httpx.AsyncClient,
        profile: Profile,
        ident: str,
        slot: int,
        prompt_tps: float | None,
    ) -> None:
        name = kvstore.new_name(profile, ident)
        began = time.monotonic()
        reply = await http.post(
            f"/slots/{slot}", params={"action": "save"}, json={"filename": name}
        )
        if reply.status_code != 200:
            log.warning("llama-server did not save %s's slot %d: %s", profile.id, slot, reply.text)
            return
        path = self.root / name
        digest = await asyncio.to_thread(kvstore.sha256_of, path)
        for kept in kvstore.entries(self.root, profile.id):
            if kept.sha256 == digest and kept.identity == ident:
                path.unlink()  # restored and not used since: the file is already there
                kvstore.touch(self.root, kept)
                return
        entry = Entry(
            name=name,
            profile=profile.id,
            identity=ident,
            slot=slot,
            tokens=int(reply.json()["n_saved"]),
            bytes=path.stat().st_size,
            sha256=digest,
            saved_at=time.time(),
            prompt_tps=prompt_tps,
        )
        kvstore.record(self.root, entry)
        seconds = round(time.monotonic() - began, 3)
        log.info("saved %s's slot %d: %d tokens", profile.id, slot, entry.tokens)
        self.events.publish(
            "kv_saved", model=profile.id, tokens=entry.tokens, bytes=entry.bytes, seconds=seconds
        )

    # -- on the way in ----------------------------------------------------------------
    async def restore(self, profile: Profile, server: Server, settings: ServerSettings) -> None:
        """Put the saved slots back (before the model is declared ready)."""
        if not self.enabled(profile, settings):
            return
        outcome = self.last_restore[profile.id] = LastRestore(at=time.time())
        timeout = settings.kv_keep_save_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._restore(profile, server, outcome)
        except TimeoutError:
            outcome.error = f"gave up after {timeout:g}s"
            log.warning("restoring %s's prompt cache took over %gs: given up", profile.id, timeout)
        except Exception as error:  # a cache never makes a start fail
            outcome.error = _say(error)
            log.warning("restoring %s's prompt cache failed: %s", profile.id, outcome.error)

    async def _restore(self, profile: Profile, server: Server, outcome: LastRestore) -> None:
        ident = kvstore.identity(profile, self.llama_server)
        usable = []
        for entry in kvstore.entries(self.root, profile.id):
            if entry.identity == ident:
                usable.append(entry)
            else:
                self._discard(entry, "its model file, llama-server or cache flags changed", outcome)
        if not usable:
            return
        async with _client(server) as http:
            free = [int(slot["id"]) for slot in await _slots(http)]
            for entry in usable:
                if not free:
                    break
                why = await asyncio.to_thread(kvstore.intact, self.root, entry)
                why = why or await self._restore_slot(http, entry, free[0])
                if why:
                    self._discard(entry, why, outcome)
                else:
                    free.pop(0)
                    kvstore.touch(self.root, entry)
                    outcome.tokens += entry.tokens
                    outcome.files += 1
                    if entry.prompt_tps:
                        outcome.seconds_saved += entry.tokens / entry.prompt_tps
        if outcome.files:
            log.info("restored %s's prompt cache: %d tokens", profile.id, outcome.tokens)
            saved = round(outcome.seconds_saved, 3)
            self.events.publish(
                "kv_restored", model=profile.id, tokens=outcome.tokens, seconds_saved=saved
            )

    async def _restore_slot(self, http: httpx.AsyncClient, entry: Entry, slot: int) -> str | None:
        """Restore one file; why it was refused (None: restored as saved)."""
        reply = await http.post(
            f"/slots/{slot}", params={"action": "restore"}, json={"filename": entry.name}
        )
        if reply.status_code != 200:
            return f"llama-server refused it: {_message(reply)}"
        restored = reply.json().get("n_restored")
        if restored == entry.tokens:
            return None
        # A slot holding other tokens than those saved would answer wrongly: empty it.
        await http.post(f"/slots/{slot}", params={"action": "erase"})
        return f"llama-server restored {restored} tokens, {entry.tokens} were saved"

    def _discard(self, entry: Entry, why: str, outcome: LastRestore) -> None:
        log.warning("kv cache %s of %s discarded: %s", entry.name, entry.profile, why)
        self.events.publish("kv_discarded", model=entry.profile, reason=why)
        kvstore.discard(self.root, entry)
        outcome.discarded += 1

    # -- for /status ------------------------------------------------------------------
    def status(self) -> dict[str, dict]:
        """Per profile: the saved caches, and what its last start restored."""
        now = time.time()
        answer: dict[str, dict] = {}
        for entry in kvstore.entries(self.root):
            saved = answer.setdefault(entry.profile, {"saved": [], "last_restore": None})["saved"]
            saved.append(
                {
                    "slot": entry.slot,
                    "tokens": entry.tokens,
                    "bytes": entry.bytes,
                    "age_s": round(max(0.0, now - entry.saved_at), 1),
                }
            )
        for profile_id, outcome in self.last_restore.items():
            answer.setdefault(profile_id, {"saved": []})["last_restore"] = asdict(outcome)
        return answer


def _client(server: Server) -> httpx.AsyncClient:
    # No timeout of its own: the callers bound the whole exchange.
    return httpx.AsyncClient(
        base_url=server.url, headers=auth_headers(server.api_key), timeout=None
    )


async def _slots(http: httpx.AsyncClient) -> list[dict]:
    reply = await http.get("/slots")
    reply.raise_for_status()
    slots = reply.json()
    return [slot for slot in slots if isinstance(slot, dict)] if isinstance(slots, list) else []


async def _prompt_speed(http: httpx.AsyncClient) -> float | None:
    """The server's average prompt processing speed (tokens/s) so far, from /metrics."""
    try:
        reply = await http.get("/metrics")
    except httpx.HTTPError:
        return None
    if reply.status_code != 200:
        return None
    return parse_metrics(reply.text).get("prompt_tokens_seconds") or None


def _message(reply: httpx.Response) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {reply.status_code}"


def _say(error: Exception) -> str:
    return str(error) or type(error).__name__
