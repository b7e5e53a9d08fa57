"""Every estimator: seeded and deterministic, finite, and different for different networks; short
training prunes inside a real single-objective Optuna study."""

from __future__ import annotations

import math

import optuna
import pytest

from effvit_nas import Arch, SearchSpace
from effvit_nas.counting import count
from effvit_nas.errors import EffNasError, UnknownNameError
from effvit_nas.estimators import ESTIMATORS, ShortTraining, create_estimator, prune_with

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it

PROXIES = ["grad-norm", "synflow", "naswot", "zico"]


@pytest.mark.parametrize("name", PROXIES)
def test_proxies_are_deterministic_finite_and_tell_networks_apart(name, tiny_space):
    small, large = tiny_space.smallest(), tiny_space.largest()
    first = create_estimator(name, batch_size=8)
    score = first.score(small)
    assert math.isfinite(score)
    assert create_estimator(name, batch_size=8).score(small) == score  # a fresh instance, the same seed
    assert first.score(large) != score
    assert create_estimator(name, batch_size=8, seed=1).score(small) != score or name == "synflow"  # data-free


def test_baselines_are_the_log_counts():
    m0 = Arch.preset("m0")
    assert create_estimator("params").score(m0) == pytest.approx(math.log(count(m0).params))
    assert create_estimator("macs").score(m0) == pytest.approx(math.log(count(m0).macs))


def test_the_random_baseline_is_uniform_per_arch_and_seed_whatever_the_order():
    archs = [SearchSpace.default().sample(i) for i in range(200)]
    first, again, other = (create_estimator("random", seed=s) for s in (0, 0, "1"))
    scores = [first.score(a) for a in archs]
    assert [again.score(a) for a in reversed(archs)] == scores[::-1]  # the order scored in changes nothing
    assert all(0 <= v < 1 for v in scores) and 0.4 < sum(scores) / len(scores) < 0.6
    assert sum(a == b for a, b in zip(scores, (other.score(a) for a in archs))) == 0  # another seed, another draw


def test_every_estimator_is_registered_and_unknown_names_list_them():
    assert {"size-prior", "params", "macs", "short-training", *PROXIES} <= set(ESTIMATORS)
    with pytest.raises(UnknownNameError, match="estimator must be one of .*'zico'.*, but got 'nope'"):
        create_estimator("nope")


def test_short_training_scores_its_last_epoch_seeded_and_prunes_in_a_single_objective_study(tmp_path, tiny_space):
    """The estimator's plumbing, not its accuracy: 2 epochs on noisy-digits leave the smallest arch at
    12-31% over seeds 0-2 (chance 10%), too close to chance for a floor."""
    arch = tiny_space.smallest()
    estimator = ShortTraining(epochs=2, seed=0)
    reports: list[tuple[int, float]] = []
    top1 = estimator.score_reporting(arch, lambda epoch, value: reports.append((epoch, value)))
    assert [epoch for epoch, _ in reports] == [1, 2] and reports[-1][1] == top1
    assert ShortTraining(epochs=2, seed=0).score(arch) == top1

    # a pruner that prunes everything: the training must stop after its first epoch
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=101.0))
    study.optimize(lambda trial: estimator.score_reporting(arch, prune_with(trial)), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]


def test_a_search_runs_on_a_proxy(tmp_path):
    import json

    from effvit_nas import Arch
    from effvit_nas.latency.table import LatencyTable

    from ..cli.helpers import effnas

    budget = 2 * LatencyTable.load("amd-epyc-2core-ort-b1").predict_ms(Arch.preset("m0"))  # M0, trial 1, fits
    result = effnas("search", "--target", "amd-epyc-2core-ort-b1", "--budget", f"{budget:.3f}ms", "--trials", "8",
                    "--estimator", "synflow", "--margin", "5%", "--out", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    metadata = json.loads((tmp_path / "s" / "metadata.json").read_text())
    # synflow reads no image: a fixed 64 px unless told otherwise (see SYNFLOW_RESOLUTION)
    assert metadata["estimator"]["name"] == "synflow" and metadata["estimator"]["resolution"] == 64


@pytest.mark.parametrize("name, option", [("grad-norm", {}), ("naswot", {}), ("synflow", {"resolution": 0})])
def test_proxies_see_each_arch_at_its_own_resolution_unless_told_one(name, option, tiny_space):
    arch = tiny_space.smallest()
    at_64, at_96 = arch.replace(resolution=64), arch.replace(resolution=96)
    own = create_estimator(name, batch_size=8, **option)
    assert own.score(at_64) != own.score(at_96)  # resolution is a knob the score can see
    fixed = create_estimator(name, batch_size=8, resolution=64)
    assert fixed.score(at_64) == fixed.score(at_96) == own.score(at_64)


def test_a_resolution_option_outside_the_arch_rule_is_refused():
    with pytest.raises(EffNasError, match="resolution must be a multiple of 16 and at least 64"):
        create_estimator("synflow", resolution=40)


def test_search_data_is_checked_up_front_and_only_for_estimators_that_read_images(tmp_path):
    from ..cli.helpers import assert_one_line_error, effnas_here

    base = ["search", "--target", "amd-epyc-2core-ort-b1", "--budget", "9ms", "--trials", "2"]
    assert_one_line_error(effnas_here(*base, "--estimator", "size-prior", "--data", "digits", "--refine", "0",
                                      "--out", str(tmp_path / "a")),
                          "--data is read by the estimators that look at images (",
                          "but the estimator is size-prior and --refine is off")
    assert_one_line_error(effnas_here(*base, "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")),
                          "--data must be", "does not exist")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_estimator_options_are_typed_and_checked():
    assert create_estimator("short-training", epochs="3").epochs == 3
    with pytest.raises(UnknownNameError, match="options must be among .*'epochs'.*, but got 'epoch'"):
        create_estimator("short-training", epoch="3")
    with pytest.raises(EffNasError, match="estimator option epochs must be int, but got 'x'"):
        create_estimator("short-training", epochs="x")
