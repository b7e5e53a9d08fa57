"""``LatencyTable``: measured block latencies of one search space on one machine, and the prediction.

The file is JSON, written atomically, and says where and how it was measured: hardware, runtime and
settings, the space it covers (its choices and their hash), the timing method, a speed reference
(M0, timed beside the blocks and beside the networks), the per-kind block models, the whole-network
calibration, the predictor it was fitted for, how far the machine moved while it was measured, and
the entries: each block's fast-state figure with the median and p90 of its bursts (``measure.py``).
A checksum over the content refuses truncated or hand-edited files.

``predict_ms(arch)`` = calibration(sum of block latencies): a measured entry where the build measured
that key, the kind's fitted model otherwise; for a table adapted from another (``adapted``), that
source prediction times the transfer fitted on this target's networks. Pure Python; microseconds per arch.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from ..arch import Arch
from ..errors import TableError, UnknownNameError
from ..locations import SHIPPED_TABLES_DIR, refuse_package_path, user_tables_dir
from ..space import SearchSpace
from .fit import CALIBRATION_FEATURES, EVALUATOR_VERSION, BlockModel, Calibration, calibration_features
from .keys import KEY_KINDS, KEYS_VERSION, BlockKey, block_keys
from .measure import Timing
from .runtimes import RuntimeConfig
from .transfer import Transfer, TransferInputs

__all__ = ["LatencyTable", "list_tables", "table_source", "unknown_target_message", "matching_tables",
           "table_path", "resolve_table_path", "predictor_signature",
           "TABLE_SCHEMA_VERSION"]

# 2: figures are the fast state (the 2nd percentile of burst medians over a window), not medians of
# rounds; tables of version 1 predict another quantity and are refused with the rebuild command.
TABLE_SCHEMA_VERSION = 2
# the table a new machine's table is adapted from when none of this machine matches (README's main job)
DEFAULT_SOURCE = "amd-epyc-2core-ort-b1"
REJECTED = ".rejected"  # the suffix of a table that missed its bar and was kept only as asked for
_TOP_KEYS = ("schema_version", "target", "created", "hardware", "runtime", "space", "method", "reference",
             "predictor", "calibration", "models", "entries", "deployment", "build", "checksum")
# "adapted" marks a table made from another by ``effnas table adapt``: its source's blocks and calibration
# predict at the source's batch, and a transfer fitted on this machine's networks maps that to its own.
_OPTIONAL_KEYS = ("adapted",)
BUILD_HINT = "effnas table build --target {target}"


def list_tables(directory: Path | None = None) -> list[str]:
    """Table names in ``directory``, or every name ``--target`` finds: the user's and the shipped ones."""
    folders = [directory] if directory is not None else [user_tables_dir(), SHIPPED_TABLES_DIR]
    # a table its own check refused is kept beside as NAME.rejected.json, to read by path, not to search with
    return sorted({p.stem for d in folders for p in d.glob("*.json") if not p.stem.endswith(REJECTED)})


def _is_path(text: str) -> bool:
    return text.endswith(".json") or os.sep in text or "/" in text


def table_path(name_or_path: str | os.PathLike) -> Path:
    """Where a new table for ``--target`` is written: itself if it ends in ``.json`` or holds a path
    separator, else ``NAME.json`` in the user's tables folder (``EFFNAS_HOME``), never the installed
    package. Whether it exists is the caller's question (a build wants it not to)."""
    text = str(name_or_path)
    path = Path(text) if _is_path(text) else user_tables_dir() / f"{text}.json"
    refuse_package_path(path, "a table")
    return path


def table_source(path: Path) -> str:
    """Where a table file comes from, as ``table list`` says it: ``user``, ``shipped`` or its path."""
    folder = path.resolve().parent
    if folder == user_tables_dir().resolve():
        return "user"
    return "shipped" if folder == SHIPPED_TABLES_DIR.resolve() else str(path)


def resolve_table_path(name_or_path: str | os.PathLike) -> Path:
    """A ``--target``: a path to a table file, or a name looked up in the user's tables folder first,
    then among the tables shipped with effvit-nas."""
    text = str(name_or_path)
    if _is_path(text):
        if Path(text).is_file():
            return Path(text)
        raise UnknownNameError(f"table file must exist, but {text!r} was not found; build it with "
                               f"{BUILD_HINT.format(target=text)}")
    for folder in (user_tables_dir(), SHIPPED_TABLES_DIR):
        if (folder / f"{text}.json").is_file():
            return folder / f"{text}.json"
    raise UnknownNameError(unknown_target_message(text))


def unknown_target_message(name: str) -> str:
    """One line for a ``--target`` that names no table: the tables there are, those measured on a machine
    like this one, and the two commands that make the table on the machine it names."""
    here = matching_tables()
    matching = f"; measured on this machine's CPU and runtime: {', '.join(here)}" if here else ""
    return (f"target must be a latency table, but {name!r} is none of those here "
            f"({', '.join(list_tables()) or 'none'}){matching}; to make {name!r}, run on the machine it names "
            f"effnas table adapt --from {DEFAULT_SOURCE} --target {name} (about a minute) or "
            f"{BUILD_HINT.format(target=name)} (in full, 5-10 minutes)")


def matching_tables() -> list[str]:
    """Tables measured on a CPU like this one (model, cores, architecture) with a runtime installed here.

    Read from the files and the import system only: GPU tables are left out (telling GPUs apart needs
    the GPU's runtime started), so this stays instant."""
    from .runtimes import RUNTIMES, cpu_info, runtime_class

    here = cpu_info()
    runtime_class("onnxruntime")  # loads the runtime plug-ins (their libraries are not imported)
    found = []
    for name in list_tables():
        try:
            data = json.loads(resolve_table_path(name).read_text())
            hardware, runtime = data["hardware"], data["runtime"]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged file is refused when it is used; here it is simply no match
        cls = RUNTIMES.get(runtime.get("runtime"))
        if (runtime.get("device") == "cpu" and cls is not None and cls.installed()
                and all(hardware.get(f) == here[f] for f in ("cpu_model", "cores", "machine"))):
            found.append(name)
    return found


def content_checksum(data: dict[str, Any], leave_out: tuple[str, ...] = ("checksum",)) -> str:
    body = {k: v for k, v in data.items() if k not in leave_out}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def predictor_signature() -> dict[str, Any]:
    """What the code that reads a table expects of it: the key walker's and evaluator's versions,
    and the feature names each block model and the calibration take, in order."""
    return {"keys_version": KEYS_VERSION, "evaluator_version": EVALUATOR_VERSION,
            "block_features": {kind: list(cls.feature_names) for kind, cls in KEY_KINDS.items()},
            "calibration_features": list(CALIBRATION_FEATURES)}


def residuals_needed(confidence: float) -> int:
    """The fewest residuals ``ratio_quantile`` takes at ``confidence``: ceil((n + 1) c) <= n."""
    return math.ceil(Fraction(str(confidence)) / (1 - Fraction(str(confidence))))


class LatencyTable:
    """A loaded (or freshly built) table. Construct with ``load`` or ``from_dict``."""

    def __init__(self, data: dict[str, Any], path: Path | None = None) -> None:
        self.data = data
        self.path = path
        self.entries = {k: Timing(**v) for k, v in data["entries"].items()}
        self.models = {kind: BlockModel.from_dict(m) for kind, m in data["models"].items()}
        self.calibration = Calibration.from_dict(data["calibration"])
        self.transfer = Transfer.from_dict(data["adapted"]["transfer"]) if "adapted" in data else None
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
            older = " (an earlier effvit-nas's, whose figures are not the fast state)" if version == 1 else ""
            raise TableError(f"table {str(path)!r} must have schema_version {TABLE_SCHEMA_VERSION}, but has "
                             f"{version!r}{older}; {hint}")
        if not set(_TOP_KEYS) <= set(data) <= set(_TOP_KEYS + _OPTIONAL_KEYS):
            raise TableError(f"table {str(path)!r} must have exactly the keys {list(_TOP_KEYS)} (and optionally "
                             f"{list(_OPTIONAL_KEYS)}), but has {sorted(data)}; {hint}")
        if data["checksum"] != content_checksum(data):
            raise TableError(f"table {str(path)!r} must match its checksum, but its content was edited or "
                             f"corrupted; {hint}")
        _check_predictor(data, path, hint)
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

    @cached_property
    def table_id(self) -> str:
        """Target plus a hash of what was measured and fitted: what search results and validation
        reports record to say which table they used.

        The hash leaves out ``predictor``, which describes the code that reads the table, not the
        table: so a table that gained the field later keeps the id its results recorded (for a
        table without it, the id is the first 12 digits of its checksum, as it always was)."""
        return f"{self.target}@{content_checksum(self.data, leave_out=('checksum', 'predictor'))[:12]}"

    @cached_property
    def runtime(self) -> RuntimeConfig:
        settings = {k: v for k, v in self.data["runtime"].items() if k not in ("version", "settings")}
        return RuntimeConfig(**settings)

    @cached_property
    def space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.data["space"]["choices"], where=f"table {self.target!r} space")

    @property
    def reference_ms(self) -> float:
        """The reference network (M0) in the build's block sweeps, in this process."""
        return self.data["reference"]["latency_ms"]

    @property
    def deployment_reference_ms(self) -> float:
        """The reference network (M0) under the deployment rule during the build: what a measurement here
        compares its own reference with (``reference_ratio``)."""
        return self.data["deployment"]["reference"]["latency_ms"]

    def reference_ratio(self, reference_now_ms: float) -> float:
        """The reference now over the reference in the build: 1 when this machine's fast state is the one
        the table describes. Reported beside every judged figure, never divided out of it."""
        return reference_now_ms / self.deployment_reference_ms

    @property
    def reference_arch(self) -> Arch:
        return Arch.from_dict(self.data["reference"]["arch"])

    def missing_choices(self, space: SearchSpace) -> list[str]:
        """The choices of ``space`` this table's space lacks (their blocks were never measured)."""
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
        return problems

    def covers(self, space: SearchSpace) -> bool:
        return not self.missing_choices(space)

    def check_covers(self, space: SearchSpace) -> None:
        """Refuse a space with any choice the table's space lacks: its blocks were never measured."""
        problems = self.missing_choices(space)
        if problems:
            raise TableError(
                f"table {self.target!r} must cover the search space {space.name!r}, but it was built for "
                f"{self.space.name!r} and lacks {'; '.join(problems)}; build one for this space with "
                f"effnas table build --target NAME --space YAML"
            )

    def check_hardware(self, current: dict[str, Any], fields: tuple[str, ...] = ("cpu_model", "cores", "machine")
                       ) -> None:
        """Refuse to compare measurements on a machine other than the one the table was measured on;
        ``fields`` are what the runtime's latency depends on (``Runtime.identity_fields``)."""
        recorded = self.data["hardware"]
        diffs = [f"{f} {recorded.get(f)!r} vs here {current.get(f)!r}"
                 for f in fields if recorded.get(f) != current.get(f)]
        if diffs:
            raise TableError(
                f"table {self.target!r} must be used on the hardware it was measured on, but {'; '.join(diffs)}; "
                f"measure this machine with effnas table build --target NAME"
            )

    # ---------------------------------------------------------------- how far a prediction holds
    @property
    def check_passed(self) -> bool:
        """Whether the table met its bar on the networks it held out when it was made."""
        return self.data["deployment"]["check"]["passed"]

    def check_status(self) -> str:
        """Its own check in a few words, for ``table list`` and wherever a table that missed it is used."""
        check = self.data["deployment"]["check"]
        which = f"{check['archs']} networks {'left out in turn' if self.transfer else 'held out'}"
        if not check["passed"]:
            return f"MISSED its check on {which}: {'; '.join(check['misses'])}"
        return (f"passed its check on {which}: median error {check['median_abs_err']:.1%}, "
                f"{check['within_10pct']:.0%} within ±10%")

    def residual_ratios(self) -> list[float]:
        """measured / predicted on networks the calibration did not fit: out-of-fold calibration
        networks and the build's held-out check, sorted. What a confidence margin is read from."""
        return sorted(self.data["deployment"]["residual_ratios"])

    def ratio_quantile(self, confidence: float) -> float:
        """The factor q with measured <= q * predicted at ``confidence``, as a split-conformal bound:
        the ceil((n + 1) * confidence)-th smallest of the n residual ratios. A search that keeps the
        predicted latency under budget / q meets the budget with at least that probability on a network
        drawn like the held-out ones."""
        if not 0 < confidence < 1:
            raise TableError(f"confidence must lie between 0 and 1, but got {confidence!r}; pass e.g. 0.9")
        ratios = self.residual_ratios()
        rank = math.ceil((len(ratios) + 1) * Fraction(str(confidence)))  # exact: 25 * 0.28 is 7, not 7.000...1
        if rank > len(ratios):
            raise TableError(
                f"confidence {confidence:g} needs at least {residuals_needed(confidence)} residuals in "
                f"table {self.target!r}, but it has {len(ratios)}; lower --confidence or "
                + ("adapt it again with more networks (--networks)" if self.transfer is not None
                   else "rebuild with more calibration networks (--calibration-archs)"))
        return ratios[rank - 1]

    def probability_within(self, predicted_ms: float, budget_ms: float) -> float:
        """Chance that a network predicted at ``predicted_ms`` measures within ``budget_ms``: the share of
        residual ratios that would keep it there, out of n + 1 (the conformal count, never 1 from n points)."""
        ratios = self.residual_ratios()
        return bisect.bisect_right(ratios, budget_ms / predicted_ms) / (len(ratios) + 1)

    # ---------------------------------------------------------------- prediction
    def block_ms(self, key: BlockKey) -> float:
        cached = self._block_cache.get(key)
        if cached is None:
            entry = self.entries.get(str(key))
            cached = entry.latency_ms if entry else self.models[key.kind].predict(key.features())
            self._block_cache[key] = cached
        return cached

    @property
    def block_batch(self) -> int:
        """The batch size the blocks were measured at: the runtime's, or an adapted table's source's."""
        return self.data["adapted"]["source"]["batch_size"] if self.transfer else self.runtime.batch_size

    def block_sum_ms(self, arch: Arch) -> tuple[float, int]:
        """Plain sum of block latencies (no calibration) and the number of blocks."""
        keys = block_keys(arch, batch=self.block_batch)
        return sum(self.block_ms(k) for k in keys), len(keys)

    def transfer_inputs(self, arch: Arch) -> TransferInputs:
        """What a transfer reads of ``arch``: the calibrated prediction and the block sums per kind
        (before any transfer: an adapted table's source's figures)."""
        kind_ms: dict[str, float] = {}
        for key in block_keys(arch, batch=self.block_batch):
            kind_ms[key.kind] = kind_ms.get(key.kind, 0.0) + self.block_ms(key)
        return TransferInputs(self.calibration.apply(*self.calibration_inputs(arch)), arch.resolution, kind_ms)

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
        if self.transfer is not None:
            return self.transfer.apply(self.transfer_inputs(arch))
        return self.calibration.apply(*self.calibration_inputs(arch))

    def summary(self) -> dict[str, Any]:
        d = self.data
        return {
            "target": d["target"], "table_id": self.table_id, "created": d["created"], "hardware": d["hardware"],
            "runtime": d["runtime"], "space": {k: d["space"][k] for k in ("name", "hash")},
            "predicts": d["method"]["predicts"], "entries": len(self.entries), "own_check": self.check_status(),
            "predictor": d["predictor"], "calibration": {k: v for k, v in d["calibration"].items() if k != "points"},
            "build": d["build"],
            **({"adapted": {k: v for k, v in d["adapted"].items() if k != "points"}} if self.transfer else {}),
            "deployment": ({k: v for k, v in d["deployment"].items() if k != "residual_ratios"}
                           | {"residuals": len(d["deployment"]["residual_ratios"])}),
        }


def _check_predictor(data: dict[str, Any], path: Path, hint: str) -> None:
    """Refuse a table fitted for other keys, features or evaluator: it would load, and every
    prediction would silently be something else."""
    recorded, current = data["predictor"], predictor_signature()
    pairs = [(f, recorded.get(f), current[f]) for f in ("keys_version", "evaluator_version", "calibration_features")]
    table_kinds = recorded.get("block_features") or {}
    pairs += [(f"{kind} block features", table_kinds.get(kind), current["block_features"].get(kind))
              for kind in sorted(set(table_kinds) | set(current["block_features"]))]
    diffs = [f"{what} {theirs!r} where this effvit-nas has {ours!r}" for what, theirs, ours in pairs if theirs != ours]
    if diffs:
        wrote = data["build"].get("versions", {}).get("effvit-nas", "unknown")
        raise TableError(
            f"table {str(path)!r} must be fitted for the predictor of this effvit-nas, but it records "
            f"{'; '.join(diffs)}; {hint}, or install the effvit-nas that wrote it (version {wrote})"
        )
