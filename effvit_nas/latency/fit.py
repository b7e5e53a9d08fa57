"""The two fits a table carries: a per-kind block model, and the whole-network calibration.

Both work in *relative* error (weighted by 1/latency, or in log space), because a budget is a
relative thing: a 20 us error matters on a 0.1 ms block and not on a 2 ms one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..arch import Arch
from ..counting import count

__all__ = ["BlockModel", "Calibration", "CALIBRATION_FEATURES", "EVALUATOR_VERSION", "calibration_features",
           "fit_block_model", "fit_calibration", "relative_errors", "error_stats"]

# How a stored table is turned into a number: ``BlockModel.predict`` (features . coef) and
# ``Calibration.apply`` (base + coefficients . features, tests/latency/test_fit.py checks it against
# sklearn's own predict).
# Bump it with any change to either; tables record it, and one fitted for another evaluator is
# refused on load rather than silently predicting something else (table.py, ``predictor``).
EVALUATOR_VERSION = 2


def error_stats(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """How far predictions fall from measurements: shares within 5% and 10%, median and worst
    absolute relative error, and Spearman's rank correlation (what a search's ranking needs)."""
    from scipy.stats import spearmanr

    errors = np.abs(relative_errors(predicted, measured))
    return {
        "within_5pct": float(np.mean(errors <= 0.05)),
        "within_10pct": float(np.mean(errors <= 0.10)),
        "median_abs_err": float(np.median(errors)),
        "worst_abs_err": float(np.max(errors)),
        "spearman": float(spearmanr(predicted, measured).statistic) if len(predicted) > 2 else float("nan"),
    }


def relative_errors(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    return (predicted - measured) / measured


@dataclass(frozen=True)
class BlockModel:
    """latency_ms = features . coef, with non-negative coefficients: every cost term can only add
    time, which keeps the model sane when it extrapolates to keys it never saw."""

    feature_names: tuple[str, ...]
    coef: tuple[float, ...]
    samples: int
    median_abs_rel_err: float  # on the entries it was fitted on

    def predict(self, features: Sequence[float]) -> float:
        return float(np.dot(features, self.coef))

    def to_dict(self) -> dict:
        return {"features": list(self.feature_names), "coef": list(self.coef), "samples": self.samples,
                "median_abs_rel_err": self.median_abs_rel_err}

    @classmethod
    def from_dict(cls, data: dict) -> BlockModel:
        return cls(tuple(data["features"]), tuple(data["coef"]), data["samples"], data["median_abs_rel_err"])


def fit_block_model(feature_names: Sequence[str], features: np.ndarray, latency_ms: np.ndarray) -> BlockModel:
    from scipy.optimize import nnls

    features, latency_ms = np.asarray(features, float), np.asarray(latency_ms, float)
    weights = 1.0 / latency_ms
    coef, _ = nnls(features * weights[:, None], latency_ms * weights)
    errors = relative_errors(features @ coef, latency_ms)
    return BlockModel(tuple(feature_names), tuple(float(c) for c in coef), len(latency_ms),
                      float(np.median(np.abs(errors))))


# Tables record these names, and a table whose calibration was fitted on other ones is refused. A change
# to how ``calibration_features`` computes a feature under the same name is invisible to that check:
# give it a new name or bump EVALUATOR_VERSION.
CALIBRATION_FEATURES = ("log_block_sum_ms", "log_mparams", "log_gmacs", "blocks", "stage1_width", "resolution",
                        "log_stage1_mactivations", "log_attention_mentries")


def calibration_features(arch: Arch, block_sum_ms: float, blocks: int) -> tuple[float, ...]:
    """What decides how far a network strays from the sum of its isolated blocks: its weights,
    activations and attention maps against the caches (a block alone keeps its weights hot; the
    network streams them), and how many block boundaries it has."""
    cost = count(arch)
    stage1_activations = arch.stage_resolutions[0] ** 2 * arch.widths[0] * max(arch.ffn_ratios[0], 1)
    attention_entries = sum(  # attention-map entries per image: windows * heads * tokens^2
        depth * heads * math.ceil(size / window) ** 2 * window**4
        for depth, heads, size, window in zip(arch.depths, arch.heads, arch.stage_resolutions, arch.window_sizes)
    )
    return (math.log(block_sum_ms), math.log(cost.params / 1e6), math.log(cost.macs / 1e9), float(blocks),
            float(arch.widths[0]), float(arch.resolution), math.log(stage1_activations / 1e6),
            math.log(attention_entries / 1e6))


@dataclass(frozen=True)
class Calibration:
    """network_ms = block_sum_ms * exp(correction(features)).

    The correction is linear in ``CALIBRATION_FEATURES`` (logs of the sizes that decide how a network
    strays from its blocks), a ridge fit to whole networks measured during the build. Linear rather
    than a tree ensemble: with the ~50 networks a build can afford, trees fitted the calibration
    networks to under 1% and missed unseen ones by more than the line does (docs/LATENCY.md,
    "Calibration", gives the comparison on the builds' own networks). Stored as numbers and
    evaluated in pure Python: no sklearn needed to predict.
    """

    base: float = 0.0
    coefficients: tuple[float, ...] = ()  # one per CALIBRATION_FEATURES, on the raw feature values
    archs: int = 0
    median_abs_rel_err: float = 0.0  # on the archs it was fitted on

    def correction(self, features: Sequence[float]) -> float:
        return self.base + sum(c * f for c, f in zip(self.coefficients, features))

    def apply(self, block_sum_ms: float, features: Sequence[float]) -> float:
        return block_sum_ms * math.exp(self.correction(features))

    def to_dict(self) -> dict:
        return {"model": "ridge log(measured / block sum)", "features": list(CALIBRATION_FEATURES),
                "base": self.base, "coefficients": list(self.coefficients),
                "archs": self.archs, "median_abs_rel_err": self.median_abs_rel_err}

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        return cls(data["base"], tuple(data["coefficients"]), data["archs"], data["median_abs_rel_err"])


def fit_calibration(features: Sequence[Sequence[float]], block_sums_ms: Sequence[float],
                    measured_ms: Sequence[float], *, seed: int = 0) -> Calibration:
    """A ridge fit of log(measured / block sum) on standardised features, its penalty chosen by
    leave-one-out (``RidgeCV``), folded back to coefficients on the raw features. ``seed`` is kept
    for callers that vary it; the fit itself is deterministic."""
    from sklearn.linear_model import RidgeCV

    del seed
    x = np.asarray(features, float)
    sums, measured = np.asarray(block_sums_ms, float), np.asarray(measured_ms, float)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0  # a feature constant over the networks carries nothing; keep it at 0 weight
    model = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((x - mean) / scale, np.log(measured / sums))
    coefficients = model.coef_ / scale
    calibration = Calibration(float(model.intercept_ - coefficients @ mean), tuple(float(c) for c in coefficients),
                              len(measured))
    errors = relative_errors([calibration.apply(s, f) for s, f in zip(sums, x)], measured)
    return dataclasses.replace(calibration, median_abs_rel_err=float(np.median(np.abs(errors))))
