"""What exporting a chunk side by side saves: the adaptation's first 12 planned networks (torch16 -> ORT)
exported by ``LatencyMeter.export_archs`` (export processes, one per core) and one at a time
(``export_arch``), in interleaved rounds, each round in a fresh meter (its export processes start anew).

Run:  python scripts/bench_export_workers.py [--rounds 2]     (~2 minutes here; alone)

Writes docs/results/export_workers.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from _results import save_result

from effvit_nas.latency.adapt import adapted_config, plan_adapt_archs
from effvit_nas.latency.meter import LatencyMeter
from effvit_nas.latency.table import LatencyTable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    source = LatencyTable.load("amd-epyc-2core-openvino-b1")
    archs = plan_adapt_archs(source, 12)
    config = adapted_config(source, runtime="onnxruntime", device="cpu", threads=2, batch_size=1)
    seconds: dict[str, list[float]] = {"side by side (export_archs, chunks of 8)": [], "one at a time": []}
    for _ in range(args.rounds):
        for name in seconds:
            with LatencyMeter(config) as meter:
                started = time.perf_counter()
                if name == "one at a time":
                    for arch in archs:
                        meter.export_arch(arch)
                else:
                    for start in range(0, len(archs), 8):  # a build exported 8 at a time
                        meter.export_archs(archs[start:start + 8])
                seconds[name].append(round(time.perf_counter() - started, 2))
    medians = {name: statistics.median(s) for name, s in seconds.items()}
    for name, s in seconds.items():
        print(f"{name}: {s} s, median {medians[name]:.1f} s")
    save_result("export_workers", "python scripts/bench_export_workers.py " + " ".join(sys.argv[1:]),
                {"networks": len(archs), "runtime": config.to_dict(), "rounds_s": seconds, "median_s": medians})


if __name__ == "__main__":
    main()
