"""From a finished study to what a user takes away: best.yaml per budget, pareto.json, pareto.png and
the run's metadata.

Everything here reads the study through ``outcomes``: one plain record per trial, whichever backend
ran it, so the rules for what a trial means (its state, its failure) live in one place."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from .._io import atomic_write_text
from ..arch import Arch
from ..counting import count
from ..provenance import git_revision, library_versions, utc_now
from ._study import FAIL_REASON
from .problem import SearchProblem

if TYPE_CHECKING:
    from .measured import MeasuredShortlists

__all__ = ["Candidate", "TrialOutcome", "outcomes", "trial_summary", "feasible_candidates", "pareto_front",
           "best_per_budget", "ranked_per_budget", "budget_reports", "write_results"]


@dataclass(frozen=True)
class TrialOutcome:
    number: int
    state: str  # complete, pruned, failed (the estimator could not score it), interrupted, or running/waiting
    arch: Arch | None  # None when the trial stopped before its arch was recorded
    latency_ms: dict[str, float]  # per target, from the tables (known before scoring)
    score: float | None = None  # complete trials only
    fail_reason: str | None = None


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
            fail_reason=attrs.get(FAIL_REASON)))
    return out


def trial_summary(trials: list[TrialOutcome]) -> dict[str, Any]:
    """Counts per state, the first failure's reason, and the lowest predicted latency reached per target."""
    failed = [t for t in trials if t.state == "failed"]
    complete = [t for t in trials if t.state == "complete"]
    targets = {name for t in complete for name in t.latency_ms}
    return {
        "trials_complete": len(complete),
        "trials_pruned": sum(t.state == "pruned" for t in trials),
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


def budget_reports(problem: SearchProblem, budget_ms: float, candidate: Candidate) -> dict[str, dict[str, Any]]:
    """Per target, how ``candidate`` stands against its budget (``budget_ms`` on the primary, the one budget
    on each other target): ``limit_ms``, ``confidence``, ``ratio_quantile``, ``margin`` and
    ``probability_within_budget``, each a {target: value} mapping like ``predicted_latency_ms``."""
    reports = {t.name: t.budget_report(budget_ms if t is problem.primary else max(t.budgets_ms),
                                       candidate.latency_ms[t.name]) for t in problem.targets}
    fields = next(iter(reports.values()))
    return {field: {name: report[field] for name, report in reports.items()} for field in fields}


def variant_name(problem: SearchProblem, budget_ms: float) -> str:
    return f"effvit-{problem.primary.name}-{problem.primary.label(budget_ms)}"


def write_results(study: optuna.Study, problem: SearchProblem, out_dir: Path, run_info: dict[str, Any],
                  refined: dict[float, Any] | None = None, measured: MeasuredShortlists | None = None) -> dict:
    """Write best.yaml (and best-<budget>.yaml for a family), pareto.json, pareto.png, metadata.json.
    ``refined``: a budget's pick by short training (``search/refine.py``), in place of the best score.
    ``measured``: the finalists timed as deployed (``search/measured.py``); a budget's pick is then the best
    score among those that measured within it, and a budget none of them met has no pick."""
    trials = outcomes(study)
    candidates = feasible_candidates(trials, problem)
    primary = problem.primary.name
    front = pareto_front(candidates, primary)
    refined = refined or {}
    if measured is None:
        best = best_per_budget(candidates, problem)
    else:
        best = {b: kept[0] for b, kept in measured.kept.items() if kept}
    best.update({b: r.candidate for b, r in refined.items()})
    # M0-M5 as the study scored them (a reference pruned or not reached is left out, not re-scored here)
    references = {name: problem.known(arch) for name, arch in problem.reference_archs().items()
                  if problem.known(arch) is not None}
    metadata = {
        **run_info,
        "finished": utc_now(),
        "git_revision": git_revision(),
        "versions": library_versions(),
        "space": {"name": problem.space.name, "hash": problem.space.content_hash},
        "tables": {t.name: t.table.table_id for t in problem.targets},
        "budgets_ms": {t.name: list(t.budgets_ms) for t in problem.targets},
        "margin": {t.name: t.margin for t in problem.targets},
        "confidence": {t.name: t.confidence for t in problem.targets},
        "ratio_quantile": {t.name: t.ratio_quantile for t in problem.targets},
        "estimator": problem.estimator.describe(),
        "seed_with_references": problem.seed_with_references,
        **trial_summary(trials),
        "feasible": len(candidates),
    }
    written = {}
    for budget, candidate in best.items():
        name = variant_name(problem, budget)
        cost = count(candidate.arch)
        info = {"budget_ms": budget, "predicted_latency_ms": candidate.latency_ms,
                **budget_reports(problem, budget, candidate), "score": candidate.score,
                "estimator": problem.estimator.name, "params": cost.params, "macs": cost.macs,
                "tables": metadata["tables"], "trial": candidate.trial, "seed": run_info.get("seed")}
        if measured is not None:  # the pick's own deployed timing on this machine, and its verdict
            timing = measured.timings[candidate.arch.arch_id]
            info["measured_latency_ms"] = {primary: timing["measured_ms"]}
            info["measured_verdict"] = timing["verdicts"].get(problem.primary.label(budget))
        if budget in refined:  # picked by validation top-1 after short training; the proxy's score stays above
            info["refined_top1"] = refined[budget].top1
            info["refined_candidates"] = refined[budget].trained
        arch = candidate.arch.replace(name=name)
        files = [out_dir / f"best-{problem.primary.label(budget)}.yaml"] if len(best) > 1 else []
        if budget == max(best):
            files.append(out_dir / "best.yaml")
        for path in files:
            arch.to_yaml(path, metadata=info)
        written[budget] = {"name": name, "files": [str(p) for p in files], **info}
    objectives = [f"score: {problem.estimator.score_label} (max)", f"latency_ms on {primary} (min)"]
    pareto = {"target": primary, "objectives": objectives,
              "front": [c.to_dict() for c in front],
              "references": {n: {"score": e.score, "latency_ms": e.latency_ms} for n, e in references.items()}}
    atomic_write_text(out_dir / "pareto.json", json.dumps(pareto, indent=1) + "\n")
    metadata["best"] = {problem.primary.label(b): w for b, w in written.items()}
    atomic_write_text(out_dir / "metadata.json", json.dumps(metadata, indent=1) + "\n")
    plot_pareto(trials, problem, front, best, references, out_dir / "pareto.png")
    return metadata


def plot_pareto(trials: list[TrialOutcome], problem: SearchProblem, front: list[Candidate],
                best: dict[float, Candidate], references: dict, path: Path) -> Path:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = problem.primary.name
    complete = [t for t in trials if t.state == "complete"]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([t.latency_ms[primary] for t in complete], [t.score for t in complete], s=8, color="0.75",
               label=f"trials ({len(complete)})")
    ax.plot([c.latency_ms[primary] for c in front], [c.score for c in front], "-o", ms=3, color="tab:blue",
            label="feasible Pareto front")
    for name, evaluation in references.items():
        ax.scatter(evaluation.latency_ms[primary], evaluation.score, marker="s", color="tab:red", s=30, zorder=3)
        ax.annotate(name, (evaluation.latency_ms[primary], evaluation.score), textcoords="offset points",
                    xytext=(4, -10), fontsize=8, color="tab:red")
    for budget in problem.primary.budgets_ms:
        ax.axvline(budget, color="tab:green", ls="--", lw=1)
        if budget in best:
            c = best[budget]
            ax.scatter(c.latency_ms[primary], c.score, marker="*", s=160, color="tab:green", zorder=4)
            label = problem.primary.label(budget)
            ax.annotate(label, (budget, ax.get_ylim()[0]), textcoords="offset points", xytext=(3, 3),
                        fontsize=8, color="tab:green")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel=f"predicted latency on {primary} (ms)",
           ylabel=problem.estimator.score_label,  # what the values are: a proxy's score is not an accuracy
           title=f"{problem.space.name}: best under each budget (stars), M0–M5 (squares)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
