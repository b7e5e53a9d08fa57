"""BatchNorm recalibration: a subnet's running statistics, measured on a few batches.

A supernet's BN statistics are a blend over every subnet that trained them, right for none; a subnet
needs its own before it is evaluated (Once-for-All, BigNAS). Resetting the statistics and running a
few batches in train mode with ``momentum=None`` (a plain average over the batches) gives them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["recalibrate_bn", "calibration_batches", "CALIBRATION_BATCHES", "CALIBRATION_BATCH_SIZE"]

# 8 x 64 training images: enough for stable statistics of a small-data subnet, for 8 forward passes per arch.
CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 64


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Set every BatchNorm's running statistics of ``model`` from ``batches`` (images only); returns the
    model in eval mode. Nothing else changes: no gradients, no parameter updates."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the calibration batches
    device = next(model.parameters()).device
    model.train()
    seen = 0
    for images in batches:
        model(images.to(device))
        seen += 1
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    if seen == 0:
        raise ValueError("recalibrate_bn needs at least one batch, but got none")
    return model.eval()


def calibration_batches(data: str, recipe: Any, img_size: int, batches: int, batch_size: int,
                        seed: int = 0) -> list[torch.Tensor]:
    """``batches`` batches of training images under the evaluation transform (no augmentation), a
    fixed random subset: what a subnet's BN statistics are measured on. Same images in every process."""
    from torch.utils.data import DataLoader, Subset

    from ..train.data import eval_transform, open_data

    train = open_data(data).train
    train.transform = eval_transform(recipe, img_size)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    subset = Subset(train, order[: batches * batch_size].tolist())
    return [images for images, _ in DataLoader(subset, batch_size=batch_size, shuffle=False)]
