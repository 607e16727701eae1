"""Errors the user can act on.

Every bad input (flag, config key, trace line, HTTP body, model reply) is turned into a
``UserError`` that names *what* is wrong and *where*; the CLI prints it as one line and
exits non-zero, the console shows it as a notification.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(UserError):
    """A configuration file, environment variable or flag has a bad value."""
