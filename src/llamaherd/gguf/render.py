"""`herd inspect` and `herd plan` as text: what the CLI prints (JSON comes from the
dataclasses' summary())."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from llamaherd.config.toml import toml_value
from llamaherd.gguf.header import ModelInfo
from llamaherd.gguf.plan import Plan, format_size


def params(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def print_inspect(console: Console, info: ModelInfo) -> None:
    parts = f" ({len(info.files)} parts)" if len(info.files) > 1 else ""
    rows = [
        ("file", f"{info.path}{parts}, {format_size(info.file_size)}"),
        ("name", info.name or "—"),
        ("architecture", info.architecture),
        ("parameters", f"{params(info.n_params)} ({info.file_type or 'mixed types'})"),
        ("layers", str(info.n_layer)),
        ("embedding", str(info.n_embd)),
        (
            "heads",
            f"{info.n_head} query, {_kv_heads(info)} KV; head dim K {info.head_dim_k}, "
            f"V {info.head_dim_v}",
        ),
        ("feed-forward", str(info.n_ff or "—")),
        ("context trained", str(info.context_length or "—")),
        (
            "vocabulary",
            f"{info.n_vocab} tokens, {info.tokenizer or '?'} tokenizer"
            f" (pre: {info.tokenizer_pre or '—'})",
        ),
        ("chat template", "yes" if info.chat_template else "no"),
    ]
    if info.is_moe:
        shared = f", {info.n_expert_shared} shared" if info.n_expert_shared else ""
        rows.append(("experts", f"{info.n_expert} total, {info.n_expert_used} used{shared}"))
    if info.swa_layers:
        rows.append(
            (
                "sliding window",
                f"{info.sliding_window} tokens on {len(info.swa_layers)} of {info.n_layer} layers",
            )
        )
    if info.recurrent_layers:
        rows.append(("recurrent layers", f"{len(info.recurrent_layers)} of {info.n_layer}"))
    if info.sampling:
        rows.append(("sampling", ", ".join(f"{k}={v}" for k, v in info.sampling.items())))
    for key, value in rows:
        console.print(f"{key:<17}{value}")
    table = Table("tensors", "count", "params", "size", "types")
    for name, group in info.groups.items():
        types = ", ".join(f"{t} {format_size(b)}" for t, b in group.types.items())
        table.add_row(
            name, str(group.n_tensors), params(group.n_params), format_size(group.n_bytes), types
        )
    console.print(table)


def _kv_heads(info: ModelInfo) -> str:
    distinct = sorted(set(info.n_head_kv))
    return str(distinct[0]) if len(distinct) == 1 else "/".join(map(str, distinct))


def print_plan(console: Console, plan: Plan, info: ModelInfo) -> None:
    s = plan.settings
    slots = f"{s.n_seq} slots" + (" (unified cache)" if s.unified else "")
    console.print(
        f"model    {info.path.name} ({info.architecture}, {params(info.n_params)} params, "
        f"{format_size(info.file_size)})"
    )
    console.print(
        f"context  {s.ctx} tokens, {slots}, KV cache {s.cache_type_k}/{s.cache_type_v}, "
        f"flash attention {s.flash_attn}"
    )
    verdict = "fits" if plan.fits else "DOES NOT FIT"
    console.print(f"plan     {plan.strategy}: {plan.reason} ({verdict})")
    table = Table("device", "layers", "weights", "KV cache", "compute", "reserve", "total", "of")
    for d in plan.estimate.devices:
        table.add_row(
            d.name,
            _ranges(d.layers, info.n_layer),
            format_size(d.weights),
            format_size(d.kv_cache),
            format_size(d.compute),
            format_size(d.overhead),
            format_size(d.total),
            format_size(d.budget) if d.budget is not None else "RAM",
            style=None if d.fits else "red",
        )
    console.print(table)
    console.print("flags    " + " ".join(plan.flags()))
    table_text = plan.placement_table()
    if table_text:
        console.print(f"herd.toml  placement = {toml_value(table_text)}")
    for note in plan.notes:
        console.print(f"note     {note}")


def _ranges(layers: list[int], n_layer: int) -> str:
    """[0, 1, 2, 5, 16] -> '0-2, 5, out' (layer n_layer is the output layer)."""
    trunk = [i for i in layers if i < n_layer]
    parts: list[str] = []
    start: int | None = None
    prev = 0
    for i in trunk:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if prev != start else str(start))
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev != start else str(start))
    if n_layer in layers:
        parts.append("out")
    return ", ".join(parts) or "—"
