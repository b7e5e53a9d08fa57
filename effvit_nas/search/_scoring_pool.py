"""Scoring several archs at once in worker processes, for the embedded (Optuna) backend.

A zero-cost proxy scores one arch on one thread (a second buys nothing on a small batch, and two
processes spinning two threads each on two cores slow each other tens of times). So a search that
scores in its own process leaves every other core idle: on 2 cores, two one-thread scorers in
separate processes run at nearly full speed each (docs/BENCHMARKS.md, "Two processes at once").
``effnas search --workers N`` uses it; it is not the default (docs/SEARCH.md says why).

Each worker builds the estimator once from its registered name and options, as a Ray worker does,
so nothing heavy is pickled per arch. Workers are started with ``spawn``: forking a process whose
torch already started its thread pools can hang the child.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ..arch import Arch
from ..errors import EffNasError, EstimatorError
from ..estimators import AccuracyEstimator

__all__ = ["ScoringPool", "check_workers", "usable_cpus"]

_WORKER_ESTIMATOR: AccuracyEstimator | None = None  # one per worker process, built by ``_start_worker``


def usable_cpus() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def rebuildable(estimator: AccuracyEstimator) -> bool:
    """Whether a worker can build the same estimator from its name and options: ``create_estimator``
    records them on the instance; one constructed by hand has none (the class default)."""
    return "options" in vars(estimator)


def check_workers(workers: int) -> None:
    if workers < 1:
        raise EffNasError(f"--workers must be at least 1, but got {workers}")
    if workers > usable_cpus():
        raise EffNasError(f"--workers must be at most the {usable_cpus()} CPUs this process may use (more "
                          f"processes than cores only slow each other), but got {workers}")


def _start_worker(name: str, options: dict[str, Any], threads: int) -> None:
    """Build the estimator; the workers share the cores (an estimator that trains would otherwise take
    one thread per core in each) and leave Ctrl-C to the search, which stops the round."""
    global _WORKER_ESTIMATOR
    import signal

    os.environ["OMP_NUM_THREADS"] = str(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)
    from ..estimators import create_estimator

    _WORKER_ESTIMATOR = create_estimator(name, **options)


def _score(arch: Arch) -> float | str:
    """The score, or an ``EstimatorError``'s message (a result to record, not a crash); anything else raises."""
    assert _WORKER_ESTIMATOR is not None, "the pool's initializer builds the estimator"
    try:
        return _WORKER_ESTIMATOR.check_score(arch, _WORKER_ESTIMATOR.score(arch))
    except EstimatorError as exc:
        return str(exc)


class ScoringPool:
    """``score_all(archs)``: scores in the order given, computed ``workers`` at a time."""

    def __init__(self, estimator: AccuracyEstimator, workers: int) -> None:
        if not rebuildable(estimator):
            raise EffNasError(f"scoring in worker processes needs an estimator built by create_estimator (its "
                              f"options say how to build it again), but {estimator.name!r} records options "
                              f"{estimator.options} that do not rebuild it; build it with create_estimator or "
                              "use one worker")
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(estimator.name, dict(estimator.options), max(1, usable_cpus() // workers)))

    def score_all(self, archs: list[Arch]) -> list[float | EstimatorError]:
        results = list(self._executor.map(_score, archs))
        return [EstimatorError(r) if isinstance(r, str) else r for r in results]

    def close(self, *, abandon: bool = False) -> None:
        """Stop the workers; ``abandon`` (an error or Ctrl-C): without waiting for the archs in flight."""
        self._executor.shutdown(wait=not abandon, cancel_futures=True)
