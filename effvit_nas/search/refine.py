"""The second stage of a two-stage search: short training on the task's data decides among the few
archs the cheap estimator ranked best under each budget.

A zero-cost proxy scores thousands of archs in seconds but ranks trained networks only roughly; a
few epochs of training rank them far better but cost minutes each. So the proxy searches the whole
budgeted space, and per budget ``candidates`` of its best distinct archs (within the budget's limit,
the best at each input resolution first: ``shortlist``) are trained for up to ``epochs`` epochs, one
after another in the proxy's order, under Optuna's ``SuccessiveHalvingPruner`` (reduction factor 2):
at epochs 1, 2, 4, ... a candidate goes on only if its validation top-1 is in the better half of all
candidates that reached that epoch (with fewer than four there, only if it is the best of them), so
the proxy's first choice always completes and a later one must beat what came before. The pick is
the best completed candidate by that top-1; the proxy's score is kept beside it. An arch that is a
candidate under several budgets of a family is trained once. Each budget's refinement is its own
single-objective study in the run's study file, named after the budget and a digest of the settings
and the candidates, so an interrupted refinement resumes where it stopped and a changed one starts
afresh instead of mixing old results in.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from .._progress import Progress
from ..errors import EffNasError
from ..estimators import ShortTraining, prune_with
from ..estimators._proxies import OWN_RESOLUTION, PROXY_DATA
from ._study import fail_unfinished, open_storage, quiet_optuna
from .candidates import Candidate, feasible_candidates, ranked_per_budget, shortlist
from .problem import SearchProblem

log = logging.getLogger(__name__)

__all__ = ["Refinement", "RefinedPick", "refine"]


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
           progress: Progress | None = None, ranked: dict[float, list[Candidate]] | None = None
           ) -> dict[float, RefinedPick]:
    """For each budget of the primary target with a feasible arch, the candidate short training ranks first.
    ``ranked``: per budget, the archs to shortlist from, best score first (default: every feasible one within
    the budget's predicted limit; ``search/measured.py`` passes those that measured within the budget)."""
    quiet_optuna()
    estimator = ShortTraining(epochs=refinement.epochs, seed=refinement.seed, resolution=refinement.resolution,
                              data=refinement.data)
    primary = problem.primary.name
    ranked = ranked_per_budget(feasible_candidates(study, problem), problem) if ranked is None else ranked
    per_budget = {budget: shortlist(candidates, refinement.candidates) for budget, candidates in ranked.items()}
    total, done = sum(len(c) for c in per_budget.values()), 0
    picks: dict[float, RefinedPick] = {}
    completed_before: dict[str, dict[str, Any]] = {}  # arch_id -> its row, from an earlier budget
    for budget, candidates in per_budget.items():
        if not candidates:
            continue

        def starting(index: int, budget: float = budget, before: int = done) -> None:
            if progress:
                progress(before + index, total, f"refining {problem.primary.label(budget)}: candidate {index + 1}")

        study_name = f"refine-{problem.primary.label(budget)}-{_digest(refinement, candidates)}"
        results = _refine_budget(study_name, candidates, estimator, out_dir, primary, starting, completed_before)
        done += len(candidates)
        completed_before.update({r["arch_id"]: r for r in results if r["state"] == "complete"})
        # the first candidate always completes; should a killed run have left none complete, the
        # furthest-trained one decides
        best = max(results, key=lambda r: (r["state"] == "complete", r["epochs"], r["top1"] or -1.0,
                                           -r["latency_ms"]))
        pick = next(c for c in candidates if c.arch.arch_id == best["arch_id"])
        picks[budget] = RefinedPick(pick, best["top1"], results)
    if progress:
        progress(total, total, "refined")
    return picks


def _digest(refinement: Refinement, candidates: list[Candidate]) -> str:
    what = json.dumps([refinement.to_dict(), [c.arch.arch_id for c in candidates]], sort_keys=True)
    return hashlib.sha256(what.encode()).hexdigest()[:10]


def _refine_budget(study_name: str, candidates: list[Candidate], estimator: ShortTraining, out_dir: Path | None,
                   primary: str, starting: Callable[[int], None],
                   completed_before: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    storage = open_storage(out_dir) if out_dir is not None else None
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2))
    fail_unfinished(study)  # a candidate killed mid-training trains again
    finished = {t.user_attrs["arch_id"]: t for t in study.get_trials(deepcopy=False)
                if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)}
    for index, candidate in enumerate(candidates):
        starting(index)
        if candidate.arch.arch_id in finished or candidate.arch.arch_id in completed_before:
            continue
        trial = study.ask()
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
        if candidate.arch.arch_id not in by_arch:  # trained to the end under an earlier budget
            rows.append({**completed_before[candidate.arch.arch_id], "proxy_score": candidate.score,
                         "latency_ms": candidate.latency_ms[primary]})
            continue
        trial = by_arch[candidate.arch.arch_id]
        values = trial.intermediate_values
        rows.append({"arch_id": candidate.arch.arch_id, "proxy_score": candidate.score,
                     "latency_ms": candidate.latency_ms[primary], "state": trial.state.name.lower(),
                     "epochs": max(values) if values else 0, "top1": values[max(values)] if values else None})
    return rows
