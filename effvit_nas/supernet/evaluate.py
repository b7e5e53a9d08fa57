"""A subnet's inherited accuracy: extract it, recalibrate its BN, evaluate on held-out images.

This is the number the per-epoch report of supernet training shows for the sandwich's ends and the
number the ``supernet`` estimator scores archs by.
"""

from __future__ import annotations

from typing import Any

import torch

from ..arch import Arch
from ..train.distributed import Processes
from ..train.loop import evaluate
from .calibrate import recalibrate_bn
from .network import Supernet

__all__ = ["resized", "subnet_accuracy", "recalibrated_subnet"]


def resized(images: torch.Tensor, size: int) -> torch.Tensor:
    """A batch at another input size (bilinear, antialiased): how a subnet of lower resolution sees it."""
    import torch.nn.functional as F

    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class _AtResolution(torch.nn.Module):
    """A model fed its batches resized to its resolution (the loaders make the largest size)."""

    def __init__(self, model: torch.nn.Module, size: int) -> None:
        super().__init__()
        self.model, self.size = model, size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(resized(images, self.size))


def recalibrated_subnet(net: Supernet, arch: Arch, calibration: list[torch.Tensor]) -> torch.nn.Module:
    """The static model of ``arch`` with inherited weights and BN statistics of its own (eval mode)."""
    model = net.extract(arch)
    return recalibrate_bn(model, (resized(images, arch.resolution) for images in calibration))


def subnet_accuracy(net: Supernet, arch: Arch, calibration: list[torch.Tensor], loader: Any, procs: Processes,
                    autocast: dict[str, Any]) -> dict[str, float]:
    """``val_top1`` and ``val_loss`` of ``arch`` with inherited weights, over ``loader`` (all ranks)."""
    model = recalibrated_subnet(net, arch, calibration)
    return evaluate(_AtResolution(model, arch.resolution), loader, procs, "val", autocast)
