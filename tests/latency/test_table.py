"""A real latency table of the tiny space, measured here, and every way a table is refused."""

import json

import numpy as np
import pytest

from effvit_nas import Arch, SearchSpace, TableError, UnknownNameError
from effvit_nas.latency.build import build_table, plan_keys
from effvit_nas.latency.keys import block_keys
from effvit_nas.latency.measure import RuntimeConfig, hardware_info
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.validate import validate_table
from tests.conftest import tiny_settings


def test_table_records_where_and_how_it_was_measured(tiny_table_path, tiny_space):
    table = LatencyTable.load(tiny_table_path)
    data = table.data
    assert data["hardware"] == hardware_info()
    assert data["runtime"]["runtime"] == "onnxruntime" and data["runtime"]["batch_size"] == 1
    assert data["space"]["hash"] == tiny_space.content_hash
    assert data["method"]["interleaved"] and data["method"]["protocol"]["statistic"] == "p25"
    assert data["reference"]["median_ms"] > 0 and data["calibration"]["archs"] == 8
    for entry in table.entries.values():
        assert 0 < entry.p25_ms <= entry.median_ms <= entry.p75_ms and entry.samples >= 3
    planned = {str(k) for k in plan_keys(tiny_space, 1, tiny_settings())}
    assert set(table.entries) == planned


def test_predictions_are_positive_and_rank_small_below_large(tiny_table_path, tiny_space):
    table = LatencyTable.load(tiny_table_path)
    small, large = table.predict_ms(tiny_space.smallest()), table.predict_ms(tiny_space.largest())
    assert 0 < small < large
    rng = np.random.default_rng(0)
    assert all(table.predict_ms(tiny_space.sample(rng)) > 0 for _ in range(50))


def test_unmeasured_keys_come_from_the_kind_model(tiny_table_path, tiny_space):
    table = LatencyTable.load(tiny_table_path)
    rng = np.random.default_rng(1)
    keys = {k for _ in range(200) for k in block_keys(tiny_space.sample(rng))}
    unmeasured = [k for k in keys if str(k) not in table.entries]
    assert unmeasured, "the tiny quota leaves some attention keys unmeasured"
    for key in unmeasured[:5]:
        assert table.block_ms(key) == pytest.approx(table.models[key.kind].predict(key.features()))


def test_an_interrupted_build_resumes_without_losing_measurements(tmp_path, tiny_space, ort_threads):
    path = tmp_path / "resumed.json"
    calls = []

    def interrupt_after_two_chunks(done, total, what):
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    config = RuntimeConfig(threads=ort_threads)
    with pytest.raises(KeyboardInterrupt):
        build_table("resumed", path, config, tiny_space, tiny_settings(), progress=interrupt_after_two_chunks)
    partial = path.with_name(path.name + ".partial")
    assert not path.exists() and partial.exists()
    before = [json.loads(line) for line in partial.read_text().splitlines()[1:]]
    assert len(before) == 2
    with partial.open("a") as handle:  # a kill mid-write leaves a torn last line
        handle.write('{"reference_ms": 1.0, "entr')
    progress_after_resume = []
    table = build_table("resumed", path, config, tiny_space, tiny_settings(),
                        progress=lambda done, total, what: progress_after_resume.append(done))
    assert path.exists() and not partial.exists()
    # the resumed build starts from everything the interrupted one had measured
    assert progress_after_resume[0] == len({key for record in before for key in record["entries"]})
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
    data["entries"][first]["p25_ms"] *= 0.5
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    with pytest.raises(TableError, match="checksum"):
        LatencyTable.load(edited)


def test_unknown_targets_list_the_available_ones_and_the_build_command():
    with pytest.raises(UnknownNameError, match=r"target must be a table in .*effnas table build --target nope"):
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


def test_validate_measures_unseen_archs_and_reports_raw_and_corrected(tiny_table_path, tmp_path):
    table = LatencyTable.load(tiny_table_path)
    report = validate_table(table, 4, seed=0, max_wait_s=0)
    assert len(report.rows) == 4 and report.drift > 0
    stats = report.stats()
    assert set(stats) == {"calibrated, drift-corrected", "calibrated, raw", "plain block sum, drift-corrected",
                          "plain block sum, raw"}
    for row in report.rows:
        assert row["measured_corrected_ms"] == pytest.approx(row["measured_ms"] / row["chunk_drift"])
    assert report.plot(tmp_path / "scatter.png").stat().st_size > 10_000
