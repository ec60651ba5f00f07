"""Claude Code's row in the table of agents: Anthropic's API at the gateway, its own
config dir (~/.claude-local, seeded once and the user's afterwards), its own bash
sandbox checked before it starts."""

from __future__ import annotations

import sys
from pathlib import Path

from llamaherd.agents import relay, sandbox
from llamaherd.agents.base import Agent, Setup
from llamaherd.agents.claude import env, home
from llamaherd.errors import HerdError


def environment(setup: Setup) -> dict[str, str]:
    variables = env.claude_env(setup.config, setup.model, routed=setup.routed)
    return variables | {"ANTHROPIC_BASE_URL": setup.url}


def check_own_sandbox(config_dir: Path) -> None:
    """Claude Code's own bash sandbox (on in the seeded settings.json) needs bubblewrap
    and socat on Linux; without them it cannot wrap bash commands, and says so only
    inside the session. Refuse up front with both ways out."""
    if not sys.platform.startswith("linux") or not home.own_sandbox_enabled(config_dir):
        return
    tools = {relay.INSTALL_HINT: relay.socat_path(), sandbox.INSTALL_HINT: sandbox.bwrap_path()}
    missing = [hint for hint, found in tools.items() if found is None]
    if missing:
        settings = config_dir / "settings.json"
        raise HerdError(
            f'Claude Code\'s own bash sandbox is on ("sandbox": {{"enabled": true}} in '
            f"{settings}) and needs socat and bubblewrap: {'; '.join(missing)}; or set "
            f'"enabled": false there to run bash commands without it'
        )


CLAUDE = Agent(
    name="claude",
    title="Claude Code",
    binary="claude",
    install=f"npm install -g {env.NPM_PACKAGE}",
    environment=environment,
    files=lambda _setup: home.files(),
    example=("-p", "say hi"),
    dropped=env.DROPPED,
    seed=lambda directory: home.seed(directory),
    find=env.find_claude,
    home=env.config_dir,
    preferred=lambda config: config.claude.main,
    check=check_own_sandbox,
    # Claude Code 2.1.197's first request (`claude -p`): its system prompt and 24 tool
    # schemas are 20,911 tokens with SmolLM2's tokenizer, 20,152 with Gemma 3's.
    first_request_tokens=21_000,
)
