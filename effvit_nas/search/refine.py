"""The second stage of a two-stage search: short training on the task's data decides among the few
archs the cheap estimator ranked best under each budget.

A zero-cost proxy scores thousands of archs in seconds but ranks trained networks only roughly; a
few epochs of training rank them far better but cost minutes each. So the proxy searches the whole
budgeted space, and per budget ``candidates`` of its best distinct archs (within the budget's limit,
spread over input resolutions and depths: ``shortlist``) are each trained the same ``epochs`` before
any of them is compared. An earlier form pruned at epoch 1 in the proxy's order; a 64 px network
learns fastest in its first epoch, so that favoured fast starters over what trains best
(docs/SEARCH.md).

Training can also learn nothing: on hard data every candidate can end at chance, and ranking them
then ranks noise. So before anything is ranked, refinement checks the candidates learned: top-1
above what guessing the validation split's most frequent class gets, by more than ``NOISE_SE``
standard errors of top-1 on a split that size. Those that did not are not ranked; when none did, the
budget keeps the proxy's first candidate and the results say the refinement learned nothing.

An arch that is a candidate under several budgets of a family is trained once. Each budget's
refinement is its own single-objective study in the run's study file, named after the budget and a
digest of the settings and the candidates, so an interrupted refinement resumes where it stopped and
a changed one starts afresh instead of mixing old results in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
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

__all__ = ["Refinement", "RefinedPick", "ChanceLevel", "chance_level", "refine"]

# Standard errors above chance a candidate's top-1 must reach to count as learned: about a 2% chance
# that a network guessing at random clears it on one split.
NOISE_SE = 2.0


@dataclass(frozen=True)
class Refinement:
    candidates: int = 6  # per budget: the proxy's best distinct archs within the budget's limit
    epochs: int = 4  # every candidate trains this many before any comparison
    data: str = PROXY_DATA  # the search's --data: validation top-1 on it decides
    seed: int = 0
    resolution: int = OWN_RESOLUTION
    recipe: str = "screening"  # the small recipe at 3x its learning rate; "small" is gentler

    def __post_init__(self) -> None:
        for value, flag, low in ((self.candidates, "--refine", 1), (self.epochs, "--refine-epochs", 1)):
            if value < low:
                raise EffNasError(f"{flag} must be at least {low}, but got {value}")
        from ..train.recipe import RECIPES  # here: the train package imports torch

        if self.recipe not in RECIPES:
            raise EffNasError(f"--refine-recipe must be one of {', '.join(RECIPES)}, but got {self.recipe!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"by": "short-training (every candidate the same epochs; ranked only above chance)", **asdict(self)}


@dataclass(frozen=True)
class ChanceLevel:
    """What top-1 a network that learned nothing reaches on the validation split, and its noise there."""

    top1: float  # % of the split in its most frequent class: what always guessing that class gets
    noise: float  # % one standard error of top-1 at that level on a split this size (binomial)
    images: int

    @property
    def bar(self) -> float:
        """The top-1 a candidate must exceed to count as having learned."""
        return self.top1 + NOISE_SE * self.noise

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "bar": self.bar, "noise_se": NOISE_SE}


def chance_level(data: str) -> ChanceLevel:
    from ..train.data import open_data

    labels = list(open_data(data).val.targets)
    p = max(Counter(labels).values()) / len(labels)
    return ChanceLevel(top1=100 * p, noise=100 * math.sqrt(p * (1 - p) / len(labels)), images=len(labels))


@dataclass(frozen=True)
class RefinedPick:
    candidate: Candidate  # the pick, with the proxy's score
    top1: float  # its validation top-1 after the short training
    trained: list[dict[str, Any]]  # every candidate: arch_id, proxy score, state, epochs, last top-1, learned
    learned: bool  # False: no candidate cleared chance; the pick is the proxy's first, not a refined one
    chance: ChanceLevel


def refine(study: optuna.Study, problem: SearchProblem, out_dir: Path | None, refinement: Refinement,
           progress: Progress | None = None, ranked: dict[float, list[Candidate]] | None = None
           ) -> dict[float, RefinedPick]:
    """For each budget of the primary target with a feasible arch, the candidate short training ranks first
    among those that learned (the proxy's first when none did). ``ranked``: per budget, the archs to
    shortlist from, best score first (default: every feasible one within the budget's predicted limit;
    ``search/measured.py`` passes those that measured within the budget)."""
    quiet_optuna()
    estimator = ShortTraining(epochs=refinement.epochs, seed=refinement.seed, resolution=refinement.resolution,
                              data=refinement.data, recipe=refinement.recipe)
    chance = chance_level(refinement.data)
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
        for row in results:
            row["learned"] = row["state"] == "complete" and row["top1"] is not None and row["top1"] > chance.bar
        learned = [r for r in results if r["learned"]]
        if learned:
            best = max(learned, key=lambda r: (r["top1"], -r["latency_ms"]))
            pick = next(c for c in candidates if c.arch.arch_id == best["arch_id"])
            picks[budget] = RefinedPick(pick, best["top1"], results, True, chance)
        else:  # ranking noise would pick at random: the proxy's first stays, and the results say why
            top1 = max((r["top1"] for r in results if r["top1"] is not None), default=float("nan"))
            picks[budget] = RefinedPick(candidates[0], top1, results, False, chance)
            log.info("%s: no candidate above chance (best %.2f%%, bar %.2f%%)", problem.primary.label(budget),
                     top1, chance.bar)
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
    # no pruner: every candidate gets the same epochs; the per-epoch reports keep each one's curve
    study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=optuna.pruners.NopPruner())
    fail_unfinished(study)  # a candidate killed mid-training trains again
    finished = {t.user_attrs["arch_id"]: t for t in study.get_trials(deepcopy=False)
                if t.state == optuna.trial.TrialState.COMPLETE}
    for index, candidate in enumerate(candidates):
        starting(index)
        if candidate.arch.arch_id in finished or candidate.arch.arch_id in completed_before:
            continue
        trial = study.ask()
        trial.set_user_attr("arch_id", candidate.arch.arch_id)
        try:
            top1 = estimator.score_reporting(candidate.arch, prune_with(trial))
        except BaseException:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, top1)
    by_arch = {t.user_attrs["arch_id"]: t for t in study.get_trials(deepcopy=False)
               if t.state == optuna.trial.TrialState.COMPLETE}
    rows = []
    for candidate in candidates:
        if candidate.arch.arch_id not in by_arch:  # trained under an earlier budget
            rows.append({**completed_before[candidate.arch.arch_id], "proxy_score": candidate.score,
                         "latency_ms": candidate.latency_ms[primary]})
            continue
        trial = by_arch[candidate.arch.arch_id]
        values = trial.intermediate_values
        rows.append({"arch_id": candidate.arch.arch_id, "proxy_score": candidate.score,
                     "latency_ms": candidate.latency_ms[primary], "state": "complete",
                     "epochs": max(values) if values else 0, "top1": trial.value,
                     "curve": [values[e] for e in sorted(values)]})
    return rows
