"""`herd bench humaneval --via claude-code`: each task is one `claude -p` run, so a model
reached through Claude Code (a subscription's Opus, say) is scored with the same prompts,
code extraction and tests as the local models, and lands in the same report. The original
setup did this by hand (a script calling `claude -p` once per problem).

Claude Code runs as the user set it up (its login, its config dir, ANTHROPIC_BASE_URL if
set); herd adds only what keeps the answer a plain completion: no tools, no saved session,
no MCP servers, an empty working folder (no CLAUDE.md or project files in the prompt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llamaherd.bench.chat import Reply
from llamaherd.bench.target import ClaudeCode, Target
from llamaherd.errors import HerdError

VIA = "claude-code"
TIMEOUT_S = 600.0
"""One answer; the original allowed 300 s, long thinking needs more."""
# Set by a Claude Code session for its children: a `claude` started inside one (herd bench
# run from Claude Code's own shell) would refuse to start a nested session.
NESTED_MARKER = "CLAUDECODE"
# Anthropic's stop reasons in the words of the OpenAI API the other targets speak, so a
# cut-off answer counts in the report's "cut off" column either way.
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
CUT_OFF = "output token maximum"
"""In the error Claude Code reports for an answer over CLAUDE_CODE_MAX_OUTPUT_TOKENS."""


def target(model: str, binary: Path, environ: Mapping[str, str]) -> Target:
    """Claude Code's model `model` (an alias such as opus, or a full name)."""
    claude = ClaudeCode(
        binary=binary,
        environ={k: v for k, v in environ.items() if k != NESTED_MARKER},
        version=_version(binary),
    )
    label = f"{VIA}:{model}"
    return Target(model=model, label=label, base_url="", endpoint=VIA, claude_code=claude)


def _version(binary: Path) -> str | None:
    """'2.1.197' from `claude --version` ('2.1.197 (Claude Code)'), stored with results."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.split()[0] if out.strip() else None


def argv(target: Target, system_prompt: str) -> list[str]:
    assert target.claude_code is not None
    return [
        str(target.claude_code.binary),
        "-p",
        "--model", target.model,
        "--tools", "",  # "" disables every built-in tool
        "--strict-mcp-config",  # and, with no --mcp-config, every MCP server
        "--no-session-persistence",
        "--output-format", "json",
        "--system-prompt", system_prompt,
    ]  # fmt: skip


async def ask(target: Target, messages: list[dict[str, str]], *, max_tokens: int) -> Reply:
    """One answer from `claude -p`: the system message as its system prompt, the user
    message on stdin; HerdError when Claude Code fails or reports an error."""
    assert target.claude_code is not None
    system = next(m["content"] for m in messages if m["role"] == "system")
    user = next(m["content"] for m in messages if m["role"] == "user")
    # Claude Code's own cap on an answer's tokens (it has no command-line flag for it).
    environ = {**target.claude_code.environ, "CLAUDE_CODE_MAX_OUTPUT_TOKENS": str(max_tokens)}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="herd-claude-code-") as empty:
        process = await asyncio.create_subprocess_exec(
            *argv(target, system),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=empty,
            env=environ,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(user.encode()), TIMEOUT_S)
        except BaseException as error:  # a timeout, or the run cancelled (Ctrl-C)
            with contextlib.suppress(ProcessLookupError):  # it may have just ended
                process.kill()
            await process.wait()
            if isinstance(error, TimeoutError):
                late = f"claude -p --model {target.model}: no answer in {TIMEOUT_S:.0f} s"
                raise HerdError(late) from None
            raise
    answer = _parse(out)
    usage = (answer or {}).get("usage") or {}
    said = str((answer or {}).get("result") or "")
    if answer and answer.get("is_error") and CUT_OFF in said:
        # Claude Code continues an answer that hit the cap, then gives up and reports an
        # error instead of the text: a cut-off answer, scored as one (it fails).
        return Reply(
            completion_tokens=usage.get("output_tokens"),
            total_s=time.perf_counter() - start,
            finish_reason="length",
        )
    if process.returncode != 0 or answer is None or answer.get("is_error"):
        said = said or (err or out).decode(errors="replace")
        raise HerdError(
            f"claude -p --model {target.model} failed (exit {process.returncode}): "
            f"{said.strip()[:300]}"
        )
    stop = answer.get("stop_reason")
    return Reply(
        content=answer.get("result") or "",
        prompt_tokens=usage.get("input_tokens"),
        completion_tokens=usage.get("output_tokens"),
        total_s=time.perf_counter() - start,
        finish_reason=FINISH.get(stop, stop) if isinstance(stop, str) else None,
    )


def _parse(out: bytes) -> dict[str, Any] | None:
    """The one JSON object `--output-format json` prints, or None."""
    try:
        answer = json.loads(out)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
