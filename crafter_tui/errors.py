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
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(UserError):
    """A configuration file, environment variable or flag has a bad value."""


def first_validation_error(exc: Exception, *, default_field: str = "input") -> tuple[str, str]:
    """(dotted field, message) of the first problem in a pydantic ``ValidationError``.

    Every front end reports only the first problem, named by its field, so they all word it
    the same way through this one function.
    """
    first = exc.errors()[0]  # type: ignore[attr-defined]
    field = ".".join(str(part) for part in first["loc"]) or default_field
    return field, str(first["msg"])
