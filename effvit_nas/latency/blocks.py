"""The torch module each latency key stands for, BN-fused as deployed. Built from the same layers
as the network, so a block measures exactly what the network runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..model.attention import LocalWindowAttention
from ..model.layers import FFN, NormLinear, Residual, fuse_modules
from ..model.network import PatchEmbedding, PatchMerging, depthwise
from .keys import AttentionKey, BlockKey, DwFfnKey, HeadKey, MergeKey, StemKey

__all__ = ["build_block"]


class _Head(nn.Module):
    def __init__(self, width: int, classes: int) -> None:
        super().__init__()
        self.head = NormLinear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.mean((2, 3)))


_BUILDERS: dict[type[BlockKey], Callable[[Any], nn.Module]] = {
    StemKey: lambda k: PatchEmbedding(3, k.width),
    DwFfnKey: lambda k: nn.Sequential(Residual(depthwise(k.width)), Residual(FFN(k.width, k.hidden))),
    AttentionKey: lambda k: Residual(LocalWindowAttention(k.width, k.key_dim, k.heads, k.window, k.kernels)),
    MergeKey: lambda k: PatchMerging(k.width_in, k.width_out),
    HeadKey: lambda k: _Head(k.width, k.classes),
}


def build_block(key: BlockKey) -> nn.Module:
    """An eval-mode, BN-fused module taking ``key.input_shape()``."""
    return fuse_modules(_BUILDERS[type(key)](key).eval())
