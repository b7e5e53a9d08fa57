"""Which calibration form predicts unseen networks best: a ridge line or a tree ensemble, on the
networks tables already measured.

    python scripts/bench_calibration_form.py [--tables NAME ...] [--splits 50] [--name NAME]

Every table stores its calibration networks and its held-out check networks with their measured
figures and block sums. Pooled per table, they are split at random many times into the build's sizes
(calibration / check); each form is fitted to one part and scored on the other: the median absolute
error and the share within ±10% (the build's bar: median <= 5%, >= 75% within ±10%), and how often a
split misses that bar. No measuring: it runs in seconds, on any table, with the same data for every
form. The forms are ``fit_calibration`` (the shipped ridge line) and the tree ensemble it replaced
(150 depth-2 gradient-boosted trees, the earlier ``fit_calibration``). Writes
docs/results/calibration_form[_<name>].json.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _results import save_result

from effvit_nas.latency.fit import fit_calibration
from effvit_nas.latency.table import LatencyTable

TABLES = ["amd-epyc-2core-ort-b1", "amd-epyc-2core-ort-b1-shapes", "amd-epyc-2core-openvino-b1"]


def _trees(features: np.ndarray, sums: np.ndarray, measured: np.ndarray, seed: int):
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=150, max_depth=2, learning_rate=0.05, subsample=0.8,
                                      random_state=seed).fit(features, np.log(measured / sums))
    return lambda f, s: s * np.exp(model.predict(f))


def _line(features: np.ndarray, sums: np.ndarray, measured: np.ndarray, seed: int):
    calibration = fit_calibration(features, sums, measured, seed=seed)
    return lambda f, s: np.array([calibration.apply(b, row) for b, row in zip(s, f.tolist())])


FORMS = {"ridge line (shipped)": _line, "150 boosted trees (before)": _trees}


def _score(errors: np.ndarray) -> dict[str, float]:
    return {"median_abs_err": float(np.median(np.abs(errors))), "within_10pct": float(np.mean(np.abs(errors) <= 0.10))}


def compare(table: LatencyTable, splits: int) -> dict:
    calibration = table.data["calibration"]["points"]
    check = table.data["deployment"]["check"]["points"]
    points = calibration + check
    features = np.array([p["features"] for p in points], float)
    sums = np.array([p["block_sum_ms"] for p in points], float)
    measured = np.array([p["measured_ms"] for p in points], float)
    n_fit = len(calibration)
    rng = np.random.default_rng(0)
    order = [np.arange(len(points))] + [rng.permutation(len(points)) for _ in range(splits)]  # the build's own first
    result: dict = {"networks": len(points), "fit_on": n_fit, "splits": splits, "forms": {}}
    for name, form in FORMS.items():
        scores = []
        for i, perm in enumerate(order):
            fit, held = perm[:n_fit], perm[n_fit:]
            predict = form(features[fit], sums[fit], measured[fit], i)
            scores.append(_score(predict(features[held], sums[held]) / measured[held] - 1))
        random = scores[1:]
        medians = np.array([s["median_abs_err"] for s in random])
        within = np.array([s["within_10pct"] for s in random])
        result["forms"][name] = {
            "the_builds_own_split": scores[0],
            "random_splits": {"median_abs_err_median": float(np.median(medians)),
                              "median_abs_err_p90": float(np.quantile(medians, 0.9)),
                              "within_10pct_median": float(np.median(within)),
                              "share_missing_the_bar": float(np.mean((medians > 0.05) | (within < 0.75)))},
        }
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=TABLES)
    parser.add_argument("--splits", type=int, default=50)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    results = {}
    for name in args.tables:
        table = LatencyTable.load(name)
        results[table.table_id] = compare(table, args.splits)
        for form, r in results[table.table_id]["forms"].items():
            own, rand = r["the_builds_own_split"], r["random_splits"]
            print(f"{table.table_id:48s} {form:28s} own check: {own['median_abs_err']:.1%}, "
                  f"{own['within_10pct']:.0%} within ±10% | {args.splits} random splits: median "
                  f"{rand['median_abs_err_median']:.1%} (p90 {rand['median_abs_err_p90']:.1%}), "
                  f"{rand['share_missing_the_bar']:.0%} miss the bar")
    name = f"calibration_form_{args.name}" if args.name else "calibration_form"
    path = save_result(name, " ".join(["python scripts/bench_calibration_form.py", *argv]), {"tables": results})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
