"""The pure-Python evaluators against what they stand for: the calibration's trees against sklearn's
own ``predict`` on the same fitted ensemble, the block model against its least-squares fit."""

import json
import math

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor

from effvit_nas.latency.fit import Calibration, fit_block_model, fit_calibration


def _fitted(depth: int, seed: int) -> tuple[GradientBoostingRegressor, np.ndarray]:
    rng = np.random.default_rng(seed)
    # features on very different scales, like the calibration's (log ms, block counts, pixels)
    x = rng.normal(size=(200, 8)) * rng.uniform(0.1, 300, size=8)
    y = np.sin(x[:, 0] / 50) + (x[:, 1] > 0) * 0.3 + 0.01 * x[:, 2] * (x[:, 3] > 0) + rng.normal(0, 0.05, 200)
    model = GradientBoostingRegressor(n_estimators=60, max_depth=depth, learning_rate=0.1, subsample=0.8,
                                      random_state=seed).fit(x, y)
    # the training points (every one near some split) and fresh ones, some beyond the training range
    points = np.vstack([x, rng.normal(size=(200, 8)) * rng.uniform(0.1, 600, size=8)])
    return model, points


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_the_pure_python_trees_equal_sklearns_predict(depth):
    model, points = _fitted(depth, seed=depth)
    stored = Calibration.from_sklearn(model, archs=200).to_dict()
    calibration = Calibration.from_dict(json.loads(json.dumps(stored)))  # as a table file holds it
    assert len(calibration.trees) == 60
    assert max(len(t["left"]) for t in calibration.trees) > 2 ** depth  # trees as deep as asked
    ours = np.array([calibration.correction(p) for p in points.tolist()])
    np.testing.assert_allclose(ours, model.predict(points), rtol=1e-12, atol=1e-12)
    assert calibration.apply(2.0, points[0].tolist()) == pytest.approx(2.0 * math.exp(model.predict(points[:1])[0]))


def test_fit_calibration_learns_a_known_correction():
    rng = np.random.default_rng(0)
    features = rng.uniform(0, 1, size=(150, 8))
    sums = rng.uniform(1, 5, size=150)
    measured = sums * np.where(features[:, 0] > 0.5, 1.4, 0.8)  # a step, as a cache level gives
    calibration = fit_calibration(features, sums, measured, seed=0)
    predicted = [calibration.apply(s, f) for s, f in zip(sums, features.tolist())]
    errors = np.abs(np.array(predicted) / measured - 1)
    assert np.median(errors) < 0.02 and calibration.median_abs_rel_err == pytest.approx(np.median(errors))


def test_block_model_recovers_non_negative_costs():
    rng = np.random.default_rng(0)
    features = np.column_stack([np.ones(50), rng.uniform(0, 10, 50), rng.uniform(0, 10, 50)])
    latency = features @ np.array([0.05, 0.2, 0.0]) * rng.uniform(0.99, 1.01, 50)
    model = fit_block_model(("const", "macs", "acts"), features, latency)
    assert model.coef == pytest.approx((0.05, 0.2, 0.0), abs=0.01) and min(model.coef) >= 0
    assert model.predict(features[0]) == pytest.approx(latency[0], rel=0.02)
