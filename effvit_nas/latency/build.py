"""Build a latency table on this machine: plan the blocks a space needs, measure them, fit, calibrate.

What gets measured (not every architecture, and not every block either: the space produces tens of
thousands of distinct attention blocks once kernels are counted):

1. every stem and head key of the space (few, and cheap);
2. every key of M0–M5 and of the space's smallest and largest archs;
3. keys drawn from random archs of the space, up to a quota per kind, so the measured keys follow
   the distribution a search visits;
4. whole networks of random archs under the deployment rule (``deploy.py``: the exported file in a
   process of its own, a plain session): the calibration is fitted to them, so a prediction means the
   latency a deployment measures, not the block protocol's;
5. more networks the same way, held out: the build's check of itself, before it writes.

Everything is timed by the sweeps of ``measure.py``: the blocks side by side in this process, visited
in short bursts over a window (``LatencyMeter.blocks``); the networks all in one window of the
deployment rule beside the reference. Every figure is the fast state (the 2nd percentile of burst
medians), so no figure is rescaled, retried or waited for: a state the machine passes through is met
by every block and network alike. How far the machine moved during each window is recorded in the
table (``build.machine``). Each finished sweep of blocks, and the networks' window, is appended to
``<table>.partial`` and flushed: a rerun after Ctrl-C or kill continues where it stopped.

The held-out networks' errors, with the calibration's out-of-fold errors, are the table's residuals
(its confidence margins). A table whose check misses the bar is not written under its name: it goes
to ``<name>.rejected.json`` and the user is told what to do.
"""

from __future__ import annotations

import json
import logging
import os
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
from .deploy import DeploymentRule
from .fit import Calibration, error_stats, fit_block_model, fit_calibration, relative_errors
from .keys import KEY_KINDS, BlockKey, DwFfnKey, HeadKey, StemKey, block_keys, parse_key
from .measure import SweepProtocol, Timing
from .meter import BLOCK_SWEEPS, REFERENCE, REFERENCE_ARCH, LatencyMeter, NetworkRun
from .runtimes import Runtime, RuntimeConfig
from .table import REJECTED, TABLE_SCHEMA_VERSION, LatencyTable, predictor_signature

__all__ = ["BuildSettings", "CheckBar", "build_table", "PartialBuild", "plan_keys", "plan_calibration_archs",
           "plan_check_archs", "REFERENCE_ARCH", "rejected_path", "PREDICTS", "network_record",
           "TableBelowBar", "machine_over"]

log = logging.getLogger(__name__)

# What every table says its predictions are (``method.predicts``), in a user's words.
PREDICTS = ("the fast state of this machine: the 2nd percentile of a deployed network's burst medians, each "
            "burst 25 ms of back-to-back calls in a plain session at the table's threads and batch, bursts "
            "spread over a window of at least a minute (docs/LATENCY.md)")


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
    """How much to measure and how. The defaults measure about 1,000 blocks and 68 networks for the
    default space (docs/BENCHMARKS.md gives the time a build took)."""

    # Blocks drawn from random archs per kind; stems, heads and DW+FFN blocks are all measured (few
    # enough, and DW+FFN latency steps where onnxruntime starts splitting an op across threads,
    # which no smooth model captures). Attention and merge keys are too many to measure them all.
    quota: tuple[tuple[str, int], ...] = (("attention", 240), ("merge", 100))
    calibration_archs: int = 48  # networks timed under the deployment rule to fit the calibration
    check_archs: int = 20  # networks held out, timed the same way: the build's check of itself (20: a 75% bar
    # judged on 8 moves in steps of 12.5 points)
    seed: int = 0

    blocks: SweepProtocol = BLOCK_SWEEPS
    rule: DeploymentRule = DeploymentRule()
    bar: CheckBar = CheckBar()

    def __post_init__(self) -> None:
        # the calibration is a fit of 8 features to whole networks: fewer networks than that cannot fix it
        check_at_least("calibration networks (--calibration-archs)", self.calibration_archs, 8)
        check_at_least("held-out check networks (--check-archs)", self.check_archs, 3)
        check_at_least("seed (--seed)", self.seed, 0)  # numpy's seed sequences take no negative seed
        for kind, quota in self.quota:
            check_at_least(f"quota of {kind} blocks", quota, 0)

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if k == "quota" else v) for k, v in asdict(self).items()}

    def measured_with(self) -> dict[str, Any]:
        """Everything that decides what a build measures: a resumed build must match it (the check's bar
        may change between a run and its resume)."""
        return {k: v for k, v in self.to_dict().items() if k != "bar"}


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
class PartialBuild:
    """Append-only JSON lines next to the table: a header, then one line per finished sweep of blocks
    (each block's burst median in it) and one per finished window of networks."""

    def __init__(self, path: Path, header: dict[str, Any]) -> None:
        self.path = path
        self.header = header
        self.block_sweeps: list[dict[str, Any]] = []
        self.network_windows: list[dict[str, Any]] = []
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
                if i < len(lines) - 1:
                    raise TableError(f"partial build {str(self.path)!r} is corrupt at line {i + 1}; delete it "
                                     "and run the build again") from None
                # the last line torn by a kill mid-write: what came before it stands, the rest is measured again
                self.path.write_text("".join(line + "\n" for line in lines[:-1]))
        if not records or records[0].get("header") != self.header:
            raise TableError(
                f"a partial build {str(self.path)!r} with other settings exists; rerun with the same settings "
                "to resume it, or delete it to start over")
        for record in records[1:]:
            (self.block_sweeps if "sweep" in record else self.network_windows).append(record)

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def add_block_sweep(self, medians: dict[str, float], seconds: float) -> None:
        record = {"sweep": {k: round(v, 6) for k, v in medians.items()}, "seconds": seconds}
        self.block_sweeps.append(record)
        self._append(record)

    def block_bursts(self) -> dict[str, list[float]]:
        bursts: dict[str, list[float]] = {}
        for record in self.block_sweeps:
            for key, median in record["sweep"].items():
                bursts.setdefault(key, []).append(median)
        return bursts

    def block_seconds(self) -> float:
        return sum(r["seconds"] for r in self.block_sweeps)

    def add_networks(self, role: str, archs: dict[str, Arch], run: NetworkRun) -> None:
        record = {"role": role, "seconds": run.seconds, "machine": run.machine(),
                  "references": [r.to_dict() for r in run.references],
                  "networks": {k: {"arch": archs[k].to_dict(), **run.timings[k].to_dict()} for k in run.timings}}
        self.network_windows.append(record)
        self._append(record)

    def networks(self, role: str) -> dict[str, tuple[Arch, Timing]]:
        return {arch_id: (Arch.from_dict(r["arch"]), Timing(**{k: v for k, v in r.items() if k != "arch"}))
                for w in self.network_windows if w["role"] == role for arch_id, r in w["networks"].items()}

    def seconds(self) -> float:
        return self.block_seconds() + sum(w["seconds"] for w in self.network_windows)


# ---------------------------------------------------------------- measuring
def measure_networks(meter: LatencyMeter, partial: PartialBuild, roles: dict[str, list[Arch]],
                     report: Callable[[str], None]) -> None:
    """Every role's archs under the deployment rule, in one window beside the reference (skipped when an
    interrupted run finished it). A network that fails to run stops the build: its figure is missing."""
    if all(partial.networks(role) for role in roles):
        return
    archs = {a.arch_id: a for role_archs in roles.values() for a in role_archs}
    run = meter.archs(archs, progress=lambda w, windows, what: report(f"networks, {what}"))
    if run.failures:
        arch_id, reason = next(iter(run.failures.items()))
        raise TableError(f"every network must run under the deployment rule, but {len(run.failures)} failed "
                         f"(first {arch_id}: {reason}); check the runtime with a smaller --batch-size, or report it")
    for role, role_archs in roles.items():
        ids = {a.arch_id for a in role_archs}
        partial.add_networks(role, archs, NetworkRun({k: t for k, t in run.timings.items() if k in ids},
                                                     run.references, seconds=run.seconds / len(roles)))


class TableBelowBar(TableError):
    """The held-out networks missed the bar; the table went to ``<name>.rejected.json``."""


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
    with LatencyMeter(config, rule=settings.rule, block_protocol=settings.blocks) as meter:
        hardware = meter.runtime.hardware()
        header = {"target": target, "runtime": config.to_dict(), "space_hash": space.content_hash,
                  "settings": settings.measured_with(), "hardware": hardware,
                  "runtime_settings": meter.runtime.measurement_settings()}
        partial = PartialBuild(out_path.with_name(out_path.name + ".partial"), header)
        steps = len(keys) + settings.blocks.min_bursts + 2

        def report(what: str, done: int | None = None) -> None:
            if progress:
                sweeps = len(partial.block_sweeps)
                progress(min(done if done is not None else len(keys) + sweeps + len(partial.network_windows),
                             steps - 1), steps, what)

        blocks = settings.blocks
        if len(partial.block_sweeps) < blocks.min_bursts or partial.block_seconds() < blocks.min_seconds:
            meter.blocks(keys, seed=settings.seed, bursts_so_far=partial.block_bursts(),
                         seconds_so_far=partial.block_seconds(),
                         prepared=lambda d, t: report("blocks: sessions", d) if d % 20 == 0 else None,
                         on_sweep=lambda medians, secs: (partial.add_block_sweep(medians, secs),
                                                         report(f"blocks: sweep {len(partial.block_sweeps)}")))
        measure_networks(meter, partial, {"calibration": calibration_archs, "check": check_archs}, report)
        table = _finalise(target, config, meter.runtime, space, settings, partial, hardware)
    check = table.data["deployment"]["check"]
    if not check["passed"] and not accept_below_bar:
        rejected = table.save(rejected_path(out_path))
        partial.path.unlink(missing_ok=True)
        raise TableBelowBar(
            f"a table must predict its {check['archs']} held-out networks within the bar, but {target!r} missed it "
            f"({'; '.join(check['misses'])}); it was not written, the measured table is at {str(rejected)!r}; "
            "build it again (the machine moved "
            f"{table.data['build']['machine']['networks']['moved']:.2f}x while its networks were timed), or with "
            "more networks (--calibration-archs 96), or keep it with --accept-below-bar"
        )
    table.save(out_path)
    partial.path.unlink(missing_ok=True)
    return table


# ---------------------------------------------------------------- fitting
def network_record(arch: Arch, timing: Timing, table: LatencyTable) -> dict[str, Any]:
    """A network timed under the deployment rule, as a table stores it beside what its blocks sum to."""
    block_sum, features = table.calibration_inputs(arch)
    return {"arch": arch.to_dict(), "arch_id": arch.arch_id, "block_sum_ms": block_sum, "features": features,
            "measured_ms": timing.latency_ms, "p50_ms": timing.p50_ms, "p90_ms": timing.p90_ms}


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
              settings: BuildSettings, partial: PartialBuild, hardware: dict) -> LatencyTable:
    bursts = partial.block_bursts()
    quantile = settings.blocks.quantile
    reference = Timing.of_bursts(bursts.pop(REFERENCE), quantile)
    entries = {key: Timing.of_bursts(b, quantile).to_dict() for key, b in bursts.items()}
    models = {}
    for kind, cls in KEY_KINDS.items():
        rows = [(parse_key(k), e) for k, e in entries.items() if k.startswith(kind + ":")]
        features = np.array([k.features() for k, _ in rows])
        values = np.array([e["latency_ms"] for _, e in rows])
        models[kind] = fit_block_model(cls.feature_names, features, values).to_dict()
    windows = partial.network_windows
    data: dict[str, Any] = {
        "schema_version": TABLE_SCHEMA_VERSION,
        "target": target,
        "created": utc_now(),
        "hardware": hardware,
        "runtime": {**config.to_dict(), "version": runtime.version(), "settings": runtime.measurement_settings()},
        "space": {"name": space.name, "hash": space.content_hash, "choices": space.to_dict()},
        "method": {"predicts": PREDICTS, **settings.to_dict()},
        "reference": {"arch": Arch.preset(REFERENCE_ARCH).to_dict(), **reference.to_dict()},
        "predictor": predictor_signature(),
        "calibration": Calibration().to_dict(),
        "models": models,
        "entries": entries,
        "deployment": {},
        "build": {"seconds": round(partial.seconds(), 1), "blocks_measured": len(entries),
                  "machine": {"blocks": {"reference_ms": reference.latency_ms, "reference_p50_ms": reference.p50_ms,
                                         "moved": reference.moved, "seconds": round(partial.block_seconds(), 1)},
                              "networks": machine_over(windows)},
                  "git_revision": git_revision(), "versions": library_versions()},
    }
    uncalibrated = LatencyTable.from_dict(data)
    points = [network_record(a, t, uncalibrated) for a, t in partial.networks("calibration").values()]
    calibration = fit_calibration([p["features"] for p in points], [p["block_sum_ms"] for p in points],
                                  [p["measured_ms"] for p in points], seed=settings.seed)
    data["calibration"] = {**calibration.to_dict(), "points": points}
    checks = [network_record(a, t, uncalibrated) for a, t in partial.networks("check").values()]
    for p in checks:
        p["predicted_ms"] = calibration.apply(p["block_sum_ms"], p["features"])
    data["deployment"] = _deployment_record(settings, windows, points, checks)
    data["build"]["calibration_archs"] = len(points)
    data["build"]["check_archs"] = len(checks)
    return LatencyTable.from_dict(data)


def machine_over(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """How the machine ran over the networks' windows: the reference's figure, its median burst, and how
    far it moved (the largest of the windows)."""
    references = [Timing(**r) for w in windows for r in w["references"]]
    return {"reference_ms": min(r.latency_ms for r in references),
            "reference_p50_ms": max(r.p50_ms for r in references), "moved": max(r.moved for r in references),
            "seconds": round(sum(w["seconds"] for w in windows), 1)}


def _deployment_record(settings: BuildSettings, windows: list[dict[str, Any]], points: list[dict[str, Any]],
                       checks: list[dict[str, Any]]) -> dict[str, Any]:
    """What the predictions mean (the deployment rule and its reference) and how well they held."""
    predicted, measured = [p["predicted_ms"] for p in checks], [p["measured_ms"] for p in checks]
    stats = error_stats(predicted, measured)
    misses = settings.bar.misses(stats["median_abs_err"], stats["within_10pct"])
    out_of_fold = _out_of_fold_ratios(points, settings.seed)
    references = [Timing(**r) for w in windows for r in w["references"]]
    reference = min(references, key=lambda r: r.latency_ms)
    return {
        "rule": settings.rule.to_dict(),
        "reference": reference.to_dict(),
        "residual_ratios": sorted(out_of_fold + [m / p for p, m in zip(predicted, measured)]),
        "residual_sources": {"out_of_fold_calibration": len(out_of_fold), "held_out_check": len(checks)},
        "check": {"archs": len(checks), **stats, "errors": [float(e) for e in relative_errors(predicted, measured)],
                  "bar": asdict(settings.bar), "misses": misses, "passed": not misses,
                  "arch_ids": [p["arch_id"] for p in checks], "points": checks},
    }
