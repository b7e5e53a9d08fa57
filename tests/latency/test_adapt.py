"""``effnas table adapt``: the transfer fit on constructed data whose answer is known, the spread of the
networks it measures, and real adaptations of the tiny table (onnxruntime, measured here)."""

import json
import math

import numpy as np
import pytest

from effvit_nas import EffNasError
from effvit_nas.latency.adapt import AdaptSettings, adapt_table, plan_adapt_archs
from effvit_nas.latency.build import CheckBar
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.transfer import TransferInputs, fit_transfer, leave_one_out_ratios
from effvit_nas.latency.validate import sample_validation_archs
from effvit_nas.locations import SHIPPED_SPACES_DIR
from tests.cli.helpers import assert_one_line_error, effnas, effnas_here
from tests.conftest import quick_rule

SHAPES_SPACE = SHIPPED_SPACES_DIR / "shapes.yaml"


def _inputs(n=20):
    rng = np.random.default_rng(0)
    return [TransferInputs(float(ms), int(res), {"stem": 0.1, "attention": float(a), "dwffn": 1 - float(a)})
            for ms, res, a in zip(np.exp(rng.uniform(math.log(0.5), math.log(5), n)),
                                  rng.choice([64, 96, 128], n), rng.uniform(0.2, 0.6, n))]


def test_the_transfer_recovers_a_power_law_and_keeps_the_simplest_form_that_fits():
    inputs = _inputs()
    # a runtime with less per-call overhead: small networks gain more than large ones
    power = [0.8 * x.source_ms ** 0.9 for x in inputs]
    transfer, errors = fit_transfer(inputs, power)
    assert transfer.form == "power"
    assert transfer.coef == pytest.approx((math.log(0.8), -0.1), abs=1e-3)
    assert errors["scale"] > 0.02 > errors["power"]
    assert max(abs(r - 1) for r in leave_one_out_ratios("power", inputs, power)) < 1e-3
    # a machine uniformly 1.7x slower: every form fits, the one-number one is kept
    slower = [1.7 * x.source_ms for x in inputs]
    transfer, _ = fit_transfer(inputs, slower)
    assert transfer.form == "scale" and transfer.apply(inputs[3]) == pytest.approx(slower[3])


def test_a_default_adaptation_gives_a_default_search_the_residuals_it_needs():
    from effvit_nas.latency.table import residuals_needed
    from effvit_nas.search import DEFAULT_CONFIDENCE

    assert AdaptSettings().networks >= residuals_needed(DEFAULT_CONFIDENCE)  # one leave-one-out residual each


def test_the_networks_are_spread_over_the_space_not_drawn_at_random(tiny_table_path):
    source = LatencyTable.load(tiny_table_path)
    archs = plan_adapt_archs(source, 8, seed=0, pool=300)
    assert len(set(archs)) == 8
    assert archs[:2] == [source.space.smallest(), source.space.largest()]  # the corners first
    assert {a.resolution for a in archs} == set(source.space.resolutions)
    assert plan_adapt_archs(source, 8, seed=0, pool=300) == archs  # a resume finds the same plan
    # spread: the planned latencies cover more of the range than the same number drawn at random
    rng = np.random.default_rng(1)
    drawn = [source.space.sample(rng) for _ in range(8)]
    span = [np.ptp([math.log(source.predict_ms(a)) for a in group]) for group in (archs, drawn)]
    assert span[0] >= span[1]


def _quick(networks=8):
    return AdaptSettings(networks=networks, pool=300, rule=quick_rule(),
                         bar=CheckBar(max_median_err=float("inf"), min_within_10pct=0))


@pytest.mark.slow  # measures
def test_an_adapted_table_resumes_predicts_and_is_taken_like_any_table(tiny_table_path, tmp_path):
    from effvit_nas.estimators import create_estimator
    from effvit_nas.search import SearchProblem, Target

    source = LatencyTable.load(tiny_table_path)
    out = tmp_path / "one-thread.json"
    config = RuntimeConfig(threads=1, batch_size=2)  # another batch: the source's blocks stay at theirs

    def stop_in_the_window(done, total, what):
        if "sweep 2" in what:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # mid-window: nothing half-measured is kept, the window starts again
        adapt_table(source, "one-thread", out, config, _quick(), progress=stop_in_the_window)
    partial = out.with_name(out.name + ".partial")
    assert not out.exists() and len(partial.read_text().splitlines()) == 1  # the header alone
    adapt_table(source, "one-thread", out, config, _quick())
    assert not partial.exists()

    table = LatencyTable.load(out)
    adapted = table.data["adapted"]
    assert adapted["source"]["table_id"] == source.table_id and adapted["networks"] == 8
    assert all(0 < p["measured_ms"] <= p["p50_ms"] <= p["p90_ms"] for p in adapted["points"])
    assert table.data["build"]["machine"]["networks"]["moved"] >= 1
    assert (table.runtime.threads, table.runtime.batch_size, table.block_batch) == (1, 2, 1)
    arch = source.space.largest()
    assert table.block_sum_ms(arch) == source.block_sum_ms(arch)  # batch-1 blocks, not batch-2 guesses
    assert len(table.residual_ratios()) == 8 and "adapted" in table.summary()
    # what validate draws is unseen by the adaptation too
    measured = {json.dumps(p["arch"], sort_keys=True) for p in adapted["points"]}
    assert not measured & {json.dumps(a.to_dict(), sort_keys=True) for a in sample_validation_archs(table, 5, 0)}
    # a search takes it, with a confidence factor from its leave-one-out residuals
    budget = 3 * table.predict_ms(source.space.largest())
    problem = SearchProblem(source.space, [Target(table, (budget,), confidence=0.8)], create_estimator("size-prior"))
    assert problem.primary.ratio_quantile == sorted(table.residual_ratios())[math.ceil(9 * 0.8) - 1]
    with pytest.raises(EffNasError, match="itself adapted from"):
        adapt_table(table, "again", tmp_path / "again.json", config, _quick())
    with pytest.raises(EffNasError, match="--target must name a new table"):
        adapt_table(source, "tiny", tiny_table_path, config, _quick())


@pytest.mark.slow  # measures
def test_adapt_through_the_cli_and_its_refusals(tiny_table_path, tmp_path):
    out = tmp_path / "adapted.json"
    result = effnas("table", "adapt", "--from", str(tiny_table_path), "--target", str(out), "--threads", "1",
                    "--networks", "8", "--seconds", "0", "--accept-below-bar")  # the pipeline; fidelity: BENCHMARKS
    assert result.returncode == 0, result.stderr
    assert "adapted from" in result.stdout and "leave-one-out" in result.stdout
    # 8 residuals: the default confidence 0.95 takes 19, so the user is told what a search on it needs
    assert "a search on it needs --confidence 0.88 or lower" in result.stdout and "--networks 19" in result.stdout
    adapted = LatencyTable.load(out)
    adapted.ratio_quantile(0.88)  # what was said holds, and no more
    with pytest.raises(EffNasError, match="needs at least 9 residuals"):
        adapted.ratio_quantile(0.89)
    shown = json.loads(effnas("table", "show", str(out)).stdout)
    assert shown["adapted"]["source"]["target"] == "tiny" and shown["runtime"]["threads"] == 1

    assert_one_line_error(effnas("table", "adapt", "--from", str(tiny_table_path), "--target",
                                 str(tmp_path / "x.json"), "--networks", "3"), "--networks", "at least 8", "got 3")
    assert_one_line_error(effnas_here("table", "adapt", "--from", str(out), "--target", str(tmp_path / "x.json")),
                          "itself adapted from 'tiny'")
    assert_one_line_error(effnas_here("table", "adapt", "--from", str(tiny_table_path), "--target",
                                      str(tmp_path / "x.json"), "--space", str(SHAPES_SPACE)),
                          "must cover the search space")
    assert not (tmp_path / "x.json").exists()
