"""The estimator plug-in point: one abstract method, a registry, a factory."""

from __future__ import annotations

import abc
from typing import Any

from ..arch import Arch
from ..errors import UnknownNameError

__all__ = ["AccuracyEstimator", "ESTIMATORS", "DEFAULT_ESTIMATOR", "create_estimator", "register_estimator"]

ESTIMATORS: dict[str, type[AccuracyEstimator]] = {}
DEFAULT_ESTIMATOR = "size-prior"


class AccuracyEstimator(abc.ABC):
    """Scores an architecture; higher means expected to be more accurate. Deterministic for a given
    construction (anything random takes a seed), so seeded searches reproduce."""

    name: str = ""
    description: str = ""

    @abc.abstractmethod
    def score(self, arch: Arch) -> float:
        """The estimate for ``arch``."""

    def describe(self) -> dict[str, Any]:
        """What a search records about the estimator it used."""
        return {"name": self.name, "description": self.description}


def register_estimator(cls: type[AccuracyEstimator]) -> type[AccuracyEstimator]:
    ESTIMATORS[cls.name] = cls
    return cls


def create_estimator(name: str | None = None, **kwargs: Any) -> AccuracyEstimator:
    """The estimator registered as ``name`` (None: the default)."""
    name = name or DEFAULT_ESTIMATOR
    if name not in ESTIMATORS:
        raise UnknownNameError(f"estimator must be one of {sorted(ESTIMATORS)}, but got {name!r}")
    return ESTIMATORS[name](**kwargs)
