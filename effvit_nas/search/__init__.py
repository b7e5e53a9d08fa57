"""Budgeted search: an Optuna study over a ``SearchSpace`` with latency budgets as constraints.

``run_search`` is what ``effnas search`` calls; the pieces (problem, backends, results) are usable
on their own. Backends register themselves (``SearchBackend``, ``BACKENDS``); Ray's by module name,
so that importing this package or listing the backends loads no Ray.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import EffNasError, EstimatorError
from ._backend import (
    BACKENDS,
    DEFAULT_BACKEND,
    Progress,
    SearchBackend,
    create_backend,
    register_backend,
    register_lazy_backend,
)
from ._study import SAMPLERS, STOPPED_SHORT_ATTR, STUDY_FILE, check_resumed_study, check_sampler, drop_torn_record
from .candidates import (
    best_per_budget,
    feasible_candidates,
    outcomes,
    pareto_front,
    ranked_per_budget,
    trial_summary,
)
from .measured import MEASURED_CONFIDENCE, Measurement, check_measurable, default_measurement, measure_shortlists
from .optuna_backend import OptunaBackend
from .problem import DEFAULT_CONFIDENCE, Evaluation, SearchProblem, Target
from .refine import Refinement, refine
from .results import write_results

register_lazy_backend("ray", f"{__name__}.ray_backend")

__all__ = ["SearchProblem", "Target", "DEFAULT_CONFIDENCE", "Evaluation", "run_search", "prepare_out_dir", "SAMPLERS",
           "feasible_candidates", "pareto_front", "best_per_budget", "BACKENDS", "DEFAULT_BACKEND", "SearchBackend",
           "OptunaBackend", "create_backend", "register_backend", "register_lazy_backend", "Refinement", "Measurement",
           "check_measurable", "default_measurement", "MEASURED_CONFIDENCE"]


def prepare_out_dir(out_dir: Path, resume: bool) -> None:
    """A fresh search needs an empty (or new) folder; a resumed one needs the old one."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EffNasError(f"--out must be a folder, but {str(out_dir)!r} is a file; pick another --out")
    if (out_dir / "study.db").exists() and not (out_dir / STUDY_FILE).exists():
        raise EffNasError(f"--out {str(out_dir)!r} holds a study.db written before studies became "
                          f"{STUDY_FILE} files, which this version cannot continue; pick another --out")
    if resume:
        if not (out_dir / STUDY_FILE).exists():
            raise EffNasError(f"--resume needs a study in {str(out_dir)!r}, but there is none; run without "
                              "--resume to start one")
        return
    if out_dir.exists() and any(out_dir.iterdir()):
        raise EffNasError(f"--out must be a new or empty folder, but {str(out_dir)!r} holds files; pass --resume to "
                          "continue the search there, or pick another --out")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, or not writable
        raise EffNasError(f"--out must be a folder that can be created, but {str(out_dir)!r} cannot "
                          f"({exc.strerror}); pick another --out") from None


def run_search(
    problem: SearchProblem,
    out_dir: Path,
    *,
    trials: int,
    seed: int,
    sampler: str = "tpe",
    resume: bool = False,
    progress: Progress | None = None,
    backend: str | SearchBackend = DEFAULT_BACKEND,
    refinement: Refinement | None = None,
    measurement: Measurement | None = None,
) -> dict[str, Any]:
    """Search, then write the results; ``backend`` is a registered name or a built backend (for options:
    ``create_backend("ray", workers=2)``). Trials the estimator cannot score are recorded as failed and
    counted in the metadata; when every trial failed there is no result, and the first reason is raised.
    ``measurement``: time each budget's finalists on this machine and keep those within it (``search/measured.py``),
    before ``refinement`` trains among them."""
    if not isinstance(backend, SearchBackend):
        backend = create_backend(backend)
    if trials < 1:
        raise EffNasError(f"--trials must be at least 1, but got {trials}")
    check_sampler(sampler)  # before the out dir is touched
    if measurement is not None:
        check_measurable(problem.primary.table)
    prepare_out_dir(out_dir, resume)
    repaired = drop_torn_record(out_dir) if resume else None
    if resume:
        check_resumed_study(out_dir, problem)
    started = time.perf_counter()
    study = backend.run(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume, progress=progress)
    summary = trial_summary(outcomes(study))
    if summary["trials_complete"] == 0 and summary["trials_failed"]:
        raise EstimatorError(f"a search needs trials its estimator can score, but all {summary['trials_failed']} "
                             f"failed; first: {summary['first_failure']}")
    run_info = {"seed": seed, "sampler": sampler, "trials": trials, "resumed": resume, "backend": backend.name,
                "search_seconds": round(time.perf_counter() - started, 2)}
    if backend.describe():
        run_info[backend.name] = backend.describe()  # e.g. "ray": its cluster and per-trial resources
    if repaired:
        run_info["journal_repaired"] = repaired
    if study.user_attrs.get(STOPPED_SHORT_ATTR):  # fewer candidates than --trials: said, not hidden
        run_info["stopped_short"] = study.user_attrs[STOPPED_SHORT_ATTR]
    refined, measured, ranked = {}, None, None
    if measurement is not None:
        stage_started = time.perf_counter()
        ranked_all = ranked_per_budget(feasible_candidates(study, problem), problem)
        measured = measure_shortlists(ranked_all, problem.primary, out_dir, measurement, progress)
        ranked = measured.kept
        run_info["measurement"] = {**measurement.to_dict(), **measured.report()}
        run_info["measure_seconds"] = round(time.perf_counter() - stage_started, 2)
    if refinement is not None:
        stage_started = time.perf_counter()
        refined = refine(study, problem, out_dir, refinement, progress, ranked=ranked)
        run_info["refinement"] = refinement.to_dict()
        run_info["refine_seconds"] = round(time.perf_counter() - stage_started, 2)
    picks = _picks(study, problem, refined, measured)
    return write_results(study, problem, out_dir, run_info, picks, refined, measured)


def _picks(study: Any, problem: SearchProblem, refined: dict[float, Any], measured: Any) -> dict[float, Any]:
    """Each budget's pick: the best score within its predicted limit; with ``measured``, the best score among
    the finalists that measured within the budget (a budget none of them met has none); with ``refined``,
    the candidate short training ranked first."""
    if measured is None:
        best = best_per_budget(feasible_candidates(study, problem), problem)
    else:
        best = {b: kept[0] for b, kept in measured.kept.items() if kept}
    return best | {b: r.candidate for b, r in refined.items()}
