"""The pure-Python evaluators against what they stand for: the calibration's linear correction
against sklearn's own ridge on the same data, the block model against its least-squares fit."""

import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from effvit_nas.latency.fit import Calibration, fit_block_model, fit_calibration


def _networks(seed: int, n: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # features on very different scales, like the calibration's (log ms, block counts, pixels)
    features = rng.normal(size=(n, 8)) * rng.uniform(0.1, 300, size=8) + rng.uniform(-50, 50, size=8)
    true = rng.normal(size=8) / np.abs(features).mean(axis=0)  # each feature moves log(ratio) by ~1
    sums = rng.uniform(1, 20, size=n)
    measured = sums * np.exp(0.1 * (features - features.mean(axis=0)) @ true + rng.normal(0, 0.01, n))
    return features, sums, measured, true


def test_the_stored_correction_equals_the_ridge_it_was_folded_from():
    features, sums, measured, _ = _networks(seed=1)
    stored = fit_calibration(features, sums, measured).to_dict()
    calibration = Calibration.from_dict(json.loads(json.dumps(stored)))  # as a table file holds it
    # the same ridge refitted by sklearn on the standardised features, at the penalty the fit chose
    mean, scale = features.mean(axis=0), features.std(axis=0)
    target = np.log(measured / sums)
    best = min(np.logspace(-3, 3, 13), key=lambda a: _loo_error(Ridge(alpha=a), (features - mean) / scale, target))
    sklearn_says = Ridge(alpha=best).fit((features - mean) / scale, target)
    fresh = np.random.default_rng(9).normal(size=(50, 8)) * 200  # also far outside the fitted range
    ours = np.array([calibration.correction(f) for f in fresh.tolist()])
    np.testing.assert_allclose(ours, sklearn_says.predict((fresh - mean) / scale), rtol=1e-9, atol=1e-9)
    assert calibration.apply(2.0, fresh[0].tolist()) == pytest.approx(2.0 * np.exp(ours[0]))


def _loo_error(model, x: np.ndarray, y: np.ndarray) -> float:
    errors = [y[i] - model.fit(np.delete(x, i, 0), np.delete(y, i)).predict(x[i:i + 1])[0] for i in range(len(y))]
    return float(np.mean(np.square(errors)))


def test_fit_calibration_learns_a_known_correction():
    features, sums, measured, _ = _networks(seed=0)
    calibration = fit_calibration(features[:80], sums[:80], measured[:80])
    held_out = [calibration.apply(s, f) / m - 1 for s, f, m in zip(sums[80:], features[80:].tolist(), measured[80:])]
    assert np.median(np.abs(held_out)) < 0.02  # the noise is 1%; a fit that missed the features errs by ~10%
    fitted = [calibration.apply(s, f) / m - 1 for s, f, m in zip(sums[:80], features[:80].tolist(), measured[:80])]
    assert calibration.median_abs_rel_err == pytest.approx(np.median(np.abs(fitted)))


def test_block_model_recovers_non_negative_costs():
    rng = np.random.default_rng(0)
    features = np.column_stack([np.ones(50), rng.uniform(0, 10, 50), rng.uniform(0, 10, 50)])
    latency = features @ np.array([0.05, 0.2, 0.0]) * rng.uniform(0.99, 1.01, 50)
    model = fit_block_model(("const", "macs", "acts"), features, latency)
    assert model.coef == pytest.approx((0.05, 0.2, 0.0), abs=0.01) and min(model.coef) >= 0
    assert model.predict(features[0]) == pytest.approx(latency[0], rel=0.02)
