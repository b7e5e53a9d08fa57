"""``supernet``: validation top-1 of an arch with weights inherited from a trained supernet.

Once-for-All's and AutoFormer's estimate: the subnet is cut from the supernet (``extract``), its
BatchNorm statistics are measured on a fixed set of training images (``recalibrate_bn``), and it is
evaluated on the held-out split of the data the supernet was trained on. About a second per arch
here at 64 px, after one supernet training; cached per arch, so a search that revisits an arch
pays once. The supernet's ``img_size`` (if it was trained at one size) is the resolution every arch
is scored at, as for the proxies.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arch import Arch
from ..errors import EffNasError
from ._base import AccuracyEstimator, register_estimator

if TYPE_CHECKING:
    from ..space import SearchSpace

__all__ = ["SupernetEstimator"]


@register_estimator
class SupernetEstimator(AccuracyEstimator):
    name = "supernet"
    description = "validation top-1 with weights inherited from a trained supernet, after BN recalibration"

    def __init__(self, *, checkpoint: str = "", calibration_batches: int = 8, batch_size: int = 64,
                 seed: int = 0) -> None:
        if not checkpoint:
            raise EffNasError("the supernet estimator needs a trained supernet, but none was given; pass "
                              "--supernet runs/supernet-.../supernet.pt (from effnas supernet train)")
        from ..supernet import calibration_batches as make_calibration
        from ..supernet import load_supernet
        from ..train.data import open_data
        from ..train.distributed import Processes, pick_device
        from ..train.loop import val_loader
        from ..train.recipe import Recipe

        self.checkpoint_path = str(checkpoint)
        self.net, saved = load_supernet(checkpoint)
        self.img_size: int | None = saved["img_size"]
        self.data = saved["data"]
        self.epochs = int(saved["epoch"])
        recipe = Recipe(**saved["recipe"])
        input_size = self.img_size or max(self.net.space.resolutions)
        self.calibration = make_calibration(self.data, recipe, input_size, calibration_batches, batch_size, seed)
        self.procs = Processes(0, 1, 0, pick_device("cpu"))
        self.loader = val_loader(open_data(self.data).with_transforms(recipe, input_size), batch_size, self.procs)
        self.options = {"calibration_batches": calibration_batches, "batch_size": batch_size, "seed": seed}
        self.cache: dict[Arch, float] = {}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "checkpoint": str(Path(self.checkpoint_path).resolve()),
                "supernet_epochs": self.epochs, "img_size": self.img_size, "data": self.data, **self.options}

    def check_space(self, space: SearchSpace) -> None:
        """A search may only ask for archs the supernet holds weights for."""
        reason = _not_inside(space, self.net.space, ignore_resolution=self.img_size is not None)
        if reason:
            raise EffNasError(f"the search space must lie inside the supernet's ({self.net.space.name!r}), but "
                              f"{reason}; search with --space of the supernet or train one for this space")

    def score(self, arch: Arch) -> float:
        import torch

        from ..supernet.evaluate import subnet_accuracy

        scored = arch if self.img_size is None else arch.replace(resolution=self.img_size)
        if scored not in self.cache:
            autocast = dict(device_type="cpu", dtype=torch.bfloat16, enabled=False)
            with torch.random.fork_rng():  # leave the caller's random stream alone
                result = subnet_accuracy(self.net, scored, self.calibration, self.loader, self.procs, autocast)
            self.cache[scored] = float(result["val_top1"])
        return self.cache[scored]


def _not_inside(inner: SearchSpace, outer: SearchSpace, ignore_resolution: bool) -> str | None:
    """None when every choice of ``inner`` is a choice of ``outer``; else the first that is not."""
    if not ignore_resolution and max(inner.resolutions) > max(outer.resolutions):
        return f"resolution {max(inner.resolutions)} is above the supernet's largest {max(outer.resolutions)}"
    extra = sorted(set(inner.kernels) - set(outer.kernels))
    if extra:
        return f"kernels {extra} are not among {list(outer.kernels)}"
    for i, (a, b) in enumerate(zip(inner.stages, outer.stages)):
        for knob in ("widths", "depths", "heads", "key_dims", "ffn_ratios", "window_sizes"):
            extra = sorted(set(getattr(a, knob)) - set(getattr(b, knob)))
            if extra:
                return f"stage {i + 1} {knob} {extra} are not among {list(getattr(b, knob))}"
    return None
