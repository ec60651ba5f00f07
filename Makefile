# The README's first two commands: `make demo` and `make test`. Everything else is a step.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint llama-server clean claude-code agents sandbox-tools browser-tools

# The virtualenv with herd installed (editable) and the test tools.
$(BIN)/herd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,build,bench]'
	touch $@

# Builds llama-server into herd's cache the first time (~15 min on 2 cores); then a no-op.
llama-server: $(BIN)/herd
	$(BIN)/herd build

demo: llama-server
	$(BIN)/herd demo

lint: $(BIN)/herd
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

test: llama-server lint claude-code agents sandbox-tools browser-tools
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache

# `herd claude`'s tests: Claude Code from the npm registry into .cache/ (ignored), and
# bubblewrap for herd's sandbox plus socat for Claude Code's own bash sandbox (Debian's
# packages; CI runs as root). Both quick when already there.
CLAUDE_CODE_VERSION ?= 2.1.197
CLAUDE_CODE_DIR     := .cache/claude-code
CLAUDE_CODE_STAMP   := $(CLAUDE_CODE_DIR)/.installed-$(CLAUDE_CODE_VERSION)


claude-code: $(CLAUDE_CODE_STAMP)

$(CLAUDE_CODE_STAMP):
	mkdir -p $(CLAUDE_CODE_DIR)
	cd $(CLAUDE_CODE_DIR) && npm install --no-audit --no-fund --loglevel=error \
		@anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	$(CLAUDE_CODE_DIR)/node_modules/.bin/claude --version
	touch $@

# `herd launch`'s tests run opencode and Codex for real: both from the npm registry into
# .cache/agents (ignored); quick when already there.
OPENCODE_VERSION ?= 1.18.33
CODEX_VERSION    ?= 0.171.0
AGENTS_DIR       := .cache/agents
AGENTS_STAMP     := $(AGENTS_DIR)/.installed-opencode-$(OPENCODE_VERSION)-codex-$(CODEX_VERSION)

agents: $(AGENTS_STAMP)

$(AGENTS_STAMP):
	mkdir -p $(AGENTS_DIR)
	cd $(AGENTS_DIR) && npm install --no-audit --no-fund --loglevel=error \
		opencode-ai@$(OPENCODE_VERSION) @openai/codex@$(CODEX_VERSION)
	$(AGENTS_DIR)/node_modules/.bin/opencode --version
	$(AGENTS_DIR)/node_modules/.bin/codex --version
	touch $@

sandbox-tools:
	@command -v bwrap >/dev/null && command -v socat >/dev/null || { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap socat || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y bubblewrap socat; }; }

# tests/test_browser.py drives headless Chromium through chromedriver (selenium is in
# the dev extra): Debian's packages, installed only when missing.
browser-tools:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; }; }
