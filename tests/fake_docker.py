"""A stand-in for the docker CLI, for machines without a Docker engine (tests).

It records every call (one JSON line per call in $FAKE_DOCKER_STATE/calls.jsonl) and acts
as docker would for what herd uses:

- `run [--rm] --name N -p HOST:PORT:CPORT -v SRC:DST:ro [-v DIR:DIR] [--gpus G] [-e K[=V]]
  IMAGE ARGS...`
  stays attached and runs the *real* llama-server ($FAKE_DOCKER_LLAMA_SERVER) with the
  container's view translated to the host's (mounted paths, published port), so herd
  talks to a real server; a name already in use is refused like docker (exit 125);
- `stop [-t N] NAME` (SIGTERM, SIGKILL after N s), `rm [-f] NAME`, `ps` (running names);
- `build ...` succeeds; `info` answers with the runtimes ($FAKE_DOCKER_NVIDIA=1: nvidia),
  or fails as without a daemon ($FAKE_DOCKER_NO_DAEMON=1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_DOCKER_STATE"])
CONTAINERS = STATE / "containers"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def container(name: str) -> dict | None:
    path = CONTAINERS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def kill(name: str, grace: float) -> None:
    record = container(name)
    if record and alive(record["pid"]):
        os.kill(record["pid"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(record["pid"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(record["pid"]):
            os.kill(record["pid"], signal.SIGKILL)


def run(args: list[str]) -> int:
    options: dict = {"rm": False, "ports": [], "volumes": [], "env": {}, "gpus": None}
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--rm":
            options["rm"] = True
        elif flag == "--name":
            options["name"] = args.pop(0)
        elif flag == "-p":
            options["ports"].append(args.pop(0))
        elif flag == "-v":
            options["volumes"].append(args.pop(0))
        elif flag == "--gpus":
            options["gpus"] = args.pop(0)
        elif flag == "-e":
            key, given, value = args.pop(0).partition("=")
            if given:
                options["env"][key] = value
            elif key in os.environ:  # `-e KEY`: docker copies the value from its own env
                options["env"][key] = os.environ[key]
        else:
            print(f"unknown flag: {flag}", file=sys.stderr)
            return 125
    image, command = args[0], args[1:]
    name = options["name"]
    if container(name):
        print(
            f'docker: Error response from daemon: Conflict. The container name "/{name}" '
            "is already in use.",
            file=sys.stderr,
        )
        return 125
    # Translate the container's view to the host's: mounts and the published port.
    mounts = {}
    for volume in options["volumes"]:
        source, target, *mode = volume.split(":")
        # Models read-only; kept prompt caches read-write, at their own path.
        assert mode == ["ro"] or (not mode and source == target), volume
        mounts[target] = source
    host, public, private = options["ports"][0].split(":")
    translated = []
    for word in command:
        for target, source in mounts.items():
            if word.startswith(target + "/"):
                word = source + word[len(target) :]
        translated.append(word)
    port_at = translated.index("--port") + 1
    assert translated[port_at] == private
    translated[port_at] = public
    translated[translated.index("--host") + 1] = host
    server = subprocess.Popen(
        [os.environ["FAKE_DOCKER_LLAMA_SERVER"], *translated],
        env={**os.environ, **options["env"]},
    )
    CONTAINERS.mkdir(parents=True, exist_ok=True)
    record = {"name": name, "image": image, "pid": server.pid, **options}
    (CONTAINERS / f"{name}.json").write_text(json.dumps(record))
    # Attached like docker run: signals reach the container, its exit code is ours.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: server.send_signal(number))
    code = server.wait()
    if options["rm"]:
        (CONTAINERS / f"{name}.json").unlink(missing_ok=True)
    return code


def main() -> int:
    args = sys.argv[1:]
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.jsonl").open("a") as log:
        log.write(json.dumps(args) + "\n")
    command, rest = args[0], args[1:]
    if command == "run":
        return run(rest)
    if command == "stop":
        grace = float(rest[rest.index("-t") + 1]) if "-t" in rest else 10.0
        name = rest[-1]
        if not container(name):
            print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
            return 1
        kill(name, grace)
        return 0
    if command == "rm":
        name = rest[-1]
        if not container(name):
            if "-f" in rest:
                return 0
            print(f"Error response from daemon: No such container: {name}", file=sys.stderr)
            return 1
        kill(name, 0)
        (CONTAINERS / f"{name}.json").unlink(missing_ok=True)
        return 0
    if command == "ps":
        for path in sorted(CONTAINERS.glob("*.json")):
            print(path.stem)
        return 0
    if command == "build":
        print("Successfully built fake")
        return 0
    if command == "info":
        if os.environ.get("FAKE_DOCKER_NO_DAEMON"):
            print(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                "Is the docker daemon running?",
                file=sys.stderr,
            )
            return 1
        runtimes = {"runc": {}, **({"nvidia": {}} if os.environ.get("FAKE_DOCKER_NVIDIA") else {})}
        print(json.dumps(runtimes))
        return 0
    print(f"fake docker: '{command}' is not faked", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
