"""Build settings refused where they are made; what a table says about the machine it was measured on."""

import dataclasses

import pytest

from effvit_nas import EffNasError
from effvit_nas.latency.build import PREDICTS, BuildSettings, CheckBar, TableBelowBar, build_table, plan_check_archs
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.table import LatencyTable
from tests.conftest import tiny_settings

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


@pytest.mark.parametrize(("settings", "message"), [
    (dict(calibration_archs=0), r"calibration networks \(--calibration-archs\) must be an integer of at least 8, "
                                r"but got 0"),
    (dict(calibration_archs=7), r"--calibration-archs\) must be an integer of at least 8, but got 7"),
    (dict(seed=-1), r"seed \(--seed\) must be an integer of at least 0, but got -1"),
    (dict(quota=(("attention", -5),)), r"quota of attention blocks must be an integer of at least 0, but got -5"),
    (dict(check_archs=2), r"held-out check networks \(--check-archs\) must be an integer of at least 3, but got 2"),
])
def test_build_settings_are_refused_when_made(settings, message):
    with pytest.raises(EffNasError, match=message):
        BuildSettings(**settings)


def test_a_table_says_what_it_predicts_and_how_the_machine_moved(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    assert table.data["method"]["predicts"] == PREDICTS and "fast state" in PREDICTS
    machine = table.data["build"]["machine"]
    for part in ("blocks", "networks"):
        assert machine[part]["moved"] >= 1 and machine[part]["reference_ms"] <= machine[part]["reference_p50_ms"]
    # every entry is the fast-state figure of its bursts, the median and p90 beside it
    assert all(0 < e["latency_ms"] <= e["p50_ms"] <= e["p90_ms"] and e["bursts"] >= 3
               for e in table.data["entries"].values())
    assert table.summary()["predicts"] == PREDICTS


def test_a_table_that_misses_its_bar_is_not_written_under_its_name(tmp_path, tiny_space, ort_threads):
    """A bar no measurement meets (0% median error): the build measures, checks, and refuses."""
    path = tmp_path / "strict.json"
    settings = dataclasses.replace(tiny_settings(), bar=CheckBar(max_median_err=0.0, min_within_10pct=1.0))
    with pytest.raises(TableBelowBar, match=r"a table must predict its 4 held-out networks within the bar, but "
                                            r"'strict' missed it \(median error .* > 0%.*strict.rejected.json"):
        build_table("strict", path, RuntimeConfig(threads=ort_threads), tiny_space, settings)
    assert not path.exists() and not path.with_name("strict.json.partial").exists()
    rejected = LatencyTable.load(tmp_path / "strict.rejected.json")
    deployment = rejected.data["deployment"]
    check = deployment["check"]
    assert not check["passed"] and check["misses"]
    # the check is on the held-out archs, none of which the calibration saw
    assert check["arch_ids"] == [a.arch_id for a in plan_check_archs(tiny_space, settings)]
    calibrated = {p["arch"]["resolution"] for p in rejected.data["calibration"]["points"]}
    assert len(rejected.data["calibration"]["points"]) == 8 and calibrated <= set(tiny_space.resolutions)
    # residuals: one out-of-fold ratio per calibration network, one per held-out network
    assert deployment["residual_sources"] == {"out_of_fold_calibration": 8, "held_out_check": 4}
    assert len(rejected.residual_ratios()) == 12 and rejected.residual_ratios() == sorted(rejected.residual_ratios())
    held_out = [1 / (1 + e) for e in check["errors"]]  # error = predicted / measured - 1
    for ratio in held_out:
        assert min(abs(ratio - r) for r in rejected.residual_ratios()) < 1e-9
