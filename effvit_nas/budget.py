"""Latency budgets: a time (``2ms``, ``500us``) or a model (``m1``, ``0.8xm2``, ``m1@96``).

A model budget means "no slower than that model on this target": the question users usually ask
("what beats M1 at M1's speed here?"). A search holds it as the table's prediction of the model
(times the factor), and every measurement judges it against the model measured in the same window
(``latency/judge.py``), never against a figure taken at another time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .arch import PRESETS, Arch
from .errors import EffNasError
from .units import format_ms, parse_budget_ms

__all__ = ["Budget", "parse_budget", "parse_budgets"]

_MODEL = re.compile(r"^\s*(?:([0-9]*\.?[0-9]+)\s*x\s*)?(m[0-9])(?:@([0-9]+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """One budget as given. ``ms`` for a time; ``model`` (a preset, at ``@RES`` if given) times
    ``factor`` for a model budget."""

    text: str
    ms: float | None = None
    model: Arch | None = None
    factor: float = 1.0
    preset: str | None = None  # the model's preset name: m1

    @property
    def label(self) -> str:
        """How results name it: ``2ms``, ``m1``, ``0.8xm2``, ``m1@96``."""
        return format_ms(self.ms) if self.ms is not None else self.text.strip().lower().replace(" ", "")

    def resolve_ms(self, model_ms: Callable[[Arch], float]) -> float:
        """The budget in milliseconds, ``model_ms`` giving the model's latency (a prediction or a measurement)."""
        return self.ms if self.ms is not None else self.factor * model_ms(self.model)

    def describe(self) -> str:
        if self.model is None:
            return self.label
        scale = f"{self.factor:g}x " if self.factor != 1 else ""
        return f"{scale}{self.preset.upper()} at {self.model.resolution} px"


def parse_budget(text: str) -> Budget:
    """``2ms`` / ``500us`` / ``m1`` / ``0.8xm2`` / ``m1@96``; one line naming the forms otherwise."""
    match = _MODEL.match(text)
    if match is None:
        try:
            return Budget(text, ms=parse_budget_ms(text))
        except EffNasError as exc:  # said as a time's error, with the model forms beside the fix
            raise EffNasError(f"{exc}; or name a model budget (m1, 0.8xm2, m1@96: no slower than it)") from None
    factor, name, side = match.groups()
    name = name.lower()
    if name not in PRESETS:
        raise EffNasError(f"a model budget must name one of {', '.join(sorted(PRESETS))}, but got {text!r}")
    value = float(factor) if factor else 1.0
    if value <= 0:
        raise EffNasError(f"a model budget's factor must be positive, but got {text!r}")
    model = Arch.preset(name)
    if side:
        model = model.replace(resolution=int(side))  # an invalid side is refused by Arch in one line
    return Budget(text, model=model, factor=value, preset=name)


def parse_budgets(text: str) -> list[Budget]:
    """A comma-separated family (``1.5ms,2ms``, ``m0,m1,m2``, or a mix); duplicates refused."""
    budgets = [parse_budget(part) for part in text.split(",")]
    labels = [b.label for b in budgets]
    if len(set(labels)) != len(labels):
        raise EffNasError(f"budgets must differ from each other, but got {text!r}")
    return budgets
