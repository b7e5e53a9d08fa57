"""The one judge: networks timed as deployed on this machine, and each held to its budget.

``judge`` exports the archs, times them in one window of the deployment rule (``LatencyMeter``) beside
the reference and beside every model a budget names (``m1``: "no slower than M1 here"), and gives
each its ``Verdict``: the measured figure (the fast state, ``measure.py``), the budget in milliseconds
(a time as given; a model's as measured in the same window, times its factor), within or not, and
how far the machine moved while they were timed. Nothing is corrected by another network's figure:
a model budget compares two networks measured side by side, a time budget the figure itself.

``verify``, a search's timed finalists (``search/measured.py``) and the benchmark scripts call it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..arch import Arch
from ..budget import Budget
from .deploy import DeploymentRule
from .meter import LatencyMeter, NetworkFile, NetworkRun
from .runtimes import RuntimeConfig

__all__ = ["Verdict", "Judgement", "judge", "MODEL_KEY"]

MODEL_KEY = "budget model {}"  # the key a budget's model is timed under, beside the archs judged


@dataclass(frozen=True)
class Verdict:
    budget: str  # the budget's label: 2ms, m1, 0.8xm2
    measured_ms: float
    budget_ms: float  # a time budget as given; a model budget as measured beside it, times the factor
    within: bool
    model_ms: float | None = None  # the model of a model budget, measured in the same window

    @property
    def share(self) -> float:
        """The measured figure over the budget: how much of it the network uses."""
        return self.measured_ms / self.budget_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}


@dataclass
class Judgement:
    """What one window said: the run (every figure and the machine's movement) and each key's verdicts."""

    run: NetworkRun
    verdicts: dict[Hashable, dict[str, Verdict]]

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.run.machine(),
                "timings": {str(k): t.to_dict() for k, t in self.run.timings.items()},
                "verdicts": {str(k): {b: v.to_dict() for b, v in by.items()} for k, by in self.verdicts.items()}}


def judge(config: RuntimeConfig, archs: Mapping[Hashable, Arch | NetworkFile],
          budgets: Mapping[Hashable, list[Budget]], *, rule: DeploymentRule | None = None, seed: int = 0,
          reference_ms: float | None = None, progress: Callable[[int, int, str], None] | None = None) -> Judgement:
    """Time ``archs`` (an arch, exported here with random weights, or a file already exported) and the
    models their ``budgets`` name, all in one window, and judge each against each of its budgets.
    ``reference_ms``: the table's reference figure, which the window goes on to meet (``LatencyMeter``)."""
    models = {MODEL_KEY.format(b.label): b.model for by in budgets.values() for b in by if b.model is not None}
    with LatencyMeter(config, rule=rule, reference_ms=reference_ms) as meter:
        to_export = [a for a in list(archs.values()) + list(models.values()) if isinstance(a, Arch)]
        exported = meter.export_archs(list(dict.fromkeys(to_export))) if to_export else {}
        files = {key: exported[a.arch_id] if isinstance(a, Arch) else a for key, a in archs.items()}
        files |= {key: exported[a.arch_id] for key, a in models.items()}
        run = meter.networks(files, seed=seed, progress=progress)
    verdicts = {}
    for key, by in budgets.items():
        if key not in run.timings:  # failed to run: the run's failures say why
            continue
        measured = run.timings[key].latency_ms
        verdicts[key] = {}
        for budget in by:
            model_ms = run.timings[MODEL_KEY.format(budget.label)].latency_ms if budget.model is not None else None
            limit = budget.ms if model_ms is None else budget.factor * model_ms
            verdicts[key][budget.label] = Verdict(budget.label, measured, limit, measured <= limit, model_ms)
    return Judgement(run, verdicts)
