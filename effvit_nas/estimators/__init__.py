"""Accuracy estimators: ``create_estimator(name).score(arch) -> float`` (higher is better).

One base class, a registry, and implementations in private modules. The search talks to nothing
else, so a better estimator (zero-cost proxies, a supernet, short training) drops in by name.
"""

from __future__ import annotations

from ._base import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    AccuracyEstimator,
    create_estimator,
    estimators_with,
    option_defaults,
    register_estimator,
)
from ._baselines import Macs, Params
from ._proxies import GradNorm, Naswot, Synflow, Zico
from ._random import RandomScore
from ._short_training import ShortTraining, prune_with
from ._size_prior import SizePrior
from ._supernet import SupernetEstimator

__all__ = ["AccuracyEstimator", "ESTIMATORS", "DEFAULT_ESTIMATOR", "create_estimator", "register_estimator",
           "SizePrior", "Params", "Macs", "RandomScore", "GradNorm", "Synflow", "Naswot", "Zico", "ShortTraining",
           "prune_with", "SupernetEstimator", "estimators_with", "option_defaults"]
