"""Build a latency table on this machine: plan the blocks a space needs, measure them, fit, calibrate.

What gets measured (not every architecture, and not every block either: the space produces tens of
thousands of distinct attention blocks once kernels are counted):

1. every stem and head key of the space (few, and cheap);
2. every key of M0–M5 and of the space's smallest and largest archs;
3. keys drawn from random archs of the space, up to a quota per kind, so the measured keys follow
   the distribution a search visits;
4. whole networks of random archs under the deployment rule (``deploy.py``: the exported file in a
   fresh process, a plain session): the calibration is fitted to them, so a prediction means the
   latency a deployment measures, not the block protocol's;
5. a few more networks the same way, held out: the build's check of itself, before it writes.

Blocks are measured in chunks, interleaved with a fixed reference network (M0) in this process;
networks in chunks interleaved with M0 deployed. Every chunk's figures are rescaled by (the build's
usual reference / that chunk's reference), so a machine that slows down mid-build does not leave
slow and fast figures side by side; a chunk measured while the machine was in a slow state is
measured again, and one still off the usual state after the retries is kept, rescaled, and marked
``"slow_state": true``. Each finished chunk is appended to ``<table>.partial`` and flushed: a rerun
after Ctrl-C or kill continues where it stopped.

The held-out networks' errors, with the calibration's out-of-fold errors, are the table's residuals
(its confidence margins). A table whose check misses the bar is not written under its name: it goes
to ``<name>.rejected.json`` and the user is told what to do.
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

from .._checks import check_at_least
from .._progress import Progress
from ..arch import PRESETS, Arch, stage_sizes
from ..errors import TableError
from ..provenance import git_revision, library_versions, utc_now
from ..space import SearchSpace
from .deploy import DeployedTiming, DeploymentRule
from .fit import Calibration, fit_block_model, fit_calibration, relative_errors
from .keys import KEY_KINDS, BlockKey, DwFfnKey, HeadKey, StemKey, block_keys, parse_key
from .measure import MeasureProtocol, Timing
from .meter import REFERENCE_ARCH, LatencyMeter
from .runtimes import Runtime, RuntimeConfig
from .table import REJECTED, TABLE_SCHEMA_VERSION, LatencyTable, predictor_signature

__all__ = ["BuildSettings", "CheckBar", "build_table", "measure_networks", "deployed_reference", "PartialBuild",
           "plan_keys", "plan_calibration_archs", "plan_check_archs",
           "REFERENCE_ARCH", "rejected_path"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckBar:
    """What the held-out networks must show for a table to be written under its name."""

    max_median_err: float = 0.05
    min_within_10pct: float = 0.75

    def misses(self, median_err: float, within_10pct: float) -> list[str]:
        return ([f"median error {median_err:.1%} > {self.max_median_err:.0%}"] if median_err > self.max_median_err
                else []) + ([f"{within_10pct:.0%} within ±10% < {self.min_within_10pct:.0%}"]
                            if within_10pct < self.min_within_10pct else [])


@dataclass(frozen=True)
class BuildSettings:
    """How much to measure and how. The defaults measure about 1,000 blocks and 56 networks for the
    default space (docs/LATENCY.md gives the time a build took)."""

    chunk_size: int = 20  # blocks measured together (with the reference) per chunk
    max_spread: float = 0.15  # an entry whose IQR/median exceeds this is measured again ...
    max_retries: int = 1  # ... at most this many times, keeping the tightest measurement
    max_drift: float = 0.10  # a chunk whose reference is this much slower than usual is measured again
    max_wait_s: float = 60.0  # total time the build may wait for the machine to return to its usual speed
    # Blocks drawn from random archs per kind; stems, heads and DW+FFN blocks are all measured (few
    # enough, and DW+FFN latency steps where onnxruntime starts splitting an op across threads,
    # which no smooth model captures). Attention and merge keys are too many to measure them all.
    quota: tuple[tuple[str, int], ...] = (("attention", 240), ("merge", 100))
    calibration_archs: int = 48  # networks timed under the deployment rule to fit the calibration
    check_archs: int = 8  # networks held out, timed the same way: the build's check of itself
    network_chunk_size: int = 8  # networks per deployment chunk (each chunk beside the reference)
    seed: int = 0

    protocol: MeasureProtocol = MeasureProtocol()
    rule: DeploymentRule = DeploymentRule(rounds=3)
    bar: CheckBar = CheckBar()

    def __post_init__(self) -> None:
        check_at_least("chunk_size", self.chunk_size, 1)
        check_at_least("network_chunk_size", self.network_chunk_size, 1)
        check_at_least("max_retries", self.max_retries, 0)
        check_at_least("max_spread", self.max_spread, 0, integer=False)
        check_at_least("max_drift", self.max_drift, 0, integer=False)
        check_at_least("max wait in seconds (--max-wait)", self.max_wait_s, 0, integer=False)
        # the calibration's trees learn from whole networks; fewer than 8 leave them nothing to split
        check_at_least("calibration networks (--calibration-archs)", self.calibration_archs, 8)
        check_at_least("held-out check networks (--check-archs)", self.check_archs, 3)
        check_at_least("seed (--seed)", self.seed, 0)  # numpy's seed sequences take no negative seed
        for kind, quota in self.quota:
            check_at_least(f"quota of {kind} blocks", quota, 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if k == "quota" else v) for k, v in asdict(self).items()}

    def measured_with(self) -> dict[str, Any]:
        """Everything that decides what a build measures: a resumed build must match it. How long to
        wait for the machine and the check's bar may change between a run and its resume."""
        return {k: v for k, v in self.to_dict().items() if k not in ("max_wait_s", "bar")}


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


def _random_archs(space: SearchSpace, stream: int, seed: int, wanted: int, leave_out: set[Arch]) -> list[Arch]:
    rng = np.random.default_rng([seed, stream])
    archs: dict[Arch, None] = {}
    for _ in range(100 * wanted):  # bounded: a tiny space has few distinct archs
        if len(archs) >= wanted:
            break
        arch = space.sample(rng)
        if arch not in leave_out:
            archs[arch] = None
    return list(archs)


def plan_calibration_archs(space: SearchSpace, settings: BuildSettings) -> list[Arch]:
    """Random archs for the calibration; ``validate`` draws from another seed stream."""
    return _random_archs(space, 2, settings.seed, min(settings.calibration_archs, space.size()), set())


def plan_check_archs(space: SearchSpace, settings: BuildSettings) -> list[Arch]:
    """Random archs the calibration never sees, for the build's check of itself."""
    return _random_archs(space, 4, settings.seed, settings.check_archs, set(plan_calibration_archs(space, settings)))


def rejected_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.stem + REJECTED + ".json")


# ---------------------------------------------------------------- the partial file (resume)
def _usual(references: list[float]) -> float:
    """The machine's usual speed over a build: the 20th percentile of the chunks' reference.

    Shared machines can switch between a fast and a slow state for minutes at a time, in any
    process (docs/LATENCY.md, "Drift"). Rescaling by the reference corrects a uniform slowdown,
    but a neighbour's load does not slow every operator alike, so chunks measured far from the
    usual state are measured again rather than trusted rescaled."""
    refs = sorted(references)
    return refs[int(0.2 * (len(refs) - 1))]


def _limit(references: list[float], max_drift: float) -> float:
    """References above this mark a chunk measured off the usual state."""
    return (1 + max_drift) * _usual(references) if references and max_drift != float("inf") else float("inf")


class PartialBuild:
    """Append-only JSON lines next to the table: a header, then one line per finished chunk (of
    blocks, timed in this process, or of networks, timed under the deployment rule)."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.block_chunks: list[dict[str, Any]] = []
        self.network_chunks: list[dict[str, Any]] = []
        if path.exists():
            self._load()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)  # a first table in a new EFFNAS_HOME
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
            (self.block_chunks if "entries" in record else self.network_chunks).append(record)
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

    def add_networks(self, role: str, reference_ms: float, reference_rounds_ms: list[float],
                     networks: dict[str, tuple[Arch, DeployedTiming]], seconds: float) -> None:
        record = {"role": role, "reference_ms": reference_ms, "reference_rounds_ms": reference_rounds_ms,
                  "seconds": seconds,
                  "networks": {k: {"arch": a.to_dict(), **t.to_dict()} for k, (a, t) in networks.items()}}
        self.network_chunks.append(record)
        self._append(record)

    def measure_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for chunk in self.block_chunks:
            for key in chunk["entries"]:
                counts[key] = counts.get(key, 0) + 1
        return counts

    def seconds(self) -> float:
        """Measuring time over every session of this build, resumed ones included."""
        return sum(c["seconds"] for c in self.block_chunks + self.network_chunks)

    def block_references(self) -> list[float]:
        return [c["reference_ms"] for c in self.block_chunks]

    def network_references(self) -> list[float]:
        return [c["reference_ms"] for c in self.network_chunks]

    def measured(self) -> int:
        """Distinct blocks and networks measured so far (what the progress bar counts)."""
        return len(self.measure_counts()) + len({a for c in self.network_chunks for a in c["networks"]})

    def best_entries(self, max_drift: float = float("inf")) -> dict[str, tuple[Timing, float]]:
        """Per key, the measurement taken nearest the usual state, then the tightest."""
        limit = _limit(self.block_references(), max_drift)
        best: dict[str, tuple[Timing, float]] = {}
        for chunk in self.block_chunks:
            ref = chunk["reference_ms"]
            for key, t in chunk["entries"].items():
                timing = Timing(**t)
                rank = (ref > limit, timing.spread)
                if key not in best or rank < (best[key][1] > limit, best[key][0].spread):
                    best[key] = (timing, ref)
        return best

    def networks(self, role: str) -> dict[str, tuple[Arch, DeployedTiming, float]]:
        """Per network of ``role``: (arch, timing, its chunk's reference). Networks are measured once
        (``measure_networks``), so each appears in one chunk."""
        out: dict[str, tuple[Arch, DeployedTiming, float]] = {}
        for chunk in self.network_chunks:
            if chunk["role"] != role:
                continue
            ref = chunk["reference_ms"]
            for arch_id, record in chunk["networks"].items():
                timing = DeployedTiming(record["median_ms"], record["p25_ms"], record["p90_ms"],
                                        tuple(record["rounds_ms"]), record["relative"])
                out[arch_id] = (Arch.from_dict(record["arch"]), timing, ref)
        return out


# ---------------------------------------------------------------- measuring
def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _measure_blocks(meter: LatencyMeter, partial: PartialBuild, keys: list[BlockKey], settings: BuildSettings,
                    report: Callable[[str], None]) -> None:
    def usual_ms() -> float | None:
        refs = partial.block_references()
        return _usual(refs) if len(refs) >= 5 else None

    todo = [k for k in keys if str(k) not in partial.best_entries()]
    for chunk in _chunks(todo, settings.chunk_size):
        meter.wait_for_usual_speed(usual_ms())
        partial.add_blocks(*meter.blocks(chunk))
        report("blocks")
    drift = settings.max_drift
    for _ in range(settings.max_retries):
        best, counts = partial.best_entries(drift), partial.measure_counts()
        limit = _limit(partial.block_references(), drift)
        again = [k for k in keys if counts[str(k)] <= settings.max_retries and (
            best[str(k)][0].spread > settings.max_spread or best[str(k)][1] > limit)]
        if not again:
            break
        log.info("measuring %d noisy or off-state entries again", len(again))
        for chunk in _chunks(again, settings.chunk_size):
            meter.wait_for_usual_speed(usual_ms())
            partial.add_blocks(*meter.blocks(chunk))
            report("noisy blocks again")


def measure_networks(meter: LatencyMeter, partial: PartialBuild, role: str, archs: list[Arch],
                      settings: BuildSettings, report: Callable[[str], None]) -> None:
    """``archs`` under the deployment rule, in chunks beside the reference. No chunk is measured
    again: a deployed network's rounds already spread over the machine's states, and the one
    reference figure a chunk has is too noisy to call it off-state (docs/LATENCY.md, "Drift")."""
    done = partial.networks(role)
    todo = [a for a in archs if a.arch_id not in done]
    for chunk in _chunks(todo, settings.network_chunk_size):
        started = time.perf_counter()
        files = meter.export_archs(chunk)
        measured, failures = meter.networks(files, seed=len(partial.network_chunks))
        if failures:
            arch_id, reason = next(iter(failures.items()))
            raise TableError(f"every network must run under the deployment rule, but {len(failures)} of this "
                             f"chunk failed (first {arch_id}: {reason}); check the runtime with a smaller "
                             "--batch-size, or report it")
        first = next(iter(measured.values()))
        partial.add_networks(role, first.reference_ms, list(first.reference_rounds_ms),
                             {a.arch_id: (a, measured[a.arch_id].timing) for a in chunk}, time.perf_counter() - started)
        report(f"{role} networks, deployed")


class TableBelowBar(TableError):
    """The build's held-out networks missed the bar; the table went to ``<name>.rejected.json``."""


def build_table(
    target: str,
    out_path: Path,
    config: RuntimeConfig,
    space: SearchSpace,
    settings: BuildSettings = BuildSettings(),
    progress: Progress | None = None,
    *,
    accept_below_bar: bool = False,
) -> LatencyTable:
    """Measure, fit and calibrate, check on held-out networks; write ``out_path`` atomically (or
    ``<name>.rejected.json`` and raise ``TableBelowBar``, unless ``accept_below_bar``: then the table
    is written and says that it missed); resume from ``out_path.partial``."""
    import torch

    torch.manual_seed(settings.seed)
    keys = plan_keys(space, config.batch_size, settings)
    calibration_archs = plan_calibration_archs(space, settings)
    check_archs = plan_check_archs(space, settings)
    total = len(keys) + len(calibration_archs) + len(check_archs)
    with LatencyMeter(config, protocol=settings.protocol, rule=settings.rule, chunk_size=settings.network_chunk_size,
                      max_drift=settings.max_drift, max_wait_s=settings.max_wait_s) as meter:
        hardware = meter.runtime.hardware()
        header = {"target": target, "runtime": config.to_dict(), "space_hash": space.content_hash,
                  "settings": settings.measured_with(), "hardware": hardware,
                  "runtime_settings": meter.runtime.measurement_settings()}
        partial = PartialBuild(out_path.with_name(out_path.name + ".partial"), header)

        def report(what: str) -> None:
            if progress:
                progress(min(partial.measured(), total), total, what)

        report("blocks")
        _measure_blocks(meter, partial, keys, settings, report)
        measure_networks(meter, partial, "calibration", calibration_archs, settings, report)
        measure_networks(meter, partial, "check", check_archs, settings, report)
        table = _finalise(target, config, meter.runtime, space, settings, partial, hardware, meter.waited_s)
    check = table.data["deployment"]["check"]
    if not check["passed"] and not accept_below_bar:
        rejected = table.save(rejected_path(out_path))
        partial.path.unlink(missing_ok=True)
        raise TableBelowBar(
            f"a table must predict its {check['archs']} held-out networks within the bar, but {target!r} missed it "
            f"({'; '.join(check['misses'])}); it was not written, the measured table is at {str(rejected)!r}; "
            "rebuild on a quiet machine, or with more networks (--calibration-archs 96)"
        )
    table.save(out_path)
    partial.path.unlink(missing_ok=True)
    return table


def _relative_iqr(values: list[float]) -> float:
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(values)


def _slow_state_mark(references: list[float], chunk_reference_ms: float, max_drift: float) -> dict[str, bool]:
    """``{"slow_state": True}`` for a measurement whose chunk ran off the usual state, else nothing.

    Such a measurement is kept only when every retry found the machine slow too. It is rescaled
    like the rest, but a slow state does not slow every operator alike, so the rescaled figure is
    less trustworthy: the table says which ones they are (``effnas table show`` counts them)."""
    return {"slow_state": True} if chunk_reference_ms > _limit(references, max_drift) else {}


def _reference_summary(references: list[float], max_drift: float) -> dict[str, Any]:
    in_state = [r for r in references if r <= _limit(references, max_drift)]
    return {"median_ms": statistics.median(in_state), "chunk_min_ms": min(references),
            "chunk_max_ms": max(references), "chunks": len(references),
            # relative interquartile range of the in-state chunks' reference: how far the
            # reference moves with no real change of machine speed
            "noise": _relative_iqr(in_state), "chunks_off_state": len(references) - len(in_state)}


def deployed_reference(partial: PartialBuild, max_drift: float) -> dict[str, Any]:
    """The reference network under the deployment rule over a build: the median of every round it ran in
    (the scale ``validate`` and ``verify`` compare with), and how much its chunks moved."""
    return {**_reference_summary(partial.network_references(), max_drift),
            "median_ms": statistics.median(r for c in partial.network_chunks for r in c["reference_rounds_ms"])}


def _block_entries(partial: PartialBuild, reference_ms: float, max_drift: float) -> dict[str, dict[str, Any]]:
    references = partial.block_references()
    entries = {}
    for key, (t, chunk_ref) in partial.best_entries(max_drift).items():
        scale = reference_ms / chunk_ref  # drift normalisation to the table's reference speed
        entries[key] = {"median_ms": t.median_ms * scale, "p25_ms": t.p25_ms * scale, "p75_ms": t.p75_ms * scale,
                        "samples": t.samples, **_slow_state_mark(references, chunk_ref, max_drift)}
    return entries


def _out_of_fold_ratios(points: list[dict[str, Any]], seed: int, folds: int = 5) -> list[float]:
    """measured / predicted for each calibration network, predicted by a calibration fitted without it."""
    ratios = []
    for fold in range(folds):
        train = [p for i, p in enumerate(points) if i % folds != fold]
        held = [p for i, p in enumerate(points) if i % folds == fold]
        if not held or len(train) < 4:
            continue
        model = fit_calibration([p["features"] for p in train], [p["block_sum_ms"] for p in train],
                                [p["measured_ms"] for p in train], seed=seed)
        ratios += [p["measured_ms"] / model.apply(p["block_sum_ms"], p["features"]) for p in held]
    return ratios


def _finalise(target: str, config: RuntimeConfig, runtime: Runtime, space: SearchSpace,
              settings: BuildSettings, partial: PartialBuild, hardware: dict, waited_s: float) -> LatencyTable:
    statistic, drift = settings.protocol.statistic, settings.max_drift
    block_reference = _reference_summary(partial.block_references(), drift)
    entries = _block_entries(partial, block_reference["median_ms"], drift)
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
        "runtime": {**config.to_dict(), "version": runtime.version(), "settings": runtime.measurement_settings()},
        "space": {"name": space.name, "hash": space.content_hash, "choices": space.to_dict()},
        "method": {"statistic": f"{statistic} of all timed calls", "spread": "interquartile range / median",
                   "interleaved": True, "drift_normalised_to_reference": True, **settings.to_dict()},
        "predictor": predictor_signature(),
        "reference": {"arch": Arch.preset(REFERENCE_ARCH).to_dict(), **block_reference},
        "calibration": Calibration().to_dict(),
        "models": models,
        "entries": entries,
        "build": {"seconds": round(partial.seconds(), 1), "waited_for_usual_speed_s": waited_s,
                  "blocks_measured": len(entries),
                  "git_revision": git_revision(), "versions": library_versions()},
    }
    uncalibrated = LatencyTable.from_dict(data)
    network_refs = partial.network_references()
    deployed = deployed_reference(partial, drift)

    def point(arch: Arch, timing: DeployedTiming, chunk_ref: float) -> dict[str, Any]:
        # The median of the network's rounds, as measured. Rescaling by its chunk's reference, or by
        # the reference in each round, added that one figure's noise to every network and fitted
        # worse out of fold on a machine whose speed moves within seconds (docs/LATENCY.md, "Drift"):
        # over the build's rounds both sample the machine's states alike, and the table's
        # deployed reference is the median of all its rounds, the scale ``validate`` compares with.
        block_sum, features = uncalibrated.calibration_inputs(arch)
        return {"arch": arch.to_dict(), "block_sum_ms": block_sum, "features": features,
                "measured_ms": timing.median_ms, "per_round_relative": timing.relative,
                "p90_ms": timing.p90_ms, **_slow_state_mark(network_refs, chunk_ref, drift)}

    points = [point(*n) for n in partial.networks("calibration").values()]
    calibration = fit_calibration([p["features"] for p in points], [p["block_sum_ms"] for p in points],
                                  [p["measured_ms"] for p in points], seed=settings.seed)
    data["calibration"] = {**calibration.to_dict(), "points": points}
    checks = [point(*n) for n in partial.networks("check").values()]
    for p in checks:
        p["predicted_ms"] = calibration.apply(p["block_sum_ms"], p["features"])
    data["deployment"] = _deployment_record(settings, deployed, points, checks)
    data["build"]["calibration_archs"] = len(points)
    data["build"]["slow_state_entries"] = sum(1 for e in entries.values() if e.get("slow_state"))
    data["build"]["slow_state_calibration_archs"] = sum(1 for p in points if p.get("slow_state"))
    return LatencyTable.from_dict(data)


def _deployment_record(settings: BuildSettings, reference: dict[str, Any], points: list[dict[str, Any]],
                       checks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the predictions mean (the deployment rule and its reference) and how well they held."""
    from .fit import error_stats

    predicted, measured = [p["predicted_ms"] for p in checks], [p["measured_ms"] for p in checks]
    stats = error_stats(predicted, measured)
    misses = settings.bar.misses(stats["median_abs_err"], stats["within_10pct"])
    out_of_fold = _out_of_fold_ratios(points, settings.seed)
    return {
        "rule": settings.rule.to_dict(),
        "reference": reference,
        "residual_ratios": sorted(out_of_fold + [m / p for p, m in zip(predicted, measured)]),
        "residual_sources": {"out_of_fold_calibration": len(out_of_fold), "held_out_check": len(checks)},
        "check": {"archs": len(checks), **stats, "errors": [float(e) for e in relative_errors(predicted, measured)],
                  "bar": asdict(settings.bar), "misses": misses, "passed": not misses,
                  "arch_ids": [Arch.from_dict(p["arch"]).arch_id for p in checks]},
    }
