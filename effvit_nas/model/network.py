"""The static EfficientViT network for any ``Arch``.

Liu et al., "EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention",
CVPR 2023, https://arxiv.org/abs/2305.07027. Written from the paper's specification; module names
follow timm's ``efficientvit_msra`` so its state dicts load strictly. With FFN ratio 2 and Q/K dim 16
the presets are the paper's M0–M5.

Layout: overlapping conv stem (/16) -> stage 1 -> [subsample -> stage] x 2 -> pool -> BN -> linear.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch import NUM_STAGES, Arch
from .attention import LocalWindowAttention
from .layers import FFN, ConvNorm, NormLinear, Residual, SqueezeExcite, fuse_modules

__all__ = ["EfficientViT", "build_model"]


class PatchEmbedding(nn.Module):
    """Four 3x3 stride-2 Conv-BN layers, channels 3 -> C/8 -> C/4 -> C/2 -> C, no ReLU after the last."""

    def __init__(self, in_chans: int, dim: int) -> None:
        super().__init__()
        self.conv1 = ConvNorm(in_chans, dim // 8, 3, 2, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = ConvNorm(dim // 8, dim // 4, 3, 2, 1)
        self.relu2 = nn.ReLU()
        self.conv3 = ConvNorm(dim // 4, dim // 2, 3, 2, 1)
        self.relu3 = nn.ReLU()
        self.conv4 = ConvNorm(dim // 2, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        return self.conv4(x)


def depthwise(dim: int, bn_weight_init: float = 1.0) -> ConvNorm:
    """3x3 depthwise Conv-BN: the token-interaction layer around every FFN."""
    return ConvNorm(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=bn_weight_init)


class EfficientViTBlock(nn.Module):
    """The sandwich: DW -> FFN -> cascaded group attention -> DW -> FFN, each residual. One attention
    layer per two FFNs is the paper's answer to attention being memory-bound."""

    def __init__(
        self, dim: int, key_dim: int, num_heads: int, window: int, kernels: tuple[int, ...], ffn_hidden: int
    ) -> None:
        super().__init__()
        self.dw0 = Residual(depthwise(dim, bn_weight_init=0.0))
        self.ffn0 = Residual(FFN(dim, ffn_hidden))
        self.mixer = Residual(LocalWindowAttention(dim, key_dim, num_heads, window, kernels))
        self.dw1 = Residual(depthwise(dim, bn_weight_init=0.0))
        self.ffn1 = Residual(FFN(dim, ffn_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


class PatchMerging(nn.Module):
    """Inverted residual that halves the resolution: 1x1 to 4C, 3x3 stride-2 depthwise, SE, 1x1 out."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        hidden = 4 * dim
        self.conv1 = ConvNorm(dim, hidden)
        self.act = nn.ReLU()
        self.conv2 = ConvNorm(hidden, hidden, 3, 2, 1, groups=hidden)
        self.se = SqueezeExcite(hidden, hidden // 4)  # widths are multiples of 8, so no rounding needed
        self.conv3 = ConvNorm(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(self.se(x))


def subsample(dim: int, out_dim: int, ffn_hidden_in: int, ffn_hidden_out: int) -> nn.Sequential:
    """Between stages: DW+FFN at the old width, PatchMerging, DW+FFN at the new width. Each FFN uses
    the FFN ratio of the stage whose width it runs at."""
    layers = nn.Sequential()
    layers.add_module("res1", nn.Sequential(Residual(depthwise(dim)), Residual(FFN(dim, ffn_hidden_in))))
    layers.add_module("patchmerge", PatchMerging(dim, out_dim))
    layers.add_module(
        "res2", nn.Sequential(Residual(depthwise(out_dim)), Residual(FFN(out_dim, ffn_hidden_out)))
    )
    return layers


class Stage(nn.Module):
    def __init__(self, arch: Arch, index: int) -> None:
        super().__init__()
        i = index
        if i == 0:
            self.downsample = nn.Identity()
        else:
            self.downsample = subsample(arch.widths[i - 1], arch.widths[i], arch.ffn_hidden[i - 1], arch.ffn_hidden[i])
        self.blocks = nn.Sequential(
            *(
                EfficientViTBlock(
                    arch.widths[i], arch.key_dims[i], arch.heads[i], arch.window_sizes[i], arch.kernels,
                    arch.ffn_hidden[i],
                )
                for _ in range(arch.depths[i])
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class EfficientViT(nn.Module):
    """A static EfficientViT. ``arch`` is kept for reference; nothing reads it after construction."""

    def __init__(self, arch: Arch, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.patch_embed = PatchEmbedding(in_chans, arch.widths[0])
        self.stages = nn.Sequential(*(Stage(arch, i) for i in range(NUM_STAGES)))
        self.num_features = arch.widths[-1]
        self.head = NormLinear(self.num_features, num_classes, drop_rate) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.patch_embed(x))  # (B, C3, R3, R3)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # (B, C3)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def no_weight_decay(self) -> set[str]:
        """Name patterns timm's ``create_optimizer_v2`` exempts from weight decay, on top of biases and
        norms: the attention bias tables are 2-D but act like biases (the paper's recipe)."""
        return {"*attention_biases"}

    @torch.no_grad()
    def fuse(self) -> EfficientViT:
        """Fold every BatchNorm into the conv or linear next to it, in place, for deployment (eval only)."""
        if self.training:
            raise RuntimeError("fuse() folds running BN statistics: call model.eval() first")
        return fuse_modules(self)


def build_model(arch: Arch, num_classes: int = 1000, in_chans: int = 3) -> EfficientViT:
    """The network for ``arch``. For a preset its state dict matches timm's ``efficientvit_mX``."""
    if not isinstance(arch, Arch):
        raise TypeError(f"build_model needs an Arch, got {type(arch).__name__}")
    return EfficientViT(arch, num_classes=num_classes, in_chans=in_chans)
