"""The Ray Tune backend on one shared local cluster: a pruned short-training search under a budget,
the same answer as the Optuna backend, and a driver killed, then stopped by Ctrl-C, resumed without
losing finished trials."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import optuna
import pytest

from effvit_nas import Arch
from effvit_nas.estimators import create_estimator
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import SearchProblem, Target, create_backend, run_search
from effvit_nas.search.optuna_backend import STUDY_FILE, STUDY_NAME, open_storage
from effvit_nas.search.ray_backend import RaySettings

from ..cli.helpers import assert_one_line_error, effnas, effnas_here
from ..conftest import DATA

TINY_SPACE = str(DATA / "tiny_space.yaml")
TRAINING = {"epochs": 2, "data": "digits", "resolution": 64}


def _middle_budget(table, space):
    """Three in four of the space's archs fit, one in four does not: the budget binds, and a short
    search still meets it after ASHA's pruning. (Halfway between smallest() and largest() is not
    that: the tiny table is re-measured each session and smallest() is not the fastest arch.)"""
    latencies = sorted(table.predict_ms(space.sample(seed)) for seed in range(200))
    # never below the space's floor, which the search refuses: in a fast speed state the re-measured
    # table can price smallest() above three in four sampled archs
    return max(latencies[3 * len(latencies) // 4], 1.1 * table.predict_ms(space.smallest()))


def _states(out):
    if not (out / STUDY_FILE).exists():
        raise KeyError(f"no study in {out}")
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out))
    return [t.state for t in study.get_trials(deepcopy=False)], study


def test_a_pruned_short_training_search_respects_the_budget(tmp_path, ray_cluster, tiny_space, tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    budget = _middle_budget(table, tiny_space)
    problem = SearchProblem(tiny_space, [Target(table, (budget,))], create_estimator("short-training", **TRAINING))
    metadata = run_search(problem, tmp_path / "run", trials=8, seed=0,
                          backend=create_backend("ray", workers=2, cpus_per_trial=1))
    states, study = _states(tmp_path / "run")
    assert len(states) == 8 and metadata["backend"] == "ray"
    assert metadata["ray"] == asdict(RaySettings(workers=2, cpus_per_trial=1))
    assert study.metric_names == ["score", f"latency_ms:{table.target}"] and study.user_attrs["backend"] == "ray"
    assert states.count(optuna.trial.TrialState.PRUNED) >= 1  # ASHA stopped some after epoch 1
    assert metadata["trials_complete"] == states.count(optuna.trial.TrialState.COMPLETE)
    best = Arch.from_yaml(tmp_path / "run" / "best.yaml")
    assert table.predict_ms(best) <= budget
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert all(t.values is None for t in pruned)  # a partial score is not a result
    assert (tmp_path / "run" / "pareto.png").exists() and (tmp_path / "run" / "ray").is_dir()


def test_both_backends_find_the_same_arch_for_a_deterministic_estimator(tmp_path, ray_cluster, tiny_space,
                                                                        tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    # every arch fits: the Optuna backend leaves proposals over the limit unscored, Ray scores every one,
    # so only where nothing is over the limit do both tell the sampler the same things
    budget = 2 * table.predict_ms(tiny_space.largest())
    results = {}
    for backend in ("optuna", "ray"):
        problem = SearchProblem(tiny_space, [Target(table, (budget,))], create_estimator("params"))
        run_search(problem, tmp_path / backend, trials=25, seed=4, backend=backend)
        results[backend] = [t.params for t in _states(tmp_path / backend)[1].trials]
    assert results["ray"] == results["optuna"]  # every trial asked in the same order
    assert (tmp_path / "ray" / "best.yaml").read_text() == (tmp_path / "optuna" / "best.yaml").read_text()


def _search_args(out, address, trials=6):
    return ["search", "--target", "TABLE", "--budget", "50ms", "--margin", "5%", "--space", TINY_SPACE,
            "--trials", str(trials),
            "--estimator", "short-training", "--estimator-arg", "epochs=1", "--estimator-arg", "data=digits",
            "--estimator-arg", "resolution=64",
            "--backend", "ray", "--address", address, "--out", str(out)]


def _start_and_wait(search, out, finished_trials):
    """Start the search as a user's driver process; return it and the trials finished once it has
    ``finished_trials`` of them."""
    driver = subprocess.Popen([sys.executable, "-m", "effvit_nas", *search], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    finished = []
    while time.monotonic() < deadline and driver.poll() is None:
        time.sleep(0.5)
        try:
            study = _states(out)[1]
        except KeyError:  # no database yet, or the file exists before the study is created in it
            continue
        finished = [(t.number, t.params, t.values) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(finished) >= finished_trials:
            break
    assert driver.poll() is None, f"the search ended before it could be stopped: {driver.stderr.read()[-2000:]}"
    return driver, finished


def test_a_killed_then_interrupted_driver_resumes_without_losing_finished_trials(tmp_path, ray_cluster,
                                                                                  tiny_table_path):
    out = tmp_path / "run"
    search = [str(tiny_table_path) if a == "TABLE" else a for a in _search_args(out, ray_cluster, trials=5)]
    driver, finished = _start_and_wait(search, out, 1)
    driver.send_signal(signal.SIGKILL)  # a fresh run, no handler runs: what Tune wrote while running is all there is
    driver.wait()

    complete = len([s for s in _states(out)[0] if s == optuna.trial.TrialState.COMPLETE])
    assert 1 <= complete <= 3, complete  # two trials left to run, so the resumed driver is stopped mid-search
    driver, more = _start_and_wait([*search, "--resume"], out, complete + 1)
    driver.send_signal(signal.SIGINT)  # Tune catches it and returns early; the command must not report a result
    _, stderr = driver.communicate(timeout=120)
    assert driver.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1].endswith("rerun it with --resume to continue")
    assert not (out / "best.yaml").exists()

    # in this process: a real process would import Ray again for a refusal made before it connects
    assert_one_line_error(effnas_here(*search, "--estimator-arg", "epochs=2", "--resume"), "options was")
    result = effnas(*search, "--resume")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5/5" in result.stderr  # the restored progress callback found this process's bar
    states, study = _states(out)
    after = {t.number: (t.params, t.values) for t in study.trials}
    for number, params, values in [*finished, *more]:
        assert after[number] == (params, values)  # nothing finished was lost or redone
    done = [s for s in states if s in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(done) >= 5
    assert json.loads((out / "metadata.json").read_text())["resumed"] is True


def test_ray_flags_need_the_ray_backend(tmp_path, tiny_table_path):
    base = ["search", "--target", str(tiny_table_path), "--budget", "50ms", "--margin", "5%", "--space", TINY_SPACE,
            "--out", str(tmp_path / "x")]
    assert_one_line_error(effnas(*base, "--address", "auto"), "--address is read by --backend ray")
    # the rest in this process (helpers.effnas_here): one real process above keeps the one-line contract honest
    assert_one_line_error(effnas_here(*base, "--workers", "0"), "--workers must be at least 1")  # Optuna's check
    assert_one_line_error(effnas_here(*base, "--backend", "dask"), "--backend must be one of")
    assert_one_line_error(effnas_here(*base, "--backend", "ray", "--workers", "0"), "--workers must be at least 1")
    assert not (tmp_path / "x").exists()
    assert effnas(*base, "--estimator", "params", "--trials", "3").returncode == 0  # an Optuna-backend study
    assert_one_line_error(effnas(*base, "--estimator", "params", "--backend", "ray", "--resume"),
                          "needs a Ray experiment", "--backend optuna")


# one shared local cluster, Tune trials in worker processes: slow by nature
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.slow]


@pytest.mark.parametrize("device, gpus, expected", [
    ("cpu", 0.0, "cpu"), ("cpu", 0.5, "reserves GPUs for each trial, but estimator 'short-training' runs on the CPU"),
    ("cuda", 0.0, "runs on the GPU here, so each Ray trial needs a share of one, but --gpus-per-trial is 0"),
    ("cuda", 0.5, "cuda")])
def test_ray_workers_score_where_the_embedded_backend_would(device, gpus, expected):
    """One rule for the device: resolved where the search starts, Ray's resources must agree (no cluster needed)."""
    from effvit_nas.errors import EffNasError
    from effvit_nas.search.ray_backend import worker_estimator_options

    estimator = create_estimator("short-training", device=device, **TRAINING)
    settings = RaySettings(gpus_per_trial=gpus)
    if expected in ("cpu", "cuda"):
        assert worker_estimator_options(estimator, settings) == {**TRAINING, "device": expected}
    else:
        with pytest.raises(EffNasError, match=expected):
            worker_estimator_options(estimator, settings)
    auto = create_estimator("short-training", **TRAINING)
    import torch

    here = "cuda" if torch.cuda.is_available() else "cpu"
    assert worker_estimator_options(auto, RaySettings(gpus_per_trial=0.5 if here == "cuda" else 0.0))["device"] == here
    assert worker_estimator_options(create_estimator("synflow"), settings) == {}  # proxies: CPUs under both backends
