"""``validate``'s arithmetic on constructed measurements whose answers are known, and its refusals."""

import json
from pathlib import Path

import pytest

from effvit_nas import Arch, EffNasError, TableError
from effvit_nas.latency.measure import Timing
from effvit_nas.latency.meter import LatencyMeter, NetworkRun
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.validate import measured_by_table, sample_validation_archs, validate_table


def _fake_meter(monkeypatch, measure, reference_ms, failures=None):
    """The meter with its exports and its window replaced: ``measure(arch_id) -> ms``, the reference at
    ``reference_ms`` (the machine moved 1.5x)."""
    monkeypatch.setattr(LatencyMeter, "export_archs",
                        lambda self, archs: {a.arch_id: (Path(a.arch_id), (1, 3, 8, 8)) for a in archs})

    def networks(self, files, *, seed=0, progress=None):
        timings = {key: Timing(measure(str(path)), 1.2 * measure(str(path)), 1.5 * measure(str(path)), 24)
                   for key, (path, _) in files.items() if key not in (failures or {})}
        return NetworkRun(timings, [Timing(reference_ms, 1.2 * reference_ms, 1.5 * reference_ms, 24)],
                          dict(failures or {}), 60.0)

    monkeypatch.setattr(LatencyMeter, "networks", networks)


def test_validate_compares_the_figures_as_measured_and_reports_the_machine(tiny_table_path, monkeypatch):
    """Every network measured at twice its prediction, the reference at twice the table's: the errors say
    100% (nothing is divided out of a figure), the report says how the reference and the machine ran."""
    table = LatencyTable.load(tiny_table_path)
    archs = sample_validation_archs(table, 4, seed=0)
    predicted = {a.arch_id: table.predict_ms(a) for a in archs}
    _fake_meter(monkeypatch, lambda arch_id: 2 * predicted[arch_id], 2 * table.deployment_reference_ms)
    report = validate_table(table, 4, seed=0)
    assert [r["arch_id"] for r in report.rows] == [a.arch_id for a in archs]
    assert report.reference_ratio == pytest.approx(2.0) and report.machine["moved"] == pytest.approx(1.5)
    assert all(r["measured_ms"] == pytest.approx(2 * r["predicted_ms"]) for r in report.rows)
    assert report.stats()["calibrated"]["median_abs_err"] == pytest.approx(0.5)  # |p - 2p| / 2p
    assert report.to_dict()["machine"]["windows"] == 1


def test_added_archs_are_reported_as_their_own_group(tiny_table_path, tiny_space, monkeypatch):
    table = LatencyTable.load(tiny_table_path)
    added = [tiny_space.largest(), tiny_space.smallest()]
    predicted = {a.arch_id: table.predict_ms(a) for a in added + sample_validation_archs(table, 3, seed=0)}
    _fake_meter(monkeypatch, lambda arch_id: predicted[arch_id] * (1.5 if arch_id == added[0].arch_id else 1),
                table.deployment_reference_ms)
    report = validate_table(table, 3, seed=0, extra={"corners": added})
    assert report.groups() == ["random", "corners"]
    assert report.stats("random")["calibrated"]["worst_abs_err"] == pytest.approx(0.0, abs=1e-12)
    assert report.stats("corners")["calibrated"]["worst_abs_err"] == pytest.approx(0.5 / 1.5)
    assert set(report.to_dict()["stats_by_group"]) == {"random", "corners"}


def test_validation_never_draws_a_network_the_table_was_built_or_adapted_on(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    own = measured_by_table(table)
    assert len(own) == 8 + 4  # the calibration's and the check's, listed by the table itself
    drawn = {a.arch_id for a in sample_validation_archs(table, 20, seed=0)}
    assert len(drawn) == 20 and not drawn & own


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


def test_validate_refuses_a_negative_seed(tiny_table_path):
    table = LatencyTable.load(tiny_table_path)
    with pytest.raises(EffNasError, match=r"seed \(--seed\) must be an integer of at least 0, but got -3"):
        validate_table(table, 3, seed=-3)


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
    first = sample_validation_archs(table, 3, seed=0)[0].arch_id
    _fake_meter(monkeypatch, lambda arch_id: 1.0, table.deployment_reference_ms,
                failures={first: "RuntimeException: out of memory"})
    with pytest.raises(EffNasError, match=r"every network must run under onnxruntime, but 1 failed \(first .*: "
                                          r"RuntimeException: out of memory\)"):
        validate_table(table, 3)
