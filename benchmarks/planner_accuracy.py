"""How close `herd plan` comes to what llama-server itself allocates.

Run it from the project root:

    .venv/bin/python benchmarks/planner_accuracy.py [--models DIR] [--json]

It writes models of realistic shape (a few hundred MB each: a dense llama in F16 and in
Q8_0, a llama-style mixture of experts, a gemma3 with sliding-window attention; zeros
for weights, since memory use does not depend on the values), starts the llama-server
`herd build` made on each with several settings (context, slots, KV cache type, flash
attention), reads the buffer sizes it logs while loading (`-lv 4`: model, KV, compute
and output buffers) and prints them beside the planner's estimate for the same settings,
with the relative error per component. Targets: total within 5%, each component within
10%. It reports, never fails on a figure.

Weight repacking is turned off (`--no-repack`): on CPUs with AMX or AVX-512 llama.cpp
copies the matrices into a repacked buffer and also keeps the file mapped, so the log
would count the weights twice (the planner counts them once, as a GPU would hold them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llamaherd.gguf import check, synth
from llamaherd.gguf import header as gguf_header
from llamaherd.gguf import plan as gguf_plan

MiB = 1024**2
COMPONENTS = ("weights", "kv_cache", "compute", "overhead", "total")

MODELS = {
    "dense-f16": synth.Shape(
        n_embd=1024, n_layer=16, n_head=16, n_head_kv=4, n_ff=2816, n_vocab=32000,
        weight_type="F16", context_length=32768, name="bench dense f16",
    ),
    "dense-q8": synth.Shape(
        n_embd=2048, n_layer=12, n_head=16, n_head_kv=8, n_ff=5632, n_vocab=32000,
        weight_type="Q8_0", context_length=32768, name="bench dense q8_0",
    ),
    "moe-q8": synth.Shape(
        n_embd=1024, n_layer=8, n_head=16, n_head_kv=4, n_ff=1408, n_vocab=32000,
        n_expert=16, n_expert_used=4, weight_type="Q8_0", context_length=32768,
        name="bench moe q8_0",
    ),
    "gemma3-swa-f16": synth.Shape(
        arch="gemma3", n_embd=1152, n_layer=12, n_head=8, n_head_kv=4, head_dim=128,
        n_ff=6912, n_vocab=32000, weight_type="F16", context_length=32768,
        sliding_window=1024, tied_output=True, name="bench gemma3 swa",
    ),
    # Held out: not used to fit the compute coefficients (other width ratios, a 128k
    # vocabulary, many small experts), to show how the formulas carry to new shapes.
    "heldout-dense-128k-vocab": synth.Shape(
        n_embd=1536, n_layer=6, n_head=12, n_head_kv=2, head_dim=128, n_ff=4096,
        n_vocab=128256, weight_type="Q8_0", context_length=131072, name="held-out dense",
    ),
    "heldout-moe-64x": synth.Shape(
        n_embd=1024, n_layer=4, n_head=32, n_head_kv=4, head_dim=128, n_ff=512,
        n_vocab=50000, n_expert=64, n_expert_used=8, weight_type="Q8_0",
        context_length=65536, name="held-out moe",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    model: str
    ctx: int
    parallel: int | None = None
    kv_type: str = "f16"
    flash_attn: str = "auto"
    ngl: int | None = None  # GPU cases: layers offloaded (the output layer counts as one)
    n_cpu_moe: int = 0

    def settings(self) -> gguf_plan.Settings:
        return gguf_plan.Settings(
            ctx=self.ctx,
            parallel=self.parallel,
            cache_type_k=self.kv_type,
            cache_type_v=self.kv_type,
            flash_attn=self.flash_attn,
        )

    def placement(self) -> gguf_plan.LayerPlacement:
        return gguf_plan.LayerPlacement(self.ngl or 0, (), self.n_cpu_moe)

    def flags(self) -> list[str]:
        out = ["-c", str(self.ctx), "-fa", self.flash_attn]
        if self.parallel:
            out += ["-np", str(self.parallel)]
        if self.kv_type != "f16":
            out += ["-ctk", self.kv_type, "-ctv", self.kv_type]
        out += ["--fit", "off", "-ngl", str(self.ngl or 0)]
        if self.n_cpu_moe:
            out += ["--n-cpu-moe", str(self.n_cpu_moe)]
        return out

    @property
    def label(self) -> str:
        extra = [
            f"np={self.parallel}" if self.parallel else "",
            self.kv_type,
            f"fa={self.flash_attn}",
            f"ngl={self.ngl}" if self.ngl is not None else "",
            f"n-cpu-moe={self.n_cpu_moe}" if self.n_cpu_moe else "",
        ]
        return f"{self.model} ctx={self.ctx} " + " ".join(e for e in extra if e)


CASES = [
    Case("dense-f16", 8192),
    Case("dense-f16", 32768),
    Case("dense-f16", 8192, flash_attn="off"),
    Case("dense-q8", 16384),
    Case("dense-q8", 16384, parallel=2),
    Case("dense-q8", 32768, kv_type="q8_0"),
    Case("dense-q8", 16384, flash_attn="off"),
    Case("moe-q8", 8192),
    Case("moe-q8", 32768, parallel=1),
    Case("gemma3-swa-f16", 8192),
    Case("gemma3-swa-f16", 32768),
    Case("gemma3-swa-f16", 8192, flash_attn="off"),
    Case("heldout-dense-128k-vocab", 65536),
    Case("heldout-dense-128k-vocab", 16384, parallel=3, kv_type="q4_0"),
    Case("heldout-dense-128k-vocab", 4096, flash_attn="off"),
    Case("heldout-moe-64x", 32768),
    Case("heldout-moe-64x", 8192, parallel=8, flash_attn="off"),
    Case("heldout-moe-64x", 16384, parallel=2, kv_type="q8_0", flash_attn="on"),
    Case("heldout-dense-128k-vocab", 8192, parallel=2, flash_attn="off"),
]

# With a GPU build (--gpu): offload rules, per device. One GPU, so no tensor split.
GPU_CASES = [
    Case("dense-f16", 32768, ngl=17),  # everything: only token_embd stays on the CPU
    Case("dense-f16", 8192, ngl=8),  # the output layer and the last 7 layers
    Case("dense-q8", 16384, ngl=1),  # the output layer alone
    Case("dense-q8", 16384, ngl=13, flash_attn="off"),
    Case("moe-q8", 8192, ngl=9, n_cpu_moe=4),  # experts of layers 0-3 on the CPU
    Case("gemma3-swa-f16", 32768, ngl=13),  # tied output: token_embd copied to the GPU
    Case("heldout-dense-128k-vocab", 65536, ngl=7, parallel=2),
    Case("heldout-moe-64x", 32768, ngl=5, n_cpu_moe=2, kv_type="q8_0"),
]


def measure(binary: Path, model: Path, case: Case, log: Path) -> dict[str, dict[str, int]]:
    """Start llama-server, wait until it listens (all buffers allocated), stop it.
    {device: components} as its log reports them."""
    argv = [str(binary), "-m", str(model), "--port", "0", "-lv", "4", "--no-repack",
            "-t", "1", *case.flags()]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and process.poll() is None:
                if "listening" in log.read_text(errors="replace"):
                    break
                time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(30)
    sizes = check.buffer_sizes(log.read_text(errors="replace"))
    if not sizes:
        raise SystemExit(f"{case.label}: no buffer sizes in {log}; see the log")
    return {device: {**parts, "total": sum(parts.values())} for device, parts in sizes.items()}


def estimated(info: gguf_header.ModelInfo, case: Case, gpu: bool) -> dict[str, dict[str, int]]:
    gpus = [gguf_plan.Gpu("CUDA0", 80 * 1024**3)] if gpu else []
    est = gguf_plan.estimate(info, case.settings(), case.placement(), gpus)
    out = {}
    for device in est.devices:
        overhead = 0 if device.budget is not None else device.overhead  # no margin on a GPU
        parts = {
            "weights": device.weights,
            "kv_cache": device.kv_cache,
            "compute": device.compute,
            "overhead": overhead,
        }
        out[device.name] = {**parts, "total": sum(parts.values())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, help="Where to write the models (kept).")
    parser.add_argument("--only", help="Run only the cases whose label contains this.")
    parser.add_argument("--llama-server", type=Path, help="Default: the one herd build made.")
    parser.add_argument("--gpu", action="store_true", help="The GPU cases (a CUDA build).")
    parser.add_argument(
        "--flash-attn", choices=["on", "off", "auto"], help="Override every case's setting."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    binary = args.llama_server
    if binary is None:
        from llamaherd.llamacpp import build  # not on a GPU machine: it needs platformdirs

        binary = build.pinned_build_dir() / "bin" / "llama-server"
    if not binary.exists():
        sys.exit("no llama-server: run `herd build` first")
    models_dir = args.models or Path(tempfile.mkdtemp(prefix="herd-planner-"))
    rows: list[dict[str, Any]] = []
    for case in GPU_CASES if args.gpu else CASES:
        if args.flash_attn:  # e.g. a CUDA build without FlashAttention kernels
            case = dataclasses.replace(case, flash_attn=args.flash_attn)
            if args.flash_attn == "off" and case.kv_type != "f16":
                continue  # a quantized V cache needs flash attention: llama.cpp refuses
        if args.only and args.only not in case.label:
            continue
        path = models_dir / f"{case.model}.gguf"
        if not path.exists():
            synth.write(path, MODELS[case.model])
        info = gguf_header.read(path)
        actual = measure(binary, path, case, models_dir / f"{case.model}.log")
        estimate = estimated(info, case, args.gpu)
        for device in sorted(set(actual) | set(estimate)):
            mine = estimate.get(device, dict.fromkeys(COMPONENTS, 0))
            theirs = actual.get(device, dict.fromkeys(COMPONENTS, 0))
            errors = {
                k: (mine[k] - theirs[k]) / theirs[k] if theirs[k] else None for k in COMPONENTS
            }
            row = {"case": case.label, "device": device, "estimate": mine, "actual": theirs}
            rows.append({**row, "error": errors})
            if not args.json:
                print(f"{case.label}  [{device}]")
                for k in COMPONENTS:
                    err = errors[k]
                    shown = f"{err * 100:+6.1f}%" if err is not None else "     —"
                    print(
                        f"  {k:<9} estimate {mine[k] / MiB:9.2f} MiB   "
                        f"llama-server {theirs[k] / MiB:9.2f} MiB   {shown}"
                    )
    worst = {
        k: max((abs(r["error"][k]) for r in rows if r["error"][k] is not None), default=0.0)
        for k in COMPONENTS
    }
    if args.json:
        print(json.dumps({"rows": rows, "worst": worst}, indent=2))
    else:
        print("worst relative error: " + ", ".join(f"{k} {v * 100:.1f}%" for k, v in worst.items()))
        print("targets: total within 5%, each component within 10%")


if __name__ == "__main__":
    main()
