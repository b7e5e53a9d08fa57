"""Build settings refused where they are made, and measurements kept from a slow machine marked."""

import dataclasses

import pytest

from effvit_nas import EffNasError
from effvit_nas.latency.build import BuildSettings, CheckBar, TableBelowBar, build_table, plan_check_archs
from effvit_nas.latency.keys import parse_key
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.table import LatencyTable
from tests.conftest import tiny_settings

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


@pytest.mark.parametrize(("settings", "message"), [
    (dict(calibration_archs=0), r"calibration networks \(--calibration-archs\) must be an integer of at least 8, "
                                r"but got 0"),
    (dict(calibration_archs=7), r"--calibration-archs\) must be an integer of at least 8, but got 7"),
    (dict(max_wait_s=-1.0), r"max wait in seconds \(--max-wait\) must be a number of at least 0, but got -1.0"),
    (dict(max_wait_s=float("nan")), r"--max-wait\) must be a number of at least 0, but got nan"),
    (dict(seed=-1), r"seed \(--seed\) must be an integer of at least 0, but got -1"),
    (dict(chunk_size=0), r"chunk_size must be an integer of at least 1, but got 0"),
    (dict(max_retries=-1), r"max_retries must be an integer of at least 0, but got -1"),
    (dict(max_drift=-0.1), r"max_drift must be a number of at least 0, but got -0.1"),
    (dict(quota=(("attention", -5),)), r"quota of attention blocks must be an integer of at least 0, but got -5"),
    (dict(check_archs=2), r"held-out check networks \(--check-archs\) must be an integer of at least 3, but got 2"),
])
def test_build_settings_are_refused_when_made(settings, message):
    with pytest.raises(EffNasError, match=message):
        BuildSettings(**settings)


def test_zero_wait_and_zero_retries_are_settings_not_errors():
    assert BuildSettings(max_wait_s=0, max_retries=0, max_drift=float("inf")).max_wait_s == 0


def test_entries_kept_from_a_slow_state_are_marked_and_counted(tmp_path, tiny_space, ort_threads):
    """max_drift=0 makes every chunk slower than the build's 20th-percentile reference "off state",
    i.e. most of them: one retry cannot bring every entry back, so some are kept from a slow chunk."""
    settings = dataclasses.replace(tiny_settings(), max_drift=0.0, max_retries=1)
    path = tmp_path / "slow.json"
    built = build_table("slow", path, RuntimeConfig(threads=ort_threads), tiny_space, settings)
    table = LatencyTable.load(path)
    marked = [k for k, e in table.data["entries"].items() if e.get("slow_state")]
    points = [p for p in table.data["calibration"]["points"] if p.get("slow_state")]
    assert marked or points, "with a zero tolerance some measurement must be kept from a slow chunk"
    # the chunks at the usual speed (the 20th percentile's and below, blocks or networks) are not marked
    assert len(marked) + len(points) < len(table.entries) + len(table.data["calibration"]["points"])
    assert all(e["slow_state"] is True for e in table.data["entries"].values() if "slow_state" in e)  # no False
    assert table.data["build"]["slow_state_entries"] == len(marked) == built.slow_state_counts()["entries"]
    assert table.data["build"]["slow_state_calibration_archs"] == len(points)
    assert table.summary()["slow_state"] == {"entries": len(marked), "calibration_archs": len(points)}
    # a marked entry is still the table's figure for its block, rescaled like the rest
    assert all(table.block_ms(parse_key(k)) == table.data["entries"][k]["p25_ms"] > 0 for k in marked)


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
