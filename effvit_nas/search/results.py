"""From a finished study to what a user takes away: best.yaml per budget, pareto.json, pareto.png and
the run's metadata.

Everything here reads the study through ``outcomes``: one plain record per trial, whichever backend
ran it, so the rules for what a trial means (its state, its failure) live in one place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from .._io import atomic_write_text
from ..counting import count
from ..provenance import git_revision, library_versions, utc_now
from .candidates import Candidate, TrialOutcome, feasible_candidates, outcomes, pareto_front, trial_summary
from .problem import SearchProblem

if TYPE_CHECKING:
    from .measured import MeasuredShortlists

__all__ = ["budget_reports", "write_results"]


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
                  best: dict[float, Candidate], refined: dict[float, Any] | None = None,
                  measured: MeasuredShortlists | None = None) -> dict:
    """Write best.yaml (and best-<budget>.yaml for a family) for the picks ``best`` (per budget, as
    ``run_search`` decided them), pareto.json, pareto.png, metadata.json. ``refined`` and ``measured``: what
    the finalists' stages recorded about the picks (their training, their deployed timing)."""
    trials = outcomes(study)
    candidates = feasible_candidates(trials, problem)
    primary = problem.primary.name
    front = pareto_front(candidates, primary)
    refined = refined or {}
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
        # what --trials counts (Optuna): scored, or failed to score, under the limit its phase aimed at
        "trials_can_fit": sum(t.state in ("complete", "failed") and bool(t.latency_ms)
                              and problem.can_fit(t.latency_ms, t.aim_ms) for t in trials),
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
        if budget in refined:  # short training's verdict; the proxy's score stays above
            pick = refined[budget]
            info["refined_candidates"] = pick.trained
            info["refinement"] = {"learned": pick.learned, "best_top1": pick.top1, "chance": pick.chance.to_dict()}
            if pick.learned:  # picked by validation top-1 among the candidates that learned
                info["refined_top1"] = pick.top1
            else:  # nothing learned: the top-1s are noise, and the pick is the proxy's
                info["picked_by"] = "the proxy: no refined candidate learned (validation top-1 not above chance)"
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
    fits = [t for t in complete if problem.can_fit(t.latency_ms)]
    over = [t for t in complete if not problem.can_fit(t.latency_ms)]  # the M-series scored as yardsticks
    unscored = [t for t in trials if t.unscored and primary in t.latency_ms]
    fig, ax = plt.subplots(figsize=(7, 5))
    ax.scatter([t.latency_ms[primary] for t in fits], [t.score for t in fits], s=8, color="0.75",
               label=f"candidates scored ({len(fits)})")
    if over:
        ax.scatter([t.latency_ms[primary] for t in over], [t.score for t in over], s=14, marker="x", color="0.55",
                   label=f"scored for comparison, over every limit ({len(over)})")
    if unscored:  # no score to plot: a tick on the latency axis says where the sampler went
        ax.scatter([t.latency_ms[primary] for t in unscored], [0.01] * len(unscored), marker="|", s=40,
                   color="0.6", transform=ax.get_xaxis_transform(),
                   label=f"proposed over the limit aimed at, not scored ({len(unscored)})")
    ax.plot([c.latency_ms[primary] for c in front], [c.score for c in front], "-o", ms=3, color="tab:blue",
            label="feasible Pareto front")
    for name, evaluation in references.items():
        ax.scatter(evaluation.latency_ms[primary], evaluation.score, marker="s", color="tab:red", s=30, zorder=3)
        ax.annotate(name, (evaluation.latency_ms[primary], evaluation.score), textcoords="offset points",
                    xytext=(4, -10), fontsize=8, color="tab:red")
    for k, budget in enumerate(problem.primary.budgets_ms):
        limit = problem.primary.limit_ms(budget)
        ax.axvline(budget, color="tab:green", ls="--", lw=1, label="budget" if k == 0 else None)
        if limit != budget:  # what the search held the prediction to: budget / q (or less a margin)
            ax.axvline(limit, color="tab:orange", ls=":", lw=1.2,
                       label=f"limit held ({problem.primary.rule})" if k == 0 else None)
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
