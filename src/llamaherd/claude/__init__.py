"""Claude Code on local models (`herd claude`).

- `env.py`: find the `claude` binary, pick the models, build Claude Code's environment;
- `home.py`: seed its own config dir (settings.json, CLAUDE.md) from `templates/`;
- `sandbox.py`: the bubblewrap command line around it, `secrets.py` what it keeps out
  (credential variables and files), `relay.py` the gateway brought into its network
  namespace;
- the gateway's per-request choice for the `auto` model (`--route`) is daemon/routing.py;
- `launch.py`: all of it together, what `herd claude` runs.
"""
