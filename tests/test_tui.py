"""The Textual dashboard and model picker, driven headless (Pilot) against a real daemon."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from llamaherd import cli, control, profiles
from llamaherd.config import Config, parse_config
from llamaherd.errors import UsageError
from llamaherd.schema import ModelRow, Status, SystemSnapshot
from llamaherd.tui.app import DashboardApp
from llamaherd.tui.header import DashHeader
from llamaherd.tui.logchoice import LogChoice
from llamaherd.tui.picker import ModelPicker, PickerApp
from llamaherd.tui.system import SystemPanel

SIZE = (160, 48)


def dashboard(config: Config) -> DashboardApp:
    return DashboardApp(config.server.api_url, interval=0.2)


async def settle(app: DashboardApp, pilot, until, timeout: float = 30.0) -> None:
    """Poll the daemon until `until()` holds (the app polls too; this makes it prompt)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until():
        assert loop.time() < deadline, "the dashboard never showed what was expected"
        await app.poll_once()
        await pilot.pause(0.1)


async def until(pilot, condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "the dashboard never showed what was expected"
        await pilot.pause(0.05)


def header_text(app: DashboardApp) -> str:
    return str(app.query_one("#header").render())


def test_header_shows_model_and_state(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: "ready" in header_text(app))
            text = header_text(app)
            assert "dense" in text and "ctx 2K" in text
            await settle(
                app, pilot, lambda: any("listening" in x for x in app.log_pane.log_widget.lines)
            )

    asyncio.run(scenario())


def test_header_shows_the_display_name_and_the_urls(herd: Config) -> None:
    # It showed the id only, and no address; the original showed the name, then the web
    # UI, API and management URLs.
    control.up(herd, "dense")

    async def scenario() -> str:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: "ready" in header_text(app))
            return header_text(app)

    text = asyncio.run(scenario())
    gateway = herd.server.public_url
    assert "herd Tiny dense (dense)  ready" in text
    assert f"Web {gateway}   API {gateway}/v1   Mgmt {herd.server.api_url}" in text


def test_a_switch_keeps_the_log_and_marks_it(herd: Config) -> None:
    # The pane was cleared on every switch; the original kept it, with a marker line.
    control.up(herd, "dense")

    async def scenario() -> list[str]:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            log = app.log_pane.log_widget
            await settle(app, pilot, lambda: any("listening" in x for x in log.lines))
            before = list(log.lines)
            await app.switch_to("moe")
            marker = "--- Switching to Tiny MoE ---"
            await settle(app, pilot, lambda: marker in log.lines)
            # The new model's log follows the marker (its own "listening" line).
            await settle(
                app,
                pilot,
                lambda: any("listening" in x for x in log.lines[log.lines.index(marker) :]),
            )
            lines = list(log.lines)
            assert lines[: len(before)] == before
            return lines

    assert "--- Switching to Tiny MoE ---" in asyncio.run(scenario())


def test_a_long_first_header_line_is_cut_and_the_urls_stay() -> None:
    daemon = {
        "pid": 1, "version": "0", "config": None, "started_at": 0.0, "uptime_s": 1.0,
        "url": "http://127.0.0.1:8080", "api_url": "http://127.0.0.1:8081", "llama_server": "x",
    }  # fmt: skip
    status = Status.model_validate(
        {"daemon": daemon, "model": "qwen3-next-ud-q5", "state": "ready", "pid": 12345}
        | {"loaded": [], "stale": [], "waiting": 0, "last_error": None}
        | {"model_name": "Qwen3-Next-80B-A3B UD-Q5_K_XL", "status": ""}
    )

    class Header(App[None]):
        def compose(self) -> ComposeResult:
            yield DashHeader()

    async def scenario() -> list[str]:
        app = Header()
        async with app.run_test(size=(108, 10)) as pilot:
            header = app.query_one(DashHeader)
            note = "loading qwen3-coder-ud-q5 12s"
            header.show(status, 262144, None, note, "Qwen3-Next-80B-A3B UD-Q5_K_XL")
            await pilot.pause()
            return ["".join(s.text for s in header.render_line(y)) for y in range(2)]

    first, second = asyncio.run(scenario())
    assert first.startswith("herd Qwen3-Next-80B-A3B UD-Q5_K_XL (qwen3-next-ud-q5)  ready")
    assert first.rstrip().endswith("…")
    assert second.strip() == (
        "Web http://127.0.0.1:8080   API http://127.0.0.1:8080/v1   Mgmt http://127.0.0.1:8081"
    )


def test_a_small_terminal_says_how_big_it_must_be() -> None:
    from llamaherd.runtime import process
    from llamaherd.tui.app import MIN_HEIGHT, MIN_WIDTH

    async def scenario() -> None:
        app = DashboardApp(f"http://127.0.0.1:{process.free_port()}", interval=60)
        async with app.run_test(size=(80, 24)) as pilot:
            notice, main = app.query_one("#too-small"), app.query_one("#main")

            async def shows(text: str) -> None:
                await until(pilot, lambda: notice.display and text in str(notice.render()))
                assert not main.display

            await shows(f"Terminal too small (80x24). Need {MIN_WIDTH}x{MIN_HEIGHT}.")
            await pilot.resize_terminal(MIN_WIDTH, MIN_HEIGHT)
            await until(pilot, lambda: main.display and not notice.display)
            await pilot.resize_terminal(MIN_WIDTH, MIN_HEIGHT - 1)
            await shows(f"({MIN_WIDTH}x{MIN_HEIGHT - 1})")

    asyncio.run(scenario())


def test_q_stops_the_model_and_exits(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: app.status is not None)
            await pilot.press("q")
            await pilot.pause(0.5)
        assert app.return_value == "quit"

    asyncio.run(scenario())
    assert control.connect(herd).status().state == "stopped"


def test_d_detaches_and_leaves_the_model_running(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: app.status is not None)
            await pilot.press("d")
            await pilot.pause(0.2)
        assert app.return_value == "detach"

    asyncio.run(scenario())
    status = control.connect(herd).status()
    assert status.model == "dense" and status.state == "ready"


def test_m_picks_another_model_and_switches(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: app.status is not None)
            await pilot.press("m")
            await settle(app, pilot, lambda: isinstance(app.screen, ModelPicker))
            picker = app.screen
            await pilot.press("m", "o")  # typing filters: only "moe" is left
            await pilot.pause(0.1)
            assert picker.query_one("DataTable").row_count == 1
            await pilot.press("enter")
            await settle(app, pilot, lambda: app.loading is not None or "moe" in header_text(app))
            await settle(app, pilot, lambda: "(moe)  ready" in header_text(app))
            assert not isinstance(app.screen, ModelPicker)

    asyncio.run(scenario())
    assert control.connect(herd).status().model == "moe"


def test_a_failed_switch_shows_the_error_and_log_tail(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: app.status is not None)
            await pilot.press("m")
            await settle(app, pilot, lambda: isinstance(app.screen, ModelPicker))
            await pilot.press(*"broken", "enter")
            panel = app.query_one("#failure")
            # While the switch runs, polls may already show broken's failure; once it
            # returns, the panel says what was restored.
            restored = "restored the previous model: dense"
            await settle(app, pilot, lambda: restored in str(panel.render()))
            assert panel.has_class("shown") and "| " in str(panel.render())  # the log tail
            await settle(app, pilot, lambda: "(dense)  ready" in header_text(app))

    asyncio.run(scenario())


def test_r_stops_and_shows_the_menu(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: app.status is not None)
            await pilot.press("r")
            await settle(app, pilot, lambda: isinstance(app.screen, ModelPicker))
            assert control.connect(herd).status().state == "stopped"
            await pilot.press("escape")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, ModelPicker)

    asyncio.run(scenario())


def test_log_pane_scrolls_and_searches(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            log = app.log_pane.log_widget
            await settle(app, pilot, lambda: len(log.lines) > 3)
            log.write_lines([f"filler line {n}" for n in range(10_000)])
            await pilot.pause(0.2)
            bottom = log.scroll_y
            assert bottom > 0 and log.is_vertical_scroll_end
            await pilot.press("pageup")
            await pilot.pause(0.2)
            assert log.scroll_y < bottom
            await pilot.press("end")
            await pilot.pause(0.2)
            assert log.scroll_y == bottom

            await pilot.press("slash")
            await pilot.pause(0.1)
            await pilot.press(*"listening on", "enter")
            await pilot.pause(0.2)
            hit = app.log_pane.match
            assert hit >= 0 and "listening on" in log.lines[hit]
            assert log.scroll_y <= hit < log.scroll_y + log.size.height

    asyncio.run(scenario())


def test_log_pane_follows_new_lines_and_skips_polls_with_none(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            log = app.log_pane.log_widget

            def caught_up() -> bool:
                loaded = app.status.loaded if app.status else []
                lines = loaded[0].log_lines if loaded else None
                return len(log.lines) > 3 and lines == app.log_pane.seen

            await settle(app, pilot, caught_up)
            asked = []
            logs = app.remote.logs

            async def counting_logs(**kwargs):  # noqa: ANN202
                asked.append(kwargs)
                return await logs(**kwargs)

            app.remote.logs = counting_logs  # type: ignore[method-assign]
            await app.poll_once()
            assert asked == []  # the status said there was nothing new
            request = {"model": "dense", "prompt": "llamas", "max_tokens": 4}
            await asyncio.to_thread(
                httpx.post, f"{herd.server.public_url}/v1/completions", json=request, timeout=60
            )
            await settle(app, pilot, lambda: any("print_timing" in line for line in log.lines))
            assert asked  # fetched once the status showed new lines

    asyncio.run(scenario())


def test_a_crash_shows_as_failed_with_the_log_tail(make_herd) -> None:
    config = make_herd('\n[models.fragile]\nfile = "dense.gguf"\nctx = 2048\nrestart = "never"\n')
    answer = control.up(config, "fragile")

    async def scenario() -> None:
        app = dashboard(config)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: "ready" in header_text(app))
            os.kill(answer.pid, signal.SIGKILL)
            await settle(app, pilot, lambda: "failed" in header_text(app))
            panel = app.query_one("#failure")
            assert panel.has_class("shown")
            shown = str(panel.render())
            assert "exited unexpectedly" in shown and "| " in shown

    asyncio.run(scenario())


def test_l_chooses_which_models_log(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: app.log_pane.model == "dense")
            await pilot.press("l")
            await settle(app, pilot, lambda: isinstance(app.screen, LogChoice))
            await pilot.press("down", "down", "enter")  # [current, dense, moe, broken]
            await settle(app, pilot, lambda: app.log_pane.model == "moe")
            assert app.log_model == "moe"
            await settle(
                app, pilot, lambda: "moe is not running" in app.log_pane.log_widget.lines[-1]
            )

    asyncio.run(scenario())


def test_reconnects_when_the_daemon_restarts(herd: Config) -> None:
    control.up(herd, "dense")

    async def scenario() -> None:
        app = dashboard(herd)
        async with app.run_test(size=SIZE) as pilot:
            await settle(app, pilot, lambda: "(dense)  ready" in header_text(app))
            await asyncio.to_thread(control.down, control.connect(herd), stop_daemon=True)
            await settle(app, pilot, lambda: "disconnected" in header_text(app))
            await asyncio.to_thread(control.up, herd, "moe")
            await settle(app, pilot, lambda: "(moe)  ready" in header_text(app))

    asyncio.run(scenario())


def test_picker_app_returns_the_chosen_id() -> None:
    common = {"aliases": [], "best_for": "", "persistent": False, "ttl": None, "ctx": 2048}
    models = [
        ModelRow.model_validate(
            {"id": "dense", "name": "Tiny dense", "file": "/m/d.gguf", **common}
        ),
        ModelRow.model_validate({"id": "moe", "name": "Tiny MoE", "file": "/m/m.gguf", **common}),
    ]
    models[0].state, models[1].speed_tps = "ready", 41.5

    async def scenario() -> str | None:
        app = PickerApp(models, running="dense")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.1)
            await pilot.press("down", "enter")
            await pilot.pause(0.1)
        return app.return_value

    assert asyncio.run(scenario()) == "moe"


def test_the_picker_shows_a_profile_whose_gguf_is_missing(tmp_path: Path) -> None:
    config = parse_config(
        f'[models.late]\nfile = "{tmp_path / "late.gguf"}"\n', tmp_path / "herd.toml"
    )
    rows = profiles.describe_all(config.models.values())

    async def scenario() -> None:
        app = PickerApp(rows)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.1)
            table = app.screen.query_one(DataTable)
            assert str(table.get_row("late")[-1]) == "missing"

    asyncio.run(scenario())


def test_gpu_panel_shows_the_fake_gpus(make_herd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERD_FAKE_GPUS", str(Path(__file__).parent / "data" / "fake_gpus.json"))
    config = make_herd()
    control.up(config, "dense")

    async def scenario() -> None:
        app = dashboard(config)
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one("#gpus")
            await settle(app, pilot, lambda: "RTX 4080" in str(panel.render()))
            shown = str(panel.render())
            assert "GPU 0" in shown and "GPU 1" in shown and "RTX 4090" in shown
            assert "84°C" in shown and "VRAM" in shown
            # The scheduler's split: dense sits whole on one card, the other holds none.
            await settle(app, pilot, lambda: "herd dense" in str(panel.render()))
            assert "herd no model" in str(panel.render())

    asyncio.run(scenario())


def test_dashboard_shows_disconnected_without_a_daemon() -> None:
    from llamaherd.runtime import process

    async def scenario() -> None:
        app = DashboardApp(f"http://127.0.0.1:{process.free_port()}", interval=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await app.poll_once()
            await pilot.pause(0.1)
            assert "disconnected" in header_text(app)

    asyncio.run(scenario())


def test_dash_without_a_terminal_points_to_herd_top() -> None:
    result = CliRunner().invoke(cli.cli, ["dash"])
    assert isinstance(result.exception, UsageError)
    assert "herd top" in str(result.exception)


def test_the_system_panel_shows_the_load_average() -> None:
    # It read a "load" key /system never had: the load average never showed.
    host = {
        "cpu_percent": 12.5,
        "cpu_per_core": [10.0, 15.0],
        "cpu_count": 2,
        "memory_total": 8 * 2**30,
        "memory_used": 2**30,
        "memory_available": 7 * 2**30,
        "memory_percent": 12.5,
        "swap_total": 0,
        "swap_used": 0,
        "load_avg": [1.77, 1.32, 1.42],
        "disk": None,
    }
    history = {
        "interval_s": 1.0,
        "t": [],
        "tokens_per_s": {},
        "gpu_memory_used": {},
        "gpu_utilization": {},
        "cpu_percent": [],
    }
    snapshot = SystemSnapshot.model_validate(
        {
            "gpus": [],
            "gpu_note": "no NVIDIA driver",
            "system": host,
            "servers": [],
            "history": history,
            "sampled_at": 1.0,
            "error": None,
        }
    )

    class Panel(App[None]):
        def compose(self) -> ComposeResult:
            yield SystemPanel()

    async def scenario() -> str:
        app = Panel()
        async with app.run_test(size=SIZE) as pilot:
            panel = app.query_one(SystemPanel)
            panel.show(snapshot)
            await pilot.pause()
            return panel.shown_text

    assert "load 1.77 1.32 1.42" in asyncio.run(scenario())
