"""Does synflow see the input resolution? Synflow at each arch's own resolution against synflow at a
fixed 64 px: rank agreement and cost per arch, on archs sampled from the default space.

Run:  python scripts/bench_synflow_resolution.py [--archs 24]

Writes docs/results/synflow_resolution.json. (Why it matters: synflow is the search's default and
must stay cheap; it reads no image, and mean pooling makes its score nearly size-blind.)
"""

from __future__ import annotations

import argparse
import time

from _results import save_result
from scipy.stats import spearmanr

from effvit_nas import SearchSpace
from effvit_nas.estimators import create_estimator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", type=int, default=24)
    args = parser.parse_args()
    archs = [SearchSpace.default().sample(seed) for seed in range(args.archs)]
    estimators = {"own": create_estimator("synflow", resolution=0), "64px": create_estimator("synflow", resolution=64)}
    scores = {name: [] for name in estimators}
    seconds = dict.fromkeys(estimators, 0.0)
    for arch in archs:  # interleaved, so the machine's speed changes hit both alike
        for name, estimator in estimators.items():
            start = time.perf_counter()
            scores[name].append(estimator.score(arch))
            seconds[name] += time.perf_counter() - start
    figures = {"archs": len(archs), "spearman_own_vs_64px": float(spearmanr(scores["own"], scores["64px"])[0]),
               "seconds_per_arch": {k: v / len(archs) for k, v in seconds.items()},
               "resolutions": sorted(a.resolution for a in archs)}
    save_result("synflow_resolution", f"python scripts/bench_synflow_resolution.py --archs {args.archs}", figures)
    print(f"Spearman own vs 64 px {figures['spearman_own_vs_64px']:.3f}; s/arch own "
          f"{figures['seconds_per_arch']['own']:.2f}, 64 px {figures['seconds_per_arch']['64px']:.2f}")


if __name__ == "__main__":
    main()
