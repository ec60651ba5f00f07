"""Prompt caches that survive a swap (docs/kv-keep.md).

Before the supervisor stops a ready model it calls `save`: each idle slot holding at least
`kv_keep_min_tokens` is written by llama-server itself (`POST /slots/{id}?action=save`,
into the `--slot-save-path` that `launched` adds) and recorded in daemon/kvstore.py, all
within `kv_keep_save_timeout`. When the model starts again, `restore` puts the saved
slots back before it is declared ready, or (`kv_restore = "lazy"`) leaves them waiting:
the gateway calls `before_request` with each request, which restores the file whose
tokens share the longest prefix with the request's prompt (daemon/kvprompt.py) into an
idle slot first. None of them ever raises: a cache is an optimisation, so any failure is
a log line and the model serves as it would have without it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from llamaherd.config import Profile
from llamaherd.config.schema import ServerSettings
from llamaherd.daemon import kvprompt, kvstore
from llamaherd.daemon.events import EventBus
from llamaherd.daemon.kvstore import Entry
from llamaherd.runtime import Server, auth_headers
from llamaherd.runtime.argv import SLOT_SAVE_FLAG
from llamaherd.runtime.server_metrics import parse_metrics

log = logging.getLogger(__name__)


@dataclass
class LastRestore:
    """What the last start of a profile restored (for /status)."""

    at: float
    tokens: int = 0
    files: int = 0
    discarded: int = 0
    error: str | None = None
    seconds_saved: float = 0.0  # the restored tokens at their server's prompt speed
    lazy: bool = False  # kv_restore = "lazy": files are restored by matching requests
    pending: int = 0  # lazy: saved files no request has matched yet


@dataclass
class Waiting:
    """A lazily restoring server's saved files that no request has matched yet. The lock
    makes one request at a time choose a file and a slot: no file is restored twice, and
    the idle slot it read is still idle when it restores."""

    server: Server
    entries: list[Entry]
    outcome: LastRestore
    # One client for the server's life: making one (its TLS context) costs ~50 ms.
    http: httpx.AsyncClient
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tokens: dict[str, array] = field(default_factory=dict)  # each file's, read once


class KvKeep:
    def __init__(self, llama_server: Path, state_dir: Path, events: EventBus) -> None:
        self.llama_server = llama_server
        self.root = kvstore.kv_dir(state_dir)
        self.events = events
        self.last_restore: dict[str, LastRestore] = {}
        self.waiting: dict[str, Waiting] = {}  # lazy restores, by profile

    @staticmethod
    def lazy(profile: Profile, settings: ServerSettings) -> bool:
        return (profile.kv_restore or settings.kv_restore) == "lazy"

    def enabled(self, profile: Profile, settings: ServerSettings) -> bool:
        """Kept unless the profile opts out or the budget is 0 (a container gets the
        directory mounted: runtime/docker.py); a profile naming its own save path keeps it."""
        return (
            profile.kv_keep
            and settings.kv_keep_budget_mb > 0
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
        await self._forget(profile.id)  # its server stops: nothing restores into it
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
        """Put the saved slots back (before the model is declared ready), or in lazy
        mode, leave them waiting for a request that matches one."""
        if not self.enabled(profile, settings):
            return
        lazy = self.lazy(profile, settings)
        outcome = self.last_restore[profile.id] = LastRestore(at=time.time(), lazy=lazy)
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
        if outcome.lazy:
            await self._forget(profile.id)  # an earlier server's (it crashed)
            if usable:
                self.waiting[profile.id] = Waiting(server, usable, outcome, _client(server))
            outcome.pending = len(usable)
            return
        if not usable:
            return
        async with _client(server) as http:
            free = [int(slot["id"]) for slot in await _slots(http)]
            for entry in usable:
                if free and await self._put_back(http, entry, free[0], outcome):
                    free.pop(0)
        self._restored(profile.id, outcome.tokens, outcome.seconds_saved)

    async def before_request(
        self, profile: Profile, server: Server, target: str, body: bytes, settings: ServerSettings
    ) -> None:
        """Lazy mode, before a gateway request is forwarded: restore the waiting file whose
        tokens share the longest prefix, of at least kv_keep_min_tokens, with its prompt.
        Costs a dictionary lookup when nothing waits; never raises."""
        waiting = self.waiting.get(profile.id)
        if waiting is None or waiting.server is not server or not waiting.entries:
            return
        prompt = kvprompt.prompt_of(target, body)
        if prompt is None:
            return
        timeout = settings.kv_keep_save_timeout
        try:
            async with asyncio.timeout(timeout):
                await self._restore_matching(waiting, prompt, settings.kv_keep_min_tokens)
        except TimeoutError:
            waiting.outcome.error = f"gave up after {timeout:g}s"
            log.warning("restoring %s's prompt cache took over %gs: given up", profile.id, timeout)
        except Exception as error:  # a cache never makes a request fail
            waiting.outcome.error = _say(error)
            log.warning("restoring %s's prompt cache failed: %s", profile.id, _say(error))

    async def _restore_matching(self, waiting: Waiting, prompt: str | dict, least: int) -> None:
        outcome, http = waiting.outcome, waiting.http
        # Outside the lock: requests tokenize their prompts side by side.
        wanted = array("i", await kvprompt.tokens_of(http, prompt))
        async with waiting.lock:
            entry = await self._best_match(waiting, wanted, max(1, least))
            slot = _idle_slot(await _slots(http)) if entry else None
            if entry is None or slot is None:
                return  # nothing matches, or every slot is busy: forwarded as usual
            waiting.entries.remove(entry)
            outcome.pending = len(waiting.entries)
            seconds = outcome.seconds_saved
            if await self._put_back(http, entry, slot, outcome):
                self._restored(entry.profile, entry.tokens, outcome.seconds_saved - seconds)

    async def _forget(self, profile_id: str) -> None:
        if waiting := self.waiting.pop(profile_id, None):
            await waiting.http.aclose()

    async def _best_match(self, waiting: Waiting, wanted: array, least: int) -> Entry | None:
        """The waiting file sharing the longest prefix (at least `least` tokens) with
        `wanted`; a file whose tokens cannot be read is discarded."""
        best, longest = None, least - 1
        for entry in list(waiting.entries):
            tokens = waiting.tokens.get(entry.name)
            if tokens is None:
                try:
                    path = entry.bin_path(self.root)
                    tokens = await asyncio.to_thread(kvstore.saved_tokens, path)
                except (OSError, ValueError) as error:
                    waiting.entries.remove(entry)
                    waiting.outcome.pending = len(waiting.entries)
                    self._discard(entry, f"unreadable tokens: {_say(error)}", waiting.outcome)
                    continue
                waiting.tokens[entry.name] = tokens
            shared = _shared_prefix(tokens, wanted)
            if shared > longest:
                best, longest = entry, shared
        return best

    async def _put_back(
        self, http: httpx.AsyncClient, entry: Entry, slot: int, outcome: LastRestore
    ) -> bool:
        """Restore one file into `slot` after checking it, and count it; a bad file is
        discarded."""
        why = await asyncio.to_thread(kvstore.intact, self.root, entry)
        why = why or await self._restore_slot(http, entry, slot)
        if why:
            self._discard(entry, why, outcome)
            return False
        kvstore.touch(self.root, entry)
        outcome.tokens += entry.tokens
        outcome.files += 1
        if entry.prompt_tps:
            outcome.seconds_saved += entry.tokens / entry.prompt_tps
        return True

    def _restored(self, profile_id: str, tokens: int, seconds_saved: float) -> None:
        if tokens:
            log.info("restored %s's prompt cache: %d tokens", profile_id, tokens)
            saved = round(seconds_saved, 3)
            self.events.publish("kv_restored", model=profile_id, tokens=tokens, seconds_saved=saved)

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


def _idle_slot(slots: list[dict]) -> int | None:
    """The idle slot with the fewest tokens (the least to lose), if any."""
    idle = [slot for slot in slots if not slot.get("is_processing")]
    if not idle:
        return None
    return int(min(idle, key=lambda slot: int(slot.get("n_prompt_tokens") or 0))["id"])


def _shared_prefix(saved: array, wanted: array) -> int:
    """How many leading tokens the two share (a binary search over C-speed compares)."""
    low, high = 0, min(len(saved), len(wanted))
    while low < high:
        middle = (low + high + 1) // 2
        if saved[:middle] == wanted[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _message(reply: httpx.Response) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {reply.status_code}"


def _say(error: Exception) -> str:
    return str(error) or type(error).__name__
