"""The agents that speak OpenAI's API: opencode, Codex, Crush, Qwen Code and aider.

Each gets herd's profiles as its models under one provider, "herd", at the gateway's
/v1, with the key named by variable (HERD_API_KEY) and never written into a file. Their
config dir is agents/NAME in herd's state dir; the files herd writes there are rewritten
on each start from the profiles (the user's own config of these agents is never read or
written: where an agent only looks in XDG's dirs, those point into its config dir).
Everything that would phone home (update checks, model catalogues, telemetry) is off:
the sandbox cuts the network anyway, and waiting on it would only slow the start.
"""

from __future__ import annotations

import json
from pathlib import Path

from llamaherd.agents.base import KEY_VARIABLE, Agent, Setup, context_of
from llamaherd.daemon import routing as route

MAX_OUTPUT = 8192
"""The output budget an agent is told of per answer (the profile's ctx bounds it anyway)."""


def _model(setup: Setup) -> str:
    """The model the agent asks for: the profile, or `auto` with --route (the gateway
    picks per request)."""
    return route.AUTO if setup.routed else setup.model


def _names(setup: Setup) -> list[tuple[str, str, int]]:
    """(id, display name, context) for every model it can switch to."""
    models = [(p.id, p.name or p.id, context_of(p)) for p in setup.profiles]
    if setup.routed:
        models.insert(0, (route.AUTO, "herd picks per request", max(m[2] for m in models)))
    return models


def _json(value: object) -> str:
    return json.dumps(value, indent=2) + "\n"


def _xdg(setup: Setup) -> dict[str, str]:
    """XDG's dirs inside the agent's config dir: where it finds its config and keeps its
    sessions, instead of the user's own."""
    names = ("CONFIG", "DATA", "STATE", "CACHE")
    return {f"XDG_{name}_HOME": str(setup.directory / name.lower()) for name in names}


def _key(setup: Setup) -> dict[str, str]:
    return {KEY_VARIABLE: setup.key}


# -- opencode: opencode.json in OPENCODE_CONFIG, `opencode run "..."` --------------------


def opencode_files(setup: Setup) -> dict[str, str]:
    models = {
        id: {"name": name, "limit": {"context": ctx, "output": min(MAX_OUTPUT, ctx // 4)}}
        for id, name, ctx in _names(setup)
    }
    config = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "model": f"herd/{_model(setup)}",
        "small_model": f"herd/{_model(setup)}",
        "provider": {
            "herd": {
                # bundled with opencode: nothing to install at start
                "npm": "@ai-sdk/openai-compatible",
                "name": "herd",
                "options": {"baseURL": setup.v1, "apiKey": f"{{env:{KEY_VARIABLE}}}"},
                "models": models,
            }
        },
    }
    return {"opencode.json": _json(config)}


def opencode_environment(setup: Setup) -> dict[str, str]:
    return {
        "OPENCODE_CONFIG": str(setup.directory / "opencode.json"),
        **_xdg(setup),
        **_key(setup),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_SHARE": "1",
    }


OPENCODE = Agent(
    name="opencode",
    title="opencode",
    binary="opencode",
    install="npm install -g opencode-ai",
    environment=opencode_environment,
    files=opencode_files,
    example=("run", "say hi"),
    dropped=("OPENCODE_CONFIG_CONTENT", "OPENCODE_CONFIG_DIR"),
)


# -- Codex: config.toml in CODEX_HOME, `codex exec "..."` ---------------------------------


def codex_files(setup: Setup) -> dict[str, str]:
    profile = setup.config.models.get(setup.model)
    window = context_of(profile) if profile else None
    lines = [
        f"model = {json.dumps(_model(setup))}",
        'model_provider = "herd"',
        "check_for_update_on_startup = false",
        *([f"model_context_window = {window}"] if window and not setup.routed else []),
        "",
        "[model_providers.herd]",
        'name = "herd"',
        f"base_url = {json.dumps(setup.v1)}",
        f'env_key = "{KEY_VARIABLE}"',
        'wire_api = "responses"',  # llama-server answers /v1/responses
        "",
        "[analytics]",
        "enabled = false",
        "",
    ]
    # One [profiles.ID] per profile: `codex --profile ID` switches models.
    for id, _name, ctx in _names(setup):
        lines += [f"[profiles.{json.dumps(id)}]", f"model = {json.dumps(id)}"]
        lines += ['model_provider = "herd"', f"model_context_window = {ctx}", ""]
    return {"config.toml": "\n".join(lines)}


CODEX = Agent(
    name="codex",
    title="Codex",
    binary="codex",
    install="npm install -g @openai/codex",
    environment=lambda setup: {"CODEX_HOME": str(setup.directory), **_key(setup)},
    files=codex_files,
    example=("exec", "--skip-git-repo-check", "say hi"),
    dropped=("OPENAI_BASE_URL", "CODEX_HOME"),
)


# -- Crush: crush.json in XDG_CONFIG_HOME/crush, `crush run "..."` ------------------------


def crush_files(setup: Setup) -> dict[str, str]:
    models = [
        {"id": id, "name": name, "context_window": ctx, "default_max_tokens": MAX_OUTPUT}
        for id, name, ctx in _names(setup)
    ]
    chosen = {"model": _model(setup), "provider": "herd"}
    config = {
        "$schema": "https://charm.land/crush.json",
        "providers": {
            "herd": {
                "name": "herd",
                "type": "openai-compat",
                "base_url": setup.v1,
                "api_key": f"${KEY_VARIABLE}",
                "models": models,
            }
        },
        "models": {"large": chosen, "small": chosen},
        "options": {"disable_provider_auto_update": True, "disable_metrics": True},
    }
    return {str(Path("config") / "crush" / "crush.json"): _json(config)}


CRUSH = Agent(
    name="crush",
    title="Crush",
    binary="crush",
    install="npm install -g @charmland/crush",
    environment=lambda setup: {
        **_xdg(setup),
        **_key(setup),
        "CRUSH_DISABLE_PROVIDER_AUTO_UPDATE": "1",
        "CRUSH_DISABLE_METRICS": "1",
    },
    files=crush_files,
    example=("run", "say hi"),
    dropped=("CRUSH_GLOBAL_CONFIG", "CRUSH_GLOBAL_DATA"),
)


# -- Qwen Code: OpenAI's variables, settings.json in QWEN_HOME, `qwen -p "..."` -----------


def qwen_files(setup: Setup) -> dict[str, str]:
    settings = {
        "security": {"auth": {"selectedType": "openai"}},
        "model": {"name": _model(setup)},
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
    }
    return {"settings.json": _json(settings)}


QWEN = Agent(
    name="qwen",
    title="Qwen Code",
    binary="qwen",
    install="npm install -g @qwen-code/qwen-code",
    environment=lambda setup: {
        "QWEN_HOME": str(setup.directory),
        "OPENAI_BASE_URL": setup.v1,
        "OPENAI_API_KEY": setup.key,
        "OPENAI_MODEL": _model(setup),
    },
    files=qwen_files,
    example=("-p", "say hi"),
    dropped=("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"),
)


# -- aider: its variables and a model metadata file, `aider --message "..."` ------------


def aider_files(setup: Setup) -> dict[str, str]:
    metadata = {
        f"openai/{id}": {
            "max_input_tokens": ctx,
            "max_output_tokens": MAX_OUTPUT,
            "max_tokens": MAX_OUTPUT,
            "input_cost_per_token": 0,
            "output_cost_per_token": 0,
            "litellm_provider": "openai",
            "mode": "chat",
        }
        for id, _name, ctx in _names(setup)
    }
    return {"model-metadata.json": _json(metadata)}


AIDER = Agent(
    name="aider",
    title="aider",
    binary="aider",
    install="pipx install aider-chat (or: pip install aider-chat)",
    environment=lambda setup: {
        "OPENAI_API_BASE": setup.v1,
        "OPENAI_API_KEY": setup.key,
        "AIDER_MODEL": f"openai/{_model(setup)}",
        "AIDER_WEAK_MODEL": f"openai/{_model(setup)}",
        "AIDER_MODEL_METADATA_FILE": str(setup.directory / "model-metadata.json"),
        "AIDER_ANALYTICS_DISABLE": "true",
        "AIDER_CHECK_UPDATE": "false",
        "AIDER_SHOW_RELEASE_NOTES": "false",
        "AIDER_GITIGNORE": "false",
    },
    files=aider_files,
    example=("--message", "say hi", "--yes-always", "--no-git"),
    dropped=("AIDER_OPENAI_API_BASE", "OPENAI_BASE_URL", "AIDER_CONFIG"),
)
