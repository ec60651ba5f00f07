"""Claude Code, one of `herd launch`'s agents (`herd claude` is `herd launch claude`).

- `env.py`: find the `claude` binary, pick the models, build Claude Code's environment;
- `home.py`: seed its own config dir (settings.json, CLAUDE.md) from `templates/`;
- `agent.py`: its row in agents/table.py, with the check of its own bash sandbox;
- the gateway's per-request choice for the `auto` model (`--route`) is daemon/routing.py.
"""
