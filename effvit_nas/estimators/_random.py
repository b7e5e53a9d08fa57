"""``random``: a score drawn at random for each arch, the same for the same arch and seed.

Random search's ranking, for comparisons: a search with ``--estimator random`` and ``--refine K``
short-trains K archs drawn at random from those that fit (through the same shortlist and validation
rule as any estimator), which is the baseline a search with a real estimator must beat at the same
training budget (scripts/bench_vs_mseries.py)."""

from __future__ import annotations

import hashlib

from ..arch import Arch
from ._base import AccuracyEstimator, register_estimator

__all__ = ["RandomScore"]


@register_estimator
class RandomScore(AccuracyEstimator):
    name = "random"
    description = "uniform in [0, 1), drawn per arch from the seed and its id: random search's ranking"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = seed

    def describe(self) -> dict:
        return {**super().describe(), "seed": self.seed}

    def score(self, arch: Arch) -> float:
        # from the arch's id, not a generator's state: the order archs are scored in changes nothing
        digest = hashlib.sha256(f"{self.seed}:{arch.arch_id}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64
