"""Run the `herd` command inside the test process: the same entry point as the console
script (exit codes, one-line errors), without a Python start-up per call."""

from __future__ import annotations

import sys

import pytest

from llamaherd import cli


def herd(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `herd ARGS...`."""
    monkeypatch.setattr(sys, "argv", ["herd", *args])
    capsys.readouterr()  # drop what the test printed before
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
