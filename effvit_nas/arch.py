"""``Arch``: one EfficientViT architecture as plain, frozen, hashable data.

Everything downstream (model builder, latency keys, counting, search) takes an ``Arch`` explicitly;
nothing reads a hidden "active architecture". The paper's M0–M5 are ``Arch.preset("m0")`` … ``"m5"``.

An EfficientViT (Liu et al., CVPR 2023, arXiv 2305.07027) has a /16 conv stem and three stages. Per
stage this class holds the knobs the paper's design study varies: width (embed dim C), depth (blocks),
heads, Q/K dim per head, FFN ratio and attention window. The q-conv kernels are per head and shared by
all stages, as in the paper (stage i's head j uses ``kernels[j]``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ._io import atomic_write_text, check_keys, load_yaml_mapping
from .errors import ConfigFileError, InvalidArchError, UnknownNameError

__all__ = ["Arch", "NUM_STAGES", "PRESETS", "MAX_KNOB", "MAX_PARAMS", "MAX_MACS", "check_knob_bound",
           "stem_output_size", "downsampled_size", "stage_sizes"]

NUM_STAGES = 3
ARCH_SCHEMA_VERSION = 1
PER_STAGE_FIELDS = ("widths", "depths", "heads", "key_dims", "ffn_ratios", "window_sizes")

# The paper's configs (Cream build.py == timm efficientvit_mX). Shared by all six: key_dim 16,
# window 7, FFN ratio 2, input 224. M0 lists kernels 5,5,5,5, the others 7,5,3,3.
_PAPER_COMMON = dict(resolution=224, key_dims=(16, 16, 16), ffn_ratios=(2, 2, 2), window_sizes=(7, 7, 7))
PRESETS: dict[str, dict[str, Any]] = {
    "m0": dict(widths=(64, 128, 192), depths=(1, 2, 3), heads=(4, 4, 4), kernels=(5, 5, 5, 5)),
    "m1": dict(widths=(128, 144, 192), depths=(1, 2, 3), heads=(2, 3, 3), kernels=(7, 5, 3, 3)),
    "m2": dict(widths=(128, 192, 224), depths=(1, 2, 3), heads=(4, 3, 2), kernels=(7, 5, 3, 3)),
    "m3": dict(widths=(128, 240, 320), depths=(1, 2, 3), heads=(4, 3, 4), kernels=(5, 5, 5, 5)),
    "m4": dict(widths=(128, 256, 384), depths=(1, 2, 3), heads=(4, 4, 4), kernels=(7, 5, 3, 3)),
    "m5": dict(widths=(192, 288, 384), depths=(1, 3, 4), heads=(3, 3, 4), kernels=(7, 5, 3, 3)),
}


# Upper bounds, so that a typo (depth 100000000, resolution 100000) is refused at once instead of
# allocating until the machine gives out: 10x the largest choice of the default search space
# (spaces/efficientvit_m.yaml; tests/test_arch.py checks that they agree), far beyond any
# network one would train. Windows are the exception: a window of w holds (w^2)^2 attention logits and
# bias indices, so 10x the default's 14 would cost 10^4 times its memory; 32 still covers global
# attention on the stage-1 map up to 512 px.
BOUND_FACTOR = 10
DEFAULT_SPACE_MAX = dict(resolution=288, width=512, depth=5, heads=6, key_dim=32, ffn_ratio=4, window_size=14,
                         kernel=7)
MAX_KNOB: dict[str, int] = {knob: BOUND_FACTOR * value for knob, value in DEFAULT_SPACE_MAX.items()}
MAX_KNOB["window_size"] = 32
# Per-knob bounds multiply (width 5120 x depth 50 x FFN ratio 40 is terabytes of weights), so the
# whole network is bounded too, by what building, exporting and timing it cost: 10x the parameters
# and MACs of the default space's largest arch (tests/test_arch.py checks these figures).
MAX_PARAMS = BOUND_FACTOR * 45_199_616
MAX_MACS = BOUND_FACTOR * 3_337_798_144


def check_knob_bound(knob: str, value: float, where: str, error: type[Exception] = InvalidArchError) -> None:
    """Refuse a knob value above ``MAX_KNOB[knob]``; ``where`` names the knob for the user."""
    bound = MAX_KNOB[knob]
    if value > bound:
        why = "memory grows as window^4" if knob == "window_size" else (
            f"{BOUND_FACTOR}x the default search space's largest, {DEFAULT_SPACE_MAX[knob]}")
        raise error(f"{where} must be at most {bound} ({why}), but got {value}; use a smaller {knob}")


def downsampled_size(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 conv: what every downsampling layer here does."""
    return (size - 1) // 2 + 1


def stem_output_size(resolution: int) -> int:
    """The stem is four stride-2 convs (/16)."""
    for _ in range(4):
        resolution = downsampled_size(resolution)
    return resolution


def stage_sizes(resolution: int) -> tuple[int, ...]:
    """Feature-map side of each stage for an input of ``resolution`` pixels."""
    sizes = [stem_output_size(resolution)]
    for _ in range(NUM_STAGES - 1):
        sizes.append(downsampled_size(sizes[-1]))
    return tuple(sizes)


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise InvalidArchError(f"{what} must be an integer, but got {value!r}")
    return value


def _as_ratio(value: Any, what: str) -> float | int:
    """FFN ratios are kept as int when whole so that YAML and hashes read ``2``, not ``2.0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArchError(f"{what} must be a number, but got {value!r}")
    return int(value) if float(value).is_integer() else float(value)


def _as_tuple(value: Any, what: str, length: int | None) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise InvalidArchError(f"{what} must be a list, but got {value!r}")
    if length is not None and len(value) != length:
        raise InvalidArchError(f"{what} must have one entry per stage ({length}), but got {len(value)}: {list(value)}")
    return tuple(value)


@dataclass(frozen=True)
class Arch:
    """One EfficientViT architecture. Frozen and hashable; ``name`` is a label, not part of identity."""

    resolution: int  # input size in pixels (square); a multiple of 16 so the /16 stem divides it
    widths: tuple[int, ...]  # embed dim C per stage; multiples of 8 (stem C/8, SE reduction)
    depths: tuple[int, ...]  # EfficientViT blocks per stage
    heads: tuple[int, ...]  # attention heads per stage; each head sees C/heads channels (V dim)
    key_dims: tuple[int, ...]  # Q/K dim per head (16 in the paper; decoupled from the V dim)
    ffn_ratios: tuple[float, ...]  # FFN hidden = C * ratio (2 in the paper)
    window_sizes: tuple[int, ...]  # local attention window; stored clamped to the stage's feature size
    kernels: tuple[int, ...]  # q depthwise-conv kernel per head, shared by all stages
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        res = _as_int(self.resolution, "resolution")
        if res < 64 or res % 16:
            raise InvalidArchError(
                f"resolution must be a multiple of 16 and at least 64 (the stem downsamples by 16), but got {res}"
            )
        check_knob_bound("resolution", res, "resolution")
        per_stage = {}
        for name in PER_STAGE_FIELDS:
            items = _as_tuple(getattr(self, name), name, NUM_STAGES)
            convert = _as_ratio if name == "ffn_ratios" else _as_int
            per_stage[name] = tuple(convert(v, f"{name}[{i}]") for i, v in enumerate(items))
        kernels = _as_tuple(self.kernels, "kernels", None)
        if len(kernels) > MAX_KNOB["heads"]:
            raise InvalidArchError(f"kernels must list at most {MAX_KNOB['heads']} entries (one per head, "
                                   f"{BOUND_FACTOR}x the default search space's most heads), but got {len(kernels)}")
        kernels = tuple(_as_int(k, f"kernels[{i}]") for i, k in enumerate(kernels))
        self._check(res, per_stage, kernels)
        # Trailing kernels that no head uses do not change the network; dropping them makes equal
        # networks compare, hash and measure as equal.
        kernels = kernels[: max(per_stage["heads"])]
        # Likewise a window larger than the feature map is the feature map (attention over all of it),
        # so windows are stored clamped: window 7 and 14 on a 4x4 map are one network.
        sizes = stage_sizes(res)
        per_stage["window_sizes"] = tuple(min(w, r) for w, r in zip(per_stage["window_sizes"], sizes))
        object.__setattr__(self, "resolution", res)
        for name, values in per_stage.items():
            object.__setattr__(self, name, values)
        object.__setattr__(self, "kernels", kernels)
        self._check_cost()

    def _check_cost(self) -> None:
        from .counting import count  # counting reads Arch: imported here, not at module level

        cost = count(self)
        for what, value, bound in (("parameters", cost.params, MAX_PARAMS), ("MACs", cost.macs, MAX_MACS)):
            if value > bound:
                raise InvalidArchError(
                    f"arch must have at most {bound / 1e6:,.0f}M {what} ({BOUND_FACTOR}x the default search space's "
                    f"largest), but has {value / 1e6:,.0f}M; use smaller widths, depths, FFN ratios or resolution"
                )

    @staticmethod
    def _check(res: int, s: dict[str, tuple], kernels: tuple[int, ...]) -> None:
        for i in range(NUM_STAGES):
            width, depth, heads = s["widths"][i], s["depths"][i], s["heads"][i]
            where = f"stage {i + 1}"
            if width <= 0 or width % 8:
                raise InvalidArchError(
                    f"{where} width must be a positive multiple of 8 (the stem splits it by 8), but got {width}"
                )
            check_knob_bound("width", width, f"{where} width")
            if depth < 1:
                raise InvalidArchError(f"{where} depth must be at least 1, but got {depth}")
            check_knob_bound("depth", depth, f"{where} depth")
            check_knob_bound("heads", heads, f"{where} heads")
            if heads < 1 or width % heads:
                divisors = [d for d in range(1, 9) if width % d == 0]
                raise InvalidArchError(
                    f"{where} width must be divisible by its heads (each head gets width/heads channels), "
                    f"but got width={width}, heads={heads}; use heads in {divisors} or another width"
                )
            if s["key_dims"][i] < 1:
                raise InvalidArchError(f"{where} key_dim must be at least 1, but got {s['key_dims'][i]}")
            check_knob_bound("key_dim", s["key_dims"][i], f"{where} key_dim")
            ratio = s["ffn_ratios"][i]
            check_knob_bound("ffn_ratio", ratio, f"{where} ffn_ratio")
            if ratio <= 0 or not float(width * ratio).is_integer():
                raise InvalidArchError(
                    f"{where} ffn_ratio must be positive and make width*ratio a whole number of channels, "
                    f"but got width={width}, ffn_ratio={ratio}"
                )
            if s["window_sizes"][i] < 1:
                raise InvalidArchError(f"{where} window_size must be at least 1, but got {s['window_sizes'][i]}")
            check_knob_bound("window_size", s["window_sizes"][i], f"{where} window_size")
        needed = max(s["heads"])
        if len(kernels) < needed:
            raise InvalidArchError(
                f"kernels must have one entry per head of the widest stage ({needed}), but got {len(kernels)}: "
                f"{list(kernels)}; append kernels such as 3"
            )
        bad = [k for k in kernels[:needed] if k < 1 or k % 2 == 0]
        if bad:
            raise InvalidArchError(f"kernels must be odd and positive (same-size padding), but got {bad}")
        for j, k in enumerate(kernels[:needed]):
            check_knob_bound("kernel", k, f"kernels[{j}]")

    # ---------------------------------------------------------------- derived shapes
    @property
    def stage_resolutions(self) -> tuple[int, ...]:
        """Feature-map side per stage: stem /16, then a stride-2 subsample before stages 2 and 3."""
        return stage_sizes(self.resolution)

    @property
    def value_dims(self) -> tuple[int, ...]:
        """V dim per head = width / heads: the cascade adds head i's output to head i+1's input."""
        return tuple(w // h for w, h in zip(self.widths, self.heads))

    @property
    def ffn_hidden(self) -> tuple[int, ...]:
        return tuple(int(w * r) for w, r in zip(self.widths, self.ffn_ratios))

    @property
    def arch_id(self) -> str:
        """Canonical short hash of the network (the name is not part of it)."""
        payload = json.dumps(self._knobs(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    def is_paper_family(self) -> bool:
        """True when the arch uses the paper's fixed choices (FFN ratio 2), i.e. timm can build it."""
        return all(r == 2 for r in self.ffn_ratios)

    # ---------------------------------------------------------------- (de)serialisation
    def _knobs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resolution": self.resolution}
        for name in (*PER_STAGE_FIELDS, "kernels"):
            out[name] = list(getattr(self, name))
        return out

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": ARCH_SCHEMA_VERSION}
        if self.name:
            out["name"] = self.name
        out.update(self._knobs())
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "arch") -> Arch:
        """Build from a mapping; ``metadata`` (what a search wrote alongside) is accepted and ignored."""
        knobs = ("resolution", *PER_STAGE_FIELDS, "kernels")
        check_keys(data, allowed=("schema_version", "name", "metadata", *knobs), required=knobs, where=where)
        version = data.get("schema_version", ARCH_SCHEMA_VERSION)
        if version != ARCH_SCHEMA_VERSION:
            raise ConfigFileError(
                f"{where} must have schema_version {ARCH_SCHEMA_VERSION}, but has {version!r}; "
                "re-export it with this version of effvit-nas"
            )
        return cls(name=data.get("name"), **{k: data[k] for k in knobs})

    def to_yaml(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> None:
        """Write atomically; ``metadata`` (latency, score, ...) is stored beside the knobs, not in them."""
        import yaml

        data = self.to_dict()
        if metadata:
            data["metadata"] = metadata
        atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Arch:
        return cls.from_dict(load_yaml_mapping(path, "architecture"), where=f"architecture file {str(path)!r}")

    @classmethod
    def preset(cls, name: str) -> Arch:
        """The paper's M0–M5: ``Arch.preset("m0")`` … ``"m5"`` (case-insensitive)."""
        key = name.lower().removeprefix("efficientvit_").removeprefix("efficientvit-")
        if key not in PRESETS:
            raise UnknownNameError(f"preset must be one of {sorted(PRESETS)}, but got {name!r}")
        return cls(name=f"efficientvit_{key}", **_PAPER_COMMON, **PRESETS[key])

    def replace(self, **changes: Any) -> Arch:
        """A copy with some knobs changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def __str__(self) -> str:
        label = f"{self.name} " if self.name else ""
        return (
            f"{label}[{self.arch_id}] res={self.resolution} C={list(self.widths)} L={list(self.depths)} "
            f"H={list(self.heads)} kd={list(self.key_dims)} ffn={list(self.ffn_ratios)} "
            f"win={list(self.window_sizes)} k={list(self.kernels)}"
        )
