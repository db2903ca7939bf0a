"""Exceptions of the emulator.

Battery faults are never exceptions: they are states and CAN flags. Exceptions
are for bad configuration or input (raised early, one line that says what to
fix) and for bugs.
"""

from __future__ import annotations

__all__ = ["BindingError", "BmsError", "CanLinkError", "ConfigError", "InputError"]


class BmsError(Exception):
    """Base class of every error the emulator raises on purpose."""


class ConfigError(BmsError, ValueError):
    """A configuration or parameter file is wrong.

    The message is one line: ``<file>: [<section>] <field>: <what is wrong>``.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        parts = []
        if source:
            parts.append(f"{source}:")
        if field:
            parts.append(f"{field}:")
        parts.append(message)
        super().__init__(" ".join(parts))


class InputError(ConfigError):
    """A run-time input (a current, a step length, a profile sample, a fault target) is
    unusable. A kind of ConfigError, so a caller can handle every bad input one way."""

    def __init__(self, message: str):
        super().__init__(message)


class BindingError(ConfigError):
    """A DBC file and its signal binding do not fit together. Lists every problem found,
    one per line, so a user fixes them all in one go."""

    def __init__(self, source: str, problems: list[str]):
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the CAN binding"
        super().__init__("\n  - ".join([head, *self.problems]), source=source)


class CanLinkError(BmsError):
    """The CAN bus cannot be opened or used: an unknown interface, a missing driver,
    an absent channel, a permission. One line that says what to do."""
