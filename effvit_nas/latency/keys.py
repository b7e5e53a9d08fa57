"""The latency key walker: an ``Arch`` becomes the list of blocks whose latencies sum to the network's.

A key holds every shape that changes a block's latency (batch, feature size, channels, heads, Q/K
dim, FFN hidden width, window, q-conv kernels). Five kinds cover the network:

    stem      patch embedding                         (batch, resolution, width)
    dwffn     residual depthwise 3x3 + residual FFN   (batch, size, width, hidden)
    attention residual local-window CGA               (batch, size, width, heads, key_dim, window, kernels)
    merge     PatchMerging (the stride-2 part)        (batch, size, width_in, width_out)
    head      pool + classifier                       (batch, size, width, classes)

An EfficientViT block is dwffn, attention, dwffn; a subsample is dwffn, merge, dwffn. Keys also give
the analytic features (MACs, memory traffic, op counts) that the table's per-kind regression uses to
predict keys it did not measure. Pure Python: predicting needs no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

from ..arch import NUM_STAGES, Arch, downsampled_size, stem_output_size

# A table stores entries under ``str(key)`` and fits its block models on ``key.features()``; a table
# read by a walker that cuts blocks differently, or computes a feature differently under the same
# name, would predict from the wrong entries without any error. Bump this with any change to
# ``block_keys``, to a key's fields or to what a ``features()`` computes; tables record it and a
# table fitted under another version is refused (table.py, ``predictor``).
KEYS_VERSION = 1

__all__ = [
    "BlockKey",
    "StemKey",
    "DwFfnKey",
    "AttentionKey",
    "MergeKey",
    "HeadKey",
    "KEY_KINDS",
    "KEYS_VERSION",
    "block_keys",
    "parse_key",
]


@dataclass(frozen=True)
class BlockKey:
    kind: ClassVar[str] = ""
    feature_names: ClassVar[tuple[str, ...]] = ()
    batch: int

    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def features(self) -> tuple[float, ...]:
        """Analytic cost terms, per image of the batch scaled by the batch, in millions."""
        raise NotImplementedError

    def __str__(self) -> str:
        values = []
        for f in fields(self):
            v = getattr(self, f.name)
            values.append(".".join(map(str, v)) if isinstance(v, tuple) else str(v))
        return f"{self.kind}:" + "-".join(values)


def _m(x: float) -> float:
    return x / 1e6


@dataclass(frozen=True)
class StemKey(BlockKey):
    kind: ClassVar[str] = "stem"
    feature_names: ClassVar[tuple[str, ...]] = ("const", "macs", "activations")
    resolution: int
    width: int

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, 3, self.resolution, self.resolution)

    def features(self) -> tuple[float, ...]:
        size, c_in, macs, acts = self.resolution, 3, 0, 0
        for c_out in (self.width // 8, self.width // 4, self.width // 2, self.width):
            size = downsampled_size(size)
            macs += size * size * c_out * c_in * 9
            acts += size * size * c_out
            c_in = c_out
        return (1.0, _m(self.batch * macs), _m(self.batch * acts))


@dataclass(frozen=True)
class DwFfnKey(BlockKey):
    kind: ClassVar[str] = "dwffn"
    feature_names: ClassVar[tuple[str, ...]] = ("const", "map", "ffn_macs", "hidden_map")
    size: int
    width: int
    hidden: int

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.width, self.size, self.size)

    def features(self) -> tuple[float, ...]:
        positions = self.batch * self.size * self.size
        return (1.0, _m(positions * self.width), _m(2 * positions * self.width * self.hidden),
                _m(positions * self.hidden))


@dataclass(frozen=True)
class AttentionKey(BlockKey):
    kind: ClassVar[str] = "attention"
    feature_names: ClassVar[tuple[str, ...]] = (
        "const", "heads", "qkv_macs", "qconv_macs", "attn_macs", "softmax", "proj_macs", "partition",
        "padded_map", "windowed", "windowed_heads",
    )
    size: int
    width: int
    heads: int
    key_dim: int
    window: int
    kernels: tuple[int, ...]

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.width, self.size, self.size)

    def features(self) -> tuple[float, ...]:
        b, c, h, kd, ws = self.batch, self.width, self.heads, self.key_dim, self.window
        tokens = ws * ws
        padded = b * math.ceil(self.size / ws) ** 2 * tokens  # positions after padding to whole windows
        windowed = 0.0 if self.size == ws else 1.0  # partition/reverse reshapes only when windowed
        return (
            1.0,
            float(h),
            _m(padded * c * (2 * kd + c // h)),
            _m(padded * kd * sum(k * k for k in self.kernels)),
            _m(padded * tokens * (h * kd + c)),
            _m(h * padded * tokens),
            _m(padded * c * c),
            _m(windowed * b * self.size * self.size * c),
            _m(padded * c),
            windowed,
            windowed * h,
        )


@dataclass(frozen=True)
class MergeKey(BlockKey):
    kind: ClassVar[str] = "merge"
    feature_names: ClassVar[tuple[str, ...]] = ("const", "expand_macs", "dw_macs", "se_macs", "project_macs",
                                                "hidden_in", "hidden_out")
    size: int
    width_in: int
    width_out: int

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.width_in, self.size, self.size)

    def features(self) -> tuple[float, ...]:
        b, hidden = self.batch, 4 * self.width_in
        p_in = b * self.size * self.size
        p_out = b * downsampled_size(self.size) ** 2
        return (1.0, _m(p_in * self.width_in * hidden), _m(p_out * hidden * 9), _m(b * hidden * self.width_in * 2),
                _m(p_out * hidden * self.width_out), _m(p_in * hidden), _m(p_out * hidden))


@dataclass(frozen=True)
class HeadKey(BlockKey):
    kind: ClassVar[str] = "head"
    feature_names: ClassVar[tuple[str, ...]] = ("const", "pool", "linear_macs")
    size: int
    width: int
    classes: int

    def input_shape(self) -> tuple[int, ...]:
        return (self.batch, self.width, self.size, self.size)

    def features(self) -> tuple[float, ...]:
        return (1.0, _m(self.batch * self.size * self.size * self.width), _m(self.batch * self.width * self.classes))


KEY_KINDS: dict[str, type[BlockKey]] = {k.kind: k for k in (StemKey, DwFfnKey, AttentionKey, MergeKey, HeadKey)}


def parse_key(text: str) -> BlockKey:
    """Inverse of ``str(key)``: ``attention:1-14-64-4-16-7-5.5.5.5``."""
    kind, _, rest = text.partition(":")
    cls = KEY_KINDS[kind]
    values = []
    for f, raw in zip(fields(cls), rest.split("-")):
        values.append(tuple(int(v) for v in raw.split(".")) if f.name == "kernels" else int(raw))
    return cls(*values)


def block_keys(arch: Arch, batch: int = 1, num_classes: int = 1000) -> list[BlockKey]:
    """The network as blocks, in execution order, repeats included."""
    size = stem_output_size(arch.resolution)
    keys: list[BlockKey] = [StemKey(batch, arch.resolution, arch.widths[0])]
    for i in range(NUM_STAGES):
        width, hidden = arch.widths[i], arch.ffn_hidden[i]
        if i > 0:
            prev = arch.widths[i - 1]
            keys.append(DwFfnKey(batch, size, prev, arch.ffn_hidden[i - 1]))
            keys.append(MergeKey(batch, size, prev, width))
            size = downsampled_size(size)
            keys.append(DwFfnKey(batch, size, width, hidden))
        attention = AttentionKey(
            batch, size, width, arch.heads[i], arch.key_dims[i], arch.window_sizes[i], arch.kernels[: arch.heads[i]]
        )
        for _ in range(arch.depths[i]):
            keys += [DwFfnKey(batch, size, width, hidden), attention, DwFfnKey(batch, size, width, hidden)]
    keys.append(HeadKey(batch, size, arch.widths[-1], num_classes))
    return keys
