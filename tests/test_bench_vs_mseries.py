"""The headline benchmark's pipeline, end to end on the tiny task (CI's version of
scripts/bench_vs_mseries.py): budgets measured, a family search, training with a test split, verify,
the report. It checks that every step runs and hands over to the next, not the result. The four arms'
(``--arms``) own steps are held here without training or timing (their end-to-end tiny run costs minutes
of CI time: ``python scripts/bench_vs_mseries.py --tiny --arms``)."""

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


def _arms():
    sys.path.insert(0, str(SCRIPT.parent))
    import _arms

    return _arms


def test_the_scaled_arm_takes_each_member_at_its_largest_side_within_the_budget_and_picks_on_validation():
    from effvit_nas import Arch, SearchSpace
    from effvit_nas.latency.table import LatencyTable

    arms = _arms()
    table, space = LatencyTable.load("amd-epyc-2core-ort-b1-shapes"), SearchSpace.load("shapes")
    budget = table.predict_ms(Arch.preset("m1").replace(resolution=96))
    candidates = arms.scaled_candidates(table, space, budget)
    assert "m0@112" in candidates and "m5@64" not in candidates  # M5 is far too slow at any side of the space
    for name, arch in candidates.items():
        assert table.predict_ms(arch) <= arms.NEAR * budget and arch.resolution == int(name.split("@")[1])
    model = Arch.preset("m1").replace(resolution=96)
    # M1 at 96 px among the candidates is the budget itself; the others as if timed beside it
    measured = {name: (1.02 if name == "m0@112" else 1.2) for name in candidates if name != "m1@96"}
    rows = arms.scaled_rows(table, model, 1.0, measured, candidates, noise=0.03, budget_in_models=1.0)
    assert rows["m1@96"]["is_the_model"] and rows["m1@96"]["ratio_to_m"] == 1.0 and rows["m1@96"]["qualifies"]
    assert rows["m0@112"]["qualifies"] and not rows["m0@128"]["within"]
    assert [n for n, r in rows.items() if r["qualifies"]] == ["m0@112", "m1@96"]
    chosen = arms.pick_scaled({"m0@112": Path("a"), "m1@96": Path("b")},
                              lambda name, path: {"val_top1": {"m0@112": 40.0, "m1@96": 42.5}[name]})
    assert chosen == "m1@96"  # by validation top-1, never test


def test_the_arms_report_gives_each_gain_with_its_standard_error():
    arms = _arms()
    gain = arms.gain_over([40.0, 42.0, 44.0], [45.0, 46.0, 47.0])
    assert gain["gain"] == 4.0 and abs(gain["se"] - (4 / 3 + 1 / 3) ** 0.5) < 1e-9 and gain["beyond_se"]
    assert arms.gain_over([40.0, 44.0], [41.0, 43.0])["beyond_se"] is False
    assert str(arms.gain_over([40.0], [45.0])["se"]) == "nan"  # one seed has no spread to judge by


def test_the_arms_table_and_plot_give_every_arm_its_accuracy_latency_and_cost(tmp_path):
    arms = _arms()
    top1 = {"m": [40.0, 41.0], "scaled": [42.0, 43.0], "random": [43.0, 44.0], "found": [46.0, 47.0]}
    measured = {"m": 1.0, "scaled": 0.98, "random": None, "found": 0.91}  # random's finalists not timed
    row = {"model": "m1", "budget_ms": 0.988,
           "arms": {arm: {"label": arm, "mean": sum(t) / 2, "sd": 0.7, "measured_of_budget": measured[arm],
                          "cost_wall_min": {"m": None, "scaled": 4.0, "random": 5.0, "found": 9.0}[arm]}
                    for arm, t in top1.items()},
           "vs_scaled": arms.gain_over(top1["scaled"], top1["found"]),
           "vs_random": arms.gain_over(top1["random"], top1["found"])}
    table = arms.arms_markdown([row])
    assert "| M1 (0.988 ms) |" in table and "| 0.98 / not timed / 0.91 | 4 / 5 / 9 |" in table
    assert "+4.00 ± 0.71" in table  # (d) - (b) with its standard error
    arms.plot_arms([row], tmp_path / "arms.png", "noisy-digits")
    assert (tmp_path / "arms.png").stat().st_size > 10_000


def test_the_digits_task_keeps_the_built_in_val_split_and_holds_out_a_test_split_from_train(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    from _digits_task import write_task

    from effvit_nas.train.data import open_data

    built_in, folder = open_data("digits"), open_data(str(write_task("digits", tmp_path / "digits")))
    assert len(folder.val) == len(built_in.val)  # the same images: validation figures mean the same
    assert len(folder.train) + len(folder.test) == len(built_in.train)
    per_class = [folder.test.targets.count(c) for c in range(10)]
    assert min(per_class) >= 30 and max(per_class) - min(per_class) <= 2  # stratified
    assert folder.classes == built_in.classes
