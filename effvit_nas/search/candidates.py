"""The candidates a study found and their order: one record per trial whichever backend ran it
(``outcomes``), the feasible candidates, the Pareto front, each budget's candidates best first, and the
shortlist the finalists' stages (``measured.py``, ``refine.py``) take from them. Nothing here writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from ..arch import Arch
from ..counting import count
from ._study import AIM_ATTR, FAIL_REASON, UNSCORED_ATTR
from .problem import SearchProblem

__all__ = ["Candidate", "TrialOutcome", "outcomes", "trial_summary", "feasible_candidates", "pareto_front",
           "best_per_budget", "ranked_per_budget", "shortlist"]


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # complete, pruned, failed (the estimator could not score it), interrupted, or running/waiting
    arch: Arch | None  # None when the trial stopped before its arch was recorded
    latency_ms: dict[str, float]  # per target, from the tables (known before scoring)
    score: float | None = None  # complete trials only
    fail_reason: str | None = None
    unscored: bool = False  # proposed over the limit its phase aimed at, told infeasible without a score
    aim_ms: float | None = None  # the budget its search phase aimed at (Optuna backend), None: the largest


def outcomes(study: optuna.Study) -> list[TrialOutcome]:
    out = []
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        state = trial.state.name.lower()
        if trial.state == optuna.trial.TrialState.FAIL:
            state = "failed" if FAIL_REASON in attrs else "interrupted"
        out.append(TrialOutcome(
            number=trial.number, state=state, arch=Arch.from_dict(attrs["arch"]) if "arch" in attrs else None,
            latency_ms=dict(attrs.get("latency_ms", {})),
            score=trial.values[0] if trial.state == optuna.trial.TrialState.COMPLETE else None,
            fail_reason=attrs.get(FAIL_REASON), unscored=UNSCORED_ATTR in attrs, aim_ms=attrs.get(AIM_ATTR)))
    return out


def trial_summary(trials: list[TrialOutcome]) -> dict[str, Any]:
    """Counts per state, the first failure's reason, and the lowest predicted latency reached per target."""
    failed = [t for t in trials if t.state == "failed"]
    complete = [t for t in trials if t.state == "complete"]
    targets = {name for t in complete for name in t.latency_ms}
    return {
        "proposals": len(trials),
        "trials_complete": len(complete),
        "trials_unscored": sum(t.unscored for t in trials),
        "trials_pruned": sum(t.state == "pruned" and not t.unscored for t in trials),
        "trials_failed": len(failed),
        "first_failure": failed[0].fail_reason if failed else None,
        "lowest_latency_ms": {name: min(t.latency_ms[name] for t in complete if name in t.latency_ms)
                              for name in sorted(targets)},
    }


@dataclass(frozen=True)
class Candidate:
    trial: int
    arch: Arch
    score: float
    latency_ms: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        cost = count(self.arch)
        return {"trial": self.trial, "arch_id": self.arch.arch_id, "score": self.score,
                "latency_ms": self.latency_ms, "params": cost.params, "macs": cost.macs, "arch": self.arch.to_dict()}


def feasible_candidates(study: optuna.Study | list[TrialOutcome], problem: SearchProblem) -> list[Candidate]:
    """Every completed trial that meets every budget's constraint, one per distinct arch. Scores come
    from the study (a backend may have computed them in another process); latency from the tables."""
    trials = outcomes(study) if isinstance(study, optuna.Study) else study
    out: dict[Arch, Candidate] = {}
    for trial in trials:
        if trial.state != "complete" or trial.arch is None or trial.arch in out:
            continue
        evaluation = problem.record(trial.arch, trial.score)
        if evaluation.feasible:
            out[trial.arch] = Candidate(trial.number, trial.arch, evaluation.score, evaluation.latency_ms)
    return list(out.values())


def pareto_front(candidates: list[Candidate], target: str) -> list[Candidate]:
    """Candidates no other beats on both score (higher) and latency on ``target`` (lower), by latency."""
    ordered = sorted(candidates, key=lambda c: (c.latency_ms[target], -c.score))
    front, best_score = [], float("-inf")
    for candidate in ordered:
        if candidate.score > best_score:
            front.append(candidate)
            best_score = candidate.score
    return front


def ranked_per_budget(candidates: list[Candidate], problem: SearchProblem) -> dict[float, list[Candidate]]:
    """For each budget of the primary target: the candidates within its limit, best score first (ties: the faster)."""
    primary = problem.primary.name
    ordered = sorted(candidates, key=lambda c: (-c.score, c.latency_ms[primary]))
    return {budget: [c for c in ordered if c.latency_ms[primary] <= problem.primary.limit_ms(budget)]
            for budget in problem.primary.budgets_ms}


def best_per_budget(candidates: list[Candidate], problem: SearchProblem) -> dict[float, Candidate]:
    """For each budget of the primary target: the highest score within it (ties: the faster)."""
    return {budget: ranked[0] for budget, ranked in ranked_per_budget(candidates, problem).items() if ranked}


def shortlist(ranked: list[Candidate], size: int) -> list[Candidate]:
    """``size`` candidates from ``ranked`` (the proxy's order, best first), spread over input resolutions
    and depths: the best arch at each resolution first, then the best at each (resolution, depths) not
    yet chosen, then the next best overall.

    The proxy's top few are near-copies at one resolution: a score from an untrained network barely
    sees the input side (synflow's ranking moves little with it, docs/BENCHMARKS.md), while what a
    resolution costs in detail only shows once the network learns. So training, not the proxy,
    decides the resolution; the proxy decides the shape at each. Depth is spread for a like reason: the
    proxy's favourites are one block per stage (synflow grows with width far more than with depth)."""
    chosen: list[Candidate] = []
    for kind in (lambda a: a.resolution, lambda a: (a.resolution, a.depths)):
        seen = {kind(c.arch) for c in chosen}
        for candidate in ranked:
            if len(chosen) < size and kind(candidate.arch) not in seen:
                chosen.append(candidate)
                seen.add(kind(candidate.arch))
    rest = [c for c in ranked if c not in chosen]
    return sorted(chosen + rest[:size - len(chosen)], key=ranked.index)
