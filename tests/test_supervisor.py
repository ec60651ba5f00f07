"""The supervisor in-process, on the fake runtime: what a real llama-server cannot stage
on demand (a slow load, a crash at a chosen instant, a start that throws). Each test here
that names a defect failed before the supervisor owned its starts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from fake_runtime import FakeRuntime, Knobs

from llamaherd.config import parse_config
from llamaherd.daemon import supervisor as supervisor_module
from llamaherd.daemon.model import TRANSITIONS, Busy, State, Unavailable
from llamaherd.daemon.supervisor import Supervisor
from llamaherd.errors import ConfigError


def make_config(directory: Path, profiles: str = "", **server: object):
    """Profiles a, b, c on placeholder files (the fake runtime reads none), plus `profiles`.
    One model at a time unless `max_loaded` says otherwise: these tests stage swaps."""
    for name in ("a", "b", "c"):
        (directory / f"{name}.gguf").write_bytes(b"GGUF")
    settings = {"start_timeout": 10, "stop_timeout": 1, "drain_timeout": 2, "max_loaded": 1}
    settings |= server
    lines = [
        f'models_dir = "{directory}"',
        "[server]",
        *(f"{k} = {v!r}".replace("'", '"').lower() for k, v in settings.items()),
    ]
    for name in ("a", "b", "c"):
        lines += [f"[models.{name}]", f'file = "{name}.gguf"']
    text = "\n".join(lines) + "\n" + profiles
    return parse_config(text, directory / "herd.toml")


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@contextlib.asynccontextmanager
async def herd(
    tmp_path: Path, fake: FakeRuntime, profiles: str = "", **server: object
) -> AsyncIterator[Supervisor]:
    config = make_config(tmp_path, profiles, **server)
    supervisor = Supervisor(
        config, Path("llama-server"), tmp_path / "state", runtime_for=fake.runtime_for
    )
    supervisor.start_background_work()  # TTL expiry
    try:
        yield supervisor
    finally:
        await supervisor.close()
        assert fake.alive() == [], "a fake llama-server outlived the supervisor"


def recorder(supervisor: Supervisor) -> list[dict]:
    events: list[dict] = []
    supervisor.events.listen(events.append)
    return events


async def request(supervisor: Supervisor, model: str | None) -> str:
    """What a gateway request does: hold a ready model while it is served."""
    async with supervisor.serving(model) as served:
        return served.id


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_strict_transitions_are_on_in_the_tests() -> None:
    assert os.environ.get("HERD_STRICT_STATES") == "1"


def test_a_switch_goes_through_the_table_and_emits_one_event_per_transition(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            events = recorder(supervisor)
            assert (await supervisor.switch("a")).ok
            assert (await supervisor.switch("b")).ok  # max_loaded 1: a is evicted
            states = [
                (e["model"], e["previous"], e["state"]) for e in events if e["type"] == "state"
            ]
            assert states == [
                ("a", "stopped", "starting"),
                ("a", "starting", "ready"),
                ("a", "ready", "stopping"),
                ("a", "stopping", "stopped"),
                ("b", "stopped", "starting"),
                ("b", "starting", "ready"),
            ]
            for _, before, after in states:
                assert State(after) in TRANSITIONS[State(before)]
            unload = next(e for e in events if e["type"] == "unload")
            assert (unload["model"], unload["reason"], unload["for_model"]) == ("a", "room", "b")

    run(scenario)


def test_a_request_timing_out_mid_start_does_not_cancel_the_start(tmp_path) -> None:
    """Defect 1: the request's queue_timeout used to cancel the start halfway, leaving the
    model `starting` forever and each later request starting another llama-server."""
    fake = FakeRuntime({"a": Knobs(load_delay=0.5)})

    async def scenario() -> None:
        async with herd(tmp_path, fake, queue_timeout=0.1) as supervisor:
            with pytest.raises(Busy):
                await request(supervisor, "a")
            assert supervisor.state_of("a") == State.STARTING
            with pytest.raises(Busy):
                await request(supervisor, "a")  # waits on the same start
            assert await wait_until(lambda: supervisor.state_of("a") == State.READY)
            assert await request(supervisor, "a") == "a"
            assert len(fake.servers) == 1, "one start, shared by every request"
            assert await supervisor.stop() == ["a"]
            assert fake.alive() == []

    run(scenario)


def test_a_request_timing_out_mid_switch_still_gets_the_evicted_model_back(tmp_path) -> None:
    fake = FakeRuntime({"b": Knobs(load_delay=0.3, fail_at_start=1)})

    async def scenario() -> None:
        async with herd(tmp_path, fake, queue_timeout=0.05) as supervisor:
            assert (await supervisor.switch("a")).ok
            with pytest.raises(Busy):
                await request(supervisor, "b")
            assert await wait_until(lambda: supervisor.state_of("b") == State.FAILED)
            assert await wait_until(lambda: supervisor.state_of("a") == State.READY)
            assert supervisor.current == "a"
            assert [s.profile.id for s in fake.alive()] == ["a"]

    run(scenario)


def test_concurrent_requests_share_one_start(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(load_delay=0.2)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            served = await asyncio.gather(*(request(supervisor, "a") for _ in range(5)))
            assert served == ["a"] * 5
            assert len(fake.servers) == 1

    run(scenario)


def test_a_broken_model_fails_fast_until_its_file_changes(tmp_path) -> None:
    """Defect 4: every waiting request used to retry a broken model, one after another."""
    fake = FakeRuntime({"a": Knobs(fail_at_start=1)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            results = await asyncio.gather(
                *(request(supervisor, "a") for _ in range(4)), return_exceptions=True
            )
            assert all(isinstance(r, Unavailable) for r in results), results
            assert "exited with code 1" in str(results[0])
            with pytest.raises(Unavailable, match="exited with code 1"):
                await request(supervisor, "a")  # the recorded failure, at once
            assert len(fake.servers) == 1, "one attempt for all of them"

            fake.knobs["a"] = Knobs()
            with pytest.raises(Unavailable):
                await request(supervisor, "a")  # fixed, but nothing says so yet
            model_file = tmp_path / "a.gguf"
            model_file.write_bytes(b"GGUF, fixed")  # a new file: worth another try
            assert await request(supervisor, "a") == "a"
            assert len(fake.servers) == 2

    run(scenario)


def test_switch_retries_a_recent_failure_and_retry_after_expires(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(fail_at_start=1)})

    async def scenario() -> None:
        async with herd(tmp_path, fake, retry_failed_after=0.2) as supervisor:
            assert not (await supervisor.switch("a")).ok
            assert not (await supervisor.switch("a")).ok  # POST /switch tries again
            assert len(fake.servers) == 2
            fake.knobs["a"] = Knobs()
            failure = supervisor.models["a"].failure
            assert failure is not None
            assert await wait_until(lambda: time.time() - failure.at > 0.2)
            assert await request(supervisor, "a") == "a"

    run(scenario)


def test_any_error_while_starting_records_failed(tmp_path) -> None:
    """Defect 3: an error other than OSError/RuntimeError left the model `starting`."""
    fake = FakeRuntime({"a": Knobs(raise_at_start=ValueError("embedded null byte"))})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            result = await supervisor.switch("a")
            assert not result.ok and "embedded null byte" in (result.error or "")
            assert supervisor.state_of("a") == State.FAILED
            assert supervisor.status()["last_error"]["reason"] == result.error

    run(scenario)


def test_a_program_that_cannot_run_is_a_failure_with_its_name(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(cannot_start=True)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            result = await supervisor.switch("a")
            assert not result.ok
            assert (result.error or "").startswith("cannot start fake-llama-server")

    run(scenario)


def test_stop_during_a_start_leaves_no_server(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(hang=True)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            switching = asyncio.ensure_future(supervisor.switch("a"))
            assert await wait_until(lambda: len(fake.servers) == 1)
            await supervisor.stop()
            result = await switching
            assert not result.ok and result.error == "stopped while starting"
            assert fake.alive() == []
            assert supervisor.state_of("a") == State.STOPPED

    run(scenario)


def test_a_crash_restart_never_exceeds_max_loaded(tmp_path) -> None:
    """Defect 2: the restart of a crashed model started it beside the one switched to."""
    fake = FakeRuntime({"a": Knobs(crash_after=0.05)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            events = recorder(supervisor)
            assert (await supervisor.switch("a")).ok
            assert await wait_until(lambda: supervisor.state_of("a") == State.FAILED)
            fake.knobs["a"] = Knobs()
            assert (await supervisor.switch("b")).ok
            assert await wait_until(lambda: any(e["type"] == "restart_skipped" for e in events))
            assert [s.profile.id for s in fake.alive()] == ["b"]
            assert "no room" in next(e for e in events if e["type"] == "restart_skipped")["reason"]

    run(scenario)


def test_a_crashed_model_that_is_still_wanted_is_restarted(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(crash_after=0.05)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            events = recorder(supervisor)
            assert (await supervisor.switch("a")).ok
            assert await wait_until(lambda: supervisor.state_of("a") == State.FAILED)
            fake.knobs["a"] = Knobs()
            assert await wait_until(lambda: supervisor.state_of("a") == State.READY)
            assert any(e["type"] == "restart" for e in events)
            assert len(fake.alive("a")) == 1

    run(scenario)


def test_eviction_takes_the_least_recently_used_idle_model(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, max_loaded=2) as supervisor:
            await request(supervisor, "a")
            await request(supervisor, "b")
            await request(supervisor, "a")  # b is now the least recently used
            await request(supervisor, "c")
            assert sorted(supervisor.models) == ["a", "c"]

    run(scenario)


def test_a_model_with_requests_in_flight_is_evicted_last(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, max_loaded=2) as supervisor:
            await request(supervisor, "b")
            async with supervisor.serving("a"):  # a: in flight, though b is older
                await request(supervisor, "b")
                async with supervisor.serving("a"):
                    pass
                # a is busy, b idle: b goes even though it was used last
                switching = asyncio.ensure_future(request(supervisor, "c"))
                assert await switching == "c"
                assert sorted(supervisor.models) == ["a", "c"]

    run(scenario)


def test_a_persistent_model_is_never_evicted(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, '[models.p]\nfile = "a.gguf"\npersistent = true\n') as sv:
            assert (await sv.switch("p")).ok
            result = await sv.switch("b")  # max_loaded 1, and p may not go
            assert not result.ok and "persistent" in (result.error or "")
            assert sv.state_of("p") == State.READY and sv.current == "p"

    run(scenario)


def test_a_full_queue_answers_busy(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(load_delay=0.3)})

    async def scenario() -> None:
        async with herd(tmp_path, fake, queue_size=2) as supervisor:
            waiting = [asyncio.ensure_future(request(supervisor, "a")) for _ in range(2)]
            assert await wait_until(lambda: supervisor.waiting == 2)
            with pytest.raises(Busy, match="already wait"):
                await request(supervisor, "a")
            assert await asyncio.gather(*waiting) == ["a", "a"]

    run(scenario)


def test_a_switch_never_stops_a_model_serving_a_request(tmp_path) -> None:
    """Before the memory-aware scheduler, a switch cut a request still streaming after
    drain_timeout; now the switch waits for it (up to queue_timeout)."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, drain_timeout=0.1) as supervisor:
            events = recorder(supervisor)
            async with supervisor.serving("a"):
                switching = asyncio.ensure_future(supervisor.switch("b"))
                assert await wait_until(lambda: any(e["type"] == "room_wait" for e in events))
                await asyncio.sleep(0.3)  # past drain_timeout: the request must live on
                assert supervisor.state_of("a") == State.READY and fake.alive("a")
                assert await request(supervisor, "a") == "a"  # served meanwhile
                assert not switching.done() and not fake.alive("b")
            assert (await switching).ok
            assert fake.alive("a") == [] and fake.alive("b")

    run(scenario)


def test_a_switch_gives_up_on_a_model_busy_past_queue_timeout(tmp_path) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        async with (
            herd(tmp_path, fake, queue_timeout=0.3) as supervisor,
            supervisor.serving("a"),
        ):
            result = await supervisor.switch("b")
            assert not result.ok and "a still serving" in (result.error or "")
            assert supervisor.state_of("a") == State.READY and fake.alive("a")
            assert supervisor.current == "a"  # what serves requests without a model

    run(scenario)


def test_ttl_never_unloads_a_model_while_it_serves(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(supervisor_module, "TTL_CHECK_INTERVAL", 0.02)
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, '[models.t]\nfile = "a.gguf"\nttl = 0.1\n') as sv:
            events = recorder(sv)
            async with sv.serving("t") as model:
                assert await wait_until(lambda: time.monotonic() - model.last_used > 0.3)
                assert sv.state_of("t") == State.READY
            assert await wait_until(lambda: sv.state_of("t") == State.STOPPED)
            assert [e["reason"] for e in events if e["type"] == "unload"] == ["ttl"]

    run(scenario)


def test_ttl_rechecks_idleness_after_waiting_for_the_lock(tmp_path, monkeypatch) -> None:
    """A model expired while a slow start held the lock, then served a request: the TTL
    decision taken before the lock must not unload it."""
    monkeypatch.setattr(supervisor_module, "TTL_CHECK_INTERVAL", 0.02)
    fake = FakeRuntime({"b": Knobs(hang=True)})
    profiles = '[models.t]\nfile = "a.gguf"\nttl = 0.3\n'

    async def scenario() -> None:
        async with herd(tmp_path, fake, profiles, max_loaded=2) as sv:
            events = recorder(sv)
            assert (await sv.switch("t")).ok
            switching = asyncio.ensure_future(sv.switch("b"))  # holds the lock
            model = sv.models["t"]
            assert await wait_until(lambda: time.monotonic() - model.last_used > 0.4)
            await request(sv, "t")  # the TTL check saw it expired; now it is fresh
            fake.servers[-1].loaded = True  # b finishes loading: the lock is released
            assert (await switching).ok
            await asyncio.sleep(0)  # let the waiting TTL check take the lock
            async with sv._lock:
                assert sv.state_of("t") == State.READY
            assert [e for e in events if e["type"] == "unload"] == []

    run(scenario)


def test_a_request_without_model_waits_for_the_current_start(tmp_path) -> None:
    fake = FakeRuntime({"a": Knobs(load_delay=0.2)})

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            switching = asyncio.ensure_future(supervisor.switch("a"))
            assert await wait_until(lambda: supervisor.state_of("a") == State.STARTING)
            assert await request(supervisor, None) == "a"
            assert (await switching).ok
            assert len(fake.servers) == 1

    run(scenario)


def test_requests_alternating_two_models_are_all_served(tmp_path) -> None:
    """Requests waiting for a start must get the model before the next start may evict
    it: otherwise two models alternating under max_loaded 1 swap forever, serving none."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, queue_timeout=5) as supervisor:
            names = ["a", "b"] * 5
            served = await asyncio.gather(*(request(supervisor, name) for name in names))
            assert served == names
            assert len(fake.servers) <= len(names)

    run(scenario)


def test_a_missing_gguf_fails_fast_and_starts_once_the_file_appears(tmp_path) -> None:
    """Issue 14: a profile whose GGUF is not on disk answers with where to put it, starts
    no llama-server and evicts nothing; the file appearing is enough to start it."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake, '[models.m]\nfile = "m.gguf"\n') as supervisor:
            assert (await supervisor.switch("a")).ok
            events = recorder(supervisor)
            expected = f"model file not found: {tmp_path / 'm.gguf'} (models_dir is {tmp_path}"
            with pytest.raises(ConfigError, match=re.escape(expected)):
                await supervisor.switch("m")
            with pytest.raises(ConfigError, match="model file not found"):
                await request(supervisor, "m")
            assert len(fake.servers) == 1 and events == [], "nothing started or stopped"
            assert (supervisor.current, supervisor.state_of("a")) == ("a", State.READY)
            assert "m" not in supervisor.models and supervisor.last_error is None

            (tmp_path / "m.gguf").write_bytes(b"GGUF")
            assert await request(supervisor, "m") == "m"
            assert len(fake.servers) == 2

    run(scenario)


def test_a_missing_first_model_leaves_the_daemon_serving_the_others(tmp_path, caplog) -> None:
    fake = FakeRuntime()

    async def scenario() -> None:
        config = make_config(tmp_path, '[models.m]\nfile = "m.gguf"\n')
        supervisor = Supervisor(
            config, Path("llama-server"), tmp_path / "state", runtime_for=fake.runtime_for
        )
        supervisor.start_background_work(first_model="m")
        try:
            assert await wait_until(lambda: "model file not found" in caplog.text)
            assert await request(supervisor, "b") == "b"
        finally:
            await supervisor.close()

    run(scenario)


def test_a_restart_of_a_model_whose_gguf_vanished_leaves_it_running(tmp_path) -> None:
    """Issue 14's gap: `restart` stopped the model, then found its file missing."""
    fake = FakeRuntime()

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            assert (await supervisor.switch("a")).ok
            (tmp_path / "a.gguf").unlink()  # llama-server keeps its mapping: it serves on
            with pytest.raises(ConfigError, match="model file not found"):
                await supervisor.switch("a", restart=True)
            assert supervisor.state_of("a") == State.READY and len(fake.alive("a")) == 1

    run(scenario)


def test_a_crashed_model_whose_gguf_vanished_is_not_restarted(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(supervisor_module, "MAX_BACKOFF", 0.05)
    fake = FakeRuntime()
    fake.knobs["a"] = Knobs(crash_after=0.1)

    async def scenario() -> None:
        async with herd(tmp_path, fake) as supervisor:
            events = recorder(supervisor)
            assert (await supervisor.switch("a")).ok
            (tmp_path / "a.gguf").unlink()
            assert await wait_until(lambda: any(e["type"] == "restart_skipped" for e in events))
            skipped = next(e for e in events if e["type"] == "restart_skipped")
            assert "model file not found" in skipped["reason"]
            assert len(fake.servers) == 1, "no start of a file that is gone"

    run(scenario)


def test_a_switch_to_the_ready_model_waits_for_the_switch_under_way(tmp_path, monkeypatch) -> None:
    """A switch to a ready model answered at once, even while another switch held the
    turn and was about to evict that model: the last switch asked "won" with a model that
    was then stopped (test_daemon's concurrent switches saw `stopped`)."""
    fake = FakeRuntime()
    admitting = asyncio.Event()
    admitted = None

    async def scenario() -> None:
        nonlocal admitted
        admitted = asyncio.Event()
        admit = supervisor_module.scheduler.admit

        async def held_admit(*args, **kwargs):
            admitting.set()
            await admitted.wait()  # the switch to b holds the turn here, a still ready
            return await admit(*args, **kwargs)

        async with herd(tmp_path, fake) as supervisor:
            assert (await supervisor.switch("a")).ok
            monkeypatch.setattr(supervisor_module.scheduler, "admit", held_admit)
            to_b = asyncio.ensure_future(supervisor.switch("b"))
            await admitting.wait()
            back_to_a = asyncio.ensure_future(supervisor.switch("a"))
            await asyncio.sleep(0)  # let it answer at once, as it used to
            admitted.set()
            assert (await to_b).ok and (await back_to_a).ok
            assert supervisor.current == "a"  # the last switch asked
            assert supervisor.state_of("a") == State.READY

    run(scenario)
