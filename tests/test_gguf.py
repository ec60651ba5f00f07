"""GGUF inspection and the memory planner: fields read back as written, placement
decisions for made-up GPU sets, llama.cpp's own numbers, and the daemon's VRAM check.

Big models (70B dense, a 120B-class MoE) are written as sparse files: a real GGUF header
and tensor table, with the weights left as holes, so they cost a few kB of disk and the
planner sees exactly what a downloaded file would show it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import run_herd, wait_until

from llamaherd import cli, profiles
from llamaherd.config import Config, load_config
from llamaherd.errors import UsageError
from llamaherd.gguf import budget, check, synth
from llamaherd.gguf import header as gguf_header
from llamaherd.gguf import plan as gguf_plan
from llamaherd.gguf import search as gguf_search
from llamaherd.gguf.plan import GiB, Gpu, LayerPlacement, Settings

DENSE = synth.Shape(
    n_embd=256, n_layer=4, n_head=8, n_head_kv=2, n_ff=704, n_vocab=4096,
    weight_type="F16", context_length=16384, name="test dense",
    sampling=(("temp", 0.6), ("top_k", 20), ("top_p", 0.95)),
)  # fmt: skip
MOE = synth.Shape(
    n_embd=128, n_layer=3, n_head=4, n_head_kv=4, n_ff=96, n_vocab=1024,
    n_expert=8, n_expert_used=2, weight_type="Q8_0", name="test moe",
)  # fmt: skip
SWA = synth.Shape(
    arch="gemma3", n_embd=128, n_layer=12, n_head=4, n_head_kv=2, head_dim=64, n_ff=256,
    n_vocab=1024, sliding_window=512, tied_output=True, name="test swa",
)  # fmt: skip
# Realistic shapes, written sparse: a Llama-3-70B-like dense model in Q8_0 (70 GiB),
# an 8B-like one (8 GiB), a 32B-like one (33 GiB) and a 120B-class MoE.
BIG_DENSE = synth.Shape(
    n_embd=8192, n_layer=80, n_head=64, n_head_kv=8, n_ff=28672, n_vocab=128256,
    weight_type="Q8_0", context_length=131072, name="sparse 70b",
)  # fmt: skip
MID_DENSE = synth.Shape(
    n_embd=5120, n_layer=64, n_head=40, n_head_kv=8, head_dim=128, n_ff=25600,
    n_vocab=151936, weight_type="Q8_0", context_length=40960, name="sparse 32b",
)  # fmt: skip
SMALL_DENSE = synth.Shape(
    n_embd=4096, n_layer=32, n_head=32, n_head_kv=8, n_ff=14336, n_vocab=128256,
    weight_type="Q8_0", context_length=131072, name="sparse 8b",
)  # fmt: skip
BIG_MOE = synth.Shape(
    n_embd=2880, n_layer=36, n_head=64, n_head_kv=8, head_dim=64, n_ff=2880,
    n_vocab=201088, n_expert=128, n_expert_used=4, weight_type="Q8_0",
    context_length=131072, name="sparse 120b moe",
)  # fmt: skip

ASYMMETRIC = [Gpu("GPU0", 24 * GiB), Gpu("GPU1", 16 * GiB)]
ONE_8GB = [Gpu("GPU0", 8 * GiB)]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gguf")
    out = {
        "dense": synth.write(root / "dense.gguf", DENSE),
        "moe": synth.write(root / "moe.gguf", MOE),
        "swa": synth.write(root / "swa.gguf", SWA),
    }
    for name, shape in [
        ("big_dense", BIG_DENSE),
        ("mid_dense", MID_DENSE),
        ("small_dense", SMALL_DENSE),
        ("big_moe", BIG_MOE),
    ]:
        out[name] = synth.write(root / f"{name}.gguf", shape, sparse=True)
    parts = synth.write_split(root / "split" / "dense-split.gguf", DENSE, parts=3)
    out["split_first"], out["split_last"] = parts[0], parts[-1]
    (root / "notgguf.gguf").write_bytes(b"GGUX" + b"\0" * 64)
    out["broken"] = root / "notgguf.gguf"
    return out


# --- inspect ---------------------------------------------------------------------------


def test_inspect_reads_back_what_was_written(models) -> None:
    info = gguf_header.read(models["dense"])
    assert (info.architecture, info.name) == ("llama", "test dense")
    assert (info.n_layer, info.n_embd, info.n_head, info.n_ff) == (4, 256, 8, 704)
    assert info.n_head_kv == [2] * 4
    assert (info.head_dim_k, info.head_dim_v) == (32, 32)
    assert (info.n_vocab, info.context_length) == (4096, 16384)
    assert (info.tokenizer, info.chat_template, info.file_type) == ("gpt2", True, "F16")
    assert info.sampling == pytest.approx({"temp": 0.6, "top_k": 20, "top_p": 0.95})
    assert not info.is_moe and not info.swa_layers and not info.tied_output
    # Every tensor counted once, in the right group, with its real byte size.
    e, ff, v = 256, 704, 4096
    assert info.groups["embeddings"].n_bytes == v * e * 2
    assert info.groups["output"].n_bytes == v * e * 2 + e * 4
    assert info.groups["ffn_dense"].n_params == 4 * (3 * e * ff + e)
    assert sum(g.n_bytes for g in info.groups.values()) < info.file_size
    assert info.n_params == sum(g.n_params for g in info.groups.values())


def test_inspect_counts_experts_apart(models) -> None:
    info = gguf_header.read(models["moe"])
    assert (info.n_expert, info.n_expert_used) == (8, 2)
    experts = info.groups["ffn_experts"]
    assert experts.n_tensors == 3 * 3
    assert experts.n_params == 3 * 3 * 8 * 96 * 128
    assert set(experts.types) == {"Q8_0"}
    assert experts.n_bytes == experts.n_params // 32 * 34


def test_inspect_finds_sliding_window_layers_and_tied_output(models) -> None:
    info = gguf_header.read(models["swa"])
    assert info.sliding_window == 512
    # gemma3: 5 of every 6 layers windowed, the 6th global (llama.cpp's set_swa_pattern)
    assert info.swa_layers == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    assert info.tied_output and "output" in info.groups


def test_inspect_reads_split_models_from_any_part(models) -> None:
    whole = gguf_header.read(models["dense"])
    for part in (models["split_first"], models["split_last"]):
        split = gguf_header.read(part)
        assert len(split.files) == 3 and split.path == models["split_first"]
        assert split.n_params == whole.n_params and split.n_layer == whole.n_layer
        assert split.sampling == whole.sampling


def test_inspect_missing_split_part_names_it(models, tmp_path: Path) -> None:
    parts = synth.write_split(tmp_path / "m.gguf", MOE, parts=2)
    parts[1].unlink()
    with pytest.raises(UsageError, match="missing m-00002-of-00002.gguf"):
        gguf_header.read(parts[0])


def test_inspect_cli_json_and_bad_file(models) -> None:
    result = run_herd("inspect", str(models["moe"]), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["n_expert"] == 8 and data["groups"]["ffn_experts"]["n_tensors"] == 9
    bad = run_herd("inspect", str(models["broken"]))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "not a readable GGUF file" in bad.stderr


# --- the memory model ----------------------------------------------------------------------


def test_output_layer_is_offloaded_first_and_input_embeddings_stay_on_cpu(models) -> None:
    info = gguf_header.read(models["dense"])
    assert gguf_plan.layer_devices(4, LayerPlacement(n_gpu_layers=1), 1) == [-1, -1, -1, -1, 0]
    est = gguf_plan.estimate(
        info, Settings(ctx=4096), LayerPlacement(n_gpu_layers=5), [Gpu("g", GiB)]
    )
    embd = info.groups["embeddings"].n_bytes
    assert est.cpu.weights == embd  # everything else went to the GPU
    assert est.gpus[0].weights == info.groups["output"].n_bytes + sum(
        info.groups[g].n_bytes for g in ("attention", "ffn_dense")
    )


def test_tied_embeddings_are_copied_to_the_output_device(models) -> None:
    info = gguf_header.read(models["swa"])
    gpu = [Gpu("g", GiB)]
    est = gguf_plan.estimate(info, Settings(ctx=4096), LayerPlacement(n_gpu_layers=1), gpu)
    token_embd = info.groups["embeddings"].n_bytes
    assert est.gpus[0].weights == token_embd + info.groups["output"].n_bytes
    assert est.cpu.weights >= token_embd  # the input side keeps its own copy


def test_kv_cache_follows_llama_cpp_padding_swa_and_slots(models) -> None:
    dense = gguf_header.read(models["dense"])
    row = 2 * 32 * 2 * 2  # K and V, 2 KV heads of 32, f16
    kv = gguf_plan.kv_bytes_per_layer(dense, Settings(ctx=1000))
    assert kv == {il: row * 1024 for il in range(4)}  # 1000 padded to 256
    q8 = gguf_plan.kv_bytes_per_layer(dense, Settings(ctx=1024, cache_type_k="q8_0"))
    assert q8[0] == (64 // 32 * 34 + 64 * 2) * 1024
    # Separate streams per slot: each padded on its own.
    assert gguf_plan.kv_cells(dense, Settings(ctx=1000, parallel=3)) == (3 * 512, 3 * 512)
    swa = gguf_header.read(models["swa"])
    full, windowed = gguf_plan.kv_cells(swa, Settings(ctx=32768))
    assert (full, windowed) == (32768, 512 * 4 + 512)  # window x 4 slots + ubatch
    per_layer = gguf_plan.kv_bytes_per_layer(swa, Settings(ctx=32768))
    assert per_layer[5] > per_layer[0] * 10  # the global layer keeps the whole context


def test_latent_attention_caches_k_only(models) -> None:
    info = gguf_header.read(models["dense"])
    mla = dataclasses.replace(info, mla=True)  # DeepSeek-style: V is a view of K
    full = gguf_plan.kv_bytes_per_layer(info, Settings(ctx=4096))[0]
    assert gguf_plan.kv_bytes_per_layer(mla, Settings(ctx=4096))[0] == full // 2


def test_quantized_v_cache_needs_flash_attention(models) -> None:
    info = gguf_header.read(models["dense"])
    settings = Settings(ctx=4096, cache_type_k="q8_0", cache_type_v="q8_0")
    plan = gguf_search.best_plan(info, settings, [])
    assert plan.flags()[-2:] == ["-fa", "on"]
    with pytest.raises(UsageError, match="needs flash attention"):
        gguf_search.best_plan(info, Settings(ctx=4096, cache_type_v="q4_0", flash_attn="off"), [])


@pytest.mark.parametrize("text", ["24GiB", "24G", "24", "24576MiB"])
def test_gpu_sizes_parse(text: str) -> None:
    assert gguf_plan.parse_size(text) == 24 * GiB


def test_bad_gpu_size_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="write it like 24GiB"):
        gguf_plan.parse_size("lots")


# --- placement decisions ----------------------------------------------------------------


def test_small_model_goes_on_the_larger_gpu_alone(models) -> None:
    info = gguf_header.read(models["small_dense"])
    plan = gguf_search.best_plan(info, Settings(ctx=32768), ASYMMETRIC)
    assert plan.strategy == "A"
    assert plan.estimate.gpus[1].layers == [] and len(plan.estimate.gpus[0].layers) == 33
    assert plan.placement_table() == {"fit": False, "n_gpu_layers": "all", "tensor_split": [33, 0]}


def test_model_too_big_for_one_gpu_is_split_across_asymmetric_gpus(models) -> None:
    info = gguf_header.read(models["mid_dense"])
    plan = gguf_search.best_plan(info, Settings(ctx=16384), ASYMMETRIC)
    assert plan.strategy == "B" and plan.fits
    gpu0, gpu1 = plan.estimate.gpus
    assert gpu0.layers and gpu1.layers and info.n_layer in gpu1.layers  # output on the last
    assert gpu0.total <= 24 * GiB and gpu1.total <= 16 * GiB
    assert plan.estimate.cpu.weights == info.groups["embeddings"].n_bytes
    split = plan.placement_table()["tensor_split"]
    assert sum(split) == info.n_layer + 1 and split[0] > split[1]
    flags = plan.flags()
    assert flags[flags.index("--tensor-split") + 1] == f"{split[0]},{split[1]}"


def test_moe_keeps_the_fewest_expert_layers_on_the_cpu(models) -> None:
    info = gguf_header.read(models["big_moe"])
    settings = Settings(ctx=32768)
    plan = gguf_search.best_plan(info, settings, ASYMMETRIC)
    assert plan.strategy == "C" and plan.fits
    n = plan.estimate.placement.n_cpu_moe
    assert 0 < n < info.n_layer
    assert plan.placement_table()["n_cpu_moe"] == n and "--n-cpu-moe" in plan.flags()
    one_fewer = gguf_search._fit_split(info, settings, ASYMMETRIC, n_cpu_moe=n - 1)
    assert one_fewer is None  # n is the fewest that fits
    # The experts of those n layers are exactly what the CPU holds besides the embeddings.
    experts = info.weight_table.experts
    assert plan.estimate.cpu.weights == info.weight_table.cpu + sum(experts[:n])


def test_dense_model_too_big_gets_the_most_layers_that_fit(models) -> None:
    info = gguf_header.read(models["big_dense"])
    settings = Settings(ctx=8192)
    for gpus in (ASYMMETRIC, ONE_8GB):
        plan = gguf_search.best_plan(info, settings, gpus)
        assert plan.strategy == "D" and plan.fits
        ngl = plan.estimate.placement.n_gpu_layers
        assert plan.placement_table()["n_gpu_layers"] == ngl
        assert (
            gguf_search._fit_split(info, settings, gpus, n_cpu_moe=0, n_gpu_layers=ngl + 1) is None
        )
    on_8gb = gguf_search.best_plan(info, settings, ONE_8GB).estimate.placement.n_gpu_layers
    on_40gb = gguf_search.best_plan(info, settings, ASYMMETRIC).estimate.placement.n_gpu_layers
    assert 0 < on_8gb < on_40gb < 81


def test_no_gpu_means_cpu_only_with_no_placement(models) -> None:
    info = gguf_header.read(models["big_dense"])
    plan = gguf_search.best_plan(info, Settings(ctx=8192), [])
    assert plan.strategy == "CPU only" and plan.placement_table() == {}
    assert plan.estimate.cpu.weights == sum(g.n_bytes for g in info.groups.values())
    assert plan.flags() == ["-c", "8192"]


def test_plan_cli_prints_flags_and_toml_and_json(models) -> None:
    text = run_herd(
        "plan", str(models["big_moe"]), "--ctx", "32768", "--gpu", "24GiB", "--gpu", "16GiB"
    )
    assert text.returncode == 0, text.stderr
    assert "--n-cpu-moe" in text.stdout and "placement = {" in text.stdout
    data = json.loads(run_herd("plan", str(models["big_moe"]), "--ctx", "32768", "--gpu", "none",
                           "--json").stdout)  # fmt: skip
    assert data["strategy"] == "CPU only" and data["devices"][0]["name"] == "CPU"
    bad = run_herd("plan", str(models["dense"]), "--gpu", "24XB")
    assert bad.returncode == 2 and "invalid memory size" in bad.stderr


def test_gpu_too_small_for_anything_falls_back_to_cpu_only(models) -> None:
    # A 1 GiB GPU with the default 1 GiB margin holds nothing; a CPU-only plan then.
    result = run_herd("plan", str(models["dense"]), "--ctx", "4096", "--gpu", "1GiB", "--json")
    assert json.loads(result.stdout)["strategy"] == "CPU only"


# --- against llama.cpp's own numbers ------------------------------------------------------


def test_estimate_matches_the_buffers_llama_server_allocates(models, llama_server, tmp_path):
    """The benchmark's method on one small model: start llama-server, read its buffers."""
    info = gguf_header.read(models["dense"])
    settings = Settings(ctx=8192)
    log = tmp_path / "server.log"
    argv = [str(llama_server), "-m", str(models["dense"]), "--port", "0", "-lv", "4",
            "--no-repack", "-t", "1", "-c", "8192"]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        try:
            assert wait_until(lambda: "listening" in log.read_text(errors="replace"), 60)
        finally:
            process.terminate()
            process.wait(30)
    actual = check.buffer_sizes(log.read_text(errors="replace"))["CPU"]
    cpu = gguf_plan.estimate(info, settings, LayerPlacement(), []).cpu
    assert cpu.weights == pytest.approx(actual["weights"], rel=0.001)
    assert cpu.kv_cache == actual["kv_cache"]
    assert cpu.compute == pytest.approx(actual["compute"], rel=0.10)
    assert cpu.total == pytest.approx(sum(actual.values()), rel=0.05)


def test_check_compares_with_llama_fit_params(models, llama_server) -> None:
    tool = check.find_fit_params(llama_server)
    if tool is None:
        pytest.skip("this llama-server has no llama-fit-params beside it")
    info = gguf_header.read(models["dense"])
    plan = gguf_search.best_plan(info, Settings(ctx=8192, parallel=1), [])
    projected = check.fit_print(tool, models["dense"], plan.flags())
    host = projected["Host"]
    assert host["kv_cache"] == plan.estimate.cpu.kv_cache  # both 8192 cells x 4 layers


# --- profiles: the daemon's check and the picker -------------------------------------------


def _profile(tmp_path: Path, model: Path, placement: str) -> Config:
    path = tmp_path / "herd.toml"
    path.write_text(
        f'[models.a]\nfile = "{model}"\nctx = 8192\nplacement = {placement}\n'
        f'[models.b]\nfile = "{model}"\nctx = 8192\nplacement = {placement}\n'
    )
    return load_config(path)


@pytest.mark.parametrize("command", ["inspect", "plan", "add"])
def test_cli_has_help_for_the_new_commands(command: str) -> None:
    result = CliRunner().invoke(cli.cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_picker_shows_the_estimated_memory(models, tmp_path) -> None:
    import asyncio

    from textual.widgets import DataTable

    from llamaherd.tui.picker import PickerApp

    config = _profile(tmp_path, models["small_dense"], '{ n_gpu_layers = "all" }')
    memory = budget.summaries(list(config.models.values()), [Gpu("GPU0", 24 * GiB)])
    rows = [profiles.describe(p, memory=memory[p.id]) for p in config.models.values()]

    async def scenario() -> list[str]:
        app = PickerApp(rows)
        async with app.run_test(size=(140, 30)) as pilot:
            await pilot.pause(0.1)
            table = app.screen.query_one(DataTable)
            return [str(cell) for cell in table.get_row_at(0)]

    cells = asyncio.run(scenario())
    assert any(c.startswith("8.") and "GiB GPU +" in c and "RAM" in c for c in cells), cells


def test_cpu_counts_the_repacked_copy_of_q4_matrices(tmp_path: Path) -> None:
    """llama.cpp's CPU backend copies Q4_0/Q4_K/IQ4_NL/Q2_K matrices into a CPU_REPACK
    buffer beside the mapped file (Q8_0 ones it uses as they are): a Q4 model on the CPU
    needs its matrices twice, and once they are offloaded the copy is gone."""
    q4 = gguf_header.read(
        synth.write(tmp_path / "q4.gguf", dataclasses.replace(DENSE, weight_type="Q4_0"))
    )
    q8 = gguf_header.read(
        synth.write(tmp_path / "q8.gguf", dataclasses.replace(DENSE, weight_type="Q8_0"))
    )
    settings = Settings(ctx=4096)

    def cpu_weights(info: gguf_header.ModelInfo, n_gpu_layers: int = 0) -> int:
        gpus = [Gpu("GPU0", 24 * GiB)] if n_gpu_layers else []
        return gguf_plan.estimate(info, settings, LayerPlacement(n_gpu_layers), gpus).cpu.weights

    def total(info: gguf_header.ModelInfo) -> int:
        return sum(t.n_bytes for t in info.tensors)

    matrices = sum(
        t.n_bytes for t in q4.tensors if len(t.shape) == 2 and "token_embd" not in t.name
    )
    assert cpu_weights(q4) == total(q4) + matrices
    assert cpu_weights(q8) == total(q8)
    everything = q4.n_layer + 1
    assert cpu_weights(q4, everything) == q4.weight_table.cpu  # the embeddings, not repacked
