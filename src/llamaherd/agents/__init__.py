"""Coding agents on the local models (`herd launch AGENT`, `herd claude`).

- `base.py`: what an agent is (`Agent`: binary, install hint, variables, config files,
  non-interactive example) and what it is configured from (`Setup`);
- `table.py`: every agent by name; `openai.py`: opencode, Codex, Crush, Qwen Code and
  aider (OpenAI's API at the gateway); `claude/`: Claude Code (Anthropic's API);
- `sandbox.py`: the bubblewrap command line around an agent, `secrets.py` what it keeps
  out (credential variables and files), `relay.py` the gateway brought into its network
  namespace;
- `launch.py`: all of it together, the same for every agent.
"""
