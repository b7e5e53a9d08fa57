"""A real latency table of the tiny space, measured here, and every way a table is refused."""

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest

from effvit_nas import Arch, SearchSpace, TableError, UnknownNameError
from effvit_nas.latency.build import build_table, plan_keys
from effvit_nas.latency.fit import EVALUATOR_VERSION
from effvit_nas.latency.keys import KEYS_VERSION, block_keys
from effvit_nas.latency.measure import hardware_info
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.table import LatencyTable, content_checksum, predictor_signature
from effvit_nas.latency.validate import validate_table
from tests.conftest import quick_rule, tiny_settings

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


def test_table_records_where_and_how_it_was_measured(tiny_table_path, tiny_space):
    table = LatencyTable.load(tiny_table_path)
    data = table.data
    assert data["hardware"] == hardware_info()
    assert data["runtime"]["runtime"] == "onnxruntime" and data["runtime"]["batch_size"] == 1
    assert data["space"]["hash"] == tiny_space.content_hash
    assert "fast state" in data["method"]["predicts"] and data["method"]["blocks"]["quantile"] == 0.02
    assert data["reference"]["latency_ms"] > 0 and data["calibration"]["archs"] == 8
    for entry in table.entries.values():
        assert 0 < entry.latency_ms <= entry.p50_ms <= entry.p90_ms and entry.bursts >= 3
    planned = {str(k) for k in plan_keys(tiny_space, 1, tiny_settings())}
    assert set(table.entries) == planned


def test_predictions_are_positive_and_rank_small_below_large(tiny_table_path, tiny_space):
    table = LatencyTable.load(tiny_table_path)
    small, large = table.predict_ms(tiny_space.smallest()), table.predict_ms(tiny_space.largest())
    assert 0 < small < large
    rng = np.random.default_rng(0)
    assert all(table.predict_ms(tiny_space.sample(rng)) > 0 for _ in range(50))


def test_a_block_takes_its_measured_entry_and_the_kind_model_otherwise(tiny_table_path, tiny_space):
    """An attention model rigged to say 1000 ms for every key: only keys the build did not measure
    may show it, and a measured key gives its entry's figure (the fast state of its bursts)."""
    data = json.loads(tiny_table_path.read_text())
    model = data["models"]["attention"]
    model["coef"] = [1000.0] + [0.0] * (len(model["coef"]) - 1)  # the constant term only
    table = LatencyTable.from_dict(data)
    rng = np.random.default_rng(1)
    keys = {k for _ in range(200) for k in block_keys(tiny_space.sample(rng)) if k.kind == "attention"}
    unmeasured = [k for k in keys if str(k) not in table.entries]
    measured = [k for k in keys if str(k) in table.entries]
    assert unmeasured and measured, "the tiny quota measures some attention keys and leaves others"
    assert all(table.block_ms(k) == 1000.0 for k in unmeasured)
    assert all(table.block_ms(k) == table.entries[str(k)].latency_ms < 1000.0 for k in measured)
    assert any(table.entries[str(k)].latency_ms != table.entries[str(k)].p50_ms for k in measured)


def test_an_interrupted_build_resumes_without_losing_measurements(tmp_path, tiny_space, ort_threads):
    path = tmp_path / "resumed.json"
    calls = []

    def interrupt_after_two_sweeps(done, total, what):
        calls.append(what)
        if sum("blocks: sweep" in c for c in calls) == 2:
            raise KeyboardInterrupt

    config = RuntimeConfig(threads=ort_threads)
    with pytest.raises(KeyboardInterrupt):
        build_table("resumed", path, config, tiny_space, tiny_settings(), progress=interrupt_after_two_sweeps)
    partial = path.with_name(path.name + ".partial")
    assert not path.exists() and partial.exists()
    before = [json.loads(line) for line in partial.read_text().splitlines()[1:]]
    assert len(before) == 2 and all("sweep" in record for record in before)
    with partial.open("a") as handle:  # a kill mid-write leaves a torn last line
        handle.write('{"sweep": {"stem:1')
    said = []
    table = build_table("resumed", path, config, tiny_space, tiny_settings(),
                        progress=lambda done, total, what: said.append(what))
    assert path.exists() and not partial.exists()
    # the resumed build took one sweep more (3 in all), not 3 again: its entries have 3 bursts each
    assert sum("blocks: sweep" in w for w in said) == 1
    assert {e.bursts for e in table.entries.values()} == {3}
    assert set(table.entries) == {str(k) for k in plan_keys(tiny_space, 1, tiny_settings())}


def test_a_partial_build_with_other_settings_is_refused(tmp_path, tiny_space, ort_threads):
    path = tmp_path / "t.json"
    path.with_name("t.json.partial").write_text(json.dumps({"header": {"other": 1}}) + "\n")
    with pytest.raises(TableError, match="with other settings exists"):
        build_table("t", path, RuntimeConfig(threads=ort_threads), tiny_space, tiny_settings())


def test_truncated_and_edited_tables_are_refused(tiny_table_path, tmp_path):
    text = tiny_table_path.read_text()
    truncated = tmp_path / "truncated.json"
    truncated.write_text(text[: len(text) // 2])
    with pytest.raises(TableError, match="truncated or corrupt.*effnas table build --target truncated"):
        LatencyTable.load(truncated)
    data = json.loads(text)
    first = next(iter(data["entries"]))
    data["entries"][first]["latency_ms"] *= 0.5
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(TableError, match="checksum"):
        LatencyTable.load(edited)


def _rewritten(tiny_table_path, tmp_path, edit) -> Path:
    """The tiny table with ``edit`` applied and its checksum made to match: a file as a build of
    other code would have written it."""
    data = json.loads(tiny_table_path.read_text())
    edit(data)
    data["checksum"] = content_checksum(data)
    path = tmp_path / "rewritten.json"
    path.write_text(json.dumps(data))
    return path


def test_a_table_records_the_predictor_it_was_fitted_for(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    assert table.data["predictor"] == predictor_signature()
    assert table.data["predictor"]["calibration_features"] == table.data["calibration"]["features"]
    for kind, model in table.data["models"].items():
        assert table.data["predictor"]["block_features"][kind] == model["features"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d["predictor"].update(keys_version=KEYS_VERSION + 1),
     rf"keys_version {KEYS_VERSION + 1} where this effvit-nas has {KEYS_VERSION}"),
    (lambda d: d["predictor"].update(evaluator_version=EVALUATOR_VERSION + 1),
     rf"evaluator_version {EVALUATOR_VERSION + 1} where this effvit-nas has {EVALUATOR_VERSION}"),
    (lambda d: d["predictor"]["calibration_features"].reverse(), r"calibration_features \['log_attention_mentries'"),
    (lambda d: d["predictor"]["block_features"]["head"].append("bytes"), r"head block features \['const', 'pool', "
                                                                        r"'linear_macs', 'bytes'\]"),
    (lambda d: d["predictor"]["block_features"].pop("merge"), r"merge block features None where"),
])
def test_a_table_fitted_for_another_predictor_is_refused(tiny_table_path, tmp_path, edit, message):
    path = _rewritten(tiny_table_path, tmp_path, edit)
    with pytest.raises(TableError, match=r"must be fitted for the predictor of this effvit-nas, but it records "
                                         + message) as caught:
        LatencyTable.load(path)
    assert "effnas table build --target rewritten" in str(caught.value) and "\n" not in str(caught.value)


def test_a_table_of_the_earlier_schema_is_refused_with_the_rebuild_command(tiny_table_path, tmp_path):
    old = _rewritten(tiny_table_path, tmp_path, lambda d: d.update(schema_version=1))
    with pytest.raises(TableError, match=r"must have schema_version 2, but has 1 \(an earlier effvit-nas's, whose "
                                         r"figures are not the fast state\); rebuild it with effnas table build "
                                         r"--target rewritten"):
        LatencyTable.load(old)


def test_unknown_targets_list_the_available_ones_and_the_build_command():
    with pytest.raises(UnknownNameError, match=r"target must be a latency table, but 'nope' is none of those here "
                                               r"\(amd-epyc-2core-openvino-b1, .*effnas table build --target nope"):
        LatencyTable.load("nope")


def test_a_space_the_table_does_not_cover_is_refused(tiny_table_path, tiny_space, space):
    table = LatencyTable.load(tiny_table_path)
    table.check_covers(tiny_space)
    narrower = SearchSpace.from_dict({**tiny_space.to_dict(), "resolution": [64]})
    table.check_covers(narrower)  # a sub-space is covered
    with pytest.raises(TableError, match=r"must cover the search space 'efficientvit_m'.*lacks resolution"):
        table.check_covers(space)
    with pytest.raises(TableError, match="to be predicted, but resolution 224"):
        table.predict_ms(Arch.preset("m0"))


def test_other_hardware_is_refused(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    table.check_hardware(hardware_info())
    with pytest.raises(TableError, match="must be used on the hardware it was measured on, but cores"):
        table.check_hardware({**hardware_info(), "cores": 128})


# A tiny table (8 calibration networks, windows of 3 bursts) on a busy test machine is no better than a
# constant guess; the bound only catches gross errors (units, batch, keys, a calibration applied the
# wrong way). Its fidelity is measured by the benchmarks (docs/BENCHMARKS.md), not here.
MEDIAN_WITHIN_FACTOR = 2.5


def test_the_tiny_table_predicts_its_own_validation_networks(tiny_table_path, tmp_path):
    table = LatencyTable.load(tiny_table_path)
    report = validate_table(table, 8, seed=0, rule=quick_rule())
    assert len(report.rows) == 8
    factor = math.exp(statistics.median(abs(math.log(r["predicted_ms"] / r["measured_ms"])) for r in report.rows))
    assert factor <= MEDIAN_WITHIN_FACTOR, f"median network predicted {factor:.2f}x off: {report.rows}"
    assert report.stats()["calibrated"]["median_abs_err"] == pytest.approx(
        statistics.median(abs(r["predicted_ms"] / r["measured_ms"] - 1) for r in report.rows))
    assert report.machine["moved"] >= 1 and report.reference_ratio > 0
    # none of the validation networks is one the build measured (the table lists its own)
    own = ({p["arch_id"] for p in table.data["calibration"]["points"]}
           | set(table.data["deployment"]["check"]["arch_ids"]))
    assert own and not own & {r["arch_id"] for r in report.rows}
    assert report.plot(tmp_path / "scatter.png").stat().st_size > 10_000


def test_covers_names_what_a_space_needs_that_the_table_lacks(tiny_table_path, tiny_space, space):
    table = LatencyTable.load(tiny_table_path)
    assert table.covers(tiny_space) and table.missing_choices(tiny_space) == []
    missing = table.missing_choices(space)
    assert not table.covers(space) and missing[0].startswith("resolution [")
