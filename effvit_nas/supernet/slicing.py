"""Which part of a supernet tensor a subnet uses: one selection per dimension, by parameter name.

The supernet's tensors carry the static model's names (``stages.1.blocks.0.ffn0.m.pw1.conv.weight``)
at the largest size the space needs. A subnet's tensor of the same name is cut from it:

- almost everything is a **prefix** along every dimension (the first C channels of a width-C layer,
  the first blocks of a stage, the first heads of an attention layer) — a view, so training the
  subnet trains exactly those entries of the shared tensor;
- a head's **qkv** projection holds q, k and v as three sections ``[q | k | v]`` of the largest
  Q/K dim and value dim; the subnet takes the first ``key_dim`` rows of q and of k and the first
  ``value_dim`` rows of v;
- a **q-conv kernel** is the centre ``k x k`` of the largest kernel (Once-for-All's kernel sharing,
  without its transform matrices);
- an **attention-bias table** is indexed by offset (|dy|, |dx|): a window-w subnet takes the entries
  with both offsets below w, so every subnet shares the bias of a given offset.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..arch import Arch

__all__ = ["Selection", "select", "gather", "put"]

# One entry per dimension: a slice (a view) or an index tensor (a gather).
Selection = tuple

_QKV = re.compile(r"^stages\.(\d+)\.blocks\.\d+\.mixer\.m\.attn\.qkvs\.\d+\.(conv\.weight|bn\.\w+)$")
_QCONV = re.compile(r"\.attn\.dws\.\d+\.conv\.weight$")


def select(name: str, full_shape: tuple[int, ...], shape: tuple[int, ...], arch: Arch,
           max_key_dims: tuple[int, ...]) -> Selection:
    """The selection that cuts a ``shape`` tensor called ``name`` out of the supernet's ``full_shape`` one."""
    import torch

    if len(full_shape) != len(shape) or any(s > f for s, f in zip(shape, full_shape)):
        raise ValueError(f"{name}: the subnet needs {tuple(shape)}, more than the supernet's {tuple(full_shape)}")
    prefix = tuple(slice(0, s) for s in shape)
    if not shape:  # BN's num_batches_tracked: one shared counter
        return ()
    qkv = _QKV.match(name)
    if qkv:
        stage = int(qkv.group(1))
        key_dim, value_dim, max_key_dim = arch.key_dims[stage], arch.value_dims[stage], max_key_dims[stage]
        rows = torch.cat([torch.arange(key_dim), max_key_dim + torch.arange(key_dim),
                          2 * max_key_dim + torch.arange(value_dim)])
        return (rows, *prefix[1:])
    if _QCONV.search(name):
        crop = tuple(slice((f - s) // 2, (f - s) // 2 + s) for f, s in zip(full_shape[2:], shape[2:]))
        return (*prefix[:2], *crop)
    if name.endswith("attention_biases"):
        window, full_window = math.isqrt(shape[1]), math.isqrt(full_shape[1])
        offsets = torch.arange(window)
        columns = (offsets[:, None] * full_window + offsets[None, :]).flatten()  # (dy, dx) row-major
        return (prefix[0], columns)
    return prefix


def gather(full: torch.Tensor, selection: Selection) -> torch.Tensor:
    """The selected part (differentiable; a view where every entry is a slice)."""
    out = full
    for dim, part in enumerate(selection):
        if isinstance(part, slice):
            if part != slice(0, out.shape[dim]):
                out = out.narrow(dim, part.start, part.stop - part.start)
        else:
            out = out.index_select(dim, part.to(out.device))
    return out


def put(full: torch.Tensor, selection: Selection, value: torch.Tensor) -> None:
    """Write ``value`` back into the selected part of a 1-D (or 0-D) buffer: running BN statistics
    updated on a gathered copy during training."""
    if not selection:
        full.copy_(value)
        return
    (part,) = selection
    full[part if isinstance(part, slice) else part.to(full.device)] = value
