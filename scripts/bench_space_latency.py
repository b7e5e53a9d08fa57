"""onnxruntime batch-1 latency of the default space's smallest arch, M0 and its largest arch.

Run:  python scripts/bench_space_latency.py [--threads 2] [--rounds 15] [--space YAML]

Each model is BN-fused, exported to ONNX and timed in interleaved rounds (so machine noise hits all
three alike); the figure is the median over every call, with the interquartile range beside it.
Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse

import torch

from effvit_nas import Arch, SearchSpace, build_model
from effvit_nas.counting import count
from effvit_nas.latency.measure import hardware_info, measure_interleaved
from effvit_nas.latency.runtimes import RuntimeConfig, create_runtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20, help="timed calls per model per round")
    parser.add_argument("--space", default=None)
    args = parser.parse_args()

    space = SearchSpace.default() if args.space is None else SearchSpace.from_yaml(args.space)
    archs = {"smallest": space.smallest(), "M0": Arch.preset("m0"), "largest": space.largest()}
    runtime = create_runtime(RuntimeConfig(runtime="onnxruntime", threads=args.threads, batch_size=1))
    torch.manual_seed(0)
    forwards = {}
    for label, arch in archs.items():
        model = build_model(arch).eval().fuse()
        forwards[label] = runtime.prepare(model, (1, 3, arch.resolution, arch.resolution))
    timings = measure_interleaved(forwards, rounds=args.rounds, calls_per_round=args.calls, warmup_calls=20)

    hw = hardware_info()
    print(f"space {space.name}: {space.size():,} distinct architectures ({space.size():.2e})")
    print(f"{hw['cpu_model']}, {hw['cores']} cores; onnxruntime {runtime.version()}, {args.threads} threads, "
          f"batch 1, fused fp32; {args.rounds} interleaved rounds x {args.calls} calls\n")
    print("| arch | resolution | params | MACs | median ms | IQR ms | vs M0 |")
    print("|---|---|---|---|---|---|---|")
    m0 = timings["M0"].median_ms
    for label, arch in archs.items():
        t, cost = timings[label], count(arch)
        print(f"| {label} `{arch.arch_id}` | {arch.resolution} | {cost.params / 1e6:.2f}M | {cost.macs / 1e6:.0f}M "
              f"| {t.median_ms:.3f} | {t.p25_ms:.3f}–{t.p75_ms:.3f} | {t.median_ms / m0:.2f}x |")


if __name__ == "__main__":
    main()
