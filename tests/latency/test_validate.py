"""``validate``'s arithmetic on constructed measurements whose answers are known, and its refusals."""

import json

import pytest

from effvit_nas import EffNasError, TableError
from effvit_nas.latency import validate
from effvit_nas.latency.measure import Timing
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.validate import sample_validation_archs, validate_table


def _with(tiny_table_path, **changes) -> LatencyTable:
    data = json.loads(tiny_table_path.read_text())
    for path, value in changes.items():
        section, key = path.split("__")
        data[section][key] = value
    return LatencyTable.from_dict(data)


def test_drift_factor_is_the_reference_ratio_unless_within_the_references_noise(tiny_table_path):
    table = _with(tiny_table_path, reference__median_ms=2.0, reference__noise=0.05)
    assert table.drift_factor(2.0 * 1.04) == 1.0  # within the build's own 5% noise: not applied
    assert table.drift_factor(2.0 * 1.20) == pytest.approx(1.20)
    assert table.drift_factor(2.0 * 0.90) == pytest.approx(0.90)  # a faster machine is corrected too
    quiet = _with(tiny_table_path, reference__median_ms=2.0, reference__noise=0.001)
    assert quiet.drift_factor(2.0 * 1.025) == 1.0  # a noise floor of 3% whatever the build saw
    assert quiet.drift_factor(2.0 * 1.035) == pytest.approx(1.035)


def test_validate_corrects_each_chunk_by_its_own_drift(tiny_table_path, monkeypatch):
    """Two chunks: the first measured with the machine at half speed (reference 2x, every network 2x
    its prediction), the second within the reference's noise (no correction). Corrected figures
    must equal the predictions in the first chunk and the raw ones in the second."""
    table = LatencyTable.load(tiny_table_path)
    archs = sample_validation_archs(table, 4, seed=0)
    predicted = {a.arch_id: table.predict_ms(a) for a in archs}
    noise_free_ratio = 1 + max(table.data["reference"].get("noise", 0.0), 0.03) / 2
    chunks = iter([(2.0, 2.0), (noise_free_ratio, 1.1)])  # (reference ratio, measured / predicted)

    class FakeRuntime:
        def prepare(self, module, input_shape):
            return lambda: None

    def fake_chunk(reference, forwards, protocol):
        ratio, slower = next(chunks)
        return ratio * table.reference_ms, {k: Timing(*(slower * predicted[k],) * 3, 10) for k in forwards}

    monkeypatch.setattr(validate, "create_runtime", lambda config: FakeRuntime())
    monkeypatch.setattr(validate, "wait_for_speed", lambda *a, **k: 0.0)
    monkeypatch.setattr(validate, "measure_chunk", fake_chunk)
    report = validate_table(table, 4, seed=0, chunk_size=2)

    assert [r["arch_id"] for r in report.rows] == [a.arch_id for a in archs]
    first, second = report.rows[:2], report.rows[2:]
    for row in first:
        assert row["chunk_drift"] == 2.0
        assert row["measured_ms"] == pytest.approx(2 * row["predicted_ms"])
        assert row["measured_corrected_ms"] == pytest.approx(row["predicted_ms"])
    for row in second:
        assert row["chunk_drift"] == 1.0 and row["measured_corrected_ms"] == row["measured_ms"]
    assert report.drift == pytest.approx(1.5) and report.reference_ratio == pytest.approx((2 + noise_free_ratio) / 2)
    stats = report.stats()
    # raw: |p - 2p| / 2p = 50% in the first chunk, |p - 1.1p| / 1.1p = 9.1% in the second
    assert stats["calibrated, raw"]["worst_abs_err"] == pytest.approx(0.5)
    assert stats["calibrated, raw"]["median_abs_err"] == pytest.approx((0.5 + 0.1 / 1.1) / 2)
    assert stats["calibrated, drift-corrected"]["worst_abs_err"] == pytest.approx(0.1 / 1.1)
    assert stats["calibrated, drift-corrected"]["within_5pct"] == 0.5


@pytest.mark.parametrize("samples", [0, -1, 2, 2.5, "30", True])
def test_validate_refuses_a_sample_count_it_cannot_rank(tiny_table_path, samples):
    table = LatencyTable.load(tiny_table_path)
    with pytest.raises(EffNasError, match=r"validation networks \(--samples\) must be an integer of at least 3, "
                                          rf"but got {samples!r}"):
        validate_table(table, samples, max_wait_s=0)


def test_validate_refuses_a_negative_wait_or_seed(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    with pytest.raises(EffNasError, match=r"--max-wait\) must be a number of at least 0, but got -1"):
        validate_table(table, 3, max_wait_s=-1)
    with pytest.raises(EffNasError, match=r"seed \(--seed\) must be an integer of at least 0, but got -3"):
        validate_table(table, 3, seed=-3)


def test_validate_refuses_a_table_measured_on_other_hardware(tiny_table_path, monkeypatch):
    data = json.loads(tiny_table_path.read_text())
    data["hardware"]["cpu_model"] = "Some Other CPU 9000"
    table = LatencyTable.from_dict(data)

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a table for other hardware must be refused before anything is measured")

    monkeypatch.setattr(validate, "create_runtime", must_not_measure)
    with pytest.raises(TableError, match=r"must be used on the hardware it was measured on, but cpu_model "
                                         r"'Some Other CPU 9000' vs here"):
        validate_table(table, 3, max_wait_s=0)
