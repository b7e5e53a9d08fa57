"""Check a table against what a deployment measures.

Random archs the build never measured (another seed stream), and any archs the user adds (the
corners a search visits, its picks), are exported and timed under the deployment rule
(``deploy.py``: the file in a fresh process, a plain session, interleaved rounds) beside the
table's reference network. The reference's deployed latency now against at build time is the
drift: one global factor for the run, reported beside the raw figures, never folded into them
silently. Every figure is given raw and drift-corrected, for the calibrated prediction and for the
plain sum of block entries, so a user can tell a wrong prediction from a busy machine.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_at_least
from ..arch import Arch
from ..errors import EffNasError
from .build import BuildSettings, plan_calibration_archs, plan_check_archs
from .deploy import DeploymentRule
from .fit import error_stats
from .meter import LatencyMeter
from .table import LatencyTable

__all__ = ["ValidationReport", "validate_table", "sample_validation_archs", "error_stats"]


def _build_settings(table: LatencyTable) -> BuildSettings:
    method = table.data["method"]
    return BuildSettings(seed=method["seed"], calibration_archs=method["calibration_archs"],
                         check_archs=method.get("check_archs", BuildSettings().check_archs))


def sample_validation_archs(table: LatencyTable, samples: int, seed: int) -> list[Arch]:
    """Random archs of the table's space, none of them measured by the build (or by an adaptation)."""
    space = table.space
    settings = _build_settings(table)
    seen = set(plan_calibration_archs(space, settings)) | set(plan_check_archs(space, settings))
    seen |= {Arch.from_dict(p["arch"]) for p in table.data.get("adapted", {}).get("points", [])}
    rng = np.random.default_rng([seed, 3])
    archs: dict[Arch, None] = {}
    for _ in range(1000 * samples):  # bounded: a tiny space may have fewer unseen archs than asked
        if len(archs) >= samples:
            break
        arch = space.sample(rng)
        if arch not in seen:
            archs[arch] = None
    if len(archs) < samples:
        raise EffNasError(f"--samples must not exceed the archs of {space.name!r} that the build did not "
                          f"measure, but only {len(archs)} were found; ask for fewer")
    return list(archs)


@dataclass
class ValidationReport:
    table_id: str
    drift: float  # the correction applied: reference now / at build, or 1 within the reference's noise
    reference_ratio: float  # reference now / at build, as measured (NaN for a table without a deployed reference)
    rows: list[dict[str, Any]]  # per arch: predicted, plain sum, measured raw and corrected, which set
    rule: dict[str, Any]
    seconds: float = 0.0

    def stats(self, group: str | None = None) -> dict[str, dict[str, float]]:
        rows = [r for r in self.rows if group is None or r["group"] == group]
        cols = {k: [r[k] for r in rows] for k in ("predicted_ms", "block_sum_ms", "measured_ms",
                                                   "measured_corrected_ms", "measured_per_round_ms")}
        per_round = {} if any(v is None for v in cols["measured_per_round_ms"]) else {
            "calibrated, per-round reference": error_stats(cols["predicted_ms"], cols["measured_per_round_ms"])}
        return {
            "calibrated, drift-corrected": error_stats(cols["predicted_ms"], cols["measured_corrected_ms"]),
            "calibrated, raw": error_stats(cols["predicted_ms"], cols["measured_ms"]),
            **per_round,
            "plain block sum, drift-corrected": error_stats(cols["block_sum_ms"], cols["measured_corrected_ms"]),
            "plain block sum, raw": error_stats(cols["block_sum_ms"], cols["measured_ms"]),
        }

    def groups(self) -> list[str]:
        return list(dict.fromkeys(r["group"] for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        return {"table_id": self.table_id, "drift": self.drift, "reference_ratio": self.reference_ratio,
                "rule": self.rule, "seconds": self.seconds, "stats": self.stats(),
                "stats_by_group": {g: self.stats(g) for g in self.groups()}, "rows": self.rows}

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        measured = np.array([r["measured_corrected_ms"] for r in self.rows])
        raw = np.array([r["measured_ms"] for r in self.rows])
        predicted = np.array([r["predicted_ms"] for r in self.rows])
        plain = np.array([r["block_sum_ms"] for r in self.rows])
        extra = np.array([r["group"] != "random" for r in self.rows])
        fig, ax = plt.subplots(figsize=(6, 6))
        lo, hi = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.2
        line = np.geomspace(lo, hi, 50)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="±10%")
        ax.plot(line, line, color="0.5", lw=1)
        ax.scatter(measured, plain, s=14, marker="x", color="tab:orange", label="plain block sum")
        ax.scatter(raw, predicted, s=14, facecolors="none", edgecolors="tab:gray", label="calibrated vs raw measured")
        ax.scatter(measured[~extra], predicted[~extra], s=18, color="tab:blue", label="random archs, drift-corrected")
        if extra.any():
            ax.scatter(measured[extra], predicted[extra], s=30, marker="D", color="tab:red",
                       label="added archs, drift-corrected")
        ax.set(xscale="log", yscale="log", xlabel="deployment latency (ms)", ylabel="predicted latency (ms)",
               title=f"{self.table_id}\n{len(self.rows)} archs, deployment rule, drift x{self.drift:.3f}")
        ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path


def validate_table(
    table: LatencyTable,
    samples: int,
    *,
    seed: int = 0,
    rounds: int = 3,
    extra: dict[str, list[Arch]] | None = None,
    chunk_size: int = 8,
    progress: Callable[[int, int, str], None] | None = None,
) -> ValidationReport:
    """Time ``samples`` unseen random archs (and ``extra``: group name -> archs) under the deployment
    rule and compare with the table's predictions."""
    check_at_least("validation networks (--samples)", samples, 3)  # a rank correlation needs 3
    check_at_least("seed (--seed)", seed, 0)  # numpy's seed sequences take no negative seed
    check_at_least("chunk_size", chunk_size, 1)
    started = time.perf_counter()
    rule = DeploymentRule(rounds=rounds)
    groups = {"random": sample_validation_archs(table, samples, seed), **(extra or {})}
    for name, archs in groups.items():
        for arch in archs:
            reason = table.space.why_not(arch)
            if reason is not None:
                raise EffNasError(f"every arch to validate must lie in the table's space {table.space.name!r}, "
                                  f"but one of {name!r} does not: {reason}; pass archs of that space")
    archs = {a.arch_id: (name, a) for name, group in groups.items() for a in group}
    say = progress or (lambda done, total, what: None)
    with LatencyMeter(table.runtime, rule=rule, chunk_size=chunk_size) as meter:
        table.check_hardware(meter.runtime.hardware(), meter.runtime.identity_fields)
        files = {}
        todo = [arch for _, arch in archs.values()]
        for start in range(0, len(todo), meter.chunk_size):
            files |= meter.export_archs(todo[start:start + meter.chunk_size])
            say(len(files), len(archs), "exported")
        measured, failures = meter.networks(files, seed=seed, progress=lambda d, t: say(d, t, "networks, deployed"))
    if failures:
        arch_id, reason = next(iter(failures.items()))
        raise EffNasError(f"every network must run under {table.runtime.runtime}, but {len(failures)} failed "
                          f"(first {arch_id}: {reason}); report it")
    # every round the reference ran in, once per chunk: the scale the build's deployed reference has
    rounds = {m.reference_rounds_ms for m in measured.values()}
    reference_now = statistics.median(r for chunk in rounds for r in chunk)
    at_build = table.deployment_reference_ms
    drift = table.drift_factor(reference_now, deployed=True) if at_build else 1.0
    rows = []
    for arch_id, (group, arch) in archs.items():
        timing = measured[arch_id].timing
        block_sum, _ = table.block_sum_ms(arch)
        rows.append({"arch": arch.to_dict(), "arch_id": arch_id, "group": group, "predicted_ms": table.predict_ms(arch),
                     "block_sum_ms": block_sum, "measured_ms": timing.median_ms,
                     "measured_corrected_ms": timing.median_ms / drift,
                     # against the reference in the same rounds: the finer correction the build fits to
                     "measured_per_round_ms": timing.relative * at_build if at_build else None,
                     "p25_ms": timing.p25_ms,
                     "p90_ms": timing.p90_ms, "rounds_ms": list(timing.rounds_ms),
                     "chunk_reference_ms": measured[arch_id].reference_ms})
    return ValidationReport(table.table_id, drift=drift,
                            reference_ratio=reference_now / at_build if at_build else float("nan"),
                            rows=rows, rule=rule.to_dict(), seconds=time.perf_counter() - started)
