"""From a finished study to what a user takes away: best.yaml per budget, pareto.json, pareto.png and
the run's metadata."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from .._io import atomic_write_text
from ..arch import Arch
from ..counting import count
from ..provenance import git_revision, library_versions, utc_now
from ..units import format_ms
from .problem import SearchProblem

__all__ = ["Candidate", "feasible_candidates", "pareto_front", "best_per_budget", "write_results"]


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


def feasible_candidates(study: optuna.Study, problem: SearchProblem) -> list[Candidate]:
    """Every completed trial that meets every budget's constraint, one per distinct arch. Scores come
    from the study (a backend may have computed them in another process); latency from the tables."""
    out: dict[Arch, Candidate] = {}
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        arch = Arch.from_dict(trial.user_attrs["arch"])
        if arch in out:
            continue
        evaluation = problem.record(arch, trial.values[0])
        if evaluation.feasible:
            out[arch] = Candidate(trial.number, arch, evaluation.score, evaluation.latency_ms)
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


def best_per_budget(candidates: list[Candidate], problem: SearchProblem) -> dict[float, Candidate]:
    """For each budget of the primary target: the highest score within it (ties: the faster)."""
    primary = problem.primary.name
    best = {}
    for budget in problem.primary.budgets_ms:
        within = [c for c in candidates if c.latency_ms[primary] <= problem.primary.limit_ms(budget)]
        if within:
            best[budget] = max(within, key=lambda c: (c.score, -c.latency_ms[primary]))
    return best


def variant_name(problem: SearchProblem, budget_ms: float) -> str:
    return f"effvit-{problem.primary.name}-{format_ms(budget_ms)}"


def write_results(study: optuna.Study, problem: SearchProblem, out_dir: Path, run_info: dict[str, Any]) -> dict:
    """Write best.yaml (and best-<budget>.yaml for a family), pareto.json, pareto.png, metadata.json."""
    candidates = feasible_candidates(study, problem)
    primary = problem.primary.name
    front = pareto_front(candidates, primary)
    best = best_per_budget(candidates, problem)
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
        "estimator": problem.estimator.describe(),
        "trials_complete": len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))),
        "feasible": len(candidates),
    }
    written = {}
    for budget, candidate in best.items():
        name = variant_name(problem, budget)
        cost = count(candidate.arch)
        info = {"budget_ms": budget, "predicted_latency_ms": candidate.latency_ms, "score": candidate.score,
                "estimator": problem.estimator.name, "params": cost.params, "macs": cost.macs,
                "tables": metadata["tables"], "trial": candidate.trial, "seed": run_info.get("seed")}
        arch = candidate.arch.replace(name=name)
        files = [out_dir / f"best-{format_ms(budget)}.yaml"] if len(best) > 1 else []
        if budget == max(best):
            files.append(out_dir / "best.yaml")
        for path in files:
            arch.to_yaml(path, metadata=info)
        written[budget] = {"name": name, "files": [str(p) for p in files], **info}
    pareto = {"target": primary, "objectives": ["score (max)", f"latency_ms on {primary} (min)"],
              "front": [c.to_dict() for c in front],
              "references": {n: {"score": e.score, "latency_ms": e.latency_ms} for n, e in references.items()}}
    atomic_write_text(out_dir / "pareto.json", json.dumps(pareto, indent=1) + "\n")
    metadata["best"] = {format_ms(b): w for b, w in written.items()}
    atomic_write_text(out_dir / "metadata.json", json.dumps(metadata, indent=1) + "\n")
    plot_pareto(study, problem, front, best, references, out_dir / "pareto.png")
    return metadata


def plot_pareto(study: optuna.Study, problem: SearchProblem, front: list[Candidate], best: dict[float, Candidate],
                references: dict, path: Path) -> Path:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    primary = problem.primary.name
    trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([t.values[1] for t in trials], [t.values[0] for t in trials], s=8, color="0.75",
               label=f"trials ({len(trials)})")
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
            ax.annotate(format_ms(budget), (budget, ax.get_ylim()[0]), textcoords="offset points", xytext=(3, 3),
                        fontsize=8, color="tab:green")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xlabel=f"predicted latency on {primary} (ms)",
           ylabel=f"estimated accuracy ({problem.estimator.name})",
           title=f"{problem.space.name}: best under each budget (stars), M0–M5 (squares)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
