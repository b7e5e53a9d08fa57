"""The embedded default backend: an Optuna study in the output folder (an append-only journal file).

Trials are asked, scored and told in rounds of ``workers``: the sampler asks a round's archs one after
another, worker processes score them at once (search/_scoring_pool.py), and they are told in the
order asked, so a seed gives the same study whatever order the workers finish in. With one worker
the estimator scores in this process, one trial at a time.

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

from ..arch import Arch
from ..errors import EffNasError, EstimatorError
from ._backend import Progress, SearchBackend, register_backend
from ._scoring_pool import ScoringPool, check_workers
from ._study import (
    FAIL_REASON,
    SAMPLERS,
    STUDY_FILE,
    STUDY_NAME,
    create_study,
    fail_unfinished,
    finished_count,
    is_finished,
    make_sampler,
    open_storage,
    quiet_optuna,
)
from .problem import SearchProblem

__all__ = ["OptunaBackend", "run_optuna", "SAMPLERS", "STUDY_NAME", "STUDY_FILE", "open_storage"]

log = logging.getLogger(__name__)


@register_backend
class OptunaBackend(SearchBackend):
    name = "optuna"
    description = "trials on this machine, one at a time unless --workers scores several at once"

    # One by default: on the main job, two workers were 1.38x faster but picked archs the estimator
    # scores lower on 2 of 3 seeds and found none within the budget on a fourth (docs/SEARCH.md).
    def __init__(self, *, workers: int = 1) -> None:
        check_workers(workers)
        self.workers = workers

    def run(self, problem: SearchProblem, out_dir: Path, *, trials: int, seed: int, sampler: str = "tpe",
            resume: bool = False, progress: Progress | None = None) -> optuna.Study:
        return run_optuna(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume,
                          progress=progress, workers=self.workers)

    def describe(self) -> dict:
        return {"workers": self.workers}


def run_optuna(problem: SearchProblem, out_dir: Path | None, *, trials: int, seed: int, sampler: str = "tpe",
               resume: bool = False, progress: Progress | None = None, workers: int = 1) -> optuna.Study:
    """Run (or continue) the study until it holds ``trials`` finished trials; returns the study saved
    in ``out_dir`` (``None``: kept in memory, nothing saved, no resume). ``workers`` > 1 scores that
    many archs at once in worker processes.

    The sampler works on an in-memory copy and each finished trial is appended to the study file at once.
    Writing through, every parameter and attribute is its own append (about 35 a trial), 10x the
    sampling's cost (docs/SEARCH.md). A kill loses only
    the trials in flight (one, or a round with workers), which run again on resume."""
    quiet_optuna()
    if out_dir is None:
        working = create_study(problem, None, sampler=sampler, seed=seed, backend=OptunaBackend.name)
        record = None
    else:
        record = _open_record(problem, out_dir, sampler=sampler, seed=seed, resume=resume)
        working = optuna.create_study(sampler=make_sampler(sampler, seed), directions=["maximize", "minimize"])
        working.add_trials(t for t in record.get_trials(deepcopy=False) if is_finished(t))
    if problem.seed_with_references:  # skipped where a finished trial already holds them (a resume)
        for arch in problem.reference_archs().values():
            working.enqueue_trial(problem.space.to_params(arch), skip_if_exists=True)
    done = finished_count(working)
    if progress:
        progress(done, trials, "trials")
    pool = ScoringPool(problem.estimator, workers) if workers > 1 and done < trials else None
    try:
        while done < trials:
            for finished in _run_round(working, problem, min(workers, trials - done), pool):
                if record is not None:
                    record.add_trial(finished)
                done += 1
                if progress:
                    progress(done, trials, "trials")
    except BaseException:
        if pool is not None:
            pool.close(abandon=True)
        raise
    if pool is not None:
        pool.close()
    return record if record is not None else working


def _open_record(problem: SearchProblem, out_dir: Path, *, sampler: str, seed: int, resume: bool) -> optuna.Study:
    """The study in ``out_dir``: created, or loaded to be continued."""
    if not resume:
        out_dir.mkdir(parents=True, exist_ok=True)
        return create_study(problem, out_dir, sampler=sampler, seed=seed, backend=OptunaBackend.name)
    try:
        record = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out_dir),
                                   sampler=make_sampler(sampler, seed))
    except KeyError:
        raise EffNasError(f"--resume needs a study in {str(out_dir)!r}, but there is none; run without "
                          "--resume to start one") from None
    fail_unfinished(record)  # left RUNNING by a study written through (before the in-memory copy)
    return record


def _run_round(study: optuna.Study, problem: SearchProblem, size: int,
               pool: ScoringPool | None) -> list[optuna.trial.FrozenTrial]:
    """Ask ``size`` trials, score them (in ``pool`` when given), tell them in the order asked; returns the
    finished trials. Ask/tell rather than ``study.optimize`` because an estimator's failure is a result
    to record (FAIL, with its reason), not a warning with a traceback on the user's terminal; anything
    else (a bug, Ctrl-C) tells every trial of the round as FAIL without a reason and is raised."""
    asked: list[optuna.Trial] = []
    try:
        archs = []
        for _ in range(size):
            asked.append(trial := study.ask())
            archs.append(_ask_arch(trial, problem))
        scores = _scores(problem, archs, pool)
    except BaseException:
        for trial in asked:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finished = []
    for trial, arch, score in zip(asked, archs, scores):
        if isinstance(score, EstimatorError):
            trial.set_user_attr(FAIL_REASON, str(score))
            log.info("trial %d failed: %s", trial.number, score)  # counted and reported at the end, not per trial
            finished.append(study.tell(trial, state=optuna.trial.TrialState.FAIL))
        else:
            evaluation = problem.record(arch, score)
            finished.append(study.tell(trial, [evaluation.score, evaluation.latency_ms[problem.primary.name]]))
    return finished


def _ask_arch(trial: optuna.Trial, problem: SearchProblem) -> Arch:
    """The trial's arch, with its predicted latency set as the constraints (table lookups: cheap)."""
    arch = problem.space.suggest(trial)
    latency, violations = problem.latency(arch)
    for target, violation in violations.items():
        trial.set_constraint(f"latency_ms:{target}", violation)
    trial.set_user_attr("arch", arch.to_dict())
    trial.set_user_attr("latency_ms", latency)
    return arch


def _scores(problem: SearchProblem, archs: list[Arch], pool: ScoringPool | None) -> list[float | EstimatorError]:
    """Each arch's score or the estimator's error; an arch scored before is not scored again."""
    new = list(dict.fromkeys(a for a in archs if problem.known(a) is None))  # in order, once each
    if pool is not None and new:
        computed = dict(zip(new, pool.score_all(new)))
    else:
        computed = {}
        for arch in new:
            try:
                computed[arch] = problem.evaluate(arch).score
            except EstimatorError as exc:
                computed[arch] = exc
    return [computed[a] if a in computed else problem.known(a).score for a in archs]
