"""The herd daemon: one process that owns every llama-server.

- `record`: the lock and daemon.json (clients read it without importing the server;
  control.start_background starts a daemon for them);
- `serve`: the process itself, both ports on one uvicorn server (`herd serve`);
- `reload`: re-reading herd.toml;
- `model`: a model's states and the transitions allowed between them;
- `supervisor`: the one owner of model state, and the one admission path;
- `api`: the management API; `gateway`: the public endpoint; `routing`: the `auto` model;
- `auth`, `events`, `metrics`: the key check, the event bus, `/metrics`.
"""
