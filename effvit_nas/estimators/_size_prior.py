"""``size-prior``: ImageNet top-1 as the paper's M0–M5 relate it to size. No training, no download.

Fitted once, by least squares on the paper's six models (Liu et al. 2023, Table 2):

    top1 ~ a + b * ln(MACs / 1e6) + c * ln(params / 1e6)

which reproduces M0–M5 within 0.85 points (the coefficients are recorded with every search). What
it can tell: that within the EfficientViT family more compute and more weights buy accuracy, with
diminishing returns, which is what makes the found family look like M0–M5. What it cannot tell: how
the compute is spent (depth against width, heads, Q/K dims, FFN ratio, kernels, windows) beyond
what MACs and params capture, nor anything past M5, where it keeps climbing without a ceiling.
Read its score as a rank, not a promise. The estimator issue compares it with zero-cost proxies and
short training on a ground-truth study; use those when the shape of the network matters.
"""

from __future__ import annotations

import math

from ..arch import PRESETS, Arch
from ..counting import count
from ._base import AccuracyEstimator, register_estimator

__all__ = ["SizePrior", "PAPER_TOP1"]

# The paper's ImageNet-1k top-1 of M0..M5 (official README, 300 epochs, 224 px).
PAPER_TOP1 = {"m0": 63.2, "m1": 68.4, "m2": 70.8, "m3": 73.4, "m4": 74.3, "m5": 77.1}


def _fit() -> tuple[float, float, float]:
    import numpy as np

    rows, targets = [], []
    for name in PRESETS:
        cost = count(Arch.preset(name))
        rows.append([1.0, math.log(cost.macs / 1e6), math.log(cost.params / 1e6)])
        targets.append(PAPER_TOP1[name])
    coef, *_ = np.linalg.lstsq(np.array(rows), np.array(targets), rcond=None)
    return float(coef[0]), float(coef[1]), float(coef[2])


@register_estimator
class SizePrior(AccuracyEstimator):
    name = "size-prior"
    description = "ImageNet top-1 from ln(MACs) and ln(params), least squares on the paper's M0-M5"

    def __init__(self) -> None:
        self.intercept, self.per_log_mmacs, self.per_log_mparams = _fit()

    def score(self, arch: Arch) -> float:
        cost = count(arch)
        return (self.intercept + self.per_log_mmacs * math.log(cost.macs / 1e6)
                + self.per_log_mparams * math.log(cost.params / 1e6))

    def describe(self) -> dict:
        return {**super().describe(), "coefficients": {"intercept": self.intercept,
                                                       "per_ln_mmacs": self.per_log_mmacs,
                                                       "per_ln_mparams": self.per_log_mparams}}
