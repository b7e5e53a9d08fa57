"""Building blocks of EfficientViT, smallest first: Conv+BN, BN+Linear, residual, FFN, squeeze-excite.

Module and attribute names follow timm's ``efficientvit_msra`` so that its state dicts load with
``strict=True`` (``conv``/``bn``, ``m`` inside residuals, ``pw1``/``pw2``, ``fc1``/``fc2``).
Every block with a BatchNorm has ``fuse()``, which returns an equivalent module with the BN folded in.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvNorm", "NormLinear", "Residual", "FFN", "SqueezeExcite", "fuse_modules"]


class ConvNorm(nn.Sequential):
    """A bias-free conv followed by BatchNorm. ``bn_weight_init=0`` makes a residual branch start
    as the identity, which the paper uses on every branch that ends a residual."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chs)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Conv2d:
        """Fold BN into the conv: w' = w * s, b' = beta - mean * s with s = gamma / sqrt(var + eps)."""
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
            groups=conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype,
        )
        fused.weight.copy_(conv.weight * scale[:, None, None, None])
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class NormLinear(nn.Sequential):
    """BatchNorm1d then Linear: the classifier head. Dropout sits between them (p=0 by default, no
    parameters) to keep timm's child names."""

    def __init__(self, in_features: int, out_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_features)
        self.drop = nn.Dropout(drop)
        self.linear = nn.Linear(in_features, out_features)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        """BN comes first here, so its scale multiplies the Linear's input columns."""
        bn, linear = self.bn, self.linear
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(
            linear.in_features, linear.out_features, device=linear.weight.device, dtype=linear.weight.dtype
        )
        fused.weight.copy_(linear.weight * scale[None, :])
        fused.bias.copy_(linear.weight @ shift + linear.bias)
        return fused


class Residual(nn.Module):
    """x + m(x). The paper uses no stochastic depth anywhere, so there is none here."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


class FFN(nn.Module):
    """1x1 expand, ReLU, 1x1 project. Its last BN starts at zero (the block starts as identity)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.pw1 = ConvNorm(dim, hidden)
        self.act = nn.ReLU()
        self.pw2 = ConvNorm(hidden, dim, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class SqueezeExcite(nn.Module):
    """Channel gate: global pool, 1x1 reduce (with bias), ReLU, 1x1 expand, sigmoid."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))  # (B, C, 1, 1)
        return x * gate.sigmoid()


def fuse_modules(module: nn.Module) -> nn.Module:
    """Replace, depth first, every child that has ``fuse()`` by what it returns."""
    for name, child in module.named_children():
        if hasattr(child, "fuse"):
            setattr(module, name, child.fuse())
        else:
            fuse_modules(child)
    return module
