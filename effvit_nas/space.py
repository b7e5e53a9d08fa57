"""``SearchSpace``: the choices for every ``Arch`` knob and the constraints between them.

Loaded from YAML: a file of the user's, or one shipped in the package by name (``efficientvit_m``, the
default, and ``shapes``: ``SearchSpace.load``). It samples archs, checks
membership, counts its distinct networks, and suggests archs to an Optuna trial. ``Arch`` itself lives
in ``arch.py`` (kept apart to keep both files short) and is re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._io import check_keys, load_yaml_mapping
from .arch import NUM_STAGES, Arch, check_knob_bound, stem_output_size
from .errors import ConfigFileError, InvalidArchError, InvalidSpaceError
from .locations import SHIPPED_SPACES_DIR

if TYPE_CHECKING:
    import numpy as np
    import optuna

__all__ = ["Arch", "SearchSpace", "StageChoices", "DEFAULT_SPACE_PATH", "shipped_spaces"]

SPACE_SCHEMA_VERSION = 1
DEFAULT_SPACE_PATH = SHIPPED_SPACES_DIR / "efficientvit_m.yaml"
_STAGE_KEYS = ("width", "depth", "heads", "key_dim", "ffn_ratio", "window_size")


@dataclass(frozen=True)
class StageChoices:
    """Choices for one stage. ``pairs`` are the (width, heads) combinations the constraint allows."""

    widths: tuple[int, ...]
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    key_dims: tuple[int, ...]
    ffn_ratios: tuple[float, ...]
    window_sizes: tuple[int, ...]

    def by_knob(self) -> tuple[tuple[str, tuple], ...]:
        """(knob as the YAML names it, its choices), in the YAML's order."""
        return tuple(zip(_STAGE_KEYS, (self.widths, self.depths, self.heads, self.key_dims, self.ffn_ratios,
                                       self.window_sizes)))

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((w, h) for w in self.widths for h in self.heads if w % h == 0)

    def windows_at(self, feature_size: int) -> tuple[int, ...]:
        """Distinct effective windows on a map of this size (larger windows clamp to the map)."""
        return tuple(sorted({min(w, feature_size) for w in self.window_sizes}))


def shipped_spaces() -> list[str]:
    """The names ``--space`` takes without a path: the spaces shipped inside the package."""
    return sorted(p.stem for p in SHIPPED_SPACES_DIR.glob("*.yaml"))


def _choices(value: Any, where: str) -> tuple:
    if not isinstance(value, list) or not value:
        raise ConfigFileError(f"{where} must be a non-empty list of choices, but got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigFileError(f"{where} must not repeat a choice, but got {value}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigFileError(f"{where} choices must be numbers, but got {v!r}")
    return tuple(sorted(int(v) if float(v).is_integer() else v for v in value))


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    import numpy as np

    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@dataclass(frozen=True)
class SearchSpace:
    """Choices per knob. Build with ``from_yaml``/``default``; every method takes state explicitly."""

    name: str
    resolutions: tuple[int, ...]
    kernels: tuple[int, ...]
    stages: tuple[StageChoices, ...]

    # ---------------------------------------------------------------- loading
    @classmethod
    def default(cls) -> SearchSpace:
        return cls.from_yaml(DEFAULT_SPACE_PATH)

    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> SearchSpace:
        """A space shipped with effvit-nas by name (``shapes``), or a YAML file."""
        text = str(name_or_path)
        if text in shipped_spaces():
            return cls.from_yaml(SHIPPED_SPACES_DIR / f"{text}.yaml")
        if not Path(text).suffix and "/" not in text and os.sep not in text and not Path(text).exists():
            raise ConfigFileError(f"search space must be a shipped name ({', '.join(shipped_spaces())}) or a YAML "
                                  f"file, but got {text!r}; give one of those names or the path of your space's YAML")
        return cls.from_yaml(text)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> SearchSpace:
        where = f"search space {str(path)!r}"
        return cls.from_dict(load_yaml_mapping(path, "search space"), where=where)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "search space") -> SearchSpace:
        check_keys(
            data,
            allowed=("schema_version", "name", "resolution", "kernels", "stages"),
            required=("schema_version", "name", "resolution", "kernels", "stages"),
            where=where,
        )
        if data["schema_version"] != SPACE_SCHEMA_VERSION:
            raise ConfigFileError(
                f"{where} must have schema_version {SPACE_SCHEMA_VERSION}, but has {data['schema_version']!r}"
            )
        stages_data = data["stages"]
        if not isinstance(stages_data, list) or len(stages_data) != NUM_STAGES:
            raise ConfigFileError(f"{where} must list {NUM_STAGES} stages, but got {stages_data!r}")
        stages = []
        for i, stage in enumerate(stages_data):
            swhere = f"{where} stage {i + 1}"
            if not isinstance(stage, dict):
                raise ConfigFileError(f"{swhere} must be a mapping of knob to choices, but got {stage!r}")
            check_keys(stage, allowed=_STAGE_KEYS, required=_STAGE_KEYS, where=swhere)
            stages.append(StageChoices(*(_choices(stage[k], f"{swhere} {k}") for k in _STAGE_KEYS)))
        space = cls(
            name=str(data["name"]),
            resolutions=_choices(data["resolution"], f"{where} resolution"),
            kernels=_choices(data["kernels"], f"{where} kernels"),
            stages=tuple(stages),
        )
        space._validate(where)
        return space

    def _validate(self, where: str) -> None:
        """Every choice must be usable: a choice no valid arch can take would silently never be sampled.
        Every choice must also lie within ``Arch``'s bounds (checked first, so a typo like depth 10^8 is
        refused before anything is built)."""
        for knob, choices in (("resolution", self.resolutions), ("kernel", self.kernels)):
            check_knob_bound(knob, max(choices), f"{where} {knob}", InvalidSpaceError)
        for i, stage in enumerate(self.stages):
            swhere = f"{where} stage {i + 1}"
            for knob, choices in stage.by_knob():
                check_knob_bound(knob, max(choices), f"{swhere} {knob}", InvalidSpaceError)
            for h in stage.heads:
                if not any(w % h == 0 for w in stage.widths):
                    raise InvalidSpaceError(
                        f"{swhere}: every heads choice must divide some width, but heads={h} "
                        f"divides none of {list(stage.widths)}; remove it or add a width"
                    )
            for w, r in product(stage.widths, stage.ffn_ratios):
                if w % 8 or not float(w * r).is_integer():
                    raise InvalidSpaceError(
                        f"{swhere}: widths must be multiples of 8 and width*ffn_ratio whole, "
                        f"but got width={w}, ffn_ratio={r}"
                    )
        try:  # the extremes exercise the remaining per-knob rules of Arch (resolution, odd kernels, ...)
            self.smallest()
            self.largest()
        except InvalidArchError as exc:
            raise InvalidSpaceError(f"{where} has choices no valid arch can use: {exc}") from None

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SPACE_SCHEMA_VERSION,
            "name": self.name,
            "resolution": list(self.resolutions),
            "kernels": list(self.kernels),
            "stages": [{k: list(v) for k, v in s.by_knob()} for s in self.stages],
        }

    @property
    def content_hash(self) -> str:
        """Hash of the choices (not of the file text, so comments and ordering do not change it)."""
        payload = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # ---------------------------------------------------------------- membership and size
    def why_not(self, arch: Arch) -> str | None:
        """None if the space contains ``arch``, else the first knob that lies outside it."""
        if arch.resolution not in self.resolutions:
            return f"resolution {arch.resolution} is not one of {list(self.resolutions)}"
        for i, (stage, size) in enumerate(zip(self.stages, arch.stage_resolutions)):
            checks = (
                ("width", arch.widths[i], stage.widths),
                ("depth", arch.depths[i], stage.depths),
                ("heads", arch.heads[i], stage.heads),
                ("key_dim", arch.key_dims[i], stage.key_dims),
                ("ffn_ratio", arch.ffn_ratios[i], stage.ffn_ratios),
                ("window_size", arch.window_sizes[i], stage.windows_at(size)),
            )
            for knob, value, allowed in checks:
                if value not in allowed:
                    return f"stage {i + 1} {knob} {value} is not one of {list(allowed)}"
        bad = [k for k in arch.kernels if k not in self.kernels]
        if bad:
            return f"kernels {bad} are not among {list(self.kernels)}"
        return None

    def why_not_inside(self, other: SearchSpace, ignore_resolution: bool = False) -> str | None:
        """None when every arch of this space is one of ``other``'s (every choice is one of its
        choices); else the first choice that is not. Used to check a search against a supernet."""
        if not ignore_resolution and max(self.resolutions) > max(other.resolutions):
            return f"resolution {max(self.resolutions)} is above the largest of {list(other.resolutions)}"
        extra = sorted(set(self.kernels) - set(other.kernels))
        if extra:
            return f"kernels {extra} are not among {list(other.kernels)}"
        for i, (mine, theirs) in enumerate(zip(self.stages, other.stages)):
            for knob in ("widths", "depths", "heads", "key_dims", "ffn_ratios", "window_sizes"):
                extra = sorted(set(getattr(mine, knob)) - set(getattr(theirs, knob)))
                if extra:
                    return f"stage {i + 1} {knob} {extra} are not among {list(getattr(theirs, knob))}"
        return None

    def contains(self, arch: Arch) -> bool:
        return self.why_not(arch) is None

    def size(self) -> int:
        """Number of distinct networks: exact, by summing over resolutions and head counts per stage."""
        total = 0
        for res in self.resolutions:
            feature = stem_output_size(res)
            per_stage_by_heads = []
            for stage in self.stages:
                rest = len(stage.depths) * len(stage.key_dims) * len(stage.ffn_ratios) * len(stage.windows_at(feature))
                per_stage_by_heads.append(
                    {h: rest * sum(1 for w, hh in stage.pairs if hh == h) for h in stage.heads}
                )
                feature = (feature - 1) // 2 + 1
            for heads in product(*(sorted(d) for d in per_stage_by_heads)):
                count = math.prod(d[h] for d, h in zip(per_stage_by_heads, heads))
                total += count * len(self.kernels) ** max(heads)
        return total

    # ---------------------------------------------------------------- extremes, sampling, Optuna
    def _extreme(self, pick: Any) -> Arch:
        """Every knob at ``pick`` (min or max) of its choices; heads at ``pick`` of those the width allows."""
        pairs = []
        for stage in self.stages:
            width = pick(w for w, _ in stage.pairs)
            pairs.append((width, pick(h for w, h in stage.pairs if w == width)))
        return Arch(
            resolution=pick(self.resolutions),
            widths=tuple(w for w, _ in pairs),
            depths=tuple(pick(s.depths) for s in self.stages),
            heads=tuple(h for _, h in pairs),
            key_dims=tuple(pick(s.key_dims) for s in self.stages),
            ffn_ratios=tuple(pick(s.ffn_ratios) for s in self.stages),
            window_sizes=tuple(pick(s.window_sizes) for s in self.stages),
            kernels=(pick(self.kernels),) * max(h for _, h in pairs),
        )

    def smallest(self) -> Arch:
        """Every knob at its smallest choice: the cheapest network in the space."""
        return self._extreme(min).replace(name=f"{self.name}-smallest")

    def largest(self) -> Arch:
        """Every knob at its largest choice (heads: the most that divide the widest width)."""
        return self._extreme(max).replace(name=f"{self.name}-largest")

    def sample(self, rng: np.random.Generator | int | None = None) -> Arch:
        """A uniformly random arch: (width, heads) pairs are drawn among the valid ones."""
        rng = _rng(rng)

        def pick(options: tuple) -> Any:
            return options[int(rng.integers(len(options)))]

        params: dict[str, Any] = {"resolution": pick(self.resolutions)}
        for i, s in enumerate(self.stages):
            width, heads = pick(s.pairs)
            params[f"s{i + 1}.width_heads"] = f"{width}/{heads}"
            for knob, options in self._stage_knobs(s):
                params[f"s{i + 1}.{knob}"] = pick(options)
        for j in range(self._heads_in(params)):
            params[f"kernel{j + 1}"] = pick(self.kernels)
        return self.from_params(params)

    @staticmethod
    def _stage_knobs(s: StageChoices) -> tuple[tuple[str, tuple], ...]:
        """The per-stage knobs other than the (width, heads) pair, with their choices."""
        return (("depth", s.depths), ("key_dim", s.key_dims), ("ffn_ratio", s.ffn_ratios),
                ("window_size", s.window_sizes))

    @staticmethod
    def _heads_in(params: dict[str, Any]) -> int:
        """Most heads of any stage: how many q-conv kernels the arch needs."""
        return max(int(params[f"s{i + 1}.width_heads"].split("/")[1]) for i in range(NUM_STAGES))

    @property
    def max_heads(self) -> int:
        """The most heads any arch of the space has: how many kernel parameters a trial carries."""
        return max(h for s in self.stages for _, h in s.pairs)

    def suggest(self, trial: optuna.trial.BaseTrial) -> Arch:
        """Ask an Optuna trial for an arch. Width and heads are one categorical of the valid pairs, so
        the sampler never proposes a width its heads cannot split. A kernel is asked for every head the
        space allows and an arch uses the first ones it has heads for: every trial then holds the same
        parameters, so multivariate TPE fits one model per trial. Asking only the kernels an arch uses
        split the trials into a group per head count, each fitted over all trials (5x the sampling time,
        the search's main cost; docs/SEARCH.md)."""
        params = {"resolution": trial.suggest_categorical("resolution", self.resolutions)}
        for i, s in enumerate(self.stages):
            params[f"s{i + 1}.width_heads"] = trial.suggest_categorical(
                f"s{i + 1}.width_heads", [f"{w}/{h}" for w, h in s.pairs]
            )
            for knob, options in self._stage_knobs(s):
                params[f"s{i + 1}.{knob}"] = trial.suggest_categorical(f"s{i + 1}.{knob}", options)
        for j in range(self.max_heads):
            params[f"kernel{j + 1}"] = trial.suggest_categorical(f"kernel{j + 1}", self.kernels)
        return self.from_params(params)

    def from_params(self, params: dict[str, Any]) -> Arch:
        """The arch a set of ``suggest`` parameters stands for."""
        pairs = [tuple(int(v) for v in params[f"s{i + 1}.width_heads"].split("/")) for i in range(NUM_STAGES)]
        return Arch(
            resolution=params["resolution"],
            widths=tuple(w for w, _ in pairs),
            depths=tuple(params[f"s{i + 1}.depth"] for i in range(NUM_STAGES)),
            heads=tuple(h for _, h in pairs),
            key_dims=tuple(params[f"s{i + 1}.key_dim"] for i in range(NUM_STAGES)),
            ffn_ratios=tuple(params[f"s{i + 1}.ffn_ratio"] for i in range(NUM_STAGES)),
            window_sizes=tuple(params[f"s{i + 1}.window_size"] for i in range(NUM_STAGES)),
            kernels=tuple(params[f"kernel{j + 1}"] for j in range(self._heads_in(params))),
        )

    def to_params(self, arch: Arch) -> dict[str, Any]:
        """``suggest`` parameters for an arch in the space (e.g. to enqueue M0–M5 as first trials).
        A clamped window maps back to the smallest choice that clamps to it."""
        reason = self.why_not(arch)
        if reason:
            raise InvalidSpaceError(f"arch must lie in space {self.name!r} to become trial parameters, but {reason}")
        params: dict[str, Any] = {"resolution": arch.resolution}
        for i, (s, size) in enumerate(zip(self.stages, arch.stage_resolutions)):
            params[f"s{i + 1}.width_heads"] = f"{arch.widths[i]}/{arch.heads[i]}"
            params[f"s{i + 1}.depth"] = arch.depths[i]
            params[f"s{i + 1}.key_dim"] = arch.key_dims[i]
            params[f"s{i + 1}.ffn_ratio"] = arch.ffn_ratios[i]
            params[f"s{i + 1}.window_size"] = min(w for w in s.window_sizes if min(w, size) == arch.window_sizes[i])
        for j in range(self.max_heads):  # the kernels of heads the arch lacks are unused: any choice will do
            params[f"kernel{j + 1}"] = arch.kernels[j] if j < len(arch.kernels) else self.kernels[0]
        return params
