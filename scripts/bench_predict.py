"""Throughput of LatencyTable.predict_ms: how many archs per second a search can score.

Run:  python scripts/bench_predict.py [--target amd-epyc-2core-ort-b1] [--archs 5000]

Two passes over the same random archs: the first fills the per-key cache (what a search's first
trials see), the second hits it (what later trials see). Median of 5 interleaved repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from effvit_nas.latency.table import LatencyTable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    parser.add_argument("--archs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    space = LatencyTable.load(args.target).space
    archs = [space.sample(rng) for rng in [np.random.default_rng(0)] for _ in range(args.archs)]
    cold, warm = [], []
    for _ in range(args.repeats):
        table = LatencyTable.load(args.target)  # fresh cache
        for timings in (cold, warm):
            start = time.perf_counter()
            for arch in archs:
                table.predict_ms(arch)
            timings.append(len(archs) / (time.perf_counter() - start))
    print(f"predict_ms on {args.target}, {args.archs} random archs, median of {args.repeats}:")
    print(f"- first pass (per-key cache filling): {statistics.median(cold):,.0f} archs/s")
    print(f"- second pass (cache warm):           {statistics.median(warm):,.0f} archs/s")


if __name__ == "__main__":
    main()
