"""The embedded default backend: an Optuna study in the output folder (an append-only journal file).

Trials are asked, scored and told in rounds of ``workers``: the sampler asks a round's archs one after
another, worker processes score them at once (search/_scoring_pool.py), and they are told in the
order asked, so a seed gives the same study whatever order the workers finish in. With one worker
the estimator scores in this process, one trial at a time.

Objectives: the estimator's score (maximise) and the primary target's predicted latency (minimise),
so the feasible Pareto front comes out, not just one point. Every budget is a constraint through
``trial.set_constraint`` (feasible when latency - budget <= 0); a family aims at its budgets in turn.
An arch over the limit its phase aims at is told to the study as infeasible (PRUNED, its constraints
set) without being scored: its latency is known from the tables before any score, and TPE learns from
the constraint alone. ``trials`` counts the scored candidates that fit the budget their phase aimed at,
so each budget of a family gets its share; the sampler keeps proposing until there are that many, up
to ``PROPOSALS_PER_TRIAL`` proposals per trial (the study then says it stopped short).
Unless the problem says otherwise, M0–M5 and the space's fastest arch are enqueued as the first trials:
the search starts from the hand-designed family and can only do better on the estimator. The study
survives a kill: each finished trial is committed, and ``resume`` continues it.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import optuna

from ..arch import Arch
from ..errors import EffNasError, EstimatorError
from ._backend import Progress, SearchBackend, register_backend
from ._scoring_pool import ScoringPool, check_workers
from ._study import (
    AIM_ATTR,
    FAIL_REASON,
    SAMPLERS,
    STOPPED_SHORT_ATTR,
    STUDY_FILE,
    STUDY_NAME,
    UNSCORED_ATTR,
    create_study,
    fail_unfinished,
    is_finished,
    make_sampler,
    open_storage,
    quiet_optuna,
)
from .problem import SearchProblem, violations

__all__ = ["OptunaBackend", "run_optuna", "SAMPLERS", "STUDY_NAME", "STUDY_FILE", "open_storage"]

log = logging.getLogger(__name__)


@register_backend
class OptunaBackend(SearchBackend):
    name = "optuna"
    description = "trials on this machine, one at a time unless --workers scores several at once"

    # One by default: on the main job, two workers were 1.10x faster (median of 3 seeds) but picked archs the estimator
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


# Proposals the sampler may make per scored candidate. Near the space's floor most proposals cannot
# fit (2 ms on the shipped table: ~19 in 20 before this rule); each costs a table lookup, not a score.
PROPOSALS_PER_TRIAL = 50


def run_optuna(problem: SearchProblem, out_dir: Path | None, *, trials: int, seed: int, sampler: str = "tpe",
               resume: bool = False, progress: Progress | None = None, workers: int = 1) -> optuna.Study:
    """Run (or continue) the study until it holds ``trials`` finished trials; returns the study saved
    in ``out_dir`` (``None``: kept in memory, nothing saved, no resume). ``workers`` > 1 scores that
    many archs at once in worker processes.

    The sampler works on an in-memory copy and each finished trial is appended to the study file at once.
    Writing through, every parameter and attribute is its own append (about 35 a trial), 10x the
    sampling's cost (docs/SEARCH.md). A kill loses only
    the trials in flight (one, or a round with workers), which run again on resume.

    A family searches in phases, one per budget (``SearchProblem.aims``): each phase's copy holds every
    trial so far with its constraint re-set to that phase's budget. The saved study keeps the family's
    constraint (its largest budget), so what optuna-dashboard shows as feasible does not depend on the phase."""
    quiet_optuna()
    if out_dir is None:
        record = create_study(problem, None, sampler=sampler, seed=seed, backend=OptunaBackend.name)
    else:
        record = _open_record(problem, out_dir, sampler=sampler, seed=seed, resume=resume)
    history = [t for t in record.get_trials(deepcopy=False) if is_finished(t)]
    done = sum(counts_as_trial(t, problem) for t in history)
    proposals_left = PROPOSALS_PER_TRIAL * trials - len(history)
    if progress:
        progress(done, trials, "trials")
    pool = ScoringPool(problem.estimator, workers) if workers > 1 and done < trials else None
    aims = problem.aims(trials)
    owed = _owed_per_phase(aims, trials, [t for t in history if counts_as_trial(t, problem)])
    try:
        for phase, (_, aim) in enumerate(aims):
            if owed[phase] <= 0 or done >= trials:  # nothing owed, or --trials reached: no sampling copy
                continue
            working = _sampling_copy(problem, history, aim, sampler=sampler, seed=seed + phase)
            # ``done < trials`` too: a resume with other --trials can leave one phase over its new share
            # while another is under, and --trials is the total
            while owed[phase] > 0 and done < trials and proposals_left > 0:
                size = min(workers, owed[phase], trials - done, proposals_left)
                for finished in _run_round(working, problem, size, pool, aim):
                    history.append(finished)
                    record.add_trial(_aimed_at(finished, problem, None))
                    proposals_left -= 1
                    if counts_as_trial(finished, problem):
                        owed[phase] -= 1
                        done += 1
                    if progress:
                        progress(done, trials, "trials")
        if done < trials:
            record.set_user_attr(STOPPED_SHORT_ATTR, {"trials": trials, "scored": done, "proposals": len(history)})
        elif record.user_attrs.get(STOPPED_SHORT_ATTR):  # a resume that finished what an earlier run could not
            record.set_user_attr(STOPPED_SHORT_ATTR, None)
    except BaseException:
        if pool is not None:
            pool.close(abandon=True)
        raise
    if pool is not None:
        pool.close()
    return record


def counts_as_trial(trial: optuna.trial.FrozenTrial, problem: SearchProblem) -> bool:
    """Whether a finished trial counts toward ``trials``: sent to the estimator (scored, or failed to
    score) with an arch that fits the budget its phase aimed at. Unscored proposals and the M-series
    scored as yardsticks over that limit do not."""
    latency = trial.user_attrs.get("latency_ms")
    return (trial.state != optuna.trial.TrialState.PRUNED and latency is not None
            and problem.can_fit(latency, trial.user_attrs.get(AIM_ATTR)))


def _owed_per_phase(aims: list[tuple[int, float]], trials: int,
                    history: list[optuna.trial.FrozenTrial]) -> list[int]:
    """Trials each phase still owes: its share of ``trials`` less the finished trials aimed at its budget.
    Counted by each trial's recorded aim, not by its number: a family resumed with more ``--trials`` gives
    every budget its share of the new ones (by number they would all go to the largest budgets)."""
    firsts = [first for first, _ in aims] + [trials]
    owed = [firsts[k + 1] - firsts[k] for k in range(len(aims))]
    budgets = [aim for _, aim in aims]
    for index, trial in enumerate(history):
        aim = trial.user_attrs.get(AIM_ATTR)
        # a study from before aims were recorded: phases by the count of finished trials, as they were run
        phase = budgets.index(aim) if aim in budgets else max(k for k, (first, _) in enumerate(aims)
                                                               if first <= index)
        owed[phase] -= 1
    return owed


def _sampling_copy(problem: SearchProblem, history: list[optuna.trial.FrozenTrial], aim_ms: float, *,
                   sampler: str, seed: int) -> optuna.Study:
    """An in-memory study the sampler asks from: every finished trial, held to ``aim_ms``, then the
    M-series where the space holds them and the space's fastest arch (unless a trial already was one: a
    later phase, a resume). The fastest is there for budgets near the space's floor, where the few archs
    that fit are needles (1.5 ms on the shipped table: limit 1.139 ms, floor 1.122 ms); TPE then
    searches around it."""
    working = optuna.create_study(sampler=make_sampler(sampler, seed), directions=["maximize", "minimize"])
    # a proposal left unscored by a smaller budget's phase that fits this one is unknown here, not bad:
    # told as PRUNED without a score it would count against its region
    working.add_trials(_aimed_at(t, problem, aim_ms) for t in history
                       if not (UNSCORED_ATTR in t.user_attrs and problem.can_fit(t.user_attrs["latency_ms"], aim_ms)))
    if problem.seed_with_references:
        for arch in [*problem.reference_archs().values(), problem.fastest(problem.primary)]:
            working.enqueue_trial(problem.space.to_params(arch), skip_if_exists=True)
    return working


# Optuna keeps trial.set_constraint(key, v) in system_attrs under "constraints:<key>": a re-aimed copy
# drops those and sets its own (tests/search/test_search.py checks a family's small budgets get archs).
_CONSTRAINT_PREFIX = "constraints:"


def _aimed_at(trial: optuna.trial.FrozenTrial, problem: SearchProblem,
              aim_ms: float | None) -> optuna.trial.FrozenTrial:
    """``trial`` with its latency constraints re-set for ``aim_ms`` (None: the family's largest budget)."""
    latency = trial.user_attrs.get("latency_ms")
    if latency is None:  # failed before its arch had a latency: nothing to re-aim
        return trial
    aimed = copy.deepcopy(trial)
    aimed.system_attrs = {k: v for k, v in trial.system_attrs.items() if not k.startswith(_CONSTRAINT_PREFIX)}
    for target, violation in violations(problem.targets, latency, aim_ms).items():
        aimed.set_constraint(f"latency_ms:{target}", violation)
    return aimed


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


def _run_round(study: optuna.Study, problem: SearchProblem, size: int, pool: ScoringPool | None,
               aim_ms: float) -> list[optuna.trial.FrozenTrial]:
    """Ask ``size`` trials, score them (in ``pool`` when given), tell them in the order asked; returns the
    finished trials. Ask/tell rather than ``study.optimize`` because an estimator's failure is a result
    to record (FAIL, with its reason), not a warning with a traceback on the user's terminal; anything
    else (a bug, Ctrl-C) tells every trial of the round as FAIL without a reason and is raised."""
    asked: list[optuna.Trial] = []
    try:
        archs = []
        for _ in range(size):
            asked.append(trial := study.ask())
            archs.append(_ask_arch(trial, problem, aim_ms))
        scored = [a for a in archs if a in problem.yardsticks or problem.can_fit(problem.latency(a)[0], aim_ms)]
        scores = dict(zip(scored, _scores(problem, scored, pool)))
    except BaseException:
        for trial in asked:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    finished = []
    for trial, arch in zip(asked, archs):
        score = scores.get(arch)
        if arch not in scores:  # over the limit this phase aims at: infeasible here whatever it would score
            trial.set_user_attr(UNSCORED_ATTR, "predicted over the limit its phase aimed at")
            finished.append(study.tell(trial, state=optuna.trial.TrialState.PRUNED))
        elif isinstance(score, EstimatorError):
            trial.set_user_attr(FAIL_REASON, str(score))
            log.info("trial %d failed: %s", trial.number, score)  # counted and reported at the end, not per trial
            finished.append(study.tell(trial, state=optuna.trial.TrialState.FAIL))
        else:
            evaluation = problem.record(arch, score)
            finished.append(study.tell(trial, [evaluation.score, evaluation.latency_ms[problem.primary.name]]))
    return finished


def _ask_arch(trial: optuna.Trial, problem: SearchProblem, aim_ms: float) -> Arch:
    """The trial's arch, its predicted latency against ``aim_ms`` set as the constraints (table lookups)."""
    arch = problem.space.suggest(trial)
    latency, _ = problem.latency(arch)
    for target, violation in violations(problem.targets, latency, aim_ms).items():
        trial.set_constraint(f"latency_ms:{target}", violation)
    trial.set_user_attr("arch", arch.to_dict())
    trial.set_user_attr("latency_ms", latency)
    trial.set_user_attr(AIM_ATTR, aim_ms)
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
