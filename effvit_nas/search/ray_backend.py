"""Ray Tune backend: the same study, run as Ray Tune trials on one machine or a cluster.

The pieces, and why each sits where it does:

- **Asking** stays in the driver. A ``Tuner`` drives Ray's ``OptunaSearch`` with a define-by-run
  function (``_AskArch``) that asks the space with the same parameter names as the Optuna backend,
  sets the latency constraints from the tables (cheap lookups) and hands the arch and its latency to
  the trial. The study lives in the same file (``OUT/study.journal``), so results, plots and
  ``optuna-dashboard`` work as for the embedded backend.
- **Scoring** runs in Ray workers (``_run_trial``): each worker process builds the estimator once
  from its name and options, so a supernet or a dataset never travels through the object store.
  An estimator that trains reports top-1 after every epoch; ``ASHAScheduler`` stops the unpromising
  ones, and those trials are told to Optuna as PRUNED (their partial score is not a result). An
  arch the estimator cannot score is reported as such and told as FAIL with its reason, as by the
  Optuna backend; any other error in a worker stops the search.
- **Resume** after the driver is killed goes through ``Tuner.restore`` of ``OUT/ray``: finished
  trials stay, trials in flight run again.

With one worker the ask/tell sequence is the Optuna backend's, so a deterministic estimator finds the
same arch with the same seed and trials (checked in ``scripts/bench_ray.py``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from .._io import atomic_write_text
from ..arch import Arch
from ..errors import EffNasError, EstimatorError
from ._backend import Progress, SearchBackend, register_backend
from ._study import FAIL_REASON, STUDY_NAME, create_study, finished_count, make_sampler, open_storage, quiet_optuna
from .problem import SearchProblem, predicted_latency, violations

__all__ = ["RayBackend", "RaySettings", "run_ray", "EXPERIMENT_DIR"]
EXPERIMENT_DIR = "ray"  # inside the search's output folder


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # a running cluster ("auto", "HOST:6379"); None starts a local one here
    workers: int = 1  # trials at once
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    local_cpus: int | None = None  # CPUs of a local cluster (default: this machine's)

    def check(self) -> None:
        if self.workers < 1:
            raise EffNasError(f"--workers must be at least 1, but got {self.workers}")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise EffNasError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, but got "
                              f"{self.cpus_per_trial:g} and {self.gpus_per_trial:g}")


@register_backend
class RayBackend(SearchBackend):
    name = "ray"
    description = "Ray Tune trials on a local or remote cluster, several at once, ASHA for estimators that train"

    def __init__(self, *, address: str | None = None, workers: int = 1, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, local_cpus: int | None = None) -> None:
        self.settings = RaySettings(address, workers, cpus_per_trial, gpus_per_trial, local_cpus)
        self.settings.check()

    def run(self, problem: SearchProblem, out_dir: Path, *, trials: int, seed: int, sampler: str = "tpe",
            resume: bool = False, progress: Progress | None = None) -> optuna.Study:
        return run_ray(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume, progress=progress,
                       settings=self.settings)

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self.settings)


def run_ray(problem: SearchProblem, out_dir: Path, *, trials: int, seed: int, sampler: str = "tpe",
            resume: bool = False, progress: Progress | None = None,
            settings: RaySettings = RaySettings()) -> optuna.Study:
    """Run (or continue) the search on Ray until ``trials`` trials have finished; returns the study."""
    settings.check()
    experiment = out_dir.resolve() / EXPERIMENT_DIR
    if resume and not tune.Tuner.can_restore(str(experiment)):
        raise EffNasError(f"--resume --backend ray needs a Ray experiment in {str(experiment)!r}, but there is "
                          "none; resume with the backend that started the search (--backend optuna)")
    _check_same_search(out_dir, problem, trials, resume)
    quiet_optuna()
    if not resume:
        # created here, labelled, and loaded by OptunaSearch (load_if_exists), so both backends' studies read alike
        create_study(problem, out_dir, sampler=sampler, seed=seed, backend=RayBackend.name)
    # Tune's rich console output (config tables, TensorBoard hints) would bury the command's progress
    # bar; its legacy engine honours verbose=0. Read by Tune when the run starts.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    options = worker_estimator_options(problem.estimator, settings)
    started_here = _connect(settings)
    trainable = tune.with_resources(
        tune.with_parameters(_run_trial, estimator_name=problem.estimator.name,
                             estimator_options=options, threads=settings.cpus_per_trial),
        {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial})
    _LIVE_PROGRESS[_experiment_key(experiment)] = progress
    try:
        grid = _tuner(problem, out_dir, trials, seed, sampler, resume, settings, trainable).fit()
    finally:
        _LIVE_PROGRESS.pop(_experiment_key(experiment), None)
        if started_here:
            ray.shutdown()  # a local cluster started for this search; a cluster already there stays up
    if grid.errors:
        first = str(grid.errors[0]).strip().splitlines()[-1][:200]
        raise EffNasError(f"Ray trials must finish, but {len(grid.errors)} failed; first: {first}")
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out_dir))
    if finished_count(study) < trials:
        # Tune catches Ctrl-C itself, saves the experiment and returns early; to the user it is an
        # interrupt like the embedded backend's (exit 130, "rerun with --resume"), not a result
        raise KeyboardInterrupt
    return study


def worker_estimator_options(estimator: Any, settings: RaySettings) -> dict[str, Any]:
    """The options the workers build the estimator from, its ``device`` resolved here as the embedded
    backend resolves it. A worker's own ``auto`` would see the GPUs Ray lets it see (none with
    --gpus-per-trial 0): the same command would train in fp32 on CPUs under Ray and in bf16 on the GPU
    under Optuna, and score differently. So the resources must match the device instead."""
    from ..estimators import option_defaults

    options = dict(estimator.options)
    if "device" not in option_defaults(estimator.name):
        return options  # the proxies: always on CPUs, under both backends
    device = options.get("device", "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and settings.gpus_per_trial == 0:
        raise EffNasError(f"estimator {estimator.name!r} runs on the GPU here, so each Ray trial needs a share of "
                          "one, but --gpus-per-trial is 0; pass e.g. --gpus-per-trial 0.5, or "
                          "--estimator-arg device=cpu to score on CPUs")
    if device == "cpu" and settings.gpus_per_trial > 0:
        why = "device cpu" if options.get("device") == "cpu" else "device auto, and torch sees no GPU here"
        raise EffNasError(f"--gpus-per-trial reserves GPUs for each trial, but estimator {estimator.name!r} runs on "
                          f"the CPU ({why}); drop --gpus-per-trial or pass --estimator-arg device=cuda")
    return {**options, "device": device}


def _tuner(problem: SearchProblem, out_dir: Path, trials: int, seed: int, sampler: str, resume: bool,
           settings: RaySettings, trainable: Any) -> tune.Tuner:
    experiment = out_dir.resolve() / EXPERIMENT_DIR
    if resume:
        return tune.Tuner.restore(str(experiment), trainable=trainable, resume_unfinished=True, resume_errored=True)
    return tune.Tuner(trainable, tune_config=_tune_config(problem, out_dir, trials, seed, sampler, settings),
                      run_config=tune.RunConfig(name=EXPERIMENT_DIR, storage_path=str(out_dir.resolve()), verbose=0,
                                                callbacks=[_ProgressCallback(trials)],
                                                failure_config=tune.FailureConfig(fail_fast=True)))


def _check_same_search(out_dir: Path, problem: SearchProblem, trials: int, resume: bool) -> None:
    """Tune restores its own trial count and searcher, but the workers' estimator comes from this
    command: a resume must score with the estimator the search started with."""
    path = out_dir / "ray-search.json"
    now = {"estimator": problem.estimator.name, "options": {k: str(v) for k, v in problem.estimator.options.items()},
           "trials": trials}
    if not resume:
        atomic_write_text(path, json.dumps(now, indent=1) + "\n")
        return
    before = json.loads(path.read_text()) if path.exists() else now
    changed = [f"{k} was {before.get(k)!r}, now {now[k]!r}" for k in now if before.get(k) != now[k]]
    if changed:
        raise EffNasError(f"--resume must continue the search with its settings, but {'; '.join(changed)}; "
                          "repeat the first command with --resume")


def _connect(settings: RaySettings) -> bool:
    """Join the cluster at ``address``, or start a local one; False when this process was already in one."""
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if settings.address:
        ray.init(address=settings.address, **quiet)
    else:
        ray.init(num_cpus=settings.local_cpus or os.cpu_count(), include_dashboard=False, **quiet)
    return True


def _tune_config(problem: SearchProblem, out_dir: Path, trials: int, seed: int, sampler: str,
                 settings: RaySettings) -> tune.TuneConfig:
    epochs = getattr(problem.estimator, "epochs", 1) if hasattr(problem.estimator, "score_reporting") else 1
    scheduler = (ASHAScheduler(time_attr="epochs_done", metric="score", mode="max", max_t=epochs, grace_period=1,
                               reduction_factor=2) if epochs > 1 else FIFOScheduler())
    references = [*problem.reference_archs().values(), problem.fastest(problem.primary)] \
        if problem.seed_with_references else ()
    search = _StudySearch(space=_AskArch(problem, trials), metric=["score", "latency_ms"], mode=["max", "min"],
                          points_to_evaluate=[problem.space.to_params(a) for a in references] or None,
                          sampler=make_sampler(sampler, seed), study_name=STUDY_NAME,
                          storage=open_storage(out_dir))
    return tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=trials,
                           max_concurrent_trials=settings.workers, reuse_actors=True)


class _AskArch:
    """Ray's define-by-run space: the arch from the Optuna trial, with the latency constraints set.
    A class, not a closure, so Tune can checkpoint the searcher; it holds no estimator.

    A family aims at its budgets in turn by trial number (``SearchProblem.aims``). Unlike the Optuna
    backend, earlier trials keep the constraints of the phase they ran in (Tune's searcher owns the
    study): later, larger budgets see them as more violated than they are, never as feasible wrongly."""

    def __init__(self, problem: SearchProblem, trials: int) -> None:
        self.space, self.targets, self.primary = problem.space, problem.targets, problem.primary.name
        self.aims = problem.aims(trials)

    def __call__(self, trial: optuna.trial.Trial) -> dict[str, Any]:
        arch = self.space.suggest(trial)
        latency, _ = predicted_latency(self.targets, arch)
        aims = getattr(self, "aims", [(0, None)])  # a searcher pickled before phases: the family's constraint
        aim = [budget for first, budget in aims if first <= trial.number][-1]
        for target, violation in violations(self.targets, latency, aim).items():
            trial.set_constraint(f"latency_ms:{target}", violation)
        trial.set_user_attr("arch", arch.to_dict())
        trial.set_user_attr("latency_ms", latency)
        return {"arch": arch.to_dict(), "latency_ms": latency[self.primary]}


class _StudySearch(OptunaSearch):
    """OptunaSearch that tells a trial stopped early by the scheduler as PRUNED, and one whose estimator
    failed as FAIL with the reason (as the Optuna backend does), not COMPLETE."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if result and not error and trial_id not in self._completed_trials:
            trial = self._ot_trials[trial_id]
            if result.get(FAIL_REASON):
                trial.set_user_attr(FAIL_REASON, result[FAIL_REASON])
                self._ot_study.tell(trial, state=optuna.trial.TrialState.FAIL)
                self._completed_trials.add(trial_id)
                return
            if not result.get("complete", True):
                self._ot_study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
        super().on_trial_complete(trial_id, result, error)


# --------------------------------------------------------------------------- in the workers
_ESTIMATORS: dict[tuple, Any] = {}  # per worker process: built once, reused by the trials it runs


def _run_trial(config: dict[str, Any], *, estimator_name: str, estimator_options: dict[str, Any],
               threads: float) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, int(threads))))
    key = (estimator_name, tuple(sorted(estimator_options.items())))
    if key not in _ESTIMATORS:
        from ..estimators import create_estimator

        _ESTIMATORS[key] = create_estimator(estimator_name, **estimator_options)
    estimator = _ESTIMATORS[key]
    _set_torch_threads(max(1, int(threads)))
    arch, latency = Arch.from_dict(config["arch"]), config["latency_ms"]
    epochs = estimator.epochs if hasattr(estimator, "score_reporting") else 1
    try:
        if hasattr(estimator, "score_reporting"):

            def report(epoch: int, top1: float) -> None:
                tune.report({"score": estimator.check_score(arch, top1), "latency_ms": latency, "epochs_done": epoch,
                             "complete": epoch >= epochs})

            estimator.score_reporting(arch, report)
        else:
            score = estimator.check_score(arch, estimator.score(arch))
            tune.report({"score": score, "latency_ms": latency, "epochs_done": 1, "complete": True})
    except EstimatorError as exc:
        # a result, not a Ray error (which would stop the whole search): the driver tells it as FAIL;
        # the score is a placeholder Tune's metric check needs, never told to Optuna
        tune.report({"score": float("-inf"), "latency_ms": latency, "epochs_done": epochs, "complete": True,
                     FAIL_REASON: str(exc)})


def _set_torch_threads(threads: int) -> None:
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# --------------------------------------------------------------------------- progress in the driver
# The command's progress function, by experiment folder, for the searches running in this process.
# Tune pickles the callbacks with the experiment and unpickles them on Tuner.restore, which takes no
# new ones (ray 2.60: restore(path, trainable, resume_*, param_space, storage_filesystem)), so a
# callback cannot hold the bar of the process running now. It looks the bar up by the folder its
# trial says it belongs to, which Tune updates on restore (even from a moved folder).
_LIVE_PROGRESS: dict[str, Progress | None] = {}


def _experiment_key(path: str | Path) -> str:
    return os.path.realpath(path)


class _ProgressCallback(tune.Callback):
    """Drives the command's progress bar (finished trials of ``total``)."""

    def __init__(self, total: int) -> None:
        self.total = total

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        progress = _LIVE_PROGRESS.get(_experiment_key(trial.remote_experiment_path))
        if progress is not None:
            done = len({t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {trial.trial_id})
            progress(done, self.total, "trials")
