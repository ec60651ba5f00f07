"""Per-GPU VRAM and utilisation bars, temperature colour, and sparklines from /system."""

from __future__ import annotations

from rich.text import Text

from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import DASH, bar, fmt, fmt_bytes, get, num, sparkline


def temperature_style(celsius: float | None) -> str:
    """Green while cool, yellow when warm, red when a card throttles soon."""
    if celsius is None:
        return "dim"
    if celsius >= 80:
        return "bold red"
    if celsius >= 65:
        return "yellow"
    return "green"


def _fraction(used: object, total: object) -> float | None:
    used_n, total_n = num(used), num(total)
    return used_n / total_n if used_n is not None and total_n else None


class GpuPanel(TextPanel):
    """One block per GPU; rendered as text so a refresh is one cheap update."""

    DEFAULT_CSS = """
    GpuPanel { height: auto; border: round $secondary; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.border_title = "GPUs"

    def show(self, system: dict | None) -> None:
        if system is None:
            self.show_text(Text("no samples (this daemon has no /system)", style="dim"))
            return
        gpus = [g for g in get(system, "gpus") or [] if isinstance(g, dict)]
        history = get(system, "history") or {}
        blocks: list[Text] = []
        for gpu in gpus:
            blocks.append(self._gpu(gpu, history))
        if not gpus:
            blocks.append(Text(str(get(system, "gpu_note") or "no GPUs"), style="dim"))
        blocks.append(self._throughput(history))
        self.show_text(Text("\n").join(block for block in blocks if block.plain))

    @staticmethod
    def _gpu(gpu: dict, history: dict) -> Text:
        key = str(gpu.get("index", ""))
        memory = _fraction(gpu.get("memory_used"), gpu.get("memory_total"))
        util = num(gpu.get("utilization"))
        temp = num(gpu.get("temperature"))
        name = str(gpu.get("name") or DASH).removeprefix("NVIDIA ").removeprefix("GeForce ")
        text = Text.assemble((f"GPU {key} ", "bold"), (name, "cyan"))
        text.append(f"  {fmt(temp, '.0f', '°C')}", temperature_style(temp))
        text.append(f"  {fmt(gpu.get('power_draw'), '.0f')}/{fmt(gpu.get('power_limit'), '.0f')} W")
        text.append(f"  fan {fmt(gpu.get('fan'), '.0f', '%')}")
        clock_mem = gpu.get("clock_memory", gpu.get("clock_mem"))
        text.append(f"  {fmt(gpu.get('clock_sm'))}/{fmt(clock_mem)} MHz\n", "dim")
        text.append(f"  VRAM {bar(memory, 16)} ")
        text.append(f"{fmt_bytes(gpu.get('memory_used'))} / {fmt_bytes(gpu.get('memory_total'))}")
        text.append(f"  {sparkline(get(history, 'gpu_memory_used', key), 14)}\n", "magenta")
        text.append(f"  util {bar(util / 100 if util is not None else None, 16)} ")
        text.append(f"{fmt(util, '.0f', '%'):>5}")
        text.append(f"  {sparkline(get(history, 'gpu_utilization', key), 14, 100)}", "blue")
        for process in gpu.get("processes") or []:
            if isinstance(process, dict):
                owner = process.get("profile") or process.get("model") or "other"
                used = process.get("used_memory", process.get("memory_used"))
                text.append(f"\n  pid {process.get('pid', DASH)} {owner} {fmt_bytes(used)}", "dim")
        return text

    @staticmethod
    def _throughput(history: dict) -> Text:
        text = Text()
        series = get(history, "tokens_per_s")
        if isinstance(series, dict):
            for model, values in series.items():
                last = num(values[-1]) if isinstance(values, list) and values else None
                text.append(f"{model} t/s {fmt(last, '.1f'):>6} ", "bold")
                text.append(f"{sparkline(values)}\n", "green")
        text.rstrip()
        return text
