"""CPU, RAM, swap, load and the llama-server processes, from /system."""

from __future__ import annotations

from rich.text import Text

from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import DASH, bar, fmt, fmt_bytes, get, num, sparkline


class SystemPanel(TextPanel):
    DEFAULT_CSS = """
    SystemPanel { height: auto; border: round $secondary; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.border_title = "System"

    def show(self, system: dict | None) -> None:
        if system is None:
            self.show_text(Text("no samples", style="dim"))
            return
        sys_ = get(system, "system") or {}
        cpu = num(get(sys_, "cpu_percent"))
        text = Text.assemble(
            ("CPU  ", "bold"),
            bar(cpu / 100 if cpu is not None else None),
            f" {fmt(cpu, '.0f', '%'):>5}  ",
            (sparkline(get(system, "history", "cpu_percent"), 20, 100), "blue"),
        )
        cores = get(sys_, "cpu_per_core")
        if isinstance(cores, list) and cores:
            text.append(f"\n     {sparkline(cores, 64, 100)}  ({len(cores)} cores)", "dim")
        memory = num(get(sys_, "memory_used")), num(get(sys_, "memory_total"))
        text.append("\nRAM  ", "bold")
        text.append(bar(memory[0] / memory[1] if None not in memory and memory[1] else None))
        text.append(f" {fmt_bytes(memory[0])} / {fmt_bytes(memory[1])}")
        text.append(
            f"\nswap {fmt_bytes(get(sys_, 'swap_used'))} / {fmt_bytes(get(sys_, 'swap_total'))}"
        )
        load = get(sys_, "load")
        if isinstance(load, list) and load:
            text.append("   load " + " ".join(fmt(x, ".2f") for x in load[:3]))
        for server in get(system, "servers") or []:
            if not isinstance(server, dict):
                continue
            text.append(f"\n{server.get('model') or DASH}", "bold cyan")
            text.append(
                f"  pid {server.get('pid') or DASH}"
                f"  {fmt(server.get('tokens_per_s'), '.1f')} t/s"
                f"  prompt {fmt(server.get('prompt_tokens_per_s'), '.0f')} t/s"
                f"\n  slots {fmt(server.get('slots_active'))} busy"
                f" {fmt(server.get('slots_idle'))} idle"
                f"  in flight {fmt(server.get('in_flight'))}"
                f"  RSS {fmt_bytes(server.get('rss'))}"
                f"  CPU {fmt(server.get('cpu_percent'), '.0f', '%')}"
            )
        self.show_text(text)
