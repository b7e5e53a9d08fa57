"""``supernet``: validation top-1 of an arch with weights inherited from a trained supernet.

Once-for-All's and AutoFormer's estimate: the subnet is cut from the supernet (``extract``), its
BatchNorm statistics are measured on a fixed set of training images (``recalibrate_bn``), and it is
evaluated on the held-out split of the data the supernet was trained on. A BN recalibration and one
pass over the held-out split per arch (docs/BENCHMARKS.md has the cost), after one supernet
training; cached per arch, so a search that revisits an arch
pays once. The supernet's ``img_size`` (if it was trained at one size) is the resolution every arch
is scored at, as for the proxies.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..arch import Arch
from ..errors import EffNasError
from ._base import AccuracyEstimator, check_device_option, register_estimator

if TYPE_CHECKING:
    from ..space import SearchSpace

__all__ = ["SupernetEstimator"]


@register_estimator
class SupernetEstimator(AccuracyEstimator):
    name = "supernet"
    score_label = "validation top-1 % with supernet weights"
    description = "validation top-1 with weights inherited from a trained supernet, after BN recalibration"
    reads_images = True

    # calibration defaults: supernet/calibrate.py's (literals here, so importing estimators loads no torch)
    def __init__(self, *, checkpoint: str = "", calibration_batches: int = 8, batch_size: int = 64,
                 seed: int = 0, device: str = "auto") -> None:
        check_device_option(device)
        if not checkpoint:
            raise EffNasError("the supernet estimator needs a trained supernet, but none was given; pass "
                              "--supernet runs/supernet-.../supernet.pt (from effnas supernet train)")
        from ..supernet.files import calibration_for, input_size, load_supernet, saved_recipe
        from ..train.data import open_data
        from ..train.distributed import Processes, pick_device
        from ..train.loop import eval_loader

        self.checkpoint_path = str(checkpoint)
        self.procs = Processes(0, 1, 0, pick_device(device))
        self.net, self.saved = load_supernet(checkpoint)
        self.net.to(self.procs.device)
        self.calibration = calibration_for(self.net, self.saved, calibration_batches, batch_size, seed)
        held_out = open_data(self.data).with_transforms(saved_recipe(self.saved), input_size(self.net, self.saved))
        self.loader = eval_loader(held_out.val, batch_size, self.procs)
        self.scoring = {"calibration_batches": calibration_batches, "batch_size": batch_size, "seed": seed,
                        "device": self.procs.device.type}
        self.cache: dict[Arch, float] = {}

    @property
    def img_size(self) -> int | None:
        """The input size the supernet trained (and this estimator scores) every arch at, if one."""
        return self.saved["img_size"]

    @property
    def data(self) -> str:
        return self.saved["data"]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "checkpoint": str(Path(self.checkpoint_path).resolve()),
                "supernet_epochs": int(self.saved["epoch"]), "img_size": self.img_size, "data": self.data,
                **self.scoring}

    def check_space(self, space: SearchSpace) -> None:
        """A search may only ask for archs the supernet holds weights for."""
        reason = space.why_not_inside(self.net.space, ignore_resolution=self.img_size is not None)
        if reason:
            raise EffNasError(f"the search space must lie inside the supernet's ({self.net.space.name!r}), but "
                              f"{reason}; search with --space of the supernet or train one for this space")

    def score(self, arch: Arch) -> float:
        import torch

        from ..supernet.evaluate import subnet_accuracy
        from ..supernet.files import at_training_size

        scored = at_training_size(self.saved, arch)
        if scored not in self.cache:
            # bf16 on a GPU, as the supernet trained there (the training loop's autocast)
            autocast = dict(device_type=self.procs.device.type, dtype=torch.bfloat16,
                            enabled=self.procs.device.type == "cuda")
            with torch.random.fork_rng():  # leave the caller's random stream alone
                result = subnet_accuracy(self.net, scored, self.calibration, self.loader, self.procs, autocast)
            self.cache[scored] = float(result["val_top1"])
        return self.cache[scored]
