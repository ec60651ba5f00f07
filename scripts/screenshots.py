"""Make the README's pictures: docs/dashboard.svg and docs/picker.svg, PNGs of them, and
docs/console.png (the web console's models page, headless Chromium via selenium).

    .venv/bin/python scripts/screenshots.py [--out docs]

A private daemon (temp state dir, free ports, the two fake GPUs of tests/data) serves
the demo models; `herd bench speed` measures them so the picker has speeds to show; the
dashboard then runs headless (Textual's `run_test`) while a client keeps the model
generating, and saves its screen, before and after `m`. The PNGs need cairosvg
(`pip install cairosvg`); without it only the SVGs are written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx

from llamaherd import control
from llamaherd.errors import HerdError
from llamaherd.runtime import process
from llamaherd.tui.app import DashboardApp
from llamaherd.tui.picker import ModelPicker

REPO = Path(__file__).resolve().parent.parent
FAKE_GPUS = REPO / "tests" / "data" / "fake_gpus.json"
SIZE = (150, 42)
QUICK_SPEED = ["--prompt-lengths", "64", "--gen-tokens", "32", "--reps", "1"]


async def capture(api_url: str, out: Path) -> list[Path]:
    app = DashboardApp(api_url, interval=1.0)
    async with app.run_test(size=SIZE) as pilot:
        await until(lambda: "ready" in str(app.query_one("#header").render()))
        await until(lambda: app.log_pane.seen > 0)
        await asyncio.sleep(8)  # some history for the sparklines, a screenful of log
        dashboard = Path(app.save_screenshot("dashboard.svg", str(out)))
        await pilot.press("m")
        await until(lambda: isinstance(app.screen, ModelPicker))
        await pilot.pause(0.5)
        picker = Path(app.save_screenshot("picker.svg", str(out)))
        await pilot.press("escape")
    return [dashboard, picker]


async def until(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    for _ in range(int(timeout * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise HerdError("the dashboard never showed what was expected")


def keep_generating(url: str, stop: threading.Event) -> None:
    """Completions back to back until `stop`: tokens/s, busy slots and log lines to show."""
    request = {"prompt": "Llamas are", "max_tokens": 256, "ignore_eos": True}
    with httpx.Client(timeout=60) as client:
        while not stop.is_set():
            client.post(f"{url}/v1/completions", json=request)


def capture_console(api_url: str, out: Path) -> list[Path]:
    """The web console's models and system pages, once they show the running model."""
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options)
    shots = []
    try:
        for page, ready in (("models", "td[data-state='ready']"), ("system", "figure.chart")):
            driver.get(f"{api_url}/#{page}")
            WebDriverWait(driver, 60).until(
                lambda d, ready=ready: d.find_elements("css selector", ready)
            )
            path = out / f"console-{page}.png"
            driver.save_screenshot(str(path))
            shots.append(path)
    finally:
        driver.quit()
    return shots


def to_png(svg: Path) -> Path | None:
    try:
        import cairosvg
    except ImportError:
        return None
    png = svg.with_suffix(".png")
    # Textual's SVG asks for Fira Code from the web; cairo cannot fetch it and falls back
    # to a proportional font, which breaks the grid. Any installed monospace font keeps it.
    text = svg.read_text().replace("Fira Code, monospace", "monospace")
    cairosvg.svg2png(bytestring=text.encode(), write_to=str(png), output_width=1848)
    return png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herd-shots-") as temp:
        os.environ.update(
            HERD_STATE_DIR=str(Path(temp) / "state"),
            HERD_CONFIG_DIR=str(Path(temp) / "config"),
            HERD_FAKE_GPUS=str(FAKE_GPUS),
            HERD_PORT=str(process.free_port()),
            HERD_API_PORT=str(process.free_port()),
        )
        for name in ("HERD_CONFIG", "HERD_URL", "HERD_API_KEY"):
            os.environ.pop(name, None)
        config = control.prepare_demo(synthetic=True)
        try:
            control.up(config, "demo-dense")
            herd = [sys.executable, "-m", "llamaherd", "--config", str(config.path)]
            subprocess.run([*herd, "bench", "speed", "--all", *QUICK_SPEED], check=True)
            stop = threading.Event()
            client = threading.Thread(target=keep_generating, args=(config.server.public_url, stop))
            client.start()
            try:
                shots = asyncio.run(capture(config.server.api_url, args.out))
                pages = capture_console(config.server.api_url, args.out)
            finally:
                stop.set()
                client.join()
        finally:
            control.down(control.connect(config), stop_daemon=True)
    for svg in shots:
        png = to_png(svg)
        print(f"wrote {svg}" + (f" and {png}" if png else " (pip install cairosvg for a PNG)"))
    for page in pages:
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
