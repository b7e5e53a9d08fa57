import json
import shutil

from tests.cli.helpers import assert_one_line_error, effnas


def test_list_shows_the_shipped_tables():
    result = effnas("table", "list")
    assert result.returncode == 0, result.stderr
    assert "amd-epyc-2core-ort-b1" in result.stdout


def test_show_prints_metadata(tiny_table_path):
    result = effnas("table", "show", str(tiny_table_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["target"] == "tiny" and summary["entries"] > 0


def test_unknown_target_is_one_line_with_the_build_command():
    assert_one_line_error(effnas("table", "show", "no-such-box"), "effnas table build --target no-such-box",
                          "amd-epyc-2core-ort-b1")


def test_edited_table_is_refused_by_validate(tiny_table_path, tmp_path):
    data = json.loads(tiny_table_path.read_text())
    data["reference"]["median_ms"] = 123.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    assert_one_line_error(effnas("table", "validate", "--target", str(edited), "--samples", "3"), "checksum")


def test_build_refuses_to_overwrite_and_bad_settings(tiny_table_path, tmp_path):
    existing = tmp_path / "existing.json"
    shutil.copy(tiny_table_path, existing)
    assert_one_line_error(effnas("table", "build", "--target", str(existing)), "--overwrite")
    assert_one_line_error(effnas("table", "build", "--target", str(tmp_path / "x.json"), "--runtime", "onnxruntime",
                                 "--device", "cuda"), "needs --runtime torch")
    assert_one_line_error(effnas("table", "build", "--target", str(tmp_path / "x.json"), "--runtime", "tvm"),
                          "invalid choice: 'tvm'")
    assert not (tmp_path / "x.json").exists()


def test_validate_writes_report_and_plot(tiny_table_path, tmp_path):
    out = tmp_path / "val"
    result = effnas("table", "validate", "--target", str(tiny_table_path), "--samples", "3", "--out", str(out),
                    "--max-wait", "0")
    assert result.returncode == 0, result.stderr
    assert "calibrated, drift-corrected" in result.stdout
    assert (out / "report.json").exists() and (out / "scatter.png").exists()


def test_build_through_the_cli_writes_a_table_and_arch_info_predicts_with_it(tmp_path, ort_threads):
    from tests.conftest import DATA

    path = tmp_path / "cli.json"
    result = effnas("table", "build", "--target", str(path), "--space", str(DATA / "tiny_space.yaml"),
                    "--threads", str(ort_threads), "--calibration-archs", "8", "--max-wait", "0")
    assert result.returncode == 0, result.stderr
    assert path.exists() and not path.with_name("cli.json.partial").exists()
    assert "measuring" in result.stderr  # the progress bar
    info = effnas("arch", "info", "m0", "--target", "amd-epyc-2core-ort-b1")
    assert info.returncode == 0 and "ms predicted (onnxruntime cpu, batch 1" in info.stdout
    outside = effnas("arch", "info", "m0", "--target", str(path))
    assert_one_line_error(outside, "to be predicted, but resolution 224")
