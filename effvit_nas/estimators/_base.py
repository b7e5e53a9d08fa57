"""The estimator plug-in point: one abstract method, a registry, a factory."""

from __future__ import annotations

import abc
import inspect
from typing import TYPE_CHECKING, Any

from .._io import parse_like
from ..arch import Arch
from ..errors import EffNasError, UnknownNameError

if TYPE_CHECKING:
    from ..space import SearchSpace

__all__ = ["AccuracyEstimator", "ESTIMATORS", "DEFAULT_ESTIMATOR", "create_estimator", "register_estimator"]

ESTIMATORS: dict[str, type[AccuracyEstimator]] = {}
# Chosen by the ground-truth study (docs/ESTIMATORS.md): synflow ranks trained networks within noise
# of the best estimator (ZiCo) at a tenth of its cost, far above params, MACs and the size prior.
DEFAULT_ESTIMATOR = "synflow"


class AccuracyEstimator(abc.ABC):
    """Scores an architecture; higher means expected to be more accurate. Deterministic for a given
    construction (anything random takes a seed), so seeded searches reproduce."""

    name: str = ""
    description: str = ""
    options: dict[str, Any] = {}  # set per instance by create_estimator

    @abc.abstractmethod
    def score(self, arch: Arch) -> float:
        """The estimate for ``arch``."""

    def describe(self) -> dict[str, Any]:
        """What a search records about the estimator it used."""
        return {"name": self.name, "description": self.description}

    def check_space(self, space: SearchSpace) -> None:  # noqa: B027 - a hook, most estimators take any space
        """Raise ``EffNasError`` if this estimator cannot score the archs of ``space`` (called before a search)."""


def register_estimator(cls: type[AccuracyEstimator]) -> type[AccuracyEstimator]:
    ESTIMATORS[cls.name] = cls
    return cls


def create_estimator(name: str | None = None, **kwargs: Any) -> AccuracyEstimator:
    """The estimator registered as ``name`` (None: the default). Options given as strings (from the
    command line) are converted to the type of the option's default."""
    name = name or DEFAULT_ESTIMATOR
    if name not in ESTIMATORS:
        raise UnknownNameError(f"estimator must be one of {sorted(ESTIMATORS)}, but got {name!r}")
    cls = ESTIMATORS[name]
    options = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
               if p.kind == inspect.Parameter.KEYWORD_ONLY}
    for key, value in list(kwargs.items()):
        if key not in options:
            raise UnknownNameError(f"estimator {name!r} options must be among {sorted(options) or 'none'}, "
                                   f"but got {key!r}")
        if isinstance(value, str) and not isinstance(options[key], str):
            try:
                kwargs[key] = parse_like(value, options[key])
            except ValueError as exc:
                raise EffNasError(f"estimator option {key} must be {exc}, but got {value!r}") from None
    estimator = cls(**kwargs)
    estimator.options = dict(kwargs)  # how to build it again elsewhere (a Ray worker)
    return estimator
