"""Exceptions for user mistakes: the CLI prints their message as one line, without a traceback."""

from __future__ import annotations


class BoltzflowError(Exception):
    """A problem the user can fix; the message names the field and the fix."""


class ConfigError(BoltzflowError, ValueError):
    """A configuration key or value is wrong."""


class TrainingDiverged(BoltzflowError, RuntimeError):
    """The loss or the gradients became NaN or infinite."""
