"""verify: the real model measured on the table's runtime, judged against the budget and prediction."""

from __future__ import annotations

import json

from effvit_nas.latency.table import LatencyTable
from effvit_nas.train import CHECKPOINT_NAME, METRICS_NAME
from effvit_nas.verify import REPORT_JSON, REPORT_MD

from .cli.helpers import assert_one_line_error, effnas


def verify(arch, table, budget, out, *extra):
    return effnas("verify", str(arch), "--target", str(table), "--budget", budget, "--out", str(out),
                  "--max-wait", "0", *extra)


def test_a_trained_model_is_measured_evaluated_and_reported(tmp_path, tiny_arch_yaml, tiny_table_path, trained_tiny):
    out = tmp_path / "v"
    result = verify(tiny_arch_yaml, tiny_table_path, "1s", out, "--checkpoint", str(trained_tiny / CHECKPOINT_NAME),
                    "--data", "digits")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-3].startswith("within budget: measured")
    report = json.loads((out / REPORT_JSON).read_text())
    assert report["within_budget"] and 0 < report["latency"]["measured_ms"] < 1000
    assert report["predicted_ms"] > 0 and report["measured_over_predicted"] > 0
    assert report["forced_on_other_hardware"] is None and report["onnx"]["max_abs_diff_vs_torch"] < 1e-3
    assert (out / "model.onnx").exists() and "**within budget**" in (out / REPORT_MD).read_text()
    # the fused, exported model classifies the held-out digits as the trained one did
    trained_top1 = json.loads((trained_tiny / METRICS_NAME).read_text())["val_top1"]
    assert abs(report["accuracy"]["top1"] - trained_top1) <= 100 / 360 + 1e-9
    assert report["accuracy"]["val_images"] == 360


def test_over_budget_exits_1_with_the_report_written(tmp_path, tiny_arch_yaml, tiny_table_path):
    out = tmp_path / "v"
    result = verify(tiny_arch_yaml, tiny_table_path, "1us", out)
    assert result.returncode == 1
    assert "OVER BUDGET" in result.stdout
    assert not json.loads((out / REPORT_JSON).read_text())["within_budget"]


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
        result = effnas("verify", *args, "--target", str(tiny_table_path), "--budget", "1s", "--out",
                        str(tmp_path / "v"), "--max-wait", "0")
        assert_one_line_error(result, fragment)
    assert_one_line_error(verify(tiny_arch_yaml, tiny_table_path, "2", tmp_path / "v"), "budget must be")
