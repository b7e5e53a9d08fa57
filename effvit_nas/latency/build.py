"""Build a latency table on this machine: plan the blocks a space needs, measure them, fit, calibrate.

What gets measured (not every architecture, and not every block either: the space produces tens of
thousands of distinct attention blocks once kernels are counted):

1. every stem and head key of the space (few, and cheap);
2. every key of M0–M5 and of the space's smallest and largest archs;
3. keys drawn from random archs of the space, up to a quota per kind, so the measured keys follow
   the distribution a search visits;
4. whole networks of random archs, for the calibration.

Blocks are measured in chunks, interleaved with a fixed reference network (M0). Every chunk's
entries are rescaled by (table reference / that chunk's reference), so a machine that slows down
mid-build does not leave slow and fast entries side by side. A chunk measured while the machine was
in a slow state is measured again; an entry or calibration network still measured off the usual
state after the retries is kept, rescaled, and marked ``"slow_state": true``. Each finished chunk is
appended to ``<table>.partial`` and flushed: a rerun after Ctrl-C or kill continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import PRESETS, Arch, stage_sizes
from ..errors import TableError
from ..provenance import git_revision, library_versions, utc_now
from ..space import SearchSpace
from .fit import Calibration, fit_block_model, fit_calibration
from .keys import KEY_KINDS, BlockKey, DwFfnKey, HeadKey, StemKey, block_keys, parse_key
from .measure import (
    MeasureProtocol,
    RuntimeConfig,
    Timing,
    check_at_least,
    create_runtime,
    hardware_info,
    measure_chunk,
    wait_for_speed,
)
from .table import TABLE_SCHEMA_VERSION, LatencyTable, predictor_signature

__all__ = ["BuildSettings", "build_table", "plan_keys", "plan_calibration_archs", "REFERENCE_ARCH"]

log = logging.getLogger(__name__)
REFERENCE_ARCH = "m0"  # the speed reference: fixed, whatever the space
Progress = Callable[[int, int, str], None]  # (done, total, what) -> None


@dataclass(frozen=True)
class BuildSettings:
    """How much to measure and how. The defaults measure about 1,300 blocks and 150 networks for the
    default space (docs/LATENCY.md gives the time a build took)."""

    chunk_size: int = 20  # blocks measured together (with the reference) per chunk
    network_chunk_size: int = 6  # whole networks per chunk
    max_spread: float = 0.15  # an entry whose IQR/median exceeds this is measured again ...
    max_retries: int = 2  # ... at most this many times, keeping the tightest measurement
    max_drift: float = 0.10  # a chunk whose reference is this much slower than usual is measured again
    max_wait_s: float = 120.0  # total time the build may wait for the machine to return to its usual speed
    # Blocks drawn from random archs per kind; stems, heads and DW+FFN blocks are all measured (few
    # enough, and DW+FFN latency steps where onnxruntime starts splitting an op across threads,
    # which no smooth model captures). Attention and merge keys are too many to measure them all.
    quota: tuple[tuple[str, int], ...] = (("attention", 480), ("merge", 200))
    calibration_archs: int = 150
    seed: int = 0

    protocol: MeasureProtocol = MeasureProtocol()

    def __post_init__(self) -> None:
        check_at_least("chunk_size", self.chunk_size, 1)
        check_at_least("network_chunk_size", self.network_chunk_size, 1)
        check_at_least("max_retries", self.max_retries, 0)
        check_at_least("max_spread", self.max_spread, 0, integer=False)
        check_at_least("max_drift", self.max_drift, 0, integer=False)
        check_at_least("max wait in seconds (--max-wait)", self.max_wait_s, 0, integer=False)
        # the calibration's trees learn from whole networks; fewer than 8 leave them nothing to split
        check_at_least("calibration networks (--calibration-archs)", self.calibration_archs, 8)
        check_at_least("seed (--seed)", self.seed, 0)  # numpy's seed sequences take no negative seed
        for kind, quota in self.quota:
            check_at_least(f"quota of {kind} blocks", quota, 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if k == "quota" else v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------- planning
def plan_keys(space: SearchSpace, batch: int, settings: BuildSettings) -> list[BlockKey]:
    """The blocks to measure, deterministic for (space, batch, seed)."""
    planned: dict[BlockKey, None] = {}  # an ordered set
    for res in space.resolutions:
        sizes = stage_sizes(res)
        for width in space.stages[0].widths:
            planned[StemKey(batch, res, width)] = None
        for size, stage in zip(sizes, space.stages):
            for width, ratio in product(stage.widths, stage.ffn_ratios):
                planned[DwFfnKey(batch, size, width, int(width * ratio))] = None
        for width in space.stages[-1].widths:
            planned[HeadKey(batch, sizes[-1], width, 1000)] = None
    anchors = [Arch.preset(n) for n in PRESETS] + [space.smallest(), space.largest()]
    for arch in anchors:
        if space.contains(arch):
            planned.update(dict.fromkeys(block_keys(arch, batch)))
    quota = dict(settings.quota)
    counts = {kind: sum(1 for k in planned if k.kind == kind) for kind in quota}
    rng = np.random.default_rng([settings.seed, 1])
    for _ in range(20_000):  # bounded: a small space may not have quota-many distinct keys
        if all(counts[k] >= quota[k] for k in quota):
            break
        for key in block_keys(space.sample(rng), batch):
            if key.kind in quota and counts[key.kind] < quota[key.kind] and key not in planned:
                planned[key] = None
                counts[key.kind] += 1
    return list(planned)


def plan_calibration_archs(space: SearchSpace, settings: BuildSettings) -> list[Arch]:
    """Random archs for the calibration; ``validate`` draws from another seed stream."""
    rng = np.random.default_rng([settings.seed, 2])
    archs: dict[Arch, None] = {}
    wanted = min(settings.calibration_archs, space.size())
    for _ in range(100 * wanted):  # bounded: a tiny space has few distinct archs
        if len(archs) >= wanted:
            break
        archs[space.sample(rng)] = None
    return list(archs)


# ---------------------------------------------------------------- the partial file (resume)
class PartialBuild:
    """Append-only JSON lines next to the table: a header, then one line per finished chunk."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.block_chunks: list[dict[str, Any]] = []
        self.arch_chunks: list[dict[str, Any]] = []
        if path.exists():
            self._load()
        else:
            self._append({"header": header})

    def _load(self) -> None:
        lines = self.path.read_text().splitlines()
        records = []
        for i, line in enumerate(lines):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # a kill mid-write tears only the last line; drop it
                    break
                raise TableError(f"partial build {str(self.path)!r} is corrupt at line {i + 1}; delete it "
                                 "and rerun to start over") from None
        if not records or records[0].get("header") != self.header:
            raise TableError(
                f"a partial build {str(self.path)!r} with other settings exists; rerun with the same settings "
                "to continue it, or delete it to start over"
            )
        for record in records[1:]:
            (self.block_chunks if "entries" in record else self.arch_chunks).append(record)
        # rewrite without a torn tail so appends start on a clean line
        self.path.write_text("".join(json.dumps(r) + "\n" for r in records))

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def add_blocks(self, reference_ms: float, timings: dict[str, Timing], seconds: float) -> None:
        record = {"reference_ms": reference_ms, "seconds": seconds,
                  "entries": {k: t.to_dict() for k, t in timings.items()}}
        self.block_chunks.append(record)
        self._append(record)

    def add_archs(self, reference_ms: float, timings: dict[str, Timing], archs: dict[str, Arch],
                  seconds: float) -> None:
        record = {"reference_ms": reference_ms, "seconds": seconds,
                  "archs": {k: {"arch": archs[k].to_dict(), **t.to_dict()} for k, t in timings.items()}}
        self.arch_chunks.append(record)
        self._append(record)

    def measure_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for chunk in self.block_chunks:
            for key in chunk["entries"]:
                counts[key] = counts.get(key, 0) + 1
        return counts

    def seconds(self) -> float:
        """Measuring time over every session of this build, resumed ones included."""
        return sum(c["seconds"] for c in self.block_chunks + self.arch_chunks)

    def references(self) -> list[float]:
        return [c["reference_ms"] for c in self.block_chunks + self.arch_chunks]

    def state_reference(self) -> float:
        """The machine's usual speed over this build: the 20th percentile of the chunks' reference.

        Shared machines can switch between a fast and a slow state for minutes at a time, in any
        process (docs/LATENCY.md, "Drift"). Rescaling by the reference corrects a uniform slowdown,
        but a neighbour's load does not slow every operator alike, so chunks measured far from the
        usual state are measured again rather than trusted rescaled."""
        refs = sorted(self.references())
        return refs[int(0.2 * (len(refs) - 1))]

    def slow_limit(self, max_drift: float) -> float:
        """References above this mark a chunk measured off the usual state."""
        return (1 + max_drift) * self.state_reference() if max_drift != float("inf") else float("inf")

    def off_state(self, chunk_reference_ms: float, max_drift: float) -> bool:
        return chunk_reference_ms > self.slow_limit(max_drift)

    def measured(self) -> int:
        """Distinct blocks and networks measured so far (what the progress bar counts)."""
        return len(self.measure_counts()) + len({a for c in self.arch_chunks for a in c["archs"]})

    def best_entries(self, max_drift: float = float("inf")) -> dict[str, tuple[Timing, float]]:
        """Per key, the measurement taken nearest the usual state, then the tightest."""
        limit = self.slow_limit(max_drift)
        best: dict[str, tuple[Timing, float]] = {}
        for chunk in self.block_chunks:
            ref = chunk["reference_ms"]
            for key, t in chunk["entries"].items():
                timing = Timing(**t)
                rank = (ref > limit, timing.spread)
                if key not in best or rank < (best[key][1] > limit, best[key][0].spread):
                    best[key] = (timing, ref)
        return best

    def arch_results(self, max_drift: float = float("inf")) -> dict[str, tuple[Arch, Timing, float]]:
        limit = self.slow_limit(max_drift)
        out: dict[str, tuple[Arch, Timing, float]] = {}
        for chunk in self.arch_chunks:
            ref = chunk["reference_ms"]
            for arch_id, record in chunk["archs"].items():
                if arch_id in out and not (out[arch_id][2] > limit >= ref):
                    continue  # keep the first in-state measurement
                timing = Timing(**{k: v for k, v in record.items() if k != "arch"})
                out[arch_id] = (Arch.from_dict(record["arch"]), timing, ref)
        return out


# ---------------------------------------------------------------- measuring
class _Measurer:
    def __init__(self, config: RuntimeConfig, settings: BuildSettings) -> None:
        from ..model import build_model

        self.runtime = create_runtime(config)
        self.settings = settings
        self.batch = config.batch_size
        reference = Arch.preset(REFERENCE_ARCH)
        self.reference_forward = self.runtime.prepare(
            build_model(reference).eval().fuse(), (self.batch, 3, reference.resolution, reference.resolution)
        )
        self.waited_s = 0.0

    def wait_for_usual_speed(self, usual_ms: float | None) -> None:
        if usual_ms is None:
            return
        self.waited_s += wait_for_speed(self.reference_forward, usual_ms, max_drift=self.settings.max_drift,
                                        max_wait_s=self.settings.max_wait_s - self.waited_s,
                                        statistic=self.settings.protocol.statistic)

    def blocks(self, keys: list[BlockKey]) -> tuple[float, dict[str, Timing], float]:
        from .blocks import build_block

        started = time.perf_counter()
        forwards = {str(k): self.runtime.prepare(build_block(k), k.input_shape()) for k in keys}
        return (*measure_chunk(self.reference_forward, forwards, self.settings.protocol),
                time.perf_counter() - started)

    def archs(self, archs: list[Arch]) -> tuple[float, dict[str, Timing], float]:
        from ..model import build_model

        started = time.perf_counter()
        forwards = {
            a.arch_id: self.runtime.prepare(build_model(a).eval().fuse(), (self.batch, 3, a.resolution, a.resolution))
            for a in archs
        }
        return (*measure_chunk(self.reference_forward, forwards, self.settings.protocol),
                time.perf_counter() - started)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def build_table(
    target: str,
    out_path: Path,
    config: RuntimeConfig,
    space: SearchSpace,
    settings: BuildSettings = BuildSettings(),
    progress: Progress | None = None,
) -> LatencyTable:
    """Measure, fit and calibrate; write ``out_path`` atomically; resume from ``out_path.partial``."""
    import torch

    torch.manual_seed(settings.seed)
    keys = plan_keys(space, config.batch_size, settings)
    calibration_archs = plan_calibration_archs(space, settings)
    # how long to wait for the machine may change between a run and its resume; nothing else may
    measured_with = {k: v for k, v in settings.to_dict().items() if k != "max_wait_s"}
    header = {"target": target, "runtime": config.to_dict(), "space_hash": space.content_hash,
              "settings": measured_with, "hardware": hardware_info()}
    partial = PartialBuild(out_path.with_name(out_path.name + ".partial"), header)
    measurer = _Measurer(config, settings)
    total = len(keys) + len(calibration_archs)

    def report(what: str) -> None:
        if progress:
            progress(min(partial.measured(), total), total, what)

    def usual_ms() -> float | None:
        return partial.state_reference() if len(partial.references()) >= 5 else None

    report("blocks")
    todo = [k for k in keys if str(k) not in partial.best_entries()]
    for chunk in _chunks(todo, settings.chunk_size):
        measurer.wait_for_usual_speed(usual_ms())
        partial.add_blocks(*measurer.blocks(chunk))
        report("blocks")
    drift = settings.max_drift
    for _ in range(settings.max_retries):
        best, counts = partial.best_entries(drift), partial.measure_counts()
        again = [k for k in keys if counts[str(k)] <= settings.max_retries and (
            best[str(k)][0].spread > settings.max_spread or partial.off_state(best[str(k)][1], drift))]
        if not again:
            break
        log.info("measuring %d noisy or off-state entries again", len(again))
        for chunk in _chunks(again, settings.chunk_size):
            measurer.wait_for_usual_speed(usual_ms())
            partial.add_blocks(*measurer.blocks(chunk))
            report("noisy blocks again")
    for attempt in range(settings.max_retries + 1):
        measured_archs = partial.arch_results(drift)
        todo_archs = [a for a in calibration_archs if a.arch_id not in measured_archs
                      or (attempt and partial.off_state(measured_archs[a.arch_id][2], drift))]
        if not todo_archs:
            break
        for chunk in _chunks(todo_archs, settings.network_chunk_size):
            measurer.wait_for_usual_speed(usual_ms())
            reference_ms, timings, seconds = measurer.archs(chunk)
            partial.add_archs(reference_ms, timings, {a.arch_id: a for a in chunk}, seconds)
            report("calibration networks")

    table = _finalise(target, config, measurer.runtime.version(), space, settings, partial, header["hardware"],
                      measurer.waited_s)
    table.save(out_path)
    partial.path.unlink(missing_ok=True)
    return table


def _relative_iqr(values: list[float]) -> float:
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(values)


def _finalise(target: str, config: RuntimeConfig, runtime_version: str, space: SearchSpace,
              settings: BuildSettings, partial: PartialBuild, hardware: dict, waited_s: float) -> LatencyTable:
    statistic = settings.protocol.statistic
    drift = settings.max_drift
    in_state = [r for r in partial.references() if not partial.off_state(r, drift)]
    reference_ms = statistics.median(in_state)
    entries = {}
    for key, (t, chunk_ref) in partial.best_entries(drift).items():
        scale = reference_ms / chunk_ref  # drift normalisation to the table's reference speed
        entries[key] = {"median_ms": t.median_ms * scale, "p25_ms": t.p25_ms * scale, "p75_ms": t.p75_ms * scale,
                        "samples": t.samples, **_slow_state_mark(partial, chunk_ref, drift)}
    models = {}
    for kind, cls in KEY_KINDS.items():
        rows = [(parse_key(k), e) for k, e in entries.items() if k.startswith(kind + ":")]
        features = np.array([k.features() for k, _ in rows])
        values = np.array([e[f"{statistic}_ms"] for _, e in rows])
        models[kind] = fit_block_model(cls.feature_names, features, values).to_dict()
    data: dict[str, Any] = {
        "schema_version": TABLE_SCHEMA_VERSION,
        "target": target,
        "created": utc_now(),
        "hardware": hardware,
        "runtime": {**config.to_dict(), "version": runtime_version},
        "space": {"name": space.name, "hash": space.content_hash, "choices": space.to_dict()},
        "method": {"statistic": f"{statistic} of all timed calls", "spread": "interquartile range / median",
                   "interleaved": True, "drift_normalised_to_reference": True, **settings.to_dict()},
        "predictor": predictor_signature(),
        "reference": {"arch": Arch.preset(REFERENCE_ARCH).to_dict(), "median_ms": reference_ms,
                      "chunk_min_ms": min(partial.references()), "chunk_max_ms": max(partial.references()),
                      "chunks": len(partial.references()),
                      # relative interquartile range of the in-state chunks' reference: how far the
                      # reference moves with no real change of machine speed
                      "noise": _relative_iqr(in_state),
                      "chunks_off_state": len(partial.references()) - len(in_state)},
        "calibration": Calibration().to_dict(),
        "models": models,
        "entries": entries,
        "build": {"seconds": round(partial.seconds(), 1), "waited_for_usual_speed_s": waited_s,
                  "blocks_measured": len(entries),
                  "git_revision": git_revision(), "versions": library_versions()},
    }
    uncalibrated = LatencyTable.from_dict(data)
    points = []
    for arch, t, chunk_ref in partial.arch_results(drift).values():
        block_sum, features = uncalibrated.calibration_inputs(arch)
        points.append({"arch": arch.to_dict(), "block_sum_ms": block_sum, "features": features,
                       "measured_ms": t.value(statistic) * reference_ms / chunk_ref,
                       **_slow_state_mark(partial, chunk_ref, drift)})
    calibration = fit_calibration([p["features"] for p in points], [p["block_sum_ms"] for p in points],
                                  [p["measured_ms"] for p in points], seed=settings.seed)
    data["calibration"] = {**calibration.to_dict(), "points": points}
    data["build"]["calibration_archs"] = len(points)
    data["build"]["slow_state_entries"] = sum(1 for e in entries.values() if e.get("slow_state"))
    data["build"]["slow_state_calibration_archs"] = sum(1 for p in points if p.get("slow_state"))
    return LatencyTable.from_dict(data)


def _slow_state_mark(partial: PartialBuild, chunk_reference_ms: float, max_drift: float) -> dict[str, bool]:
    """``{"slow_state": True}`` for a measurement whose chunk ran off the usual state, else nothing.

    Such a measurement is kept only when every retry found the machine slow too. It is rescaled
    like the rest, but a slow state does not slow every operator alike, so the rescaled figure is
    less trustworthy: the table says which ones they are (``effnas table show`` counts them)."""
    return {"slow_state": True} if partial.off_state(chunk_reference_ms, max_drift) else {}
