"""Hardware in the loop: the search's best candidates timed on this machine as deployed, so a pick's
latency is a measurement, not a prediction.

A table predicts deployed latency only to within its residuals, and a search that maximises accuracy
under a predicted limit is drawn to exactly the archs the table under-predicts: among many near the
limit, the one that is really larger scores best (the winner's curse). A conformal margin guards
against that only by giving up budget on every pick. Measuring the few finalists costs seconds each.

So with ``--measure N``, per budget of the primary target the proxy's N best distinct archs within
the limit (spread over input resolutions, like the refinement's shortlist) are judged as ``verify``
judges (``latency/judge.py``: exported, timed under the deployment rule in one window beside the
reference and beside every model a budget names), and those over their budget are dropped.
Refinement then picks among the rest; without it the pick is the best proxy score among them. An
arch that is a candidate under several budgets is timed once and judged against each. Timings and
verdicts go to ``measured.json`` in the output folder, so a resumed search does not time them again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .._progress import Progress
from ..errors import EffNasError
from ..latency.deploy import DeploymentRule
from ..latency.judge import judge
from ..latency.table import LatencyTable
from .candidates import Candidate, shortlist
from .problem import Target

log = logging.getLogger(__name__)

__all__ = ["Measurement", "MeasuredShortlists", "check_measurable", "default_measurement", "measure_shortlists",
           "unmeasurable_reason", "within_measured", "MEASURED_FILE", "MEASURED_CONFIDENCE"]

MEASURED_FILE = "measured.json"
# The margin's confidence when finalists are timed: the table's margin then only preselects, the
# measurement keeps the budget; at 0.95 the predicted limit (budget / 1.34 on the shapes table) leaves
# the finalists a third of the budget short (default_measurement says where the evidence is).
MEASURED_CONFIDENCE = 0.5


@dataclass(frozen=True)
class Measurement:
    candidates: int  # per budget: the proxy's best distinct archs within the limit, judged as deployed
    rule: DeploymentRule = DeploymentRule()

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise EffNasError(f"--measure must be at least 1 (0 turns it off), but got {self.candidates}; "
                              "pass e.g. --measure 10")

    def to_dict(self) -> dict[str, Any]:
        return {"by": "the judge: the deployment rule's fast state on this machine, a model budget against the "
                      "model measured beside it", "candidates": self.candidates, "rule": asdict(self.rule)}


@dataclass(frozen=True)
class MeasuredShortlists:
    kept: dict[float, list[Candidate]]  # per budget: the timed archs judged within it, best score first
    timings: dict[str, dict[str, Any]]  # arch_id -> predicted_ms, measured_ms, p50/p90, verdicts per budget label
    timed: dict[float, list[str]]  # per budget: the arch_ids timed for it, best score first
    labels: dict[float, str]  # per budget: its label (2ms, m1)

    def report(self) -> dict[str, Any]:
        """For metadata.json: per budget what was timed and kept, and every timing."""
        per_budget = {self.labels[b]: {"timed": ids, "kept": [c.arch.arch_id for c in self.kept[b]],
                                       "lowest_measured_ms": min((self.timings[i]["measured_ms"] for i in ids),
                                                                 default=None)}
                      for b, ids in self.timed.items()}
        return {"per_budget": per_budget, "timings": self.timings}


def unmeasurable_reason(table: LatencyTable) -> str | None:
    """Why this machine cannot time candidates for ``table`` as its deployment is timed (None: it can)."""
    from ..latency.runtimes import runtime_class

    try:  # a runtime not installed here (or unknown to this version) is as unmeasurable as other hardware
        runtime = runtime_class(table.runtime.runtime, table.runtime.device)(table.runtime)
        runtime.check_usable()
        table.check_hardware(runtime.hardware(), runtime.identity_fields)
    except (EffNasError, ImportError, OSError) as exc:
        return str(exc)
    return None


def check_measurable(table: LatencyTable) -> None:
    """Refuse up front (before any trial) a table this machine cannot time candidates for."""
    reason = unmeasurable_reason(table)
    if reason is not None:
        raise EffNasError(f"--measure times candidates on this machine, so {reason}; or drop --measure")


def default_measurement(refine: int, table: LatencyTable) -> tuple[int, str | None]:
    """``--measure``'s default and, where it is off, why: with refinement on and the table's own hardware
    here, twice the refinement's candidates (half of them may measure over the budget and the
    refinement still has its K); otherwise none.

    Why on by default there: on the shapes task the proxy's picks under a predicted limit either left a
    third of the budget unused (the default 0.95 confidence) or measured 15% over it (0.5), and lost to
    or tied M0-M3; with the finalists timed and a 0.5 confidence the picks spent the budget and trained
    above M0-M3 (docs/BENCHMARKS.md, "The search against the M-series", the ``measured`` variant). A
    search for other hardware cannot time here, and without data there is no refinement to feed (and
    the zero-data search stays within its minute)."""
    if not refine:
        return 0, None
    reason = unmeasurable_reason(table)
    return (0, reason) if reason is not None else (2 * refine, None)


def within_measured(ranked: list[Candidate], label: str, timings: dict[str, dict[str, Any]]) -> list[Candidate]:
    """The candidates of ``ranked`` (kept in its order) the judge found within the budget ``label``; an arch
    not timed is not kept."""
    return [c for c in ranked if c.arch.arch_id in timings and timings[c.arch.arch_id]["verdicts"][label]["within"]]


def measure_shortlists(ranked: dict[float, list[Candidate]], target: Target, out_dir: Path | None,
                       measurement: Measurement, progress: Progress | None = None) -> MeasuredShortlists:
    """Judge each budget's shortlist (``ranked``: per budget, the candidates within its predicted limit,
    best score first) against every budget of ``target`` and keep what the judge found within."""
    table = target.table
    timed = {b: [c.arch.arch_id for c in shortlist(r, measurement.candidates)] for b, r in ranked.items()}
    archs = {c.arch.arch_id: c.arch for r in ranked.values() for c in r}
    timings = _stored(out_dir, measurement, table)
    todo = list(dict.fromkeys(i for ids in timed.values() for i in ids if i not in timings))  # each arch once
    if todo:
        budgets = [target.budget_for(b) for b in target.budgets_ms]
        say = progress or (lambda done, total, what: None)
        judgement = judge(table.runtime, {i: archs[i] for i in todo}, {i: budgets for i in todo},
                          rule=measurement.rule, reference_ms=table.deployment_reference_ms,
                          progress=lambda w, n, what: say(w, n, f"timing the finalists: {what}"))
        if judgement.run.failures:
            arch_id, reason = next(iter(judgement.run.failures.items()))
            raise EffNasError(f"every finalist must run under {table.runtime.runtime} as deployed, but {arch_id} "
                              f"failed: {reason}; report it")
        machine = judgement.run.machine()
        for arch_id in todo:
            timing = judgement.run.timings[arch_id]
            timings[arch_id] = {"predicted_ms": table.predict_ms(archs[arch_id]), "measured_ms": timing.latency_ms,
                                "p50_ms": timing.p50_ms, "p90_ms": timing.p90_ms, "machine": machine,
                                "verdicts": {label: v.to_dict() for label, v in judgement.verdicts[arch_id].items()}}
        if out_dir is not None:  # a resumed search does not time them again
            stored = {"table_id": table.table_id, "rule": asdict(measurement.rule), "timings": timings}
            atomic_write_text(out_dir / MEASURED_FILE, json.dumps(stored, indent=1) + "\n")
    labels = {b: target.label(b) for b in timed}
    # an arch timed for another budget of the family (or by an earlier run) counts here too
    kept = {b: within_measured(ranked[b], labels[b], timings) for b in timed}
    for budget, ids in timed.items():
        log.info("%s: %d of %d timed candidates judged within the budget", labels[budget], len(kept[budget]),
                 len(ids))
    return MeasuredShortlists(kept, {i: timings[i] for r in ranked.values() for c in r
                                     if (i := c.arch.arch_id) in timings}, timed, labels)


def _stored(out_dir: Path | None, measurement: Measurement, table: LatencyTable) -> dict[str, dict[str, Any]]:
    """Timings an earlier run in this folder already took (same table and rule, whatever N), else none."""
    path = out_dir / MEASURED_FILE if out_dir is not None else None
    if path is None or not path.exists():
        return {}
    stored = json.loads(path.read_text())
    same = stored.get("table_id") == table.table_id and stored.get("rule") == asdict(measurement.rule)
    return dict(stored["timings"]) if same else {}
