"""Claude Code's side of `herd claude`: its binary, its models and its environment.

Claude Code talks to whatever ANTHROPIC_BASE_URL names, with the model names it is told;
herd points it at the gateway and names profiles, so the gateway's swap on `model` does
the rest (`/model <profile>` inside a session switches models).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from llamaherd.agents.base import PLACEHOLDER_KEY, gateway_url, pick_model
from llamaherd.config import Config
from llamaherd.daemon import routing as route
from llamaherd.errors import HerdError

NPM_PACKAGE = "@anthropic-ai/claude-code"
INSTALL_HINT = (
    f"install Claude Code with `npm install -g {NPM_PACKAGE}` (Node.js 18+), "
    "or set [claude] binary in herd.toml"
)
PLACEHOLDER_TOKEN = PLACEHOLDER_KEY
"""Sent as the bearer token when the gateway wants none: Claude Code insists on one."""

# Variables of the user's shell that would send Claude Code elsewhere than the gateway,
# or hand it credentials for the Anthropic cloud it has no business with here.
DROPPED = (
    "ANTHROPIC_API_KEY",
    "CLAUDE_CODE_OAUTH_TOKEN",
    "CLAUDE_CODE_USE_BEDROCK",
    "CLAUDE_CODE_USE_VERTEX",
    "CLAUDE_CODE_USE_FOUNDRY",
    "ANTHROPIC_SMALL_FAST_MODEL",
    "ANTHROPIC_CUSTOM_HEADERS",
)


def find_claude(config: Config | None) -> Path:
    """The `claude` to run: [claude] binary, then PATH, then npm's global package."""
    configured = config.claude.binary if config else None
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise HerdError(
                f"[claude] binary = {configured} is not an executable file; "
                f"fix the path or remove the key ({INSTALL_HINT})"
            )
        return path
    on_path = shutil.which("claude")
    if on_path:
        return Path(on_path)
    npm_binary = _npm_global_claude()
    if npm_binary:
        return npm_binary
    raise HerdError(f"Claude Code (`claude`) not found on PATH; {INSTALL_HINT}")


def _npm_global_claude() -> Path | None:
    """The npm package's native binary when npm's global bin dir is not on PATH."""
    npm = shutil.which("npm")
    if not npm:
        return None
    try:
        root = subprocess.run(
            [npm, "root", "-g"], capture_output=True, text=True, timeout=30, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    binary = Path(root) / NPM_PACKAGE / "bin" / "claude.exe" if root else None
    return binary if binary and os.access(binary, os.X_OK) else None


def config_dir(config: Config) -> Path:
    """Claude Code's own config dir for local models (never the user's ~/.claude)."""
    return Path(os.path.expanduser(config.claude.config_dir)).absolute()


def main_model(config: Config, requested: str | None, running: str | None) -> str:
    """The profile for ANTHROPIC_MODEL: the one asked for, [claude] main, the one running
    now, default_model, in that order."""
    return pick_model(config, requested, config.claude.main, running)


def claude_env(config: Config, model: str, *, routed: bool = False) -> dict[str, str]:
    """What herd sets for Claude Code: the gateway, the model names, quiet networking.

    `routed`: every model class names the gateway's `auto` model instead, and the gateway
    picks the profile per request ([claude.route]).
    """
    claude = config.claude
    if routed:
        main, opus, sonnet, haiku = route.AUTO, route.AUTO, route.AUTO, route.AUTO_HAIKU
    else:
        main = model
        opus, sonnet, haiku = (claude.opus or main), (claude.sonnet or main), (claude.haiku or main)
    return {
        "ANTHROPIC_BASE_URL": gateway_url(config),
        "ANTHROPIC_AUTH_TOKEN": os.environ.get("HERD_API_KEY")
        or config.server.api_key
        or PLACEHOLDER_TOKEN,
        "ANTHROPIC_MODEL": main,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": opus,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": sonnet,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": haiku,
        "CLAUDE_CONFIG_DIR": str(config_dir(config)),
        # A per-request attribution block at the top of the system prompt changes every
        # time, so llama-server could never reuse its cached prompt prefix.
        "CLAUDE_CODE_ATTRIBUTION_HEADER": "0",
        # No telemetry, error reports, update checks: nothing leaves the machine.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "API_TIMEOUT_MS": str(claude.api_timeout_ms),
    }
