"""`herd add`: a local file or a Hugging Face repo becomes a profile that `herd up` serves.

Downloads go through the real huggingface_hub client against a local fake hub (the two
endpoints it uses: the repo tree listing and `resolve/` with its HEAD metadata), since
this machine cannot reach huggingface.co.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import run_herd, write_config

from llamaherd import demo, onboard
from llamaherd.config import load_config
from llamaherd.errors import UsageError
from llamaherd.gguf import synth
from llamaherd.gguf.plan import GiB, Gpu

SHAPE = synth.Shape(
    n_embd=128, n_layer=2, n_head=4, n_head_kv=2, n_ff=256, n_vocab=1024,
    name="Llama-3 Tiny", arch="llama",
)  # fmt: skip

EXISTING = """\
# my models, hand-written: this comment must survive `herd add`
models_dir = "models"

[models.first]   # the first one
name = "First"
file = "first.gguf"
ctx = 4096
"""


class FakeHub(BaseHTTPRequestHandler):
    """Serves `root/<owner>/<name>/<file>` the way huggingface.co does for hf_hub_download."""

    root: Path
    commit = "0123456789abcdef0123456789abcdef01234567"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def _file(self) -> Path | None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) >= 5 and parts[2:4] == ["resolve", "main"]:
            path = self.root.joinpath(parts[0], parts[1], *parts[4:])
            return path if path.is_file() else None
        return None

    def _headers(self, path: Path, length: int, status: int = 200) -> None:
        self.send_response(status)
        etag = hashlib.sha256(str(path.stat().st_size).encode() + path.name.encode()).hexdigest()
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", self.commit)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def do_HEAD(self) -> None:
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        self._headers(path, path.stat().st_size)

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"] and parts[4:6] == ["tree", "main"]:
            repo = self.root / parts[2] / parts[3]
            if not repo.is_dir():
                self.send_error(404)
                return
            files = [
                {"type": "file", "path": str(p.relative_to(repo)), "size": p.stat().st_size,
                 "oid": "0" * 40}
                for p in sorted(repo.rglob("*")) if p.is_file()
            ]  # fmt: skip
            body = json.dumps(files).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        path = self._file()
        if path is None:
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            start = int(wanted[6:].split("-")[0] or 0)
        self._headers(path, len(data) - start, 206 if start else 200)
        self.wfile.write(data[start:])


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hub")
    repo = root / "someone" / "Tiny-GGUF"
    synth.write_split(repo / "Tiny-Q8_0.gguf", SHAPE, parts=2)
    synth.write(repo / "Tiny-F16.gguf", SHAPE)
    (repo / "README.md").write_text("a model card\n")
    handler = type("Hub", (FakeHub,), {"root": root})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "herd.toml"
    path.write_text(EXISTING)
    synth.write(tmp_path / "models" / "first.gguf", SHAPE)
    return path


def test_add_appends_a_profile_and_keeps_the_file_as_it_was(config: Path) -> None:
    model = synth.write(config.parent / "models" / "Llama-3-Tiny-Q8_0.gguf", SHAPE)
    added = onboard.add(str(model), config=config, gpus=[Gpu("GPU0", 24 * GiB)])
    text = config.read_text()
    assert text.startswith(EXISTING)  # comments, order and layout untouched
    assert added.profile_id == "llama-3-tiny-q8_0"
    loaded = load_config(config)
    profile = loaded.models["llama-3-tiny-q8_0"]
    assert profile.file == model  # written relative to models_dir
    assert 'file = "Llama-3-Tiny-Q8_0.gguf"' in text
    assert profile.ctx == 8192  # the trained context (under the 32k cap)
    assert profile.placement.n_gpu_layers == "all" and profile.placement.fit is False
    # No sampling keys in the file: the Llama 3 family's defaults, with their source.
    assert (profile.sampling.temperature, profile.sampling.top_p) == (0.6, 0.9)
    assert "Llama 3" in added.sampling_source and "huggingface.co/meta-llama" in text


def test_add_takes_sampling_from_the_file_first(config: Path) -> None:
    shape = synth.Shape(**{**SHAPE.__dict__, "sampling": (("temp", 0.3), ("min_p", 0.05))})
    model = synth.write(config.parent / "models" / "own.gguf", shape)
    added = onboard.add(str(model), config=config, gpus=[])
    sampling = load_config(config).models[added.profile_id].sampling
    assert (sampling.temperature, sampling.min_p) == (0.3, 0.05)
    assert sampling.top_k is None and "general.sampling" in added.sampling_source
    assert "placement" not in added.table  # no GPU: llama-server's defaults


def test_add_never_overwrites_without_force(config: Path) -> None:
    model = config.parent / "models" / "first.gguf"
    before = config.read_text()
    result = run_herd("--config", str(config), "add", str(model), "--id", "first", "--gpu", "none")
    assert result.returncode == 2
    assert "'first' already exists" in result.stderr and "--force" in result.stderr
    assert config.read_text() == before
    forced = run_herd("--config", str(config), "add", str(model), "--id", "first", "--gpu", "none",
                  "--force", "--json")  # fmt: skip
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["replaced"] is True
    text = config.read_text()
    assert text.count("[models.first]") == 1 and text.startswith("# my models, hand-written")
    assert load_config(config).models["first"].name == "Llama-3 Tiny"


def test_add_downloads_a_split_model_from_the_hub(config: Path, hub: str) -> None:
    added = onboard.add("someone/Tiny-GGUF:Q8_0", config=config, gpus=[], endpoint=hub)
    models = config.parent / "models" / "Tiny-GGUF"
    assert [p.name for p in added.downloaded] == [
        "Tiny-Q8_0-00001-of-00002.gguf",
        "Tiny-Q8_0-00002-of-00002.gguf",
    ]
    assert all(p.parent == models for p in added.downloaded)
    profile = load_config(config).models[added.profile_id]
    assert profile.file == models / "Tiny-Q8_0-00001-of-00002.gguf"
    assert added.profile_id == "tiny-q8_0"


def test_hub_repo_with_several_models_asks_which(config: Path, hub: str) -> None:
    with pytest.raises(UsageError, match="several models.*Tiny-F16.*Tiny-Q8_0"):
        onboard.add("someone/Tiny-GGUF", config=config, endpoint=hub)
    with pytest.raises(UsageError, match="no GGUF file matching 'Q4_K_M'"):
        onboard.add("someone/Tiny-GGUF:Q4_K_M", config=config, endpoint=hub)


def test_not_a_file_nor_a_repo_is_a_usage_error(config: Path) -> None:
    result = run_herd("--config", str(config), "add", "no-such-thing")
    assert result.returncode == 2 and "neither a file nor a Hugging Face repo" in result.stderr
    missing = run_herd("--config", str(config), "add", "missing.gguf")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_added_profile_is_served_by_herd_up(
    tmp_path: Path, model_files: Path, llama_server: Path
) -> None:
    """`herd add --test` on a local file: the profile starts, answers, and stops again."""
    model = demo.write_dense_model(tmp_path / "downloads" / "tiny-chat.gguf")
    config = write_config(tmp_path, model_files, llama_server)
    result = run_herd("--config", str(config), "add", str(model),
                  "--ctx", "2048", "--gpu", "none", "--test", "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    answer = json.loads(result.stdout)
    assert answer["id"] == "tiny-chat" and answer["test"]["ok"] is True
    assert answer["test"]["completion_tokens"] > 0
    status = run_herd("--config", str(config), "status", "--json")
    assert status.returncode == 1  # the daemon --test started is gone again
    assert load_config(config).models["tiny-chat"].ctx == 2048


def test_add_without_any_herd_toml_creates_one_in_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./herd.toml here; HERD_CONFIG_DIR is private (conftest)
    model = synth.write(tmp_path / "elsewhere" / "solo.gguf", SHAPE)
    added = onboard.add(str(model), gpus=[])
    assert added.config_path == Path(os.environ["HERD_CONFIG_DIR"]) / "herd.toml"
    assert load_config(added.config_path).models["solo"].file == model  # absolute path
