import json
import shutil

import pytest

from tests.cli.helpers import assert_one_line_error, effnas, effnas_here

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


def test_list_shows_the_shipped_tables():
    result = effnas("table", "list")
    assert result.returncode == 0, result.stderr
    assert "amd-epyc-2core-ort-b1" in result.stdout


def test_show_prints_what_the_table_predicts_its_check_and_how_the_machine_moved(tiny_table_path):
    result = effnas("table", "show", str(tiny_table_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["target"] == "tiny" and summary["entries"] > 0 and "fast state" in summary["predicts"]
    assert summary["own_check"].startswith("passed its check on 4 networks held out")
    assert set(summary["build"]["machine"]) == {"blocks", "networks"}
    assert summary["deployment"]["residuals"] == 8 + 4 and "points" not in summary["calibration"]


def test_unknown_target_is_one_line_with_the_build_command():
    assert_one_line_error(effnas("table", "show", "no-such-box"), "effnas table build --target no-such-box",
                          "amd-epyc-2core-ort-b1")


def test_edited_table_is_refused_by_validate(tiny_table_path, tmp_path):
    data = json.loads(tiny_table_path.read_text())
    data["reference"]["latency_ms"] = 123.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    assert_one_line_error(effnas_here("table", "validate", "--target", str(edited), "--samples", "3"), "checksum")


def test_build_refuses_to_overwrite_and_bad_settings(tiny_table_path, tmp_path):
    existing = tmp_path / "existing.json"
    shutil.copy(tiny_table_path, existing)
    assert_one_line_error(effnas_here("table", "build", "--target", str(existing)), "--overwrite")
    assert_one_line_error(effnas_here("table", "build", "--target", str(tmp_path / "x.json"), "--runtime",
                                      "onnxruntime", "--device", "cuda"),
                          "runtime 'onnxruntime' runs on device ['cpu']", "a runtime that runs on 'cuda'")
    assert_one_line_error(effnas_here("table", "build", "--target", str(tmp_path / "x.json"), "--runtime", "tvm"),
                          "runtime must be one of [", "but got 'tvm'")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize(("flags", "message"), [
    (["--threads", "0"], "threads (--threads) must be an integer of at least 1, but got 0"),
    (["--threads", "-2"], "threads (--threads) must be an integer of at least 1, but got -2"),
    (["--runtime", "torch", "--batch-size", "0"], "batch size (--batch-size) must be an integer of at least 1, but "
                                                  "got 0"),
    (["--calibration-archs", "0"], "calibration networks (--calibration-archs) must be an integer of at least 8"),
    (["--seconds", "-1"], "seconds of measuring (--seconds) must be a number of at least 0, but got -1.0"),
    (["--seed", "-1"], "seed (--seed) must be an integer of at least 0, but got -1"),
    (["--threads", "1.5"], "argument --threads: invalid int value: '1.5'"),
])
def test_build_refuses_zero_and_negative_numbers_before_measuring(tmp_path, flags, message):
    target = tmp_path / "never.json"
    assert_one_line_error(effnas_here("table", "build", "--target", str(target), *flags), message)
    assert list(tmp_path.iterdir()) == []  # no table, no partial build


@pytest.mark.parametrize(("samples", "message"), [
    ("0", "validation networks (--samples) must be an integer of at least 3, but got 0"),
    ("-4", "validation networks (--samples) must be an integer of at least 3, but got -4"),
    ("2", "validation networks (--samples) must be an integer of at least 3, but got 2"),
    ("1.5", "argument --samples: invalid int value: '1.5'"),
])
def test_validate_refuses_a_bad_sample_count(tiny_table_path, tmp_path, samples, message):
    out = tmp_path / "val"
    assert_one_line_error(effnas_here("table", "validate", "--target", str(tiny_table_path), "--samples", samples,
                                      "--out", str(out)), message)
    assert not out.exists()


def test_validate_refuses_a_table_measured_on_other_hardware(tiny_table_path, tmp_path):
    from effvit_nas.latency.table import content_checksum

    data = json.loads(tiny_table_path.read_text())
    data["hardware"]["cpu_model"] = "Some Other CPU 9000"
    data["checksum"] = content_checksum(data)
    other = tmp_path / "other-box.json"
    other.write_text(json.dumps(data))
    assert_one_line_error(effnas_here("table", "validate", "--target", str(other), "--samples", "3", "--out",
                                      str(tmp_path / "val")),
                          "must be used on the hardware it was measured on, but cpu_model 'Some Other CPU 9000'",
                          "effnas table build --target")
    assert not (tmp_path / "val").exists()


def test_validate_writes_report_and_plot(tiny_table_path, tiny_arch_yaml, tmp_path):
    out = tmp_path / "val"
    result = effnas("table", "validate", "--target", str(tiny_table_path), "--samples", "3", "--out", str(out),
                    "--seconds", "0", "--arch", str(tiny_arch_yaml))
    assert result.returncode == 0, result.stderr
    assert "calibrated" in result.stdout and "added archs" in result.stdout and "this machine moved" in result.stdout
    report = json.loads((out / "report.json").read_text())
    assert [r["group"] for r in report["rows"]] == ["random"] * 3 + ["added"]
    assert (out / "report.json").exists() and (out / "scatter.png").exists()


def test_build_through_the_cli_writes_a_table_and_arch_info_predicts_with_it(tmp_path, ort_threads, monkeypatch):
    from tests.conftest import DATA

    monkeypatch.setenv("EFFNAS_HOME", str(tmp_path / "new-home"))  # a first table: the folder is made
    path = tmp_path / "new-home" / "tables" / "cli.json"  # where a name goes
    result = effnas("table", "build", "--target", "cli", "--space", str(DATA / "tiny_space.yaml"),
                    "--threads", str(ort_threads), "--calibration-archs", "8", "--check-archs", "3",
                    "--seconds", "0", "--accept-below-bar")  # tiny, on a busy machine: the wiring is tested
    assert result.returncode == 0, result.stderr
    assert path.exists() and not path.with_name("cli.json.partial").exists()
    deployment = json.loads(path.read_text())["deployment"]
    assert deployment["rule"]["min_seconds"] == 0  # as asked (default 60)
    assert "this machine moved" in result.stdout
    check = deployment["check"]
    assert check["archs"] == 3 and ("met the bar" if check["passed"] else "BELOW THE BAR") in result.stdout
    assert "measuring" in result.stderr  # the progress bar
    info = effnas("arch", "info", "m0", "--target", "amd-epyc-2core-ort-b1")
    assert info.returncode == 0 and "ms predicted (onnxruntime cpu, batch 1" in info.stdout
    outside = effnas("arch", "info", "m0", "--target", "cli")  # found by its name
    assert_one_line_error(outside, "to be predicted, but resolution 224")
