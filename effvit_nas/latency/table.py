"""``LatencyTable``: measured block latencies of one search space on one machine, and the prediction.

The file is JSON, written atomically, and says where and how it was measured: hardware, runtime and
settings, the space it covers (its choices and their hash), the timing method, a speed reference
(a fixed network measured throughout the build, for drift), the per-kind block models, the
whole-network calibration, and the entries, each with a median and its interquartile range. A
checksum over the content refuses truncated or hand-edited files.

``predict_ms(arch)`` = calibration(sum of block latencies): a measured entry where the build measured
that key, the kind's fitted model otherwise. Pure Python; microseconds per arch.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..arch import Arch
from ..errors import TableError, UnknownNameError
from ..space import SearchSpace
from .fit import BlockModel, Calibration, calibration_features
from .keys import BlockKey, block_keys
from .measure import RuntimeConfig, Timing

__all__ = ["LatencyTable", "TABLES_DIR", "list_tables", "resolve_table_path", "TABLE_SCHEMA_VERSION"]

TABLE_SCHEMA_VERSION = 1
TABLES_DIR = Path(__file__).resolve().parents[2] / "latency_tables"
_TOP_KEYS = ("schema_version", "target", "created", "hardware", "runtime", "space", "method", "reference",
             "calibration", "models", "entries", "build", "checksum")
BUILD_HINT = "effnas table build --target {target}"


def list_tables(directory: Path = TABLES_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.json"))


def resolve_table_path(name_or_path: str | os.PathLike) -> Path:
    """A name found in ``latency_tables/`` or a path to a table file."""
    text = str(name_or_path)
    if text.endswith(".json") or os.sep in text:
        path = Path(text)
        if not path.is_file():
            raise UnknownNameError(f"table file must exist, but {text!r} was not found; build it with "
                                   f"{BUILD_HINT.format(target=text)}")
        return path
    path = TABLES_DIR / f"{text}.json"
    if not path.is_file():
        available = ", ".join(list_tables()) or "none"
        raise UnknownNameError(
            f"target must be a table in {TABLES_DIR} ({available}) or a .json path, but got {text!r}; "
            f"measure this machine with: {BUILD_HINT.format(target=text)}"
        )
    return path


def content_checksum(data: dict[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class LatencyTable:
    """A loaded (or freshly built) table. Construct with ``load`` or ``from_dict``."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path
        self.entries = {k: Timing(**v) for k, v in data["entries"].items()}
        self.models = {kind: BlockModel.from_dict(m) for kind, m in data["models"].items()}
        self.calibration = Calibration.from_dict(data["calibration"])
        self._block_cache: dict[BlockKey, float] = {}

    # ---------------------------------------------------------------- files
    @classmethod
    def load(cls, name_or_path: str | os.PathLike) -> LatencyTable:
        path = resolve_table_path(name_or_path)
        hint = f"rebuild it with {BUILD_HINT.format(target=path.stem)}"
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TableError(f"table {str(path)!r} must be complete JSON, but it is truncated or corrupt "
                             f"({exc.msg if hasattr(exc, 'msg') else exc}); {hint}") from None
        if not isinstance(data, dict) or data.get("schema_version") != TABLE_SCHEMA_VERSION:
            version = data.get("schema_version") if isinstance(data, dict) else None
            raise TableError(f"table {str(path)!r} must have schema_version {TABLE_SCHEMA_VERSION}, but has "
                             f"{version!r}; {hint}")
        if set(data) != set(_TOP_KEYS):
            raise TableError(f"table {str(path)!r} must have exactly the keys {list(_TOP_KEYS)}, but has "
                             f"{sorted(data)}; {hint}")
        if data["checksum"] != content_checksum(data):
            raise TableError(f"table {str(path)!r} must match its checksum, but its content was edited or "
                             f"corrupted; {hint}")
        return cls(data, path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyTable:
        data = dict(data, checksum=content_checksum(data))
        return cls(data)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        atomic_write_text(path, json.dumps(self.data, indent=1, sort_keys=False) + "\n")
        self.path = path
        return path

    # ---------------------------------------------------------------- identity and checks
    @property
    def target(self) -> str:
        return self.data["target"]

    @property
    def table_id(self) -> str:
        """Target plus content hash: what search results record to say which table they used."""
        return f"{self.target}@{self.data['checksum'][:12]}"

    @cached_property
    def runtime(self) -> RuntimeConfig:
        settings = {k: v for k, v in self.data["runtime"].items() if k != "version"}
        return RuntimeConfig(**settings)

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.data["space"]["choices"], where=f"table {self.target!r} space")

    @property
    def statistic(self) -> str:
        return self.data["method"]["protocol"]["statistic"]

    @property
    def reference_ms(self) -> float:
        return self.data["reference"]["median_ms"]

    def drift_factor(self, reference_now_ms: float) -> float:
        """How much slower this machine runs now than during the build (the reference's ratio).

        A ratio within the reference's own noise during the build (at least 3%) is reported as 1:
        correcting by it would add noise, not remove drift."""
        ratio = reference_now_ms / self.reference_ms
        noise = max(self.data["reference"].get("noise", 0.0), 0.03)
        return 1.0 if abs(ratio - 1) <= noise else ratio

    @property
    def reference_arch(self) -> Arch:
        return Arch.from_dict(self.data["reference"]["arch"])

    def check_covers(self, space: SearchSpace) -> None:
        """Refuse a space with any choice the table's space lacks: its blocks were never measured."""
        mine = self.space
        problems = []
        if not set(space.resolutions) <= set(mine.resolutions):
            problems.append(f"resolution {sorted(set(space.resolutions) - set(mine.resolutions))}")
        if not set(space.kernels) <= set(mine.kernels):
            problems.append(f"kernels {sorted(set(space.kernels) - set(mine.kernels))}")
        for i, (theirs, ours) in enumerate(zip(space.stages, mine.stages), 1):
            for knob in ("widths", "depths", "heads", "key_dims", "ffn_ratios", "window_sizes"):
                extra = sorted(set(getattr(theirs, knob)) - set(getattr(ours, knob)))
                if extra:
                    problems.append(f"stage {i} {knob} {extra}")
        if problems:
            raise TableError(
                f"table {self.target!r} must cover the search space {space.name!r}, but it was built for "
                f"{mine.name!r} and lacks {'; '.join(problems)}; build one for this space with "
                f"effnas table build --target NAME --space YAML"
            )

    def check_hardware(self, current: dict[str, Any]) -> None:
        """Refuse to compare measurements on a machine other than the one the table was measured on."""
        recorded = self.data["hardware"]
        fields = ["cpu_model", "cores", "machine"] + (["gpu"] if self.runtime.device == "cuda" else [])
        diffs = [f"{f} {recorded.get(f)!r} vs here {current.get(f)!r}"
                 for f in fields if recorded.get(f) != current.get(f)]
        if diffs:
            raise TableError(
                f"table {self.target!r} must be used on the hardware it was measured on, but {'; '.join(diffs)}; "
                f"measure this machine with effnas table build --target NAME"
            )

    # ---------------------------------------------------------------- prediction
    def block_ms(self, key: BlockKey) -> float:
        cached = self._block_cache.get(key)
        if cached is None:
            entry = self.entries.get(str(key))
            cached = entry.value(self.statistic) if entry else self.models[key.kind].predict(key.features())
            self._block_cache[key] = cached
        return cached

    def block_sum_ms(self, arch: Arch) -> tuple[float, int]:
        """Plain sum of block latencies (no calibration) and the number of blocks."""
        keys = block_keys(arch, batch=self.runtime.batch_size)
        return sum(self.block_ms(k) for k in keys), len(keys)

    def calibration_inputs(self, arch: Arch) -> tuple[float, tuple[float, ...]]:
        """(block sum ms, calibration features): what the calibration maps to network ms."""
        block_sum, blocks = self.block_sum_ms(arch)
        return block_sum, calibration_features(arch, block_sum, blocks)

    def predict_ms(self, arch: Arch) -> float:
        """Predicted latency of one forward pass at the table's batch size, in milliseconds."""
        reason = self.space.why_not(arch)
        if reason is not None:
            raise TableError(f"arch must lie in table {self.target!r}'s space {self.space.name!r} to be "
                             f"predicted, but {reason}")
        return self.calibration.apply(*self.calibration_inputs(arch))

    def summary(self) -> dict[str, Any]:
        d = self.data
        return {
            "target": d["target"], "table_id": self.table_id, "created": d["created"], "hardware": d["hardware"],
            "runtime": d["runtime"], "space": {k: d["space"][k] for k in ("name", "hash")},
            "entries": len(self.entries), "reference_ms": self.reference_ms,
            "calibration": d["calibration"], "build": d["build"],
        }
