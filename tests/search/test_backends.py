"""The backend plug-in point: a registry like the estimators', Ray registered by name only, and a
third backend that is one class."""

from __future__ import annotations

import subprocess
import sys

import optuna
import pytest

from effvit_nas import Arch, SearchSpace
from effvit_nas.errors import UnknownNameError
from effvit_nas.estimators import create_estimator
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import BACKENDS, SearchBackend, SearchProblem, Target, create_backend, run_search
from effvit_nas.search.optuna_backend import run_optuna

TABLE = "amd-epyc-2core-ort-b1"


def test_listing_the_backends_loads_no_ray():
    code = ("import sys, effvit_nas, effvit_nas.search as s; print(sorted(s.BACKENDS)); "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['optuna', 'ray']"


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"--backend must be one of optuna, ray, but got 'dask'"):
        create_backend("dask")
    with pytest.raises(UnknownNameError, match=r"'optuna' options must be among \['workers'\], but got address"):
        create_backend("optuna", address="auto")
    assert create_backend().name == "optuna"


def test_a_third_backend_is_one_class(tmp_path, monkeypatch):
    class Delegating(SearchBackend):
        """Delegates to the Optuna backend; enough to show what a backend must provide."""

        name = "test-backend"

        def __init__(self, *, label: str = "") -> None:
            self.label = label

        def run(self, problem, out_dir, *, trials, seed, sampler="tpe", resume=False, progress=None):
            return run_optuna(problem, out_dir, trials=trials, seed=seed, sampler=sampler, resume=resume,
                              progress=progress)

        def describe(self):
            return {"label": self.label}

    monkeypatch.setitem(BACKENDS, Delegating.name, Delegating)
    table = LatencyTable.load(TABLE)
    budget = 2 * table.predict_ms(Arch.preset("m0"))  # M0 is the first trial: at least it fits
    problem = SearchProblem(SearchSpace.default(), [Target(table, (budget,))], create_estimator("size-prior"))
    metadata = run_search(problem, tmp_path / "run", trials=8, seed=0,
                          backend=create_backend("test-backend", label="x"))
    assert metadata["backend"] == "test-backend" and metadata["test-backend"] == {"label": "x"}
    assert metadata["trials_can_fit"] == 8 and (tmp_path / "run" / "best.yaml").exists()


def test_the_presets_are_enqueued_by_default_and_only_then(tmp_path):
    table = LatencyTable.load(TABLE)
    for seeded in (True, False):
        problem = SearchProblem(SearchSpace.default(), [Target(table, (2.0,))], create_estimator("size-prior"),
                                seed_with_references=seeded)
        study = run_optuna(problem, None, trials=6, seed=0)
        enqueued = [t for t in study.trials if "fixed_params" in t.system_attrs]
        assert len(enqueued) == (7 if seeded else 0)  # M0-M5 and the space's fastest
        # the yardsticks are scored even where they cannot fit (M2-M5 cannot under 2 ms)
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in enqueued)
