"""Errors a user can fix. The CLI turns every ``EffNasError`` into one line on stderr and exit code 2.

Messages follow one pattern: what must hold, what was given, and how to fix it.
"""

__all__ = [
    "EffNasError",
    "ConfigFileError",
    "InvalidArchError",
    "InvalidSpaceError",
    "UnknownNameError",
    "TableError",
    "EstimatorError",
]


class EffNasError(Exception):
    """Root of every error effvit-nas raises on purpose (bad input, not bugs)."""


class ConfigFileError(EffNasError):
    """A YAML or JSON file is missing, unparsable, or has the wrong schema."""


class InvalidArchError(EffNasError):
    """An architecture breaks a rule the network needs (e.g. width not divisible by heads)."""


class InvalidSpaceError(EffNasError):
    """A search space is malformed or an architecture lies outside it."""


class UnknownNameError(EffNasError):
    """A name (preset, estimator, runtime, ...) is not registered; the message lists the valid ones."""


class TableError(EffNasError):
    """A latency table cannot be used here: corrupted, for another space, or for other hardware."""


class EstimatorError(EffNasError):
    """An estimator cannot score an architecture (a non-finite proxy, a diverged training); a search
    records the trial as failed with this message instead of stopping."""
