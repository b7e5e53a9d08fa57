"""The headline benchmark's pipeline, end to end on the tiny task (CI's version of
scripts/bench_vs_mseries.py): budgets measured, a family search, training with a test split, verify,
the report. It checks that every step runs and hands over to the next, not the result."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_vs_mseries.py"


@pytest.mark.slow  # trains, searches and measures: `pytest -m "not slow"` skips it
def test_the_tiny_benchmark_runs_every_step_and_reports(tmp_path):
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--no-save", "--work", str(work)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| M0 |" in done.stdout and "**Pass:" in done.stdout  # the report's row and its verdict line
    budgets = json.loads((work / "budgets.json").read_text())
    assert budgets["budgets_ms"]["m0"] > 0
    for name in ("m0", "found@m0"):
        metrics = json.loads((work / "train" / name / "seed0" / "metrics.json").read_text())
        assert metrics["epochs_done"] == 1 and metrics["test_top1"] is not None
    verified = [json.loads(p.read_text()) for p in (work / "verify").glob("*/verify.json")]
    assert len(verified) == 2 and all(v["latency"]["measured_ms"] > 0 for v in verified)


@pytest.mark.slow  # runs the script in a subprocess
@pytest.mark.parametrize("flags", [["--variant", "zico"], ["--search-args=--estimator zico"],
                                   ["--variant", "a/b", "--search-args=--estimator zico"]])
def test_a_variant_needs_a_name_and_its_own_search_arguments(tmp_path, flags):
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--no-save", "--work", str(tmp_path / "w"), *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().startswith("--variant must be a name")
    assert not (tmp_path / "w").exists()
