"""Latency budgets with units: ``2ms``, ``500us``, ``0.002s``. A bare number is refused: a budget
off by a factor of 1000 is the kind of mistake a unit catches."""

from __future__ import annotations

import re

from .errors import EffNasError

__all__ = ["parse_budget_ms", "parse_budgets_ms", "parse_percent", "format_ms"]

_UNITS_TO_MS = {"s": 1e3, "ms": 1.0, "us": 1e-3, "µs": 1e-3}
_PATTERN = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs)\s*$")


def parse_budget_ms(text: str) -> float:
    """``"2ms"`` -> 2.0. Raises a one-line ``EffNasError`` naming the accepted form."""
    match = _PATTERN.match(text)
    if not match:
        raise EffNasError(
            f"budget must be a positive number with a unit (s, ms, us), such as 2ms or 500us, but got {text!r}"
        )
    value = float(match.group(1)) * _UNITS_TO_MS[match.group(2)]
    if value <= 0:
        raise EffNasError(f"budget must be positive, but got {text!r}")
    return value


def parse_budgets_ms(text: str) -> list[float]:
    """``"1ms,2ms,4ms"`` -> [1.0, 2.0, 4.0] (sorted, duplicates refused)."""
    budgets = [parse_budget_ms(part) for part in text.split(",")]
    if len(set(budgets)) != len(budgets):
        raise EffNasError(f"budgets must differ from each other, but got {text!r}")
    return sorted(budgets)


def format_ms(value_ms: float) -> str:
    """Short label for names: 2.0 -> '2ms', 1.5 -> '1.5ms', 0.5 -> '500us'."""
    if value_ms < 1:
        return f"{value_ms * 1e3:g}us"
    return f"{value_ms:g}ms"


def parse_percent(text: str, flag: str) -> float:
    """``"5%"`` -> 0.05; ``"0"`` -> 0. Any other number without ``%`` is refused: ``0.05`` could mean 5% (a
    fraction) or 0.05% (a percentage), and a headroom 100x too small or too large is the kind of mistake
    a unit catches."""
    stripped = text.strip()
    try:
        value = float(stripped.removesuffix("%"))
    except ValueError:
        raise EffNasError(f"{flag} must be a percentage such as 5% or 0, but got {text!r}") from None
    if not stripped.endswith("%") and value != 0:
        raise EffNasError(f"{flag} must be a percentage with its % sign (or 0), but got {text!r}, which reads as "
                          f"{value:g}% or, as a fraction, {value * 100:g}%; refused rather than guessed: write "
                          f"{value * 100:g}% or {value:g}%")
    if not 0 <= value < 100:
        raise EffNasError(f"{flag} must lie in [0%, 100%), but got {text!r}")
    return value / 100
