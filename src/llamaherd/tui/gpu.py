"""Per-GPU VRAM and utilisation bars, temperature colour, and sparklines from /system."""

from __future__ import annotations

from rich.text import Text

from llamaherd.schema import Device, Gpu, History, SystemSnapshot
from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import DASH, bar, fmt, fmt_bytes, num, sparkline


def temperature_style(celsius: float | None) -> str:
    """Green while cool, yellow when warm, red when a card throttles soon."""
    if celsius is None:
        return "dim"
    if celsius >= 80:
        return "bold red"
    if celsius >= 65:
        return "yellow"
    return "green"


def _fraction(used: float | None, total: float | None) -> float | None:
    return used / total if used is not None and total else None


class GpuPanel(TextPanel):
    """One block per GPU; rendered as text so a refresh is one cheap update."""

    DEFAULT_CSS = """
    GpuPanel { height: auto; border: round $secondary; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.border_title = "GPUs"

    def show(self, system: SystemSnapshot | None, devices: list[Device] | None = None) -> None:
        """`devices`: the scheduler's view from /status (what each model holds where)."""
        if system is None:
            self.show_text(Text("no samples (this daemon has no /system)", style="dim"))
            return
        counted = {device.name: device for device in devices or []}
        blocks = [
            self._gpu(gpu, system.history) + self._scheduled(counted.get(f"GPU{gpu.index}"))
            for gpu in system.gpus
        ]
        if not system.gpus:
            blocks.append(Text(system.gpu_note or "no GPUs", style="dim"))
        blocks.append(self._throughput(system.history))
        self.show_text(Text("\n").join(block for block in blocks if block.plain))

    @staticmethod
    def _gpu(gpu: Gpu, history: History) -> Text:
        key = str(gpu.index)
        memory = _fraction(gpu.memory_used, gpu.memory_total)
        util = num(gpu.utilization)
        temp = num(gpu.temperature)
        name = (gpu.name or DASH).removeprefix("NVIDIA ").removeprefix("GeForce ")
        text = Text.assemble((f"GPU {key} ", "bold"), (name, "cyan"))
        text.append(f"  {fmt(temp, '.0f', '°C')}", temperature_style(temp))
        text.append(f"  {fmt(gpu.power_draw, '.0f')}/{fmt(gpu.power_limit, '.0f')} W")
        text.append(f"  fan {fmt(gpu.fan, '.0f', '%')}")
        text.append(f"  {fmt(gpu.clock_sm)}/{fmt(gpu.clock_memory)} MHz\n", "dim")
        text.append(f"  VRAM {bar(memory, 16)} ")
        text.append(f"{fmt_bytes(gpu.memory_used)} / {fmt_bytes(gpu.memory_total)}")
        memory_series = history.gpu_memory_used.get(key)
        text.append(f"  {sparkline(memory_series, 14)}\n", "magenta")
        text.append(f"  util {bar(util / 100 if util is not None else None, 16)} ")
        text.append(f"{fmt(util, '.0f', '%'):>5}")
        util_series = history.gpu_utilization.get(key)
        text.append(f"  {sparkline(util_series, 14, 100)}", "blue")
        for process in gpu.processes:
            owner = process.profile or "other"
            text.append(f"\n  pid {process.pid} {owner} {fmt_bytes(process.used_memory)}", "dim")
        return text

    @staticmethod
    def _scheduled(device: Device | None) -> Text:
        """herd's split of the GPU: each resident model's bytes, what is left."""
        if device is None:
            return Text()
        held = ", ".join(f"{model} {fmt_bytes(n)}" for model, n in device.used.items())
        text = Text("\n  herd ", "bold")
        text.append(f"{held or 'no model'}; {fmt_bytes(device.free)} free")
        text.append(f" (margin {fmt_bytes(device.margin)})", "dim")
        return text

    @staticmethod
    def _throughput(history: History) -> Text:
        text = Text()
        for model, values in history.tokens_per_s.items():
            last = values[-1] if values else None
            text.append(f"{model} t/s {fmt(last, '.1f'):>6} ", "bold")
            text.append(f"{sparkline(values)}\n", "green")
        text.rstrip()
        return text
