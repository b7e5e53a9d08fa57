"""Check a table against whole networks measured end to end on this machine.

Random archs the calibration never saw (another seed stream) are measured in chunks interleaved with
the table's reference network. The reference's speed now against at build time is the drift factor:
measured / drift is what the network would have taken on the machine as it was during the build.
Every figure is given raw and drift-corrected, for the calibrated prediction and for the plain sum of
block entries, so a user can tell a wrong prediction from a busy machine.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arch import Arch
from ..errors import EffNasError
from .build import BuildSettings, plan_calibration_archs
from .fit import relative_errors
from .measure import MeasureProtocol, check_at_least, create_runtime, hardware_info, measure_chunk, wait_for_speed
from .table import LatencyTable

__all__ = ["ValidationReport", "validate_table", "sample_validation_archs", "error_stats"]


def sample_validation_archs(table: LatencyTable, samples: int, seed: int) -> list[Arch]:
    """Random archs of the table's space, none of them a calibration arch."""
    space = table.space
    method = table.data["method"]
    seen = set(plan_calibration_archs(space, BuildSettings(seed=method["seed"],
                                                           calibration_archs=method["calibration_archs"])))
    rng = np.random.default_rng([seed, 3])
    archs: dict[Arch, None] = {}
    for _ in range(1000 * samples):  # bounded: a tiny space may have fewer unseen archs than asked
        if len(archs) >= samples:
            break
        arch = space.sample(rng)
        if arch not in seen:
            archs[arch] = None
    if len(archs) < samples:
        raise EffNasError(f"--samples must not exceed the archs of {space.name!r} that the calibration did not "
                          f"use, but only {len(archs)} were found; ask for fewer")
    return list(archs)


def error_stats(predicted: list[float], measured: list[float]) -> dict[str, float]:
    from scipy.stats import spearmanr

    errors = np.abs(relative_errors(predicted, measured))
    return {
        "within_5pct": float(np.mean(errors <= 0.05)),
        "within_10pct": float(np.mean(errors <= 0.10)),
        "median_abs_err": float(np.median(errors)),
        "worst_abs_err": float(np.max(errors)),
        "spearman": float(spearmanr(predicted, measured).statistic),
    }


@dataclass
class ValidationReport:
    table_id: str
    drift: float  # applied correction: reference now / at build, or 1 within the reference's noise
    reference_ratio: float  # reference now / at build, as measured
    rows: list[dict[str, Any]]  # per arch: predicted, plain sum, measured raw and corrected
    waited_s: float = 0.0  # time spent waiting for the machine to return to its build-time speed

    def stats(self) -> dict[str, dict[str, float]]:
        cols = {k: [r[k] for r in self.rows] for k in ("predicted_ms", "block_sum_ms", "measured_ms",
                                                       "measured_corrected_ms")}
        return {
            "calibrated, drift-corrected": error_stats(cols["predicted_ms"], cols["measured_corrected_ms"]),
            "calibrated, raw": error_stats(cols["predicted_ms"], cols["measured_ms"]),
            "plain block sum, drift-corrected": error_stats(cols["block_sum_ms"], cols["measured_corrected_ms"]),
            "plain block sum, raw": error_stats(cols["block_sum_ms"], cols["measured_ms"]),
        }

    def to_dict(self) -> dict[str, Any]:
        return {"table_id": self.table_id, "drift": self.drift, "reference_ratio": self.reference_ratio,
                "waited_s": self.waited_s,
                "stats": self.stats(), "rows": self.rows}

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        measured = np.array([r["measured_corrected_ms"] for r in self.rows])
        raw = np.array([r["measured_ms"] for r in self.rows])
        predicted = np.array([r["predicted_ms"] for r in self.rows])
        plain = np.array([r["block_sum_ms"] for r in self.rows])
        fig, ax = plt.subplots(figsize=(6, 6))
        lo, hi = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.2
        line = np.geomspace(lo, hi, 50)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="±10%")
        ax.plot(line, line, color="0.5", lw=1)
        ax.scatter(measured, plain, s=14, marker="x", color="tab:orange", label="plain block sum")
        ax.scatter(raw, predicted, s=14, facecolors="none", edgecolors="tab:gray", label="calibrated vs raw measured")
        ax.scatter(measured, predicted, s=18, color="tab:blue", label="calibrated vs drift-corrected")
        ax.set(xscale="log", yscale="log", xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
               title=f"{self.table_id}\n{len(self.rows)} unseen archs, drift x{self.drift:.3f}")
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
    chunk_size: int = 6,
    max_wait_s: float = 120.0,
    progress: Callable[[int, int, str], None] | None = None,
) -> ValidationReport:
    """Measure ``samples`` unseen archs end to end and compare with the table's predictions."""
    from ..model import build_model

    check_at_least("validation networks (--samples)", samples, 3)  # a rank correlation needs 3
    check_at_least("seed (--seed)", seed, 0)  # numpy's seed sequences take no negative seed
    check_at_least("chunk_size", chunk_size, 1)
    check_at_least("max wait in seconds (--max-wait)", max_wait_s, 0, integer=False)
    table.check_hardware(hardware_info())
    runtime = create_runtime(table.runtime)
    protocol = MeasureProtocol(**table.data["method"]["protocol"])
    batch = table.runtime.batch_size
    reference = table.reference_arch
    ref_forward = runtime.prepare(build_model(reference).eval().fuse(),
                                  (batch, 3, reference.resolution, reference.resolution))
    archs = sample_validation_archs(table, samples, seed)
    rows, drifts, ratios = [], [], []
    waited = 0.0
    for start in range(0, len(archs), chunk_size):
        chunk = archs[start:start + chunk_size]
        # measure the machine as it was during the build when it comes back within the wait budget
        waited += wait_for_speed(ref_forward, table.reference_ms, max_drift=0.10, max_wait_s=max_wait_s - waited,
                                 statistic=protocol.statistic)
        forwards = {}
        for arch in chunk:
            forwards[arch.arch_id] = runtime.prepare(build_model(arch).eval().fuse(),
                                                     (batch, 3, arch.resolution, arch.resolution))
        reference_ms, timings = measure_chunk(ref_forward, forwards, protocol)
        drift = table.drift_factor(reference_ms)
        ratios.append(reference_ms / table.reference_ms)
        drifts.append(drift)
        for arch in chunk:
            measured = timings[arch.arch_id].value(protocol.statistic)
            block_sum, _ = table.block_sum_ms(arch)
            rows.append({"arch": arch.to_dict(), "arch_id": arch.arch_id, "predicted_ms": table.predict_ms(arch),
                         "block_sum_ms": block_sum, "measured_ms": measured,
                         "measured_corrected_ms": measured / drift, "chunk_drift": drift})
        if progress:
            progress(len(rows), len(archs), "networks")
    return ValidationReport(table.table_id, drift=statistics.median(drifts), reference_ratio=statistics.median(ratios),
                            rows=rows, waited_s=waited)
