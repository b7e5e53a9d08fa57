"""Scoring in worker processes (the Optuna backend's ``--workers``): the same scores as scoring here,
the same study for the same seed, and counts or estimators it cannot serve refused."""

from __future__ import annotations

import pytest

from effvit_nas import Arch, SearchSpace
from effvit_nas.errors import EffNasError
from effvit_nas.estimators import create_estimator
from effvit_nas.estimators._proxies import Synflow
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import SearchProblem, Target
from effvit_nas.search._scoring_pool import ScoringPool, check_workers, usable_cpus
from effvit_nas.search.optuna_backend import run_optuna

TABLE = "amd-epyc-2core-ort-b1"


def trial_arch(trial) -> Arch:
    return Arch.from_dict(trial.user_attrs["arch"])


def two_worker_search(seed: int, trials: int = 8):
    problem = SearchProblem(SearchSpace.default(), [Target(LatencyTable.load(TABLE), (3.0,), margin=0.05)],
                            create_estimator("synflow"), seed_with_references=False)
    return run_optuna(problem, None, trials=trials, seed=seed, workers=2)


@pytest.mark.slow  # spawns worker processes
def test_worker_scores_are_the_scores_made_here_and_a_seed_gives_the_same_study():
    first, again = two_worker_search(seed=3), two_worker_search(seed=3)
    here = create_estimator("synflow")
    archs = [trial_arch(t) for t in first.trials]
    scored = [(t, a) for t, a in zip(first.trials, archs) if t.values is not None]  # unscored: over the limit aimed at
    assert len({a for _, a in scored}) > 1
    for trial, arch in scored:
        assert trial.values[0] == pytest.approx(here.score(arch), rel=1e-12)
    assert [trial_arch(t) for t in again.trials] == archs and [t.values for t in again.trials] == [
        t.values for t in first.trials]


def test_worker_counts_outside_the_cpus_and_estimators_a_worker_cannot_rebuild_are_refused():
    with pytest.raises(EffNasError, match="--workers must be at least 1, but got 0"):
        check_workers(0)
    with pytest.raises(EffNasError, match=f"at most the {usable_cpus()} CPUs"):
        check_workers(usable_cpus() + 1)
    by_hand = Synflow(resolution=96)  # not from create_estimator: a worker would build the default (64 px)
    with pytest.raises(EffNasError, match="needs an estimator built by create_estimator"):
        ScoringPool(by_hand, 2)
