"""The weight-sharing supernet: one set of weights for every arch of a search space.

Its tensors are those of a static EfficientViT at the space's maximum in every knob (widest widths,
deepest stages, largest FFN ratio, Q/K dim, kernel and window), with each attention layer widened to
the space's most heads, each head able to hold the widest value dim any (width, heads) pair gives it.

``net(x, arch)`` runs **the static model's own forward** (``effvit_nas.model``) on the slices of those
tensors that ``arch`` uses (``slicing.py``), through ``torch.func.functional_call`` on a weightless
skeleton of ``arch``. So a subnet inside the supernet and the model ``extract(arch)`` returns are one
code path on equal numbers, and gradients land in the shared tensors. The arch is always an explicit
argument: the supernet has no "active subnet" state (Once-for-All's ``active_*`` attributes).
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..arch import NUM_STAGES, Arch, stage_sizes
from ..errors import InvalidArchError
from ..model import build_model
from ..model.attention import relative_offset_index
from ..model.layers import ConvNorm
from .slicing import Selection, gather, put, select

if TYPE_CHECKING:
    from ..space import SearchSpace

__all__ = ["Supernet"]

_SUBNETS_KEPT = 32  # skeletons are cheap (no storage); keeping some saves rebuilding the sandwich's ends


class Supernet(nn.Module):
    """Shared weights for every arch of ``space``; see the module docstring."""

    def __init__(self, space: SearchSpace, num_classes: int = 1000) -> None:
        super().__init__()
        self.space = space
        self.num_classes = num_classes
        self.max_key_dims = tuple(max(s.key_dims) for s in space.stages)
        full = build_model(_widest_arch(space), num_classes=num_classes)
        # Adopt the widest model's children, so the supernet's tensor names are the static model's.
        self.patch_embed, self.stages, self.head = full.patch_embed, full.stages, full.head
        largest_window = [min(max(s.window_sizes), size) for s, size in zip(space.stages, stage_sizes(
            max(space.resolutions)))]
        for i, (stage, choices) in enumerate(zip(self.stages, space.stages)):
            for block in stage.blocks:
                _widen_attention(block.mixer.m.attn, choices, max(space.kernels), largest_window[i])
        self._subnets: OrderedDict[tuple[Arch, torch.device], _Subnet] = OrderedDict()

    @classmethod
    def from_space(cls, space: SearchSpace, num_classes: int = 1000) -> Supernet:
        return cls(space, num_classes)

    def no_weight_decay(self) -> set[str]:
        """As the static model: attention bias tables act like biases (read by timm's optimizer factory)."""
        return {"*attention_biases"}

    # ------------------------------------------------------------------ subnets
    def check(self, arch: Arch) -> None:
        """Refuse an arch the supernet has no weights for. Resolution is only the input size, so any
        resolution up to the space's largest works (a larger one would need larger attention windows)."""
        top = max(self.space.resolutions)
        if arch.resolution > top:
            raise InvalidArchError(f"arch resolution must be at most the supernet's largest ({top}), but is "
                                   f"{arch.resolution}; pick a resolution of the space")
        space = dataclasses.replace(self.space, resolutions=tuple(sorted({*self.space.resolutions, arch.resolution})))
        reason = space.why_not(arch)
        if reason:
            raise InvalidArchError(f"arch must lie in the supernet's space {self.space.name!r}, but {reason}")

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        subnet = self._subnet(arch)
        subnet.skeleton.train(self.training)
        full = self._full
        tensors = self._subnet_tensors(subnet, full)
        out = torch.func.functional_call(subnet.skeleton, tensors, (x,), strict=True)
        if self.training:  # BN statistics updated on gathered copies go back to the shared buffers
            with torch.no_grad():
                for name in subnet.gathered_buffers:
                    put(full[name], subnet.selections[name], tensors[name])
        return out

    def subnet_state_dict(self, arch: Arch) -> dict[str, torch.Tensor]:
        """``arch``'s state dict cut from the shared tensors (copies, detached)."""
        subnet = self._subnet(arch)
        full = self._full
        return {name: gather(full[name], selection).detach().clone() for name, selection in subnet.selections.items()}

    def extract(self, arch: Arch) -> nn.Module:
        """The static model of ``arch`` (``effvit_nas.build_model``) with the supernet's weights and BN
        statistics copied in: same outputs as ``self(x, arch)``. Recalibrate its BN before use
        (``recalibrate_bn``): the shared statistics mix every subnet trained."""
        model = build_model(arch, num_classes=self.num_classes)
        model.load_state_dict(self.subnet_state_dict(arch), strict=True)
        return model.to(next(self.parameters()).device)

    @property
    def _full(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters()) | dict(self.named_buffers())

    def _subnet(self, arch: Arch) -> _Subnet:
        """A weightless (meta-device) static model of ``arch`` and where each of its tensors comes from.

        Index tensors (qkv rows, bias columns, bias offsets) are made once per arch on the supernet's
        device and kept: made per call on the CPU, each forward would copy hundreds of small tensors to
        the GPU, each copy a blocking host-to-device transfer."""
        device = next(self.parameters()).device
        key = (arch, device)
        if key in self._subnets:
            self._subnets.move_to_end(key)
            return self._subnets[key]
        self.check(arch)
        with torch.device("meta"):
            skeleton = build_model(arch, num_classes=self.num_classes)
        full = self._full
        subnet = _Subnet(skeleton, {}, {}, [])
        for name, tensor in (*skeleton.named_parameters(), *skeleton.named_buffers()):
            if name.endswith("attention_bias_idxs"):  # not a weight: a function of the window
                subnet.bias_indices[name] = relative_offset_index(math.isqrt(tensor.shape[0])).to(device)
                continue
            selection = select(name, tuple(full[name].shape), tuple(tensor.shape), arch, self.max_key_dims)
            selection = tuple(p if isinstance(p, slice) else p.to(device) for p in selection)
            subnet.selections[name] = selection
            if not isinstance(full[name], nn.Parameter) and any(not isinstance(p, slice) for p in selection):
                subnet.gathered_buffers.append(name)
        self._subnets[key] = subnet
        if len(self._subnets) > _SUBNETS_KEPT:
            self._subnets.popitem(last=False)
        return subnet

    def _subnet_tensors(self, subnet: _Subnet, full: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: gather(full[name], selection) for name, selection in subnet.selections.items()} | \
            subnet.bias_indices


@dataclasses.dataclass
class _Subnet:
    skeleton: nn.Module  # the static model of the arch on the meta device: structure, no storage
    selections: dict[str, Selection]  # tensor name -> its part of the supernet's tensor of that name
    bias_indices: dict[str, torch.Tensor]  # attention-bias index buffers (a function of the window)
    gathered_buffers: list[str]  # BN statistics that are copies, not views: written back after training


def _widest_arch(space: SearchSpace) -> Arch:
    """Every knob at its largest; one head (always valid) since attention is widened separately."""
    largest = space.largest()
    return largest.replace(
        resolution=max(space.resolutions),
        widths=tuple(max(s.widths) for s in space.stages),
        heads=(1,) * NUM_STAGES,
        kernels=(max(space.kernels),),
        window_sizes=tuple(max(s.window_sizes) for s in space.stages),
    )


def _widen_attention(attn: nn.Module, choices: Any, kernel: int, window: int) -> None:
    """Give a cascaded-group-attention layer the space's most heads, head j the widest value dim
    among the (width, heads) pairs that have a head j, the largest Q/K dim, kernel and window."""
    heads = max(h for _, h in choices.pairs)
    key_dim = max(choices.key_dims)
    value_dims = [max(w // h for w, h in choices.pairs if h > j) for j in range(heads)]
    attn.qkvs = nn.ModuleList(ConvNorm(v, 2 * key_dim + v) for v in value_dims)
    attn.dws = nn.ModuleList(ConvNorm(key_dim, key_dim, kernel, padding=kernel // 2, groups=key_dim)
                             for _ in range(heads))
    attn.attention_biases = nn.Parameter(torch.zeros(heads, window * window))
    attn.register_buffer("attention_bias_idxs", relative_offset_index(window), persistent=False)
