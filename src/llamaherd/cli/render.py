"""What the commands print, as values: each helper returns text or a table and the
command prints it (and decides the exit code)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from rich.table import Table

    from llamaherd.schema import Admission, Device, ModelRow, Status, SwitchFailed

# Markup off: model names, paths and llama-server log lines often contain [brackets].
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)


def error_line(message: str) -> Text:
    """`herd: MESSAGE`, the one line every failure is reported as."""
    return Text.assemble(("herd:", "red"), f" {message}")


def ctx_text(ctx: int | None) -> str:
    return f"{ctx // 1024}K" if ctx else "model"


def speed_text(speed_tps: float | None) -> str:
    return f"{speed_tps:.0f} t/s" if speed_tps else "—"


def models_table(rows: list[dict[str, Any]]) -> Table:
    """`herd models`: the profile rows (profiles.rows, ModelRow's JSON) as a table."""
    from rich.table import Table  # not needed by `herd status`

    table = Table("id", "name", "speed", "ctx", "best for", "state")
    for row in rows:
        speed, ctx = speed_text(row["speed_tps"]), ctx_text(row["ctx"])
        table.add_row(row["id"], row["name"], speed, ctx, row["best_for"], row["state"])
    return table


def menu_table(rows: list[ModelRow]) -> Table:
    """The numbered menu `herd up` offers without a full-screen terminal."""
    from rich.table import Table

    table = Table("#", "id", "name", "speed", "ctx", "best for")
    for number, row in enumerate(rows, 1):
        table.add_row(
            str(number),
            row.id,
            row.name,
            speed_text(row.speed_tps),
            ctx_text(row.ctx),
            row.best_for,
        )
    return table


def switch_failure(answer: SwitchFailed) -> list[Text | str]:
    """Why a start failed (a /switch answer with ok false): the error, the log's end, and
    which model was restored."""
    lines: list[Text | str] = [error_line(f"{answer.model} failed: {answer.error}")]
    lines += [f"  | {line}" for line in answer.log_tail[-15:]]
    if answer.restored:
        lines.append(f"restored the previous model: {answer.restored}")
    return lines


def status_lines(status: Status) -> list[Text | str]:
    """`herd status`: the daemon, the current model, its workers and URLs."""
    d = status.daemon
    lines: list[Text | str] = [
        f"daemon   running (pid {d.pid}, up {ago(d.uptime_s)}), config {d.config}"
    ]
    if status.model:
        line = Text.assemble("model    ", (status.model, "bold"), f"  {status.state}")
        if status.pid:
            line.append(f"  (llama-server pid {status.pid}, up {ago(status.uptime_s)})")
        lines.append(line)
    else:
        lines.append("model    none running")
    if status.runtime == "docker" and status.pid:
        lines.append(f"runtime  docker (container herd-{status.model})")
    if status.rpc:
        workers = ", ".join(
            w.endpoint + ("" if w.reachable else " (unreachable)") for w in status.rpc
        )
        lines.append(f"workers  {workers}")
    if status.url:
        lines.append(
            f"serving  {d.url}  (OpenAI API at /v1, Anthropic at /v1/messages, web UI at /)"
        )
        lines.append(f"         through the gateway; llama-server itself at {status.url}")
    others = [m for m in status.loaded if m.model != status.model]
    if others:
        lines.append("also     " + ", ".join(f"{m.model} ({m.state})" for m in others))
    lines += memory_lines(status.devices)
    if status.last_error:
        lines.append(f"last error  {status.last_error.model}: {status.last_error.reason}")
    return lines


def admission_lines(answer: Admission) -> list[Text | str]:
    """`herd plan FILE --beside-running`: the scheduler's answer, and the devices now."""
    from llamaherd.top import bytes_text

    need = " + ".join(f"{d} {bytes_text(n)}" for d, n in answer.need.items() if n)
    where = f" on GPU {', '.join(map(str, answer.gpus))}" if answer.gpus else ""
    if answer.refused:
        lines: list[Text | str] = [Text(answer.refused, style="red")]
    elif answer.fits:
        lines = [Text(f"fits beside the running models{where}: needs {need}", style="green")]
    elif answer.evict:
        lines = [f"fits{where} after stopping {', '.join(answer.evict)} (idle): needs {need}"]
    else:
        waits = ", ".join(answer.wait_for)
        lines = [f"fits{where} once {waits} finish their requests: needs {need}"]
    return lines + memory_lines(answer.devices)


def memory_lines(devices: list[Device]) -> list[Text | str]:
    """Per device: what the scheduler may use, what each resident model holds, what is
    free (docs/scheduling.md)."""
    from llamaherd.top import bytes_text

    lines: list[Text | str] = []
    for device in devices:
        held = ", ".join(f"{model} {bytes_text(n)}" for model, n in device.used.items())
        lines.append(
            f"{device.name:<8} {bytes_text(device.free)} free of {bytes_text(device.capacity)}"
            f" (margin {bytes_text(device.margin)} kept)" + (f": {held}" if held else "")
        )
    return lines


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def print_lines(lines: list[Text | str], *, stderr: bool = False) -> None:
    target = err_console if stderr else console
    for line in lines:
        target.print(line)
