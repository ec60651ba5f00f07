"""CPU, RAM, swap, load and the llama-server processes, from /system."""

from __future__ import annotations

from rich.text import Text

from llamaherd.schema import SystemSnapshot
from llamaherd.tui.panel import TextPanel
from llamaherd.tui.remote import bar, fmt, fmt_bytes, sparkline


class SystemPanel(TextPanel):
    DEFAULT_CSS = """
    SystemPanel { height: auto; border: round $secondary; padding: 0 1; }
    """

    def on_mount(self) -> None:
        self.border_title = "System"

    def show(self, system: SystemSnapshot | None) -> None:
        if system is None:
            self.show_text(Text("no samples", style="dim"))
            return
        host = system.system
        cpu = host.cpu_percent if host else None
        text = Text.assemble(
            ("CPU  ", "bold"),
            bar(cpu / 100 if cpu is not None else None),
            f" {fmt(cpu, '.0f', '%'):>5}  ",
            (sparkline(system.history.cpu_percent, 20, 100), "blue"),
        )
        if host and host.cpu_per_core:
            cores = host.cpu_per_core
            text.append(f"\n     {sparkline(cores, 64, 100)}  ({len(cores)} cores)", "dim")
        used, total = (host.memory_used, host.memory_total) if host else (None, None)
        text.append("\nRAM  ", "bold")
        text.append(bar(used / total if used is not None and total else None))
        text.append(f" {fmt_bytes(used)} / {fmt_bytes(total)}")
        swap_used, swap_total = (host.swap_used, host.swap_total) if host else (None, None)
        text.append(f"\nswap {fmt_bytes(swap_used)} / {fmt_bytes(swap_total)}")
        if host and host.load_avg:
            text.append("   load " + " ".join(fmt(x, ".2f") for x in host.load_avg[:3]))
        for server in system.servers:
            text.append(f"\n{server.model}", "bold cyan")
            text.append(
                f"  pid {server.pid}"
                f"  {fmt(server.tokens_per_s, '.1f')} t/s"
                f"  prompt {fmt(server.prompt_tokens_per_s, '.0f')} t/s"
                f"\n  slots {fmt(server.slots_active)} busy"
                f" {fmt(server.slots_idle)} idle"
                f"  in flight {fmt(server.in_flight)}"
                f"  RSS {fmt_bytes(server.rss)}"
                f"  CPU {fmt(server.cpu_percent, '.0f', '%')}"
            )
        self.show_text(text)
