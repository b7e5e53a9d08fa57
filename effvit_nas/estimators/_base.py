"""The estimator plug-in point: one abstract method, a registry, a factory."""

from __future__ import annotations

import abc
import inspect
import math
from typing import TYPE_CHECKING, Any

from .._io import parse_like
from ..arch import Arch
from ..errors import EffNasError, EstimatorError, UnknownNameError

if TYPE_CHECKING:
    from ..space import SearchSpace

__all__ = ["AccuracyEstimator", "ESTIMATORS", "DEFAULT_ESTIMATOR", "create_estimator", "register_estimator",
           "option_defaults", "estimators_with"]

ESTIMATORS: dict[str, type[AccuracyEstimator]] = {}
# Chosen by the ground-truth study (docs/ESTIMATORS.md): synflow ranks trained networks within noise
# of the best estimator (ZiCo) at a tenth of its cost, far above params, MACs and the size prior.
DEFAULT_ESTIMATOR = "synflow"


class AccuracyEstimator(abc.ABC):
    """Scores an architecture; higher means expected to be more accurate. Deterministic for a given
    construction (anything random takes a seed), so seeded searches reproduce."""

    name: str = ""
    description: str = ""
    # What the score is, in the words a plot axis or a report needs ("synflow score (log)", "top-1 %"):
    # scores of different estimators are not accuracies and not comparable. Default: f"{name} score".
    score_label: str = ""
    options: dict[str, Any] = {}  # set per instance by create_estimator
    reads_images = False  # whether the score looks at the data's images (what a report may say it was scored on)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "score_label" not in cls.__dict__:
            cls.score_label = f"{cls.name} score"

    @abc.abstractmethod
    def score(self, arch: Arch) -> float:
        """The estimate for ``arch``."""

    def describe(self) -> dict[str, Any]:
        """What a search records about the estimator it used."""
        return {"name": self.name, "description": self.description, "score_label": self.score_label}

    def check_score(self, arch: Arch, value: float) -> float:
        """``value`` if it is a finite number; else ``EstimatorError``, which a search records as a
        failed trial with this message (a NaN ranked as a number would silently steer the sampler)."""
        if not math.isfinite(value):
            raise EstimatorError(f"estimator {self.name!r} must give a finite score, but gave {value} for arch "
                                 f"{arch.arch_id}; the trial is recorded as failed (if most trials fail, pick "
                                 "another --estimator)")
        return float(value)

    def check_space(self, space: SearchSpace) -> None:  # noqa: B027 - a hook, most estimators take any space
        """Raise ``EffNasError`` if this estimator cannot score the archs of ``space`` (called before a search)."""


# Where an estimator that trains or evaluates runs (its ``device`` option): ``auto`` is the GPU where
# torch sees one, as for ``effnas train``. A search resolves it once, where it starts, and every
# backend scores there (search/ray_backend.py refuses Ray resources that disagree), so the same
# command gives the same scores under both backends.
DEVICES = ("auto", "cpu", "cuda")


def check_device_option(device: str) -> None:
    if device not in DEVICES:
        raise EffNasError(f"estimator option device must be one of {', '.join(DEVICES)}, but got {device!r}")


def resolved_device(device: str) -> str:
    """``auto`` as it resolves on this machine (what a search records: a GPU run and a CPU run score apart)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def register_estimator(cls: type[AccuracyEstimator]) -> type[AccuracyEstimator]:
    ESTIMATORS[cls.name] = cls
    return cls


def option_defaults(name: str | None = None) -> dict[str, Any]:
    """The keyword options the estimator registered as ``name`` takes, with their defaults."""
    name = name or DEFAULT_ESTIMATOR
    if name not in ESTIMATORS:
        raise UnknownNameError(f"estimator must be one of {sorted(ESTIMATORS)}, but got {name!r}")
    return {p.name: p.default for p in inspect.signature(ESTIMATORS[name].__init__).parameters.values()
            if p.kind == inspect.Parameter.KEYWORD_ONLY}


def estimators_with(option: str) -> list[str]:
    """Names of the registered estimators that take ``option`` (e.g. ``data``: those that look at images)."""
    return sorted(name for name in ESTIMATORS if option in option_defaults(name))


def create_estimator(name: str | None = None, **kwargs: Any) -> AccuracyEstimator:
    """The estimator registered as ``name`` (None: the default). Options given as strings (from the
    command line) are converted to the type of the option's default."""
    name = name or DEFAULT_ESTIMATOR
    options = option_defaults(name)
    cls = ESTIMATORS[name]
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
