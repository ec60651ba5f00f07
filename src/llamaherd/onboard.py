"""`herd add`: from a GGUF file or a Hugging Face repo to a profile that `herd up` serves.

1. Get the file: a local path as is; `REPO[:QUANT]` is downloaded with huggingface_hub
   (resumable, with its progress bars; every part of a split model) into models_dir.
2. Inspect it (gguf.header) and plan it for this machine's GPUs (gguf.plan).
3. Take sampler defaults from the file, else from the known families (gguf.families).
4. Append `[models.<id>]` to herd.toml with tomlkit, so the file's comments and layout
   stay as they were. An existing profile is only replaced with `force`.
5. Optionally `test` it: start it through the daemon, send one chat request, stop it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import tomlkit

from llamaherd import control, fsutil
from llamaherd.config import ID_PATTERN, parse_config
from llamaherd.config.load import editable_config
from llamaherd.config.toml import replace_table, table_item
from llamaherd.daemon.record import running_record
from llamaherd.errors import HerdError, UsageError
from llamaherd.gguf import families
from llamaherd.gguf import header as gguf_header
from llamaherd.gguf import plan as gguf_plan
from llamaherd.gguf import search as gguf_search
from llamaherd.schema import SwitchFailed

DEFAULT_MAX_CTX = 32768  # without --ctx: the trained context, but no more than this
GGUF_PART = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")


@dataclass
class Added:
    profile_id: str
    config_path: Path
    model_path: Path
    table: dict[str, Any]
    plan: gguf_plan.Plan
    sampling_source: str
    replaced: bool
    downloaded: list[Path] = field(default_factory=list)
    test: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.profile_id,
            "config": str(self.config_path),
            "file": str(self.model_path),
            "profile": self.table,
            "sampling_source": self.sampling_source,
            "replaced": self.replaced,
            "downloaded": [str(p) for p in self.downloaded],
            "plan": self.plan.summary(),
            "test": self.test,
            "warnings": self.warnings,
        }


# --------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------


def add(
    source: str,
    *,
    config: str | Path | None = None,
    profile_id: str | None = None,
    ctx: int | None = None,
    gpus: list[gguf_plan.Gpu] | None = None,
    cache_type: str | None = None,
    force: bool = False,
    endpoint: str | None = None,
) -> Added:
    """Add `source` (a .gguf path, or REPO[:QUANT] on Hugging Face) as a profile."""
    config_path, text = editable_config(config)
    models_dir = _models_dir(text, config_path)
    local = Path(source).expanduser()
    downloaded: list[Path] = []
    if local.exists() or source.endswith(".gguf") or source.startswith((".", "/", "~")):
        model_path = local.absolute()
    else:
        downloaded = download(source, models_dir, endpoint=endpoint)
        model_path = downloaded[0]
    info = gguf_header.read(model_path)

    doc = tomlkit.parse(text)
    models = doc.get("models")
    pid = profile_id or suggest_id(model_path)
    if not re.fullmatch(ID_PATTERN, pid):
        raise UsageError(f"invalid profile id {pid!r}: use letters, digits, '.', '_' and '-'")
    replaced = models is not None and pid in models
    if replaced and not force:
        raise UsageError(
            f"{config_path}: profile '{pid}' already exists; "
            "pass --force to replace it or --id NAME to add it under another id"
        )

    settings = gguf_plan.Settings(
        ctx=ctx or min(info.context_length or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX),
        cache_type_k=cache_type or "f16",
        cache_type_v=cache_type or "f16",
    )
    machine = gguf_plan.detected_gpus() if gpus is None else gpus
    plan = gguf_search.best_plan(info, settings, machine)
    sampling, sampling_source = families.sampling_defaults(
        info.architecture, info.sampling, info.name, model_path.name
    )
    table = profile_table(info, model_path, models_dir, settings, plan, sampling)

    gpu_text = ", ".join(f"{d.name} {gguf_plan.format_size(d.total)}" for d in plan.estimate.gpus)
    item = table_item(
        table,
        f"added by `herd add` on {date.today()}: plan {plan.strategy}, "
        f"{gpu_text or 'CPU ' + gguf_plan.format_size(plan.estimate.cpu.total)}",
    )
    if sampling:
        item["sampling"].comment(f"from {sampling_source}")
    if models is None:
        models = tomlkit.table(is_super_table=True)
        doc["models"] = models
    if replaced:
        replace_table(models, pid, item)
    else:
        models[pid] = item

    new_text = tomlkit.dumps(doc)
    parse_config(new_text, config_path, check_files=False)  # never write a broken file
    fsutil.write_text_if_changed(config_path, new_text)
    added = Added(pid, config_path, model_path, table, plan, sampling_source, replaced, downloaded)
    if not info.chat_template:
        added.warnings.append(
            f"{model_path.name} has no chat template (a base model?): chat requests get "
            "llama-server's fallback format; send it /v1/completions, or choose a template "
            'with args = ["--chat-template", "NAME"]'
        )
    return added


def profile_table(
    info: gguf_header.ModelInfo,
    model_path: Path,
    models_dir: Path,
    settings: gguf_plan.Settings,
    plan: gguf_plan.Plan,
    sampling: dict[str, Any],
) -> dict[str, Any]:
    try:
        file = str(model_path.relative_to(models_dir.absolute()))
    except ValueError:
        file = str(model_path)
    table: dict[str, Any] = {
        "name": info.name or model_path.stem,
        "file": file,
        "ctx": settings.ctx,
    }
    if settings.cache_type_k != "f16":
        table["cache_type_k"] = settings.cache_type_k
        table["cache_type_v"] = settings.cache_type_v
        table["flash_attn"] = "on"
    if sampling:
        table["sampling"] = sampling
    placement = plan.placement_table()
    if placement:
        table["placement"] = placement
    return table


def suggest_id(model_path: Path) -> str:
    """'Qwen3-8B-Q4_K_M-00001-of-00002.gguf' -> 'qwen3-8b-q4_k_m'."""
    stem = GGUF_PART.sub("", model_path.name).removesuffix(".gguf")
    return re.sub(r"[^a-z0-9._-]+", "-", stem.lower()).strip("-") or "model"


def _models_dir(text: str, config_path: Path) -> Path:
    data = tomlkit.parse(text)
    value = data.get("models_dir")
    base = config_path.parent
    if isinstance(value, str):
        return (base / Path(value).expanduser()).absolute()
    return (base / "models").absolute()


# --------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------


def download(spec: str, models_dir: Path, *, endpoint: str | None = None) -> list[Path]:
    """Download REPO[:QUANT] into models_dir/<repo name>/, every part of a split model.

    huggingface_hub resumes interrupted downloads and shows a progress bar per file.
    QUANT picks among the repo's GGUFs by name (Q4_K_M, UD-Q5_K_XL, ...); without it the
    repo must hold exactly one model. Returns the local paths, first part first.
    """
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    repo, _, quant = spec.partition(":")
    if repo.count("/") != 1:
        raise UsageError(
            f"{spec!r} is neither a file nor a Hugging Face repo: give a path to a .gguf "
            "or owner/name[:QUANT], e.g. unsloth/Qwen3-8B-GGUF:Q4_K_M"
        )
    try:
        files = HfApi(endpoint=endpoint).list_repo_files(repo)
    except HfHubHTTPError as error:
        raise HerdError(f"cannot list {repo} on Hugging Face: {error}") from None
    chosen = choose_files([f for f in files if f.endswith(".gguf")], quant, repo)
    target = models_dir / repo.split("/")[1]
    out = []
    for name in chosen:
        try:
            local = hf_hub_download(repo, name, local_dir=target, endpoint=endpoint)
        except HfHubHTTPError as error:
            raise HerdError(f"download of {repo}/{name} failed: {error}") from None
        out.append(Path(local))
    return out


def choose_files(ggufs: list[str], quant: str, repo: str) -> list[str]:
    """The files of one model: those whose name holds QUANT (all parts of a split)."""
    ggufs = [f for f in ggufs if "mmproj" not in f.lower()]  # vision projectors: not a model
    if quant:
        needle = quant.lower()
        ggufs = [f for f in ggufs if needle in f.lower()]
    models = sorted({GGUF_PART.sub("", f) for f in ggufs})
    if not models:
        what = f" matching {quant!r}" if quant else ""
        raise UsageError(f"{repo} has no GGUF file{what}")
    if len(models) > 1:
        exact = [m for m in models if re.search(rf"[-_.]{re.escape(quant)}(\.gguf)?$", m, re.I)]
        if quant and len(exact) == 1:
            models = exact
        else:
            names = ", ".join(Path(m).name.removesuffix(".gguf") for m in models[:12])
            raise UsageError(f"{repo} holds several models; pick one with {repo}:QUANT ({names})")
    stem = models[0]
    return sorted(f for f in ggufs if f == stem or fnmatch.fnmatch(f, f"{stem}-*-of-*.gguf"))


# --------------------------------------------------------------------------------------
# --test
# --------------------------------------------------------------------------------------


def smoke_test(config_path: Path, profile_id: str) -> dict[str, Any]:
    """Start the profile through the daemon, send one chat request, stop it again.

    A daemon that was not running is stopped afterwards; a running one re-reads the
    config first (it would also notice the file change, but not necessarily in time)."""
    from llamaherd.config import load_config

    config = load_config(config_path)
    was_running = running_record() is not None
    client = control.connect(config)
    if client.alive():
        client.reload()
    answer = control.up(config, profile_id)
    client = control.connect(config)
    try:
        if isinstance(answer, SwitchFailed):
            return {"ok": False, "error": answer.error, "log_tail": answer.log_tail}
        reply = control.chat(config.server.public_url, "Say hello.", model=profile_id)
        return {
            "ok": True,
            "completion_tokens": reply["usage"]["completion_tokens"],
            "text": reply["choices"][0]["message"].get("content", ""),
        }
    finally:
        control.down(client, model=profile_id, stop_daemon=not was_running)
