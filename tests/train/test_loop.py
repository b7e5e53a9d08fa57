"""Training end to end on digits: outputs, exact resume after a kill, DDP on two gloo processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from effvit_nas.train import CHECKPOINT_NAME, CURVES_NAME, METRICS_NAME

from ..cli.helpers import assert_one_line_error, effnas, effnas_here

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


# the installed script, or the package from a checkout on PYTHONPATH
EFFNAS_COMMAND = [shutil.which("effnas")] if shutil.which("effnas") else [sys.executable, "-m", "effvit_nas"]


def test_a_run_writes_checkpoint_metrics_and_learning_curves(trained_tiny):
    metrics = json.loads((trained_tiny / METRICS_NAME).read_text())
    assert metrics["epochs_done"] == 2 and len(metrics["epochs"]) == 2
    # 2 epochs leave the tiny arch near chance (20-36% over seeds 0-2): the loss must fall here, the resume
    # test holds a floor above chance, and supernet training (66-68% for its largest) a real one
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    assert {"val_ema_top1", "train_img_per_s", "lr"} <= set(metrics["epochs"][0])
    assert metrics["settings"]["recipe"]["epochs"] == 2 and metrics["git_revision"]
    checkpoint = torch.load(trained_tiny / CHECKPOINT_NAME, weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["classes"] == [str(d) for d in range(10)]
    assert metrics["val_top1"] == metrics["epochs"][-1]["val_top1"] == checkpoint["history"][-1]["val_top1"]
    assert (trained_tiny / CURVES_NAME).stat().st_size > 10_000


TRAIN = ["--data", "digits", "--epochs", "2", "--set", "warmup_epochs=0.5", "--deterministic"]


def _wait_for_epochs(out, epochs, process, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if (out / METRICS_NAME).exists() and json.loads((out / METRICS_NAME).read_text())["epochs_done"] >= epochs:
            return
        time.sleep(0.05)
    raise AssertionError(f"no epoch {epochs} in {out}")


def test_resume_after_a_kill_mid_epoch_matches_an_uninterrupted_run(tmp_path, tiny_arch_yaml):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert effnas("train", str(tiny_arch_yaml), *TRAIN, "--out", str(straight)).returncode == 0

    command = [*EFFNAS_COMMAND, "train", str(tiny_arch_yaml), *TRAIN, "--out", str(killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_epochs(killed, 1, process)
    time.sleep(0.3)  # into epoch 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((killed / METRICS_NAME).read_text())["epochs_done"] < 2  # it really died early

    resumed = effnas("train", str(tiny_arch_yaml), *TRAIN, "--out", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads((straight / METRICS_NAME).read_text())
    b = json.loads((killed / METRICS_NAME).read_text())
    assert a["val_top1"] > 15.0  # 2 epochs: 20-36% over seeds 0-2 (chance 10%)
    for row_a, row_b in zip(a["epochs"], b["epochs"], strict=True):
        for key in ("train_loss", "val_top1", "val_loss", "val_ema_top1", "lr"):
            assert row_a[key] == row_b[key], (row_a["epoch"], key)
    state_a = torch.load(straight / CHECKPOINT_NAME, weights_only=True)["model"]
    state_b = torch.load(killed / CHECKPOINT_NAME, weights_only=True)["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)

    again = effnas_here("train", str(tiny_arch_yaml), *TRAIN, "--out", str(killed), "--resume")
    assert again.returncode == 0 and "after 2 epochs" in again.stdout  # a finished run stays finished


def test_a_run_is_never_overwritten_or_resumed_with_other_settings(trained_tiny, tiny_arch_yaml):
    # a real process (the other refusals run in this one: tests/cli/helpers.py)
    assert_one_line_error(effnas("train", str(tiny_arch_yaml), "--data", "digits", "--out", str(trained_tiny)),
                          "--out must not hold a run already", "pass --resume")
    result = effnas_here("train", str(tiny_arch_yaml), "--data", "digits", "--epochs", "5", "--out", str(trained_tiny),
                    "--resume")
    assert_one_line_error(result, "--resume must continue the run", "recipe.epochs was 2, now 5")


@pytest.mark.parametrize("args, fragments", [
    (["--data", "/nonexistent/images"], ["must be digits, noisy-digits, shapes, shapes-mini or an existing directory",
                                         "not exist"]),
    (["--data", "digits", "--set", "nope=1"], ["--set KEY must be a recipe field"]),
    (["--data", "digits", "--batch-size", "5000"], ["--batch-size must be at most the training images"]),
    (["--data", "digits", "--init-from", "/nonexistent.pt"], ["--init-from must be an existing checkpoint file"]),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, tiny_arch_yaml, args, fragments):
    out = tmp_path / "run"
    assert_one_line_error(effnas_here("train", str(tiny_arch_yaml), *args, "--out", str(out)), *fragments)
    assert not (out / CHECKPOINT_NAME).exists()


def test_init_from_refuses_weights_of_another_arch_before_loading_data(tmp_path, trained_tiny, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was opened before the checkpoint's arch was checked")

    monkeypatch.setattr("effvit_nas.train.loop.open_data", no_data)
    result = effnas_here("train", "m0", "--data", "digits", "--init-from", str(trained_tiny / CHECKPOINT_NAME),
                    "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "--init-from must be trained for this arch")


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two DDP processes need two cores")
def test_ddp_on_two_gloo_processes_trains_the_same_arch(tmp_path, tiny_arch_yaml):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "effvit_nas", "train", str(tiny_arch_yaml), "--data", "digits", "--epochs", "2",
               "--set", "warmup_epochs=0.5", "--device", "cpu", "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / METRICS_NAME).read_text())
    assert metrics["settings"]["world_size"] == 2 and metrics["epochs_done"] == 2
    # 2 epochs leave the tiny arch near chance (19-36% over seeds 0-2), as in one process: the loss must fall
    assert metrics["epochs"][-1]["train_loss"] < metrics["epochs"][0]["train_loss"]
    assert result.stdout.count("val top-1") == 3  # rank 0 reports (2 epochs + the summary), rank 1 is quiet


def test_export_takes_a_training_checkpoint_with_its_class_count(tmp_path, tiny_arch_yaml, trained_tiny):
    result = effnas("export", str(tiny_arch_yaml), "--onnx", str(tmp_path / "m.onnx"), "--checkpoint",
                    str(trained_tiny / CHECKPOINT_NAME))
    assert result.returncode == 0, result.stderr
    import onnx

    output = onnx.load(str(tmp_path / "m.onnx")).graph.output[0]
    assert output.type.tensor_type.shape.dim[1].dim_value == 10


def test_ctrl_c_keeps_the_finished_epochs_and_says_how_to_continue(tmp_path, tiny_arch_yaml):
    out = tmp_path / "run"
    command = [*EFFNAS_COMMAND, "train", str(tiny_arch_yaml), *TRAIN, "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_epochs(out, 1, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == ("effnas: interrupted; what finished is saved, rerun it with --resume "
                                               "to continue")
    assert "Traceback" not in stderr
    done = torch.load(out / CHECKPOINT_NAME, weights_only=True)["epoch"]
    assert 1 <= done < 4


def test_a_test_split_is_scored_once_after_the_last_epoch_and_never_by_an_estimator(tmp_path, tiny_arch_yaml):
    from effvit_nas import Arch
    from effvit_nas.train import TrainSettings, train
    from tests.conftest import tiny_recipe
    from tests.train.test_data import make_folder

    root = make_folder(tmp_path / "data", {"train": {"a": 12, "b": 12}, "val": {"a": 3, "b": 3},
                                           "test": {"a": 5, "b": 4}})
    arch = Arch.from_yaml(tiny_arch_yaml)
    recipe = tiny_recipe(1).updated({"batch_size": "8"})
    metrics = train(TrainSettings(arch=arch, data=str(root), recipe=recipe, out_dir=tmp_path / "run"))
    assert metrics["test"]["test_top1"] == metrics["test_top1"] and metrics["test_top1"] in {100 * k / 9 for k in
                                                                                               range(10)}
    assert "test_ema_top1" in metrics["test"] and all("test_top1" not in row for row in metrics["epochs"])
    assert json.loads((tmp_path / "run" / METRICS_NAME).read_text())["test_top1"] == metrics["test_top1"]
    skipped = train(TrainSettings(arch=arch, data=str(root), recipe=recipe, out_dir=tmp_path / "est",
                                  score_test=False))
    assert "test_top1" not in skipped  # how the short-training estimator runs: the test split is never read
