"""``short-training``: train the arch for a few epochs on the search's data; the score is top-1.

The most faithful estimate and the most expensive: ``effnas train``'s loop (the screening recipe
unless ``recipe`` says otherwise), at the arch's own resolution (or a fixed ``resolution``) on the
search's data (built-in noisy digits by default), into a temporary folder; the score is top-1 on the
data's validation split (a ``test`` split is never looked at). ``score_reporting`` reports top-1
after every epoch (``prune_with(trial)`` hands it to a single-objective Optuna study, which may stop
a hopeless arch early); Optuna does not prune multi-objective studies, so the default two-objective
search runs every epoch.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..arch import Arch
from ..errors import EstimatorError
from ._base import AccuracyEstimator, check_device_option, register_estimator, resolved_device
from ._proxies import PROXY_DATA, PROXY_RESOLUTION, check_resolution_option, scoring_resolution

__all__ = ["ShortTraining", "prune_with"]

EpochReport = Callable[[int, float], None]


@register_estimator
class ShortTraining(AccuracyEstimator):
    name = "short-training"
    score_label = "validation top-1 % after short training"
    description = "validation top-1 after a few epochs of the small recipe on the search's data"
    reads_images = True

    def __init__(self, *, epochs: int = 2, seed: int = 0, resolution: int = PROXY_RESOLUTION,
                 data: str = PROXY_DATA, device: str = "auto", recipe: str = "screening") -> None:
        from ..train.recipe import RECIPES

        check_resolution_option(resolution)
        check_device_option(device)
        if recipe not in RECIPES:
            raise EstimatorError(f"short-training's recipe must be one of {', '.join(RECIPES)}, but got {recipe!r}")
        self.epochs, self.seed, self.resolution, self.data, self.device = epochs, seed, resolution, data, device
        self.recipe = recipe

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "epochs": self.epochs, "seed": self.seed, "resolution": self.resolution,
                "data": self.data, "device": resolved_device(self.device), "recipe": self.recipe}

    def score(self, arch: Arch) -> float:
        return self.score_reporting(arch, None)

    def score_reporting(self, arch: Arch, report: EpochReport | None) -> float:
        """Train and return the final top-1; ``report(epoch, top1)`` after each epoch may raise to stop."""
        import torch

        from ..train import TrainSettings, train
        from ..train.recipe import RECIPES

        recipe = RECIPES[self.recipe].updated({"epochs": str(self.epochs),
                                               "warmup_epochs": str(min(1.0, self.epochs / 3))})

        def on_epoch(row: dict[str, float]) -> None:
            if report is not None:
                report(int(row["epoch"]), row["val_top1"])

        with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng():
            settings = TrainSettings(arch=arch, data=self.data, recipe=recipe, out_dir=Path(tmp), seed=self.seed,
                                     img_size=scoring_resolution(arch, self.resolution), score_test=False,
                                     device=self.device)
            metrics = train(settings, on_epoch=on_epoch)
        return float(metrics["val_top1"])


def prune_with(trial: Any) -> EpochReport:
    """An epoch report that hands top-1 to an Optuna trial and stops the training when it is pruned."""
    import optuna

    def report(epoch: int, top1: float) -> None:
        trial.report(top1, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} at {top1:.2f}% top-1")

    return report
