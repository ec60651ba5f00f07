"""The daemon's event bus, without a daemon."""

from __future__ import annotations

import logging

import pytest

from llamaherd.daemon.events import EventBus


def test_a_failing_listener_is_logged_and_breaks_nothing(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken_listener(event: dict) -> None:
        raise KeyError("oops")

    bus.listen(broken_listener)
    bus.listen(lambda event: seen.append(event["type"]))
    with bus.subscribe() as queue, caplog.at_level(logging.ERROR):
        bus.publish("state", model="dense", state="ready")  # raised KeyError here before
        assert queue.get_nowait()["model"] == "dense"
    assert seen == ["state"], "the listeners after it still ran"
    [record] = caplog.records
    assert "broken_listener" in record.getMessage() and "state" in record.getMessage()
    assert record.exc_info is not None, "the traceback is in the log"


def test_the_daemon_logs_events_with_a_level_that_says_whether_something_went_wrong(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from llamaherd.daemon.serve import _log_event

    bus = EventBus()
    bus.listen(_log_event)
    with caplog.at_level(logging.INFO, logger="llamaherd.daemon.serve"):
        bus.publish("loading", model="dense", elapsed_s=1.0)  # once a second: not logged
        bus.publish("switch", model="dense", ok=True)
        bus.publish("crash", model="dense", code=-9)
        bus.publish("restart_skipped", model="dense", reason="no room")
        bus.publish("switch", model="moe", ok=False, error="no room")
        bus.publish("state", model="moe", state="failed", previous="starting")
        bus.publish("reload", ok=False, error="bad toml", log_tail=["x"])
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", "switch model=dense ok=True"),
        ("WARNING", "crash model=dense code=-9"),
        ("WARNING", "restart_skipped model=dense reason=no room"),
        ("WARNING", "switch model=moe ok=False error=no room"),
        ("WARNING", "state model=moe state=failed previous=starting"),
        ("WARNING", "reload ok=False error=bad toml"),
    ]
