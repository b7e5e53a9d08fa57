"""Latency-table fidelity against the deployment, judged by a harness that is not the one it checks.

Parts (run one at a time, on a quiet machine, nothing else running):

  python scripts/bench_latency.py agreement --tables A B [--samples 40]
      two builds of one target: how far their predictions differ on random archs and corners
      (no measuring: both tables are read).
  python scripts/bench_latency.py truth --target T [--samples 40] [--rounds 3] [--name NAME]
      an independent measurement: each network exported to ONNX and timed in a brand-new Python
      interpreter running a plain ``onnxruntime.InferenceSession`` written out below (none of
      effvit-nas's measuring code runs), 30 warm-up calls, median of 200, networks interleaved over
      rounds with M0 as the machine's speed reference; one global drift factor (M0 now / M0 in the
      table) is reported beside the raw figures. Networks: random unseen archs plus the corners a
      search visits (each resolution's smallest and largest; wide and shallow at the lowest one).

Each part writes docs/results/latency_<part>_<name>.json and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import save_result

from effvit_nas import Arch, EffNasError
from effvit_nas.latency.fit import error_stats
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.validate import sample_validation_archs
from effvit_nas.space import SearchSpace

# The deployment, written out by hand: what a user's service does with the exported file.
PLAIN_SESSION = """
import json, statistics, sys, time
import numpy as np
import onnxruntime as ort
path, threads, shape = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
feeds = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
for _ in range(30):
    session.run(None, feeds)
times = []
for _ in range(200):
    start = time.perf_counter()
    session.run(None, feeds)
    times.append((time.perf_counter() - start) * 1e3)
print(statistics.median(times))
"""


def corners(space: SearchSpace) -> dict[str, Arch]:
    """The edges of the space a latency-constrained search runs into."""
    out = {}
    for resolution in space.resolutions:
        for name, arch in (("smallest", space.smallest()), ("largest", space.largest())):
            candidate = arch.replace(resolution=resolution)
            if space.contains(candidate):
                out[f"{name}@{resolution}"] = candidate
    low = min(space.resolutions)
    try:
        wide = space.largest().replace(resolution=low, depths=space.smallest().depths)
        if space.contains(wide):
            out[f"wide-shallow@{low}"] = wide
    except EffNasError:
        pass
    return out


def _predictions(table: LatencyTable, archs: dict[str, Arch]) -> dict[str, float]:
    return {k: table.predict_ms(a) for k, a in archs.items()}


def agreement(args: argparse.Namespace) -> None:
    first, second = (LatencyTable.load(t) for t in args.tables)
    archs = {a.arch_id: a for a in sample_validation_archs(first, args.samples, args.seed)}
    archs.update(corners(first.space))
    a, b = _predictions(first, archs), _predictions(second, archs)
    diffs = {k: abs(a[k] / b[k] - 1) for k in archs}
    random_diffs = [d for k, d in diffs.items() if "@" not in k]
    summary = {"median_diff": statistics.median(random_diffs), "worst_diff": max(random_diffs),
               "corner_diffs": {k: d for k, d in diffs.items() if "@" in k},
               "build_seconds": [t.data["build"]["seconds"] for t in (first, second)],
               "checks": [t.data["deployment"]["check"] for t in (first, second)]}
    print(f"## Two builds: {first.table_id} vs {second.table_id}, {len(random_diffs)} random archs\n")
    print(f"median |a/b - 1| {summary['median_diff']:.1%}, worst {summary['worst_diff']:.1%}; corners: "
          + ", ".join(f"{k} {d:.1%}" for k, d in summary["corner_diffs"].items()))
    save_result(f"latency_agreement_{args.name}", "python scripts/bench_latency.py agreement --tables "
                f"{' '.join(args.tables)} --samples {args.samples} --seed {args.seed} --name {args.name}",
                {"tables": [first.table_id, second.table_id], **summary,
                 "predictions": {k: [a[k], b[k]] for k in archs}})


def _time_in_new_interpreter(path: Path, threads: int, shape: list[int]) -> float:
    done = subprocess.run([sys.executable, "-c", PLAIN_SESSION, str(path), str(threads), json.dumps(shape)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def truth(args: argparse.Namespace) -> None:
    import torch

    from effvit_nas import build_model
    from effvit_nas.export import export_onnx

    table = LatencyTable.load(args.target)
    runtime = table.runtime
    if runtime.runtime != "onnxruntime":
        raise SystemExit("the independent harness is written for onnxruntime tables")
    archs = {a.arch_id: a for a in sample_validation_archs(table, args.samples, args.seed)}
    archs.update(corners(table.space))
    archs.update({f"pick:{Path(p).stem}": Arch.from_yaml(p) for p in args.arch})
    reference = "__m0__"
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key, arch in {reference: Arch.preset("m0"), **archs}.items():
            shape = [runtime.batch_size, 3, arch.resolution, arch.resolution]
            files[key] = (export_onnx(build_model(arch).eval().fuse(), Path(tmp) / f"{len(files)}.onnx",
                                      input_shape=tuple(shape)), shape)
            print(f"exported {len(files)}/{len(archs) + 1}", end="\r", file=sys.stderr)
        rounds: dict[str, list[float]] = {k: [] for k in files}
        order = list(files)
        rng = random.Random(args.seed)
        for r in range(args.rounds):
            rng.shuffle(order)
            for i, key in enumerate(order):
                rounds[key].append(_time_in_new_interpreter(files[key][0], runtime.threads, files[key][1]))
                print(f"round {r + 1}/{args.rounds}: {i + 1}/{len(order)}", end="\r", file=sys.stderr)
    measured = {k: statistics.median(v) for k, v in rounds.items()}
    at_build = table.deployment_reference_ms
    drift = measured[reference] / at_build if at_build else 1.0
    rows = [{"key": k, "arch": a.to_dict(), "predicted_ms": table.predict_ms(a), "measured_ms": measured[k],
             "rounds_ms": rounds[k], "corrected_ms": measured[k] / drift} for k, a in archs.items()]
    groups = {"random": [r for r in rows if "@" not in r["key"] and not r["key"].startswith("pick:")],
              "corners": [r for r in rows if "@" in r["key"]],
              "picks": [r for r in rows if r["key"].startswith("pick:")]}
    stats = {g: {"raw": error_stats([r["predicted_ms"] for r in rs], [r["measured_ms"] for r in rs]),
                 "drift-corrected": error_stats([r["predicted_ms"] for r in rs], [r["corrected_ms"] for r in rs])}
             for g, rs in groups.items() if rs}
    print(f"## {table.table_id} against an independent deployment harness ({args.rounds} rounds)\n")
    print(f"M0 now {measured[reference]:.3f} ms, at build {at_build:.3f} ms: drift x{drift:.3f}\n")
    print("| archs | n | figure | ±10% | median err | worst err | Spearman |\n|---|---|---|---|---|---|---|")
    for group, by in stats.items():
        for figure, s in by.items():
            print(f"| {group} | {len(groups[group])} | {figure} | {s['within_10pct']:.0%} | {s['median_abs_err']:.1%} "
                  f"| {s['worst_abs_err']:.1%} | {s['spearman']:.3f} |")
    for r in groups["corners"] + groups["picks"]:
        print(f"{r['key']}: predicted {r['predicted_ms']:.3f} ms, measured {r['measured_ms']:.3f} "
              f"(corrected {r['corrected_ms']:.3f})")
    save_result(f"latency_truth_{args.name}", "python scripts/bench_latency.py truth --target "
                f"{args.target} --samples {args.samples} --rounds {args.rounds} --seed {args.seed} --name {args.name}"
                + "".join(f" --arch {p}" for p in args.arch),
                {"table_id": table.table_id, "reference_now_ms": measured[reference], "reference_at_build_ms": at_build,
                 "drift": drift, "stats": stats, "rows": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    agree = parts.add_parser("agreement")
    agree.add_argument("--tables", nargs=2, required=True)
    independent = parts.add_parser("truth")
    independent.add_argument("--target", required=True)
    independent.add_argument("--rounds", type=int, default=3)
    independent.add_argument("--arch", action="append", default=[], help="a search's pick (YAML), repeatable")
    for part in (agree, independent):
        part.add_argument("--samples", type=int, default=40)
        part.add_argument("--seed", type=int, default=0)
        part.add_argument("--name", default="run")
    args = parser.parse_args()
    {"agreement": agreement, "truth": truth}[args.part](args)


if __name__ == "__main__":
    main()
