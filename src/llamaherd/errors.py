"""Errors a user can act on. The CLI prints them as one line; no traceback."""

from __future__ import annotations


class HerdError(Exception):
    """A failure with a message meant for the user (exit code 1)."""

    exit_code = 1


class UsageError(HerdError):
    """Bad input: a wrong argument, an unknown model id (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A mistake in herd.toml, reported with the file, the profile, the key and a hint."""

    def __init__(
        self,
        message: str,
        *,
        path: object = None,
        profile: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        self.profile = profile
        self.key = key
        self.hint = hint
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = str(self.path) if self.path else "config"
        if self.profile:
            where += f": [models.{self.profile}]"
        if self.key:
            where += f" {self.key}" if self.profile else f": {self.key}"
        text = f"{where}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text
