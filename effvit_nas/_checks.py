"""Refusing a bad count or limit where it is defined, so the CLI and a library caller get the same line."""

from __future__ import annotations

import numbers

from .errors import EffNasError

__all__ = ["check_at_least"]


def check_at_least(what: str, value: object, minimum: float, *, integer: bool = True) -> None:
    """Refuse a count or limit below ``minimum`` (or not a number at all) with one line.

    Settings are checked where they are defined, not in the CLI, so a library caller gets the same
    refusal, and a 0 cannot fall through an ``or`` somewhere into "use the default"."""
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, numbers.Integral) if integer else isinstance(value, numbers.Real))
    if not ok or isinstance(value, bool) or not value >= minimum:  # ``not >=`` also refuses NaN
        raise EffNasError(f"{what} must be {kind} of at least {minimum:g}, but got {value!r}; "
                          f"pass {kind} >= {minimum:g}")
