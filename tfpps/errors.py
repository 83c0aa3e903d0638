"""The error types every layer of tfpps raises for its users: each message is one line.

They live here, below everything else, so that modules which raise them (the config, the model
registry) need not import each other.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A bad config key or value; the message is one line meant for the user."""


def first_line(exc: BaseException) -> str:
    """The first non-blank line of ``exc``'s message, or its type's name when it has none: what a
    command prints after ``error:`` so that one fault is one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
