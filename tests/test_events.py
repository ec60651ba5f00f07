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
