"""Cascaded group attention (the paper's CGA) and the local-window wrapper around it.

CGA splits the channels into one chunk per head. Head i attends over chunk i plus head i-1's output
(the cascade), so later heads refine earlier ones at no extra width. Q and K are small (``key_dim``,
16 in the paper); V keeps the chunk's full width, so the heads' outputs concatenate back to ``dim``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNorm, fuse_modules

__all__ = ["CascadedGroupAttention", "LocalWindowAttention"]


def relative_offset_index(window: int) -> torch.Tensor:
    """(N, N) index into a (window*window)-entry bias table: |dy| * window + |dx| between the two
    positions, so the bias depends only on the absolute offset (LeViT-style, symmetric)."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()  # (N,)
    return (ys[:, None] - ys[None, :]).abs() * window + (xs[:, None] - xs[None, :]).abs()


class CascadedGroupAttention(nn.Module):
    """Attention over one window of ``window x window`` tokens, heads in cascade."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, window: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = dim // num_heads
        self.scale = key_dim**-0.5
        self.qkvs = nn.ModuleList(
            ConvNorm(self.value_dim, 2 * key_dim + self.value_dim) for _ in range(num_heads)
        )
        # A depthwise conv on q only: local context for the query at almost no cost.
        self.dws = nn.ModuleList(
            ConvNorm(key_dim, key_dim, kernels[i], padding=kernels[i] // 2, groups=key_dim) for i in range(num_heads)
        )
        self.proj = nn.Sequential(nn.ReLU(), ConvNorm(dim, dim, bn_weight_init=0.0))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        # Not persistent: derived from the window size, and timm's state dicts do not carry it.
        self.register_buffer("attention_bias_idxs", relative_offset_index(window), persistent=False)
        self.register_buffer("fused_bias", None)  # set by fuse()

    def head_biases(self) -> torch.Tensor:
        """(heads, N, N) bias added to the attention logits; precomputed once fused."""
        if self.fused_bias is not None:
            return self.fused_bias
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape  # one window per batch entry
        biases = self.head_biases()
        chunks = x.chunk(self.num_heads, dim=1)
        outputs = []
        feat = chunks[0]
        for i, (qkv, dw) in enumerate(zip(self.qkvs, self.dws)):
            if i > 0:
                feat = feat + chunks[i]  # the cascade: previous head's output feeds this head
            q, k, v = qkv(feat).split([self.key_dim, self.key_dim, self.value_dim], dim=1)
            q = dw(q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # (B, kd, N), (B, kd, N), (B, d, N)
            attn = (q.transpose(-2, -1) @ k) * self.scale + biases[i]  # (B, N, N)
            attn = attn.softmax(dim=-1)
            feat = (v @ attn.transpose(-2, -1)).view(B, self.value_dim, H, W)
            outputs.append(feat)
        return self.proj(torch.cat(outputs, dim=1))

    @torch.no_grad()
    def fuse(self) -> CascadedGroupAttention:
        """Fold the BNs and gather the bias table once, so deployment does no indexing per call."""
        fuse_modules(self)
        self.fused_bias = self.attention_biases[:, self.attention_bias_idxs].clone()
        del self.attention_biases
        return self


class LocalWindowAttention(nn.Module):
    """Runs CGA in non-overlapping windows. The map is zero-padded bottom/right to a multiple of the
    window (the paper uses no mask for padded tokens) and cropped back afterwards."""

    def __init__(self, dim: int, key_dim: int, num_heads: int, window: int, kernels: tuple[int, ...]) -> None:
        super().__init__()
        self.window = window
        self.attn = CascadedGroupAttention(dim, key_dim, num_heads, window, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = self.window
        if H == ws and W == ws:
            return self.attn(x)
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        x = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, pad_r, 0, pad_b))  # (B, Hp, Wp, C)
        n_h, n_w = (H + pad_b) // ws, (W + pad_r) // ws
        windows = x.view(B, n_h, ws, n_w, ws, C).transpose(2, 3).reshape(B * n_h * n_w, ws, ws, C)
        windows = self.attn(windows.permute(0, 3, 1, 2))  # (B * windows, C, ws, ws)
        x = windows.permute(0, 2, 3, 1).view(B, n_h, n_w, ws, ws, C).transpose(2, 3)
        x = x.reshape(B, n_h * ws, n_w * ws, C)[:, :H, :W]
        return x.permute(0, 3, 1, 2).contiguous()
