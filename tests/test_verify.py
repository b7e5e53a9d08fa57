"""verify: the real model measured on the table's runtime, judged against the budget and prediction."""

from __future__ import annotations

import json

import pytest

from effvit_nas.latency.table import LatencyTable
from effvit_nas.train import CHECKPOINT_NAME, METRICS_NAME
from effvit_nas.verify import REPORT_JSON, REPORT_MD

from .cli.helpers import assert_one_line_error, effnas, effnas_here

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


def verify(arch, table, budget, out, *extra):
    return effnas("verify", str(arch), "--target", str(table), "--budget", budget, "--out", str(out),
                  "--seconds", "0", *extra)


def test_a_trained_model_is_measured_evaluated_and_reported(tmp_path, tiny_arch_yaml, tiny_table_path, trained_tiny):
    out = tmp_path / "v"
    result = verify(tiny_arch_yaml, tiny_table_path, "1s", out, "--checkpoint", str(trained_tiny / CHECKPOINT_NAME),
                    "--data", "digits")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3].startswith("within budget: measured")
    report = json.loads((out / REPORT_JSON).read_text())
    latency = report["latency"]
    assert report["within_budget"] and 0 < latency["measured_ms"] < 1000 and latency["bursts"] >= 12
    # the verdict's figure is the fast state of the bursts: at most their median, which is at most their p90
    assert latency["measured_ms"] <= latency["measured_p50_ms"] <= latency["measured_p90_ms"]
    table = LatencyTable.load(tiny_table_path)
    assert latency["reference_at_build_ms"] == table.deployment_reference_ms
    ratio = latency["machine"]["reference_ms"] / table.deployment_reference_ms
    assert latency["reference_ratio"] == pytest.approx(ratio)
    assert latency["machine"]["moved"] >= 1 and "this machine moved" in result.stdout
    assert report["predicted_ms"] > 0 and report["measured_over_predicted"] > 0
    assert report["forced_on_other_hardware"] is None and report["onnx"]["max_abs_diff_vs_torch"] < 1e-3
    assert (out / "model.onnx").exists() and "**within budget**" in (out / REPORT_MD).read_text()
    # the fused, exported model classifies the held-out digits as the trained one did
    trained_top1 = json.loads((trained_tiny / METRICS_NAME).read_text())["val_top1"]
    assert abs(report["accuracy"]["top1"] - trained_top1) <= 100 / 360 + 1e-9
    assert report["accuracy"]["val_images"] == 360


def test_the_verdict_goes_both_ways_on_the_figure_the_report_gives(tmp_path, tiny_arch_yaml, tiny_table_path):
    def run(budget_ms: float, name: str) -> tuple[int, str, dict]:
        out = tmp_path / name
        result = verify(tiny_arch_yaml, tiny_table_path, f"{budget_ms * 1000:.3f}us", out)
        assert result.returncode in (0, 1), result.stderr
        report = json.loads((out / REPORT_JSON).read_text())
        judged, budget = report["judged_ms"], report["budget_ms"]
        # the verdict, the exit code, the printed line and the report all rest on one figure
        assert judged == report["latency"]["measured_ms"] and budget == pytest.approx(budget_ms, abs=1e-6)
        assert report["within_budget"] == (judged <= budget) == (result.returncode == 0)
        assert report["verdict"] == ("within budget" if judged <= budget else "OVER BUDGET")
        assert report["measured_over_budget"] == pytest.approx(judged / budget)
        assert f"{report['verdict']}: measured {judged:.3f} ms vs budget {budget:.3f} ms" in result.stdout
        assert f"**{report['verdict']}**" in (out / REPORT_MD).read_text()
        return result.returncode, result.stdout, report

    code, stdout, loose = run(1000.0, "loose")  # far above anything the tiny 64 px network takes
    assert code == 0 and "within budget" in stdout and loose["within_budget"]
    code, stdout, tight = run(loose["judged_ms"] / 20, "tight")
    assert code == 1 and "OVER BUDGET" in stdout and not tight["within_budget"]


def test_a_file_as_out_is_refused_before_measuring(tmp_path, tiny_arch_yaml, tiny_table_path):
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    assert_one_line_error(verify(tiny_arch_yaml, tiny_table_path, "1s", taken), "--out must be a folder", "is a file")
    assert_one_line_error(verify(tiny_arch_yaml, tiny_table_path, "1s", taken / "v"), "--out must lie in a folder")
    assert taken.read_text() == "keep me\n"


def test_other_hardware_is_refused_unless_forced_and_then_said_loudly(tmp_path, tiny_arch_yaml, tiny_table_path):
    data = json.loads(tiny_table_path.read_text())
    data["hardware"] = {**data["hardware"], "cores": 128}
    other = LatencyTable.from_dict(data).save(tmp_path / "other.json")
    refused = verify(tiny_arch_yaml, other, "1s", tmp_path / "v")
    assert_one_line_error(refused, "must be used on the hardware it was measured on", "--force")
    assert not (tmp_path / "v").exists()
    forced = verify(tiny_arch_yaml, other, "1s", tmp_path / "f", "--force")
    assert forced.returncode == 0 and "FORCED on other hardware" in forced.stderr
    assert (tmp_path / "f" / REPORT_MD).read_text().splitlines()[2].startswith("> **FORCED on other hardware")


def test_bad_input_is_one_line(tmp_path, tiny_arch_yaml, tiny_table_path, trained_tiny):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00" * 100)
    cases = [
        (["m0", "--checkpoint", str(trained_tiny / CHECKPOINT_NAME)], "--checkpoint must be trained for this arch"),
        ([str(tiny_arch_yaml), "--checkpoint", str(corrupt)], "--checkpoint must be a torch checkpoint"),
        ([str(tiny_arch_yaml), "--data", "digits"], "--data evaluates trained weights and needs --checkpoint"),
        ([str(tiny_arch_yaml), "--checkpoint", str(trained_tiny / CHECKPOINT_NAME), "--data", str(tmp_path)],
         "has no train/ folder"),
    ]
    for args, fragment in cases:
        result = effnas_here("verify", *args, "--target", str(tiny_table_path), "--budget", "1s", "--out",
                             str(tmp_path / "v"), "--seconds", "0")
        assert_one_line_error(result, fragment)
    assert_one_line_error(verify(tiny_arch_yaml, tiny_table_path, "2", tmp_path / "v"), "budget must be")


def test_a_model_budget_is_judged_against_the_model_measured_beside_it(tmp_path, tiny_arch_yaml, tiny_table_path):
    """``--budget m0@64``: no slower than M0 at 64 px here. The tiny arch (a quarter of M0's widths) is well
    under it; under a tenth of it, it is not. Both judged in one window beside M0 itself."""
    for budget, code in (("m0@64", 0), ("0.1xm0@64", 1)):
        out = tmp_path / budget
        result = verify(tiny_arch_yaml, tiny_table_path, budget, out)
        assert result.returncode == code, result.stderr
        report = json.loads((out / REPORT_JSON).read_text())
        verdict = report["latency"]["verdict"]
        assert report["budget"] == budget and verdict["model_ms"] > 0
        assert report["budget_ms"] == pytest.approx(verdict["model_ms"] * (0.1 if budget.startswith("0.1") else 1))
        assert report["within_budget"] == (report["judged_ms"] <= report["budget_ms"]) == (code == 0)
        assert "M0 at 64 px measured beside it)" in result.stdout
