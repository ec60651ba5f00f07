"""`herd top`: one plain-text snapshot of the daemon's models, GPUs and host.

Plain lines (no colours, no cursor movement) so it works in scripts, logs, `watch`, and
terminals where the full-screen dashboard cannot run.
"""

from __future__ import annotations

import time

from llamaherd.schema import LoadedModel, ServerLive, Status, SystemSnapshot, Top


def snapshot(status: Status, system: SystemSnapshot) -> Top:
    """What `herd top --json` prints: the running models with their live numbers."""
    servers = {s.model: s for s in system.servers}
    models: list[ServerLive | LoadedModel] = []
    for loaded in status.loaded:
        live = servers.get(loaded.model or "")
        models.append(
            live.model_copy(update={"state": loaded.state})
            if live
            else LoadedModel(model=loaded.model, state=loaded.state)
        )
    return Top(
        current=status.model,
        models=models,
        gpus=system.gpus,
        gpu_note=system.gpu_note,
        system=system.system,
        sampled_at=system.sampled_at,
    )


def render(top: Top) -> str:
    lines = [f"herd top  {time.strftime('%Y-%m-%d %H:%M:%S', _local(top.sampled_at))}"]
    lines.append(
        f"{'MODEL':<20} {'STATE':<9} {'TOK/S':>7} {'PROMPT/S':>9} {'SLOTS':>6} "
        f"{'IN-FLIGHT':>9} {'RSS':>10} {'CPU%':>6}"
    )
    for m in top.models:
        lines.append(_model_line(m, current=m.model == top.current))
    if not top.models:
        lines.append(" no model running")
    lines.append("")
    for gpu in top.gpus:
        owners = sorted({p.profile for p in gpu.processes if p.profile})
        lines.append(
            f"GPU {gpu.index}  {gpu.name or '?'}  "
            f"VRAM {bytes_text(gpu.memory_used)}/{bytes_text(gpu.memory_total)}  "
            f"util {_num(gpu.utilization)}%  {_num(gpu.temperature)}°C  "
            f"power {_num(gpu.power_draw)}/{_num(gpu.power_limit)} W"
            + (f"  [{', '.join(owners)}]" if owners else "")
        )
    if not top.gpus:
        lines.append(f"GPUs  none ({top.gpu_note or 'none found'})")
    host = top.system
    if host:
        load = " ".join(f"{x:.2f}" for x in host.load_avg) if host.load_avg else "-"
        lines.append(f"CPU   {host.cpu_percent:.0f}% of {host.cpu_count} cores  load {load}")
        lines.append(
            f"RAM   {bytes_text(host.memory_used)}/{bytes_text(host.memory_total)}  "
            f"swap {bytes_text(host.swap_used)}/{bytes_text(host.swap_total)}"
        )
        if host.disk:
            disk = host.disk
            lines.append(
                f"DISK  {bytes_text(disk.used)}/{bytes_text(disk.total)} "
                f"({disk.percent:.0f}%) holding {disk.path}"
            )
    return "\n".join(lines)


def _model_line(m: ServerLive | LoadedModel, *, current: bool) -> str:
    mark = "*" if current else " "
    start = f"{mark}{m.model or '-':<19} {m.state:<9}"
    if isinstance(m, LoadedModel):
        return f"{start} {'-':>7} {'-':>9} {'-':>6} {'-':>9} {'-':>10} {'-':>6}"
    slots = (
        f"{m.slots_active}/{m.slots_active + m.slots_idle}"
        if m.slots_active is not None and m.slots_idle is not None
        else "-"
    )
    return (
        f"{start} {_num(m.tokens_per_s):>7} {_num(m.prompt_tokens_per_s):>9} {slots:>6} "
        f"{_num(m.in_flight):>9} {bytes_text(m.rss):>10} {_num(m.cpu_percent):>6}"
    )


def _local(at: float | None) -> time.struct_time:
    return time.localtime(at if at is not None else time.time())


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def bytes_text(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
