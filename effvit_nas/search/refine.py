"""The second stage of a two-stage search: short training on the task's data decides among the few
archs the cheap estimator ranked best under each budget.

A zero-cost proxy scores thousands of archs in seconds but ranks trained networks only roughly; a
few epochs of training rank them far better but cost minutes each. So the proxy searches the whole
budgeted space, and per budget its ``candidates`` best distinct archs (within the budget's limit)
are trained for up to ``epochs`` epochs with successive halving (Optuna's pruner, reduction factor
2): after each epoch a candidate whose validation top-1 is not in the better half of those that
reached that epoch stops. The pick is the best completed candidate by that top-1; the proxy's score
is kept beside it. Each budget's refinement is its own single-objective study in the run's
``study.db`` (``refine-<budget>``), so an interrupted refinement resumes where it stopped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from ..errors import EffNasError
from ..estimators import ShortTraining, prune_with
from ..estimators._proxies import OWN_RESOLUTION, PROXY_DATA
from ..units import format_ms
from ._study import fail_unfinished, quiet_optuna, storage_url
from .problem import SearchProblem
from .results import Candidate, feasible_candidates

log = logging.getLogger(__name__)

__all__ = ["Refinement", "RefinedPick", "refine"]

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Refinement:
    candidates: int = 6  # per budget: the proxy's best distinct archs within the budget's limit
    epochs: int = 4  # the full short training; successive halving stops most candidates earlier
    data: str = PROXY_DATA  # the search's --data: validation top-1 on it decides
    seed: int = 0
    resolution: int = OWN_RESOLUTION

    def __post_init__(self) -> None:
        for value, flag, low in ((self.candidates, "--refine", 1), (self.epochs, "--refine-epochs", 1)):
            if value < low:
                raise EffNasError(f"{flag} must be at least {low}, but got {value}")

    def to_dict(self) -> dict[str, Any]:
        return {"by": "short-training (successive halving, factor 2)", **asdict(self)}


@dataclass(frozen=True)
class RefinedPick:
    candidate: Candidate  # the pick, with the proxy's score
    top1: float  # its validation top-1 after the full short training
    trained: list[dict[str, Any]]  # every candidate: arch_id, proxy score, state, epochs, last top-1


def refine(study: optuna.Study, problem: SearchProblem, out_dir: Path | None, refinement: Refinement,
           progress: Progress | None = None) -> dict[float, RefinedPick]:
    """For each budget of the primary target with a feasible arch, the candidate short training ranks first."""
    quiet_optuna()
    estimator = ShortTraining(epochs=refinement.epochs, seed=refinement.seed, resolution=refinement.resolution,
                              data=refinement.data)
    limit = problem.primary.limit_ms
    primary = problem.primary.name
    feasible = sorted(feasible_candidates(study, problem), key=lambda c: -c.score)
    per_budget = {budget: [c for c in feasible if c.latency_ms[primary] <= limit(budget)][:refinement.candidates]
                  for budget in problem.primary.budgets_ms}
    total, done = sum(len(c) for c in per_budget.values()), 0
    picks = {}
    for budget, candidates in per_budget.items():
        if not candidates:
            continue

        def starting(index: int, budget: float = budget, before: int = done) -> None:
            if progress:
                progress(before + index, total, f"refining {format_ms(budget)}: candidate {index + 1}")

        results = _refine_budget(budget, candidates, estimator, out_dir, primary, starting)
        done += len(candidates)
        completed = [r for r in results if r["state"] == "complete"]
        best = max(completed, key=lambda r: (r["top1"], -r["latency_ms"]))
        pick = next(c for c in candidates if c.arch.arch_id == best["arch_id"])
        picks[budget] = RefinedPick(pick, best["top1"], results)
    if progress:
        progress(total, total, "refined")
    return picks


def _refine_budget(budget: float, candidates: list[Candidate], estimator: ShortTraining, out_dir: Path | None,
                   primary: str, starting: Callable[[int], None]) -> list[dict[str, Any]]:
    storage = storage_url(out_dir) if out_dir is not None else None
    study = optuna.create_study(study_name=f"refine-{format_ms(budget)}", storage=storage, direction="maximize",
                                load_if_exists=True,
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    fail_unfinished(study)  # a candidate killed mid-training trains again
    finished = {t.user_attrs["arch_id"]: t for t in study.get_trials(deepcopy=False)
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)}
    for index, candidate in enumerate(candidates):
        starting(index)
        if candidate.arch.arch_id in finished:
            continue
        study.enqueue_trial({"candidate": index})
        trial = study.ask()
        trial.suggest_categorical("candidate", list(range(len(candidates))))
        trial.set_user_attr("arch_id", candidate.arch.arch_id)
        try:
            top1 = estimator.score_reporting(candidate.arch, prune_with(trial))
        except optuna.TrialPruned as exc:
            log.info("%s: %s", candidate.arch.arch_id, exc)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, top1)
    by_arch = {t.user_attrs["arch_id"]: t for t in study.get_trials(deepcopy=False)
               if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)}
    rows = []
    for candidate in candidates:
        trial = by_arch[candidate.arch.arch_id]
        values = trial.intermediate_values
        rows.append({"arch_id": candidate.arch.arch_id, "proxy_score": candidate.score,
                     "latency_ms": candidate.latency_ms[primary], "state": trial.state.name.lower(),
                     "epochs": max(values) if values else 0, "top1": values[max(values)] if values else None})
    return rows
