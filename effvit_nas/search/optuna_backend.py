"""The embedded default backend: an Optuna study stored in SQLite in the output folder.

Objectives: the estimator's score (maximise) and the primary target's predicted latency (minimise),
so the feasible Pareto front comes out, not just one point. Every budget is a constraint through
``trial.set_constraint`` (feasible when latency - budget <= 0). M0–M5 are enqueued as the first
trials: the search starts from the hand-designed family and can only do better on the estimator.
The study survives a kill: each finished trial is committed, and ``resume`` continues it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from ..errors import EffNasError, UnknownNameError
from .problem import SearchProblem

__all__ = ["SAMPLERS", "STUDY_NAME", "storage_url", "run_optuna"]

log = logging.getLogger(__name__)
STUDY_NAME = "effnas"
SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=40),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


def storage_url(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / 'study.db').resolve()}"


def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # multivariate TPE is marked experimental; it is what handles the space's coupled knobs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def check_sampler(name: str) -> None:
    if name not in SAMPLERS:
        raise UnknownNameError(f"sampler must be one of {sorted(SAMPLERS)}, but got {name!r}")


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    check_sampler(name)
    return SAMPLERS[name](seed)


def objective_for(problem: SearchProblem) -> Callable[[optuna.trial.Trial], tuple[float, float]]:
    def objective(trial: optuna.trial.Trial) -> tuple[float, float]:
        arch = problem.space.suggest(trial)
        evaluation = problem.evaluate(arch)
        for target, violation in evaluation.violations_ms.items():
            trial.set_constraint(f"latency_ms:{target}", violation)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("latency_ms", evaluation.latency_ms)
        return evaluation.score, evaluation.latency_ms[problem.primary.name]

    return objective


def run_optuna(
    problem: SearchProblem,
    out_dir: Path,
    *,
    trials: int,
    seed: int,
    sampler: str = "tpe",
    resume: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> optuna.Study:
    """Run (or continue) the study until it holds ``trials`` finished trials."""
    quiet_optuna()
    out_dir.mkdir(parents=True, exist_ok=True)
    storage = storage_url(out_dir)
    if resume:
        try:
            study = optuna.load_study(study_name=STUDY_NAME, storage=storage, sampler=make_sampler(sampler, seed))
        except KeyError:
            raise EffNasError(f"--resume needs a study in {str(out_dir)!r}, but there is none; run without "
                              "--resume to start one") from None
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # killed mid-trial
    else:
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=make_sampler(sampler, seed),
                                    directions=["maximize", "minimize"])
        for arch in problem.reference_archs().values():
            study.enqueue_trial(problem.space.to_params(arch), skip_if_exists=True)
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    remaining = max(0, trials - done)
    objective = objective_for(problem)

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if progress:
            progress(trial.number + 1, trials, "trials")

    if progress:
        progress(done, trials, "trials")
    if remaining:
        study.optimize(objective, n_trials=remaining, callbacks=[report], catch=())
    return study
