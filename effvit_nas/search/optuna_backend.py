"""The embedded default backend: an Optuna study stored in SQLite in the output folder.

Objectives: the estimator's score (maximise) and the primary target's predicted latency (minimise),
so the feasible Pareto front comes out, not just one point. Every budget is a constraint through
``trial.set_constraint`` (feasible when latency - budget <= 0). Unless the problem says otherwise,
M0–M5 are enqueued as the first trials: the search starts from the hand-designed family and can only
do better on the estimator. The study survives a kill: each finished trial is committed, and
``resume`` continues it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna

from ..errors import EffNasError, EstimatorError
from ._backend import Progress, SearchBackend, register_backend
from ._study import (
    FAIL_REASON,
    SAMPLERS,
    STUDY_NAME,
    create_study,
    fail_unfinished,
    finished_count,
    make_sampler,
    quiet_optuna,
    storage_url,
)
from .problem import SearchProblem

__all__ = ["OptunaBackend", "run_optuna", "SAMPLERS", "STUDY_NAME", "storage_url"]

log = logging.getLogger(__name__)


@register_backend
class OptunaBackend(SearchBackend):
    name = "optuna"
    description = "trials one after another in this process (the default)"

    def run(self, problem: SearchProblem, out_dir: Path, *, trials: int, seed: int, sampler: str = "tpe",
            resume: bool = False, progress: Progress | None = None) -> optuna.Study:
        return run_optuna(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume,
                          progress=progress)


def run_optuna(problem: SearchProblem, out_dir: Path | None, *, trials: int, seed: int, sampler: str = "tpe",
               resume: bool = False, progress: Progress | None = None) -> optuna.Study:
    """Run (or continue) the study until it holds ``trials`` finished trials. ``out_dir=None`` keeps
    the study in memory (nothing saved, no resume): for comparing samplers over many short searches,
    where SQLite's commits cost more than the trials."""
    quiet_optuna()
    if resume:
        if out_dir is None:
            raise ValueError("resume needs a study saved in an out_dir")
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(out_dir),
                                      sampler=make_sampler(sampler, seed))
        except KeyError:
            raise EffNasError(f"--resume needs a study in {str(out_dir)!r}, but there is none; run without "
                              "--resume to start one") from None
        fail_unfinished(study)  # killed mid-trial: asked again below
    else:
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        study = create_study(problem, out_dir, sampler=sampler, seed=seed, backend=OptunaBackend.name)
        if problem.seed_with_references:
            for arch in problem.reference_archs().values():
                study.enqueue_trial(problem.space.to_params(arch), skip_if_exists=True)
    done = finished_count(study)
    if progress:
        progress(done, trials, "trials")
    while done < trials:
        _run_trial(study, problem)
        done += 1
        if progress:
            progress(done, trials, "trials")
    return study


def _run_trial(study: optuna.Study, problem: SearchProblem) -> None:
    """Ask, score, tell. Ask/tell rather than ``study.optimize`` because an estimator's failure is a
    result to record (FAIL, with its reason), not a warning with a traceback on the user's terminal;
    anything else (a bug, Ctrl-C) is told as FAIL without a reason and raised."""
    trial = study.ask()
    try:
        arch = problem.space.suggest(trial)
        latency, violations = problem.latency(arch)
        for target, violation in violations.items():
            trial.set_constraint(f"latency_ms:{target}", violation)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("latency_ms", latency)
        evaluation = problem.evaluate(arch)
    except EstimatorError as exc:
        trial.set_user_attr(FAIL_REASON, str(exc))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.info("trial %d failed: %s", trial.number, exc)  # counted and reported at the end, not per trial
        return
    except BaseException:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    study.tell(trial, [evaluation.score, evaluation.latency_ms[problem.primary.name]])
