"""`herd top`: one plain-text snapshot of the daemon's models, GPUs and host.

Plain lines (no colours, no cursor movement) so it works in scripts, logs, `watch`, and
terminals where the full-screen dashboard cannot run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llamaherd.schema import Status, SystemSnapshot


def snapshot(status: Status, system: SystemSnapshot) -> dict[str, Any]:
    """What `herd top --json` prints: the running models with their live numbers."""
    servers = {s.model: s.model_dump(mode="json") for s in system.servers}
    models = []
    for loaded in status.loaded:
        live = servers.get(loaded.model or "", {})
        models.append({**live, "model": loaded.model, "state": loaded.state})
    return {
        "current": status.model,
        "models": models,
        "gpus": [gpu.model_dump(mode="json") for gpu in system.gpus],
        "gpu_note": system.gpu_note,
        "system": system.system.model_dump(mode="json") if system.system else None,
        "sampled_at": system.sampled_at,
    }


def render(top: dict[str, Any]) -> str:
    lines = [f"herd top  {time.strftime('%Y-%m-%d %H:%M:%S', _local(top['sampled_at']))}"]
    lines.append(
        f"{'MODEL':<20} {'STATE':<9} {'TOK/S':>7} {'PROMPT/S':>9} {'SLOTS':>6} "
        f"{'IN-FLIGHT':>9} {'RSS':>10} {'CPU%':>6}"
    )
    for m in top["models"]:
        mark = "*" if m["model"] == top["current"] else " "
        slots = (
            f"{m['slots_active']}/{m['slots_active'] + m['slots_idle']}"
            if m.get("slots_active") is not None and m.get("slots_idle") is not None
            else "-"
        )
        lines.append(
            f"{mark}{m['model']:<19} {m['state']:<9} {_num(m.get('tokens_per_s')):>7} "
            f"{_num(m.get('prompt_tokens_per_s')):>9} {slots:>6} {_num(m.get('in_flight')):>9} "
            f"{bytes_text(m.get('rss')):>10} {_num(m.get('cpu_percent')):>6}"
        )
    if not top["models"]:
        lines.append(" no model running")
    lines.append("")
    for gpu in top["gpus"]:
        owners = sorted({p["profile"] for p in gpu.get("processes", []) if p.get("profile")})
        lines.append(
            f"GPU {gpu['index']}  {gpu.get('name') or '?'}  "
            f"VRAM {bytes_text(gpu.get('memory_used'))}/{bytes_text(gpu.get('memory_total'))}  "
            f"util {_num(gpu.get('utilization'))}%  {_num(gpu.get('temperature'))}°C  "
            f"power {_num(gpu.get('power_draw'))}/{_num(gpu.get('power_limit'))} W"
            + (f"  [{', '.join(owners)}]" if owners else "")
        )
    if not top["gpus"]:
        lines.append(f"GPUs  none ({top.get('gpu_note') or 'none found'})")
    host = top.get("system")
    if host:
        load = " ".join(f"{x:.2f}" for x in host["load_avg"]) if host.get("load_avg") else "-"
        lines.append(f"CPU   {host['cpu_percent']:.0f}% of {host['cpu_count']} cores  load {load}")
        lines.append(
            f"RAM   {bytes_text(host['memory_used'])}/{bytes_text(host['memory_total'])}  "
            f"swap {bytes_text(host['swap_used'])}/{bytes_text(host['swap_total'])}"
        )
        disk = host.get("disk")
        if disk:
            lines.append(
                f"DISK  {bytes_text(disk['used'])}/{bytes_text(disk['total'])} "
                f"({disk['percent']:.0f}%) holding {disk['path']}"
            )
    return "\n".join(lines)


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
