"""Trials the estimator cannot score: recorded as FAIL with the reason, counted, reported; a search
where all fail is an error with the first reason; a bug in an estimator is not a failed trial."""

from __future__ import annotations

import json
import math
import re

import optuna
import pytest

from effvit_nas import Arch, SearchSpace
from effvit_nas.cli.main import main
from effvit_nas.errors import EstimatorError
from effvit_nas.estimators import ESTIMATORS, AccuracyEstimator, Synflow, create_estimator
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import SearchProblem, Target, run_search
from effvit_nas.search.optuna_backend import STUDY_NAME, open_storage

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it

TABLE = "amd-epyc-2core-ort-b1"


class NanForWideStems(AccuracyEstimator):
    """ln(MACs)-like score, NaN for archs whose first stage is wider than 96: about
    half the space, so a search has both kinds."""

    name = "nan-for-wide"

    def score(self, arch: Arch) -> float:
        return math.nan if arch.widths[0] > 96 else math.log(sum(arch.widths) * arch.resolution)


class AlwaysNan(AccuracyEstimator):
    name = "always-nan"

    def score(self, arch: Arch) -> float:
        return math.inf


class Buggy(AccuracyEstimator):
    name = "buggy"

    def score(self, arch: Arch) -> float:
        return 1 / 0


@pytest.fixture
def registered(monkeypatch):
    for cls in (NanForWideStems, AlwaysNan, Buggy):
        monkeypatch.setitem(ESTIMATORS, cls.name, cls)


def problem(estimator_name):
    table = LatencyTable.load(TABLE)
    budget = 2 * table.predict_ms(Arch.preset("m0"))  # M0, the first trial, fits
    return SearchProblem(SearchSpace.default(), [Target(table, (budget,))], create_estimator(estimator_name))


def test_a_nan_score_is_a_failed_trial_with_its_reason(tmp_path, registered):
    searched = problem("nan-for-wide")
    metadata = run_search(searched, tmp_path / "run", trials=30, seed=0)
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(tmp_path / "run"))
    failed = [t for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # --trials counts what was sent to the estimator and can fit, failed or not
    assert failed and complete and sum(searched.can_fit(t.user_attrs["latency_ms"]) for t in failed + complete) == 30
    assert all(Arch.from_dict(t.user_attrs["arch"]).widths[0] > 96 for t in failed)
    assert all("must give a finite score, but gave nan" in t.user_attrs["fail_reason"] for t in failed)
    assert metadata["trials_failed"] == len(failed) and metadata["trials_complete"] == len(complete)
    assert metadata["first_failure"] == failed[0].user_attrs["fail_reason"]
    recorded = json.loads((tmp_path / "run" / "metadata.json").read_text())
    assert recorded["trials_failed"] == len(failed)
    assert Arch.from_yaml(tmp_path / "run" / "best.yaml").widths[0] <= 96


def test_a_search_where_every_trial_failed_raises_the_first_reason(tmp_path, registered):
    with pytest.raises(EstimatorError, match=r"all \d+ failed; first: estimator 'always-nan' must give a finite "
                                             r"score, but gave inf"):
        run_search(problem("always-nan"), tmp_path / "run", trials=5, seed=0)


def test_a_bug_in_an_estimator_is_raised_not_recorded(tmp_path, registered):
    with pytest.raises(ZeroDivisionError):
        run_search(problem("buggy"), tmp_path / "run", trials=5, seed=0)
    # stopped at the first trial, which did not finish: the study file holds nothing, and a resume asks
    # that trial again (an estimator's own failure, by contrast, is a finished trial with its reason)
    study = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(tmp_path / "run"))
    assert study.trials == []


def test_a_non_finite_proxy_raises_the_project_error():
    class NanSynflow(Synflow):
        def _compute(self, arch):
            return math.nan

    with pytest.raises(EstimatorError, match="'synflow' must give a finite score, but gave nan for arch"):
        NanSynflow().score(Arch.preset("m0"))


def test_the_command_reports_failures_and_refuses_a_search_with_no_result(tmp_path, registered, capsys):
    budget = 2 * LatencyTable.load(TABLE).predict_ms(Arch.preset("m0"))  # M0, the first trial, fits
    args = ["search", "--target", TABLE, "--budget", f"{budget:.3f}ms", "--trials", "12", "--margin", "5%"]
    assert main([*args, "--estimator", "nan-for-wide", "--out", str(tmp_path / "some")]) == 0
    out = capsys.readouterr().out
    failed = json.loads((tmp_path / "some" / "metadata.json").read_text())["trials_failed"]
    assert f"  {failed} trials failed (estimator); first: estimator 'nan-for-wide' must give a finite score" in out
    assert main([*args, "--estimator", "always-nan", "--out", str(tmp_path / "none")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert re.match(r"effnas: error: a search needs trials its estimator can score, but all \d+ failed; "
                    "first: estimator 'always-nan'", last), last
