"""Check a table against what a deployment measures.

Random archs neither the build nor an adaptation measured (the table lists what they measured), and
any archs the user adds (the corners a search visits, its picks), are exported and timed under the
deployment rule (``deploy.py``: each file in a process of its own, a plain session, all in one window
beside the table's reference network), and compared with the table's predictions: the calibrated
prediction and the plain sum of block entries, so a user can tell a wrong calibration from wrong
blocks. The reference's figure now against the build's, and how far the machine moved during the
window, are reported beside the errors, never folded into them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._checks import check_at_least
from ..arch import Arch
from ..errors import EffNasError
from .deploy import DeploymentRule
from .fit import error_stats
from .meter import LatencyMeter
from .table import LatencyTable

__all__ = ["ValidationReport", "validate_table", "sample_validation_archs", "error_stats", "measured_by_table"]


def measured_by_table(table: LatencyTable) -> set[str]:
    """Ids of the archs the table's own networks were (calibration, held-out check, adaptation)."""
    records = (table.data["calibration"].get("points", []) + table.data["deployment"]["check"].get("points", [])
               + table.data.get("adapted", {}).get("points", []))
    return {Arch.from_dict(p["arch"]).arch_id for p in records} | set(table.data["deployment"]["check"]["arch_ids"])


def sample_validation_archs(table: LatencyTable, samples: int, seed: int) -> list[Arch]:
    """Random archs of the table's space, none of them measured by the build (or by an adaptation)."""
    space = table.space
    seen = measured_by_table(table)
    rng = np.random.default_rng([seed, 3])
    archs: dict[Arch, None] = {}
    for _ in range(1000 * samples):  # bounded: a tiny space may have fewer unseen archs than asked
        if len(archs) >= samples:
            break
        arch = space.sample(rng)
        if arch.arch_id not in seen:
            archs[arch] = None
    if len(archs) < samples:
        raise EffNasError(f"--samples must not exceed the archs of {space.name!r} that the build did not "
                          f"measure, but only {len(archs)} were found; ask for fewer")
    return list(archs)


@dataclass
class ValidationReport:
    table_id: str
    reference_ratio: float  # the reference now / at build: 1 when the machine shows the fast state the table has
    machine: dict[str, Any]  # how the machine ran during the window (NetworkRun.machine)
    rows: list[dict[str, Any]]  # per arch: predicted, plain sum, measured, which set
    rule: dict[str, Any]
    seconds: float = 0.0

    def stats(self, group: str | None = None) -> dict[str, dict[str, float]]:
        rows = [r for r in self.rows if group is None or r["group"] == group]
        measured = [r["measured_ms"] for r in rows]
        return {"calibrated": error_stats([r["predicted_ms"] for r in rows], measured),
                "plain block sum": error_stats([r["block_sum_ms"] for r in rows], measured)}

    def groups(self) -> list[str]:
        return list(dict.fromkeys(r["group"] for r in self.rows))

    def to_dict(self) -> dict[str, Any]:
        return {"table_id": self.table_id, "reference_ratio": self.reference_ratio, "machine": self.machine,
                "rule": self.rule, "seconds": self.seconds, "stats": self.stats(),
                "stats_by_group": {g: self.stats(g) for g in self.groups()}, "rows": self.rows}

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        measured = np.array([r["measured_ms"] for r in self.rows])
        predicted = np.array([r["predicted_ms"] for r in self.rows])
        plain = np.array([r["block_sum_ms"] for r in self.rows])
        extra = np.array([r["group"] != "random" for r in self.rows])
        fig, ax = plt.subplots(figsize=(6, 6))
        lo, hi = min(measured.min(), predicted.min()) * 0.8, max(measured.max(), predicted.max()) * 1.2
        line = np.geomspace(lo, hi, 50)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="±10%")
        ax.plot(line, line, color="0.5", lw=1)
        ax.scatter(measured, plain, s=14, marker="x", color="tab:orange", label="plain block sum")
        ax.scatter(measured[~extra], predicted[~extra], s=18, color="tab:blue", label="random archs")
        if extra.any():
            ax.scatter(measured[extra], predicted[extra], s=30, marker="D", color="tab:red", label="added archs")
        ax.set(xscale="log", yscale="log", xlabel="deployed latency, fast state (ms)", ylabel="predicted latency (ms)",
               title=f"{self.table_id}\n{len(self.rows)} archs; reference x{self.reference_ratio:.3f} of the build's, "
                     f"machine moved {self.machine['moved']:.2f}x")
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
    rule: DeploymentRule | None = None,
    extra: dict[str, list[Arch]] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ValidationReport:
    """Time ``samples`` unseen random archs (and ``extra``: group name -> archs) under the deployment
    rule and compare with the table's predictions."""
    check_at_least("validation networks (--samples)", samples, 3)  # a rank correlation needs 3
    check_at_least("seed (--seed)", seed, 0)  # numpy's seed sequences take no negative seed
    started = time.perf_counter()
    rule = rule or DeploymentRule()
    groups = {"random": sample_validation_archs(table, samples, seed), **(extra or {})}
    for name, archs in groups.items():
        for arch in archs:
            reason = table.space.why_not(arch)
            if reason is not None:
                raise EffNasError(f"every arch to validate must lie in the table's space {table.space.name!r}, "
                                  f"but one of {name!r} does not: {reason}; pass archs of that space")
    archs = {a.arch_id: (name, a) for name, group in groups.items() for a in group}
    with LatencyMeter(table.runtime, rule=rule, reference_ms=table.deployment_reference_ms) as meter:
        table.check_hardware(meter.runtime.hardware(), meter.runtime.identity_fields)
        run = meter.archs({arch_id: arch for arch_id, (_, arch) in archs.items()}, seed=seed, progress=progress)
    if run.failures:
        arch_id, reason = next(iter(run.failures.items()))
        raise EffNasError(f"every network must run under {table.runtime.runtime}, but {len(run.failures)} failed "
                          f"(first {arch_id}: {reason}); report it")
    rows = []
    for arch_id, (group, arch) in archs.items():
        timing = run.timings[arch_id]
        rows.append({"arch": arch.to_dict(), "arch_id": arch_id, "group": group, "predicted_ms": table.predict_ms(arch),
                     "block_sum_ms": table.block_sum_ms(arch)[0], "measured_ms": timing.latency_ms,
                     "p50_ms": timing.p50_ms, "p90_ms": timing.p90_ms, "bursts": timing.bursts})
    return ValidationReport(table.table_id, reference_ratio=table.reference_ratio(run.reference_ms),
                            machine=run.machine(), rows=rows, rule=rule.to_dict(),
                            seconds=time.perf_counter() - started)
