"""Adapt a table measured elsewhere to this machine or runtime from a few whole networks (``effnas table adapt``).

A full build measures about 1,000 blocks and 68 networks (minutes). Most of what it learns
carries over between runtimes and machines: which blocks cost what relative to each other, how a
network strays from the sum of its blocks. What does not carry over is mostly a handful of numbers
(a speed factor, a per-call overhead, how attention fares against convolution), and a few networks
measured under the deployment rule pin those down:

1. ``plan_adapt_archs``: ``networks`` archs spread over the space, not drawn at random: the space's
   fastest and largest corners, then farthest-point steps over (log predicted latency, resolution,
   log params, depth, width), so the few networks cover what a search visits at every budget;
2. all measured in one window of the deployment rule beside the reference (``LatencyMeter``), the
   window stored in ``<table>.partial`` like a build's;
3. a transfer fitted from the source's predictions to these measurements (``transfer.py``: the form
   with the lowest leave-one-out error), whose leave-one-out residuals are the table's residuals, so a
   search's confidence factor reflects how well the adaptation holds.

The result is a table file like any other (search, verify and validate take it), with ``adapted``
saying from which table, with which networks, transfer and leave-one-out error. One whose
leave-one-out error misses the build's bar goes to ``<name>.rejected.json`` unless asked otherwise.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_at_least
from .._progress import Progress
from ..arch import Arch
from ..counting import count
from ..errors import TableError
from ..provenance import git_revision, library_versions, utc_now
from .build import PREDICTS, CheckBar, PartialBuild, TableBelowBar, machine_over, measure_networks, rejected_path
from .deploy import DeploymentRule
from .fit import error_stats
from .measure import Timing
from .meter import LatencyMeter
from .runtimes import RuntimeConfig
from .table import LatencyTable
from .transfer import fit_transfer, leave_one_out_ratios

__all__ = ["AdaptSettings", "plan_adapt_archs", "adapt_table", "adapted_config", "check_source"]


@dataclass(frozen=True)
class AdaptSettings:
    # 20 networks: a search at the default confidence 0.95 needs 19 residuals, and the leave-one-out
    # residuals are one per network; all 20 in one window of the rule (a minute), beside the reference.
    networks: int = 20
    seed: int = 0
    pool: int = 2000  # random archs the spread is chosen from
    rule: DeploymentRule = DeploymentRule()
    bar: CheckBar = CheckBar()

    def __post_init__(self) -> None:
        # the richest transfer has 4 coefficients; leave-one-out needs a few networks beyond them
        check_at_least("networks to measure (--networks)", self.networks, 8)
        check_at_least("seed (--seed)", self.seed, 0)
        check_at_least("pool", self.pool, 1)

    def measured_with(self) -> dict[str, Any]:
        """What decides what an adaptation measures: a resumed one must match it."""
        return {k: v for k, v in asdict(self).items() if k != "bar"}


def adapted_config(source: LatencyTable, *, runtime: str | None = None, device: str | None = None,
                   threads: int | None = None, batch_size: int | None = None,
                   dtype: str | None = None) -> RuntimeConfig:
    """The config to measure: the source's, with what is given changed. Another runtime or device starts
    from that runtime's own defaults on the device, as a build would (``Runtime.config_for``)."""
    from dataclasses import replace

    from .runtimes import runtime_class

    base = source.runtime
    if (runtime or base.runtime) != base.runtime or (device or base.device) != base.device:
        name, where = runtime or base.runtime, device or base.device
        return runtime_class(name, where).config_for(where, threads=threads, batch_size=batch_size, dtype=dtype)
    given = {"threads": threads, "batch_size": batch_size, "dtype": dtype}
    return replace(base, **{k: v for k, v in given.items() if v is not None})


def check_source(source: LatencyTable, out_path: Path) -> None:
    """Refuse, in one line, a source an adaptation cannot start from."""
    if source.transfer is not None:
        origin = source.data["adapted"]["source"]["target"]
        raise TableError(f"--from must be a table built in full, but {source.target!r} is itself adapted from "
                         f"{origin!r}; adapt from {origin!r} instead")
    if source.path is not None and source.path.resolve() == out_path.resolve():
        raise TableError(f"--target must name a new table, but {str(out_path)!r} is the --from table itself; "
                         "pick another --target")


def _spread_features(source: LatencyTable, arch: Arch) -> list[float]:
    return [math.log(source.predict_ms(arch)), arch.resolution / 32, math.log(count(arch).params),
            sum(arch.depths) / 2, arch.widths[0] / 64]


def plan_adapt_archs(source: LatencyTable, networks: int, seed: int = 0, pool: int = 2000) -> list[Arch]:
    """``networks`` distinct archs of the source's space, spread over it (deterministic per seed)."""
    space = source.space
    rng = np.random.default_rng([seed, 7])
    candidates = {space.smallest(): None, space.largest(): None}
    for _ in range(pool):
        candidates[space.sample(rng)] = None
    archs = list(candidates)
    features = np.array([_spread_features(source, a) for a in archs])
    features = (features - features.mean(0)) / np.where(features.std(0) > 0, features.std(0), 1)
    chosen = [0, 1] if len(archs) > 1 else [0]  # the corners: smallest and largest
    distance = np.min([np.linalg.norm(features - features[i], axis=1) for i in chosen], axis=0)
    while len(chosen) < min(networks, len(archs)):
        distance[chosen] = -1.0  # never twice, even where every remaining arch looks alike
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(features - features[nxt], axis=1))
    return [archs[i] for i in chosen[:networks]]


def adapt_table(source: LatencyTable, target: str, out_path: Path, config: RuntimeConfig,
                settings: AdaptSettings = AdaptSettings(), progress: Progress | None = None, *,
                accept_below_bar: bool = False) -> LatencyTable:
    """Measure ``settings.networks`` networks under ``config`` on this machine, fit the transfer from
    ``source``, write the adapted table to ``out_path`` atomically (below the bar: ``<name>.rejected.json``
    and ``TableBelowBar``, unless ``accept_below_bar``); resume from ``out_path.partial``."""
    check_source(source, out_path)
    archs = plan_adapt_archs(source, settings.networks, settings.seed, settings.pool)
    if len(archs) < settings.networks:
        raise TableError(f"--networks must not exceed the distinct archs of space {source.space.name!r}, but "
                         f"{settings.networks} were asked and {len(archs)} exist; ask for fewer")
    with LatencyMeter(config, rule=settings.rule) as meter:
        hardware = meter.runtime.hardware()
        header = {"adapt_from": source.table_id, "target": target, "runtime": config.to_dict(),
                  "settings": settings.measured_with(), "hardware": hardware,
                  "runtime_settings": meter.runtime.measurement_settings()}
        partial = PartialBuild(out_path.with_name(out_path.name + ".partial"), header)

        def report(what: str) -> None:
            if progress:
                progress(len(partial.network_windows), 1, what)

        report("networks, deployed")
        measure_networks(meter, partial, {"adapt": archs}, report)
        version, runtime_settings = meter.runtime.version(), meter.runtime.measurement_settings()
    table = _adapted(source, target, config, version, runtime_settings, hardware, settings, partial)
    check = table.data["deployment"]["check"]
    if not check["passed"] and not accept_below_bar:
        rejected = table.save(rejected_path(out_path))
        partial.path.unlink(missing_ok=True)
        raise TableBelowBar(
            f"an adapted table must predict its {check['archs']} networks within the bar when each is left out of "
            f"the fit, but {target!r} missed it ({'; '.join(check['misses'])}); it was not written, the adapted "
            f"table is at {str(rejected)!r}; measure more networks (--networks 48), build the table in full "
            f"(effnas table build with the same --runtime/--threads/--batch-size), or keep it with "
            f"--accept-below-bar")
    table.save(out_path)
    partial.path.unlink(missing_ok=True)
    return table


def _adapted(source: LatencyTable, target: str, config: RuntimeConfig, version: str, runtime_settings: dict,
             hardware: dict, settings: AdaptSettings, partial: PartialBuild) -> LatencyTable:
    measured = list(partial.networks("adapt").values())
    inputs = [source.transfer_inputs(arch) for arch, _ in measured]
    times = [timing.latency_ms for _, timing in measured]
    transfer, form_errors = fit_transfer(inputs, times)
    # Each network predicted by the transfer fitted without it. (The form was chosen on these same
    # leave-one-out errors, so they flatter a little.)
    predicted = [m / r for m, r in zip(times, leave_one_out_ratios(transfer.form, inputs, times))]
    ratios = [m / p for m, p in zip(times, predicted)]
    stats = error_stats(predicted, times)
    misses = settings.bar.misses(stats["median_abs_err"], stats["within_10pct"])
    windows = partial.network_windows
    reference = min((Timing(**r) for w in windows for r in w["references"]), key=lambda r: r.latency_ms)
    data = copy.deepcopy(source.data)
    data.pop("checksum")
    data.update({
        "target": target,
        "created": utc_now(),
        "hardware": hardware,
        "runtime": {**config.to_dict(), "version": version, "settings": runtime_settings},
        "method": {**source.data["method"], "predicts": PREDICTS},
        "build": {"seconds": round(partial.seconds(), 1), "blocks_measured": 0, "adapted_networks": len(measured),
                  "machine": {"networks": machine_over(windows)},
                  "git_revision": git_revision(), "versions": library_versions()},
        "deployment": {
            "rule": settings.rule.to_dict(),
            "reference": reference.to_dict(),
            "residual_ratios": sorted(ratios),
            "residual_sources": {"leave_one_out_adapt": len(ratios)},
            "check": {"archs": len(times), "how": "leave-one-out over the adaptation's networks", **stats,
                      "errors": [p / m - 1 for p, m in zip(predicted, times)], "bar": asdict(settings.bar),
                      "misses": misses, "passed": not misses,
                      "arch_ids": [arch.arch_id for arch, _ in measured]},
        },
        "adapted": {
            "source": {"target": source.target, "table_id": source.table_id,
                       "runtime": source.runtime.to_dict(), "batch_size": source.block_batch,
                       "hardware": source.data["hardware"]},
            "transfer": transfer.to_dict(),
            "leave_one_out_median_err_by_form": form_errors,
            "networks": len(measured),
            "settings": settings.measured_with(),
            "points": [{"arch": arch.to_dict(), "source_ms": x.source_ms, "measured_ms": timing.latency_ms,
                        "p50_ms": timing.p50_ms, "p90_ms": timing.p90_ms}
                       for (arch, timing), x in zip(measured, inputs)],
        },
    })
    return LatencyTable.from_dict(data)
