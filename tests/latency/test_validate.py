"""``validate``'s arithmetic on constructed measurements whose answers are known, and its refusals."""

import json
from pathlib import Path

import pytest

from effvit_nas import Arch, EffNasError, TableError
from effvit_nas.latency.deploy import DeployedTiming
from effvit_nas.latency.meter import DeployedNetwork, LatencyMeter
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.validate import sample_validation_archs, validate_table


def _with(tiny_table_path, **changes) -> LatencyTable:
    data = json.loads(tiny_table_path.read_text())
    for path, value in changes.items():
        *sections, key = path.split("__")
        node = data
        for section in sections:
            node = node[section]
        node[key] = value
    return LatencyTable.from_dict(data)


def test_drift_factor_is_the_reference_ratio_unless_within_the_references_noise(tiny_table_path):
    table = _with(tiny_table_path, reference__median_ms=2.0, reference__noise=0.05)
    assert table.drift_factor(2.0 * 1.04) == 1.0  # within the build's own 5% noise: not applied
    assert table.drift_factor(2.0 * 1.20) == pytest.approx(1.20)
    assert table.drift_factor(2.0 * 0.90) == pytest.approx(0.90)  # a faster machine is corrected too
    quiet = _with(tiny_table_path, reference__median_ms=2.0, reference__noise=0.001)
    assert quiet.drift_factor(2.0 * 1.025) == 1.0  # a noise floor of 3% whatever the build saw
    assert quiet.drift_factor(2.0 * 1.035) == pytest.approx(1.035)


def test_the_deployed_drift_reads_the_deployed_reference_not_the_block_one(tiny_table_path):
    table = _with(tiny_table_path, reference__median_ms=1.0, deployment__reference__median_ms=4.0,
                  deployment__reference__noise=0.0)
    assert table.deployment_reference_ms == 4.0
    assert table.drift_factor(6.0, deployed=True) == pytest.approx(1.5)
    assert table.drift_factor(6.0) == pytest.approx(6.0)


def _fake_meter(monkeypatch, measure):
    """The meter with its exports and deployment runs replaced by ``measure(arch_id) -> (ms, reference ms)``."""
    monkeypatch.setattr(LatencyMeter, "export_archs",
                        lambda self, archs: {a.arch_id: (Path(a.arch_id), (1, 3, 8, 8)) for a in archs})

    def networks(self, files, *, seed=0, progress=None):
        out = {}
        for key, (path, _) in files.items():
            ms, reference = measure(str(path))
            timing = DeployedTiming(ms, 0.9 * ms, 1.2 * ms, (ms,), ms / reference)
            out[key] = DeployedNetwork(timing, reference, (reference,))
        return out, {}

    monkeypatch.setattr(LatencyMeter, "networks", networks)


def test_validate_corrects_by_one_global_drift_factor_and_reports_it(tiny_table_path, monkeypatch):
    """Every network measured at twice its prediction while the reference, in the same run, took
    twice its build-time figure (in one chunk 1.9x, in the other 2.1x: the global factor is their
    median). Corrected figures must equal the predictions x 2 / 2; raw ones stay 100% off."""
    table = LatencyTable.load(tiny_table_path)
    archs = sample_validation_archs(table, 4, seed=0)
    predicted = {a.arch_id: table.predict_ms(a) for a in archs}
    at_build = table.deployment_reference_ms
    chunk_refs = dict(zip(predicted, [1.9, 1.9, 2.1, 2.1]))
    _fake_meter(monkeypatch, lambda arch_id: (2 * predicted[arch_id], chunk_refs[arch_id] * at_build))
    report = validate_table(table, 4, seed=0)

    assert [r["arch_id"] for r in report.rows] == [a.arch_id for a in archs]
    assert report.reference_ratio == pytest.approx(2.0) and report.drift == pytest.approx(2.0)
    for row in report.rows:
        assert row["measured_ms"] == pytest.approx(2 * row["predicted_ms"])
        assert row["measured_corrected_ms"] == pytest.approx(row["predicted_ms"])
    stats = report.stats()
    assert stats["calibrated, raw"]["median_abs_err"] == pytest.approx(0.5)  # |p - 2p| / 2p
    assert stats["calibrated, drift-corrected"]["worst_abs_err"] == pytest.approx(0.0, abs=1e-12)
    # per round: 2p / (1.9 or 2.1 x the build's reference) x the build's reference = 2p / 1.9 or 2p / 2.1
    per_round = sorted(r["measured_per_round_ms"] / r["predicted_ms"] for r in report.rows)
    assert per_round == pytest.approx([2 / 2.1, 2 / 2.1, 2 / 1.9, 2 / 1.9])


def test_validate_leaves_a_drift_within_the_references_noise_uncorrected(tiny_table_path, monkeypatch):
    table = LatencyTable.load(tiny_table_path)
    archs = sample_validation_archs(table, 3, seed=1)
    predicted = {a.arch_id: table.predict_ms(a) for a in archs}
    noise = max(table.data["deployment"]["reference"]["noise"], 0.03)
    ratio = 1 + noise / 2
    _fake_meter(monkeypatch, lambda arch_id: (1.1 * predicted[arch_id], ratio * table.deployment_reference_ms))
    report = validate_table(table, 3, seed=1)
    assert report.reference_ratio == pytest.approx(ratio) and report.drift == 1.0
    assert all(r["measured_corrected_ms"] == r["measured_ms"] for r in report.rows)


def test_added_archs_are_reported_as_their_own_group(tiny_table_path, tiny_space, monkeypatch):
    table = LatencyTable.load(tiny_table_path)
    added = [tiny_space.largest(), tiny_space.smallest()]
    predicted = {a.arch_id: table.predict_ms(a) for a in added + sample_validation_archs(table, 3, seed=0)}
    _fake_meter(monkeypatch, lambda arch_id: (predicted[arch_id] * (1.5 if arch_id == added[0].arch_id else 1),
                                              table.deployment_reference_ms))
    report = validate_table(table, 3, seed=0, extra={"corners": added})
    assert report.groups() == ["random", "corners"]
    assert report.stats("random")["calibrated, raw"]["worst_abs_err"] == pytest.approx(0.0, abs=1e-12)
    assert report.stats("corners")["calibrated, raw"]["worst_abs_err"] == pytest.approx(0.5 / 1.5)
    assert set(report.to_dict()["stats_by_group"]) == {"random", "corners"}


def test_an_added_arch_outside_the_tables_space_is_refused(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    with pytest.raises(EffNasError, match=r"every arch to validate must lie in the table's space .* but one of "
                                          r"'corners' does not"):
        validate_table(table, 3, extra={"corners": [Arch.preset("m5")]})


@pytest.mark.parametrize("samples", [0, -1, 2, 2.5, "30", True])
def test_validate_refuses_a_sample_count_it_cannot_rank(tiny_table_path, samples):
    table = LatencyTable.load(tiny_table_path)
    with pytest.raises(EffNasError, match=r"validation networks \(--samples\) must be an integer of at least 3, "
                                          rf"but got {samples!r}"):
        validate_table(table, samples)


def test_validate_refuses_a_negative_seed_or_no_rounds(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    with pytest.raises(EffNasError, match=r"seed \(--seed\) must be an integer of at least 0, but got -3"):
        validate_table(table, 3, seed=-3)
    with pytest.raises(EffNasError, match=r"deployment rounds \(--rounds\) must be an integer of at least 1, "
                                          r"but got 0"):
        validate_table(table, 3, rounds=0)


def test_validate_refuses_a_table_measured_on_other_hardware(tiny_table_path, monkeypatch):
    data = json.loads(tiny_table_path.read_text())
    data["hardware"]["cpu_model"] = "Some Other CPU 9000"
    table = LatencyTable.from_dict(data)

    def must_not_measure(*args, **kwargs):
        raise AssertionError("a table for other hardware must be refused before anything is measured")

    monkeypatch.setattr(LatencyMeter, "export_arch", must_not_measure)
    monkeypatch.setattr(LatencyMeter, "export_archs", must_not_measure)
    with pytest.raises(TableError, match=r"must be used on the hardware it was measured on, but cpu_model "
                                         r"'Some Other CPU 9000' vs here"):
        validate_table(table, 3)


def test_a_network_that_fails_to_run_is_reported_not_given_a_figure(tiny_table_path, monkeypatch):
    table = LatencyTable.load(tiny_table_path)
    monkeypatch.setattr(LatencyMeter, "export_archs",
                        lambda self, archs: {a.arch_id: (Path(a.arch_id), (1, 3, 8, 8)) for a in archs})
    monkeypatch.setattr(LatencyMeter, "networks",
                        lambda self, files, **kw: ({}, {next(iter(files)): "RuntimeException: out of memory"}))
    with pytest.raises(EffNasError, match=r"every network must run under onnxruntime, but 1 failed \(first .*: "
                                          r"RuntimeException: out of memory\)"):
        validate_table(table, 3)
