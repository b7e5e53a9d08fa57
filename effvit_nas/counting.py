"""Parameters and MACs of an ``Arch``, computed from shapes alone (no torch, microseconds per arch).

MACs count what the paper counts (and torch's ``FlopCounterMode`` / 2 measures): convolutions, the
attention matmuls and the classifier, at batch 1. BatchNorm, softmax, pooling, gating and elementwise
adds are not counted. Parameters are those of the unfused training network (BN weights included),
i.e. what ``sum(p.numel() for p in build_model(arch).parameters())`` gives. Tests check both against
torch for the presets and for random archs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .arch import NUM_STAGES, Arch, downsampled_size

__all__ = ["ArchCost", "count"]


@dataclass(frozen=True)
class ArchCost:
    params: int
    macs: int


class _Tally:
    def __init__(self) -> None:
        self.params = 0
        self.macs = 0

    def conv_bn(self, c_in: int, c_out: int, positions: int, kernel: int = 1, groups: int = 1) -> None:
        """A Conv-BN producing ``positions`` output pixels."""
        weights = c_in // groups * kernel * kernel * c_out
        self.params += weights + 2 * c_out  # + BN gamma, beta
        self.macs += weights * positions

    def ffn(self, dim: int, hidden: int, positions: int) -> None:
        self.conv_bn(dim, hidden, positions)
        self.conv_bn(hidden, dim, positions)

    def depthwise(self, dim: int, positions: int) -> None:
        self.conv_bn(dim, dim, positions, kernel=3, groups=dim)


def _attention(t: _Tally, arch: Arch, i: int, size: int) -> None:
    dim, heads, kd, window = arch.widths[i], arch.heads[i], arch.key_dims[i], arch.window_sizes[i]
    d = dim // heads
    tokens = window * window
    padded = math.ceil(size / window) ** 2 * tokens  # attention runs on the map padded to whole windows
    for head in range(heads):
        t.conv_bn(d, 2 * kd + d, padded)  # q, k, v projection
        t.conv_bn(kd, kd, padded, kernel=arch.kernels[head], groups=kd)  # q depthwise conv
        t.macs += padded * tokens * (kd + d)  # q^T k and attn @ v, per window
    t.params += heads * tokens  # bias tables
    t.conv_bn(dim, dim, padded)  # proj runs inside each window too


def count(arch: Arch, num_classes: int = 1000) -> ArchCost:
    """Params and MACs (batch 1) of ``build_model(arch, num_classes)``."""
    t = _Tally()
    size = arch.resolution
    c = arch.widths[0]
    for c_in, c_out in ((3, c // 8), (c // 8, c // 4), (c // 4, c // 2), (c // 2, c)):
        size = downsampled_size(size)
        t.conv_bn(c_in, c_out, size * size, kernel=3)
    for i in range(NUM_STAGES):
        dim = arch.widths[i]
        if i > 0:  # subsample: DW+FFN, PatchMerging (1x1, stride-2 DW, SE, 1x1), DW+FFN
            prev, hidden = arch.widths[i - 1], 4 * arch.widths[i - 1]
            t.depthwise(prev, size * size)
            t.ffn(prev, arch.ffn_hidden[i - 1], size * size)
            t.conv_bn(prev, hidden, size * size)
            size = downsampled_size(size)
            t.conv_bn(hidden, hidden, size * size, kernel=3, groups=hidden)
            se = hidden // 4
            t.params += 2 * hidden * se + se + hidden
            t.macs += 2 * hidden * se
            t.conv_bn(hidden, dim, size * size)
            t.depthwise(dim, size * size)
            t.ffn(dim, arch.ffn_hidden[i], size * size)
        for _ in range(arch.depths[i]):
            for _ in range(2):  # the sandwich: DW+FFN on both sides of the attention
                t.depthwise(dim, size * size)
                t.ffn(dim, arch.ffn_hidden[i], size * size)
            _attention(t, arch, i, size)
    last = arch.widths[-1]
    t.params += 2 * last + last * num_classes + num_classes  # head BN + linear
    t.macs += last * num_classes
    return ArchCost(params=t.params, macs=t.macs)
