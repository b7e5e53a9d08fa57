"""The headline benchmark's pipeline, end to end on the tiny task (CI's version of
scripts/bench_vs_mseries.py): budgets measured, a family search, training with a test split, verify,
the report, then the four arms (M-series at other resolutions timed, random search, the report). It
checks that every step runs and hands over to the next, not the result."""

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

    # the four arms in the same work dir: the M model and the default search's pick are reused
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--arms", "--no-save", "--work", str(work)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(d) beats (b) and (c) beyond the standard error at" in done.stdout
    timed = json.loads((work / "scaled" / "m0.json").read_text())
    assert timed["rows"] and all(r["measured_ms"] > 0 for r in timed["rows"].values())
    random_pick = json.loads((work / "search-random" / "metadata.json").read_text())
    assert random_pick["estimator"]["name"] == "random" and random_pick["refinement"]["candidates"] == 1
    assert json.loads((work / "train" / "random@m0" / "seed0" / "metrics.json").read_text())["test_top1"] is not None


@pytest.mark.slow  # runs the script in a subprocess
@pytest.mark.parametrize("flags", [["--variant", "zico"], ["--search-args=--estimator zico"],
                                   ["--variant", "a/b", "--search-args=--estimator zico"]])
def test_a_variant_needs_a_name_and_its_own_search_arguments(tmp_path, flags):
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--no-save", "--work", str(tmp_path / "w"), *flags],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().startswith("--variant must be a name")
    assert not (tmp_path / "w").exists()
