"""Hardware in the loop: the finalists timed on this machine as deployed, the ones over budget dropped."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from effvit_nas import Arch
from effvit_nas.estimators import create_estimator
from effvit_nas.latency.judge import Judgement, Verdict
from effvit_nas.latency.measure import Timing
from effvit_nas.latency.meter import NetworkRun
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import Measurement, SearchProblem, Target, run_search
from effvit_nas.search.candidates import Candidate
from effvit_nas.search.measured import MEASURED_FILE, measure_shortlists

from ..cli.helpers import assert_one_line_error, effnas_here
from ..conftest import quick_rule

TINY_SPACE = Path(__file__).parents[1] / "data" / "tiny_space.yaml"


def given_figures(figure, record=None):
    """A judge that gives each arch ``figure(arch_id, position)`` ms (time budgets only), as the real one
    would report it; ``record`` collects the archs it was asked to time."""
    def judge(config, archs, budgets, **kwargs):
        if record is not None:
            record.extend(archs)
        timings = {key: Timing(figure(key, n), figure(key, n), figure(key, n), 12) for n, key in enumerate(archs)}
        verdicts = {key: {b.label: Verdict(b.label, timings[key].latency_ms, b.ms, timings[key].latency_ms <= b.ms)
                          for b in by} for key, by in budgets.items()}
        return Judgement(NetworkRun(timings, [Timing(1.0, 1.0, 1.0, 12)]), verdicts)
    return judge


def _ranked(n: int) -> list[Candidate]:
    """n distinct archs in the proxy's order (best score first), all at one resolution."""
    m0 = Arch.preset("m0")
    return [Candidate(i, m0.replace(widths=(64 + 16 * i, 128, 192)), 10.0 - i, {"t": 1.0}) for i in range(n)]


def test_archs_measuring_over_the_budget_are_dropped_and_stored_timings_are_not_taken_again(
        tmp_path, tiny_table_path, monkeypatch):
    table = LatencyTable.load(tiny_table_path)
    ranked = _ranked(6)
    measurement = Measurement(candidates=4)
    # the proxy's favourite measures over a 2 ms budget; the sixth was timed for another budget of the family
    ms = {0: 2.4, 1: 1.9, 2: 2.0, 3: 1.5, 5: 1.0}
    timings = {ranked[i].arch.arch_id: {"measured_ms": v, "verdicts": {"2ms": {"within": v <= 2.0}}}
               for i, v in ms.items()}
    stored = {"table_id": table.table_id, "rule": asdict(measurement.rule), "timings": timings}
    (tmp_path / MEASURED_FILE).write_text(json.dumps(stored))

    def must_not_time(*args, **kwargs):
        raise AssertionError("an arch with a stored timing was timed again")

    monkeypatch.setattr("effvit_nas.search.measured.judge", must_not_time)
    target = Target(table, (2.0,))
    result = measure_shortlists({2.0: ranked}, target, tmp_path, measurement)
    assert result.timed[2.0] == [c.arch.arch_id for c in ranked[:4]]  # the fifth and sixth were not finalists
    assert [c.trial for c in result.kept[2.0]] == [1, 2, 3, 5]  # within 2 ms (2.0 included), proxy order kept
    assert result.report()["per_budget"]["2ms"]["lowest_measured_ms"] == 1.5  # of those timed for this budget

    # timings taken under another rule are not reused
    with pytest.raises(AssertionError, match="timed again"):
        measure_shortlists({2.0: ranked}, target, tmp_path, Measurement(candidates=4, rule=quick_rule()))


@pytest.mark.slow  # times networks in fresh processes
def test_a_search_times_its_finalists_here_and_picks_among_those_within_the_budget(tmp_path, tiny_table_path,
                                                                                   tiny_space):
    budget = 1e3  # every finalist fits: the pick must be the best score among those timed
    problem = SearchProblem(tiny_space, [Target(LatencyTable.load(tiny_table_path), (budget,))],
                            create_estimator("size-prior"))
    metadata = run_search(problem, tmp_path / "run", trials=8, seed=0,
                          measurement=Measurement(candidates=2, rule=quick_rule()))
    timed = metadata["measurement"]["per_budget"]["1000ms"]
    assert len(timed["timed"]) == 2 and timed["kept"] == timed["timed"]
    best = next(iter(metadata["best"].values()))
    pick = Arch.from_yaml(tmp_path / "run" / "best.yaml").arch_id
    assert pick == timed["kept"][0]
    measured = metadata["measurement"]["timings"][pick]
    assert best["measured_latency_ms"][problem.primary.name] == measured["measured_ms"] > 0
    assert measured["verdicts"]["1000ms"]["within"] and best["measured_verdict"]["budget_ms"] == budget
    assert measured["predicted_ms"] == pytest.approx(best["predicted_latency_ms"][problem.primary.name])
    assert measured["machine"]["moved"] >= 1
    assert json.loads((tmp_path / "run" / MEASURED_FILE).read_text())["timings"].keys() == set(timed["timed"])


def test_measure_refuses_a_table_of_other_hardware_before_searching(tmp_path, tiny_table_path):
    data = json.loads(tiny_table_path.read_text())
    data["hardware"] = {**data["hardware"], "cores": 128}
    other = LatencyTable.from_dict(data).save(tmp_path / "other.json")
    refused = effnas_here("search", "--target", str(other), "--budget", "2ms", "--space", str(TINY_SPACE),
                          "--estimator", "params", "--margin", "0", "--measure", "3", "--out", str(tmp_path / "run"))
    assert_one_line_error(refused, "--measure times candidates on this machine", "hardware it was measured on")
    assert not (tmp_path / "run").exists()
    negative = effnas_here("search", "--target", str(tiny_table_path), "--budget", "2ms", "--space", str(TINY_SPACE),
                           "--margin", "0", "--measure", "-1", "--out", str(tmp_path / "run0"))
    assert_one_line_error(negative, "--measure must be at least 1 (0 turns it off)", "but got -1")
    assert not (tmp_path / "run0").exists()
    fewer = effnas_here("search", "--target", str(tiny_table_path), "--budget", "2ms", "--space", str(TINY_SPACE),
                        "--margin", "0", "--data", "digits", "--refine", "3", "--measure", "2",
                        "--out", str(tmp_path / "run2"))
    assert_one_line_error(fewer, "--measure must be at least --refine (3)", "but got --measure 2", "--measure 3")
    assert not (tmp_path / "run2").exists()


def test_a_finalist_measured_over_its_budget_is_not_picked_and_a_budget_none_fits_has_none(tmp_path, tiny_table_path,
                                                                                           monkeypatch):
    """The real search, study, table and CLI; only the timings are given (the real timing is exercised above),
    so that the proxy's favourite measures over both budgets and the rest over the smaller one."""
    asked = []  # the first budget's finalists first, the proxy's favourite first of all
    monkeypatch.setattr("effvit_nas.search.measured.judge",
                        given_figures(lambda arch_id, n: 2000.0 if n == 0 else 700.0, asked))
    out = tmp_path / "run"
    result = effnas_here("search", "--target", str(tiny_table_path), "--budget", "500ms,1000ms", "--space",
                         str(TINY_SPACE), "--estimator", "params", "--margin", "0", "--trials", "8", "--measure", "3",
                         "--out", str(out))
    assert result.returncode == 1, result.stderr
    assert "no finalist measured within 500ms: 3 timed, the fastest 700.000 ms" in result.stderr
    metadata = json.loads((out / "metadata.json").read_text())
    assert list(metadata["best"]) == ["1000ms"] and metadata["measurement"]["per_budget"]["500ms"]["kept"] == []
    favourite = asked[0]
    pick = Arch.from_yaml(out / "best-1000ms.yaml" if (out / "best-1000ms.yaml").exists() else out / "best.yaml")
    assert pick.arch_id != favourite and pick.arch_id in asked
    assert metadata["best"]["1000ms"]["measured_latency_ms"]["tiny"] == 700.0


def test_with_data_a_search_on_the_tables_own_hardware_times_twice_k_finalists_by_default_and_elsewhere_says_why(
        tmp_path, tiny_table_path, monkeypatch):
    """The default the benchmark chose: --data turns refinement on, and on the table's own hardware the
    finalists are then timed (2K of them, the margin's confidence 0.5); --measure 0 turns that off, and a
    resumed search keeps the confidence it started with; a table of other hardware cannot be timed here, so
    the search keeps 0.95 and says so before it starts. The real refinement and CLI; only the timings are
    given (the real timing is exercised above)."""
    timed = []
    monkeypatch.setattr("effvit_nas.search.measured.judge", given_figures(lambda arch_id, n: 1.0, timed))
    data = json.loads(tiny_table_path.read_text())
    data["deployment"]["residual_ratios"] *= 2  # 24: enough for the 0.95 kept where nothing is timed
    here_table = LatencyTable.from_dict(data).save(tmp_path / "here.json")
    data["hardware"] = {**data["hardware"], "cores": 128}
    other = LatencyTable.from_dict(data).save(tmp_path / "other.json")
    search = ("search", "--budget", "1000ms", "--space", str(TINY_SPACE), "--estimator", "params", "--trials", "6",
              "--data", "digits", "--refine", "1", "--refine-epochs", "1")

    def run(table, out, *more):
        result = effnas_here(*search, "--target", str(table), "--out", str(tmp_path / out), *more)
        assert result.returncode == 0, result.stderr
        return result, json.loads((tmp_path / out / "metadata.json").read_text())

    here, metadata = run(here_table, "here")
    assert metadata["measurement"]["candidates"] == 2 and len(timed) == 2
    assert metadata["confidence"] == {"tiny": 0.5} and "at confidence 0.5" in here.stdout
    assert "timed here as deployed" in here.stdout and "not timed" not in here.stderr

    # resumed with timing turned off (--measure 0): the study keeps the 0.5 it started with, and nothing is
    # explained, the user chose it
    off, metadata = run(here_table, "here", "--measure", "0", "--trials", "7", "--resume")
    assert "measurement" not in metadata and len(timed) == 2 and metadata["confidence"] == {"tiny": 0.5}
    assert "not timed" not in off.stderr

    before = list(timed)
    elsewhere, metadata = run(other, "elsewhere")
    assert "measurement" not in metadata and timed == before and metadata["confidence"] == {"tiny": 0.95}
    notice = [line for line in elsewhere.stderr.splitlines() if "finalists not timed here" in line]
    assert len(notice) == 1 and "cores 128 vs here" in notice[0] and "at confidence 0.95" in notice[0]
