"""Latency-table fidelity against the deployment, judged by a harness that is not the one it checks.

Parts (run one at a time, nothing else running):

  python scripts/bench_latency.py agreement --tables A B [--samples 40]
      two builds of one target: how far their predictions differ on random archs and corners
      (no measuring: both tables are read).
  python scripts/bench_latency.py truth --target T [--samples 40] [--seconds 60] [--name NAME]
      an independent measurement of the quantity a table predicts (the fast state: the 2nd percentile
      of burst medians, docs/LATENCY.md), written out below from that definition and nothing else of
      effvit-nas's measuring code: each network exported to ONNX, loaded in a brand-new Python
      interpreter by a plain ``onnxruntime.InferenceSession``, warmed up; then, in shuffled sweeps, one
      process at a time re-warms for 50 ms and times a 25 ms burst, 30 ms idle after; at least 24
      bursts each over at least a minute, and on (up to 3 minutes) until M0, beside them, has come
      within 3% of the table's figure for it. Networks: random unseen archs plus the corners
      a search visits (each resolution's smallest and largest; wide and shallow at the lowest one).

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
import time
from pathlib import Path

from _results import save_result

from effvit_nas import Arch, EffNasError
from effvit_nas.latency.fit import error_stats
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.validate import sample_validation_archs
from effvit_nas.space import SearchSpace

# The deployment, written out by hand: a service holding the exported file in a plain session. On each
# line it re-warms for REWARM_MS, then times calls for BURST_MS (3-20 of them) and answers their median.
PLAIN_SERVER = """
import json, statistics, sys, time
import numpy as np
import onnxruntime as ort
path, threads, shape = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
REWARM_MS, BURST_MS = 50.0, 25.0
options = ort.SessionOptions()
options.intra_op_num_threads = threads
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
feeds = {session.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
def call():
    start = time.perf_counter()
    session.run(None, feeds)
    return (time.perf_counter() - start) * 1e3
warm = [call() for _ in range(30)]
per_call = statistics.median(warm[15:])
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(max(3, int(REWARM_MS / per_call))):
        call()
    times = [call() for _ in range(max(3, min(20, int(BURST_MS / per_call))))]
    print(statistics.median(times), flush=True)
"""
GAP_S, MIN_BURSTS, FAST_QUANTILE = 0.030, 24, 0.02
# A window measured against a table goes on past its minute, up to MAX_S, until the reference M0 has come
# within SETTLE of the table's figure for it (docs/LATENCY.md).
SETTLE, MAX_S = 0.03, 180.0


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


def _independent_fast_state(files: dict[str, tuple[Path, list[int]]], threads: int, seconds: float,
                            seed: int, reference: str, expected_ms: float) -> dict[str, list[float]]:
    """Burst medians of every file, each served by its own new interpreter (see PLAIN_SERVER)."""
    servers = {}
    for key, (path, shape) in files.items():
        server = subprocess.Popen([sys.executable, "-c", PLAIN_SERVER, str(path), str(threads), json.dumps(shape)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        if server.stdout.readline().strip() != "ready":
            raise SystemExit(f"{key} did not load in a plain session")
        servers[key] = server
    bursts: dict[str, list[float]] = {k: [] for k in files}
    order, rng, started = list(files), random.Random(seed), time.perf_counter()
    def settled() -> bool:  # the definition's last clause: the window waits (up to MAX_S) to meet the fast state
        return (_fast_state(bursts[reference]) <= expected_ms * (1 + SETTLE)
                or time.perf_counter() - started >= MAX_S)

    while (min(len(b) for b in bursts.values()) < MIN_BURSTS or time.perf_counter() - started < seconds
           or not settled()):
        rng.shuffle(order)
        for key in order:
            servers[key].stdin.write("go\n")
            servers[key].stdin.flush()
            bursts[key].append(float(servers[key].stdout.readline()))
            time.sleep(GAP_S)
        print(f"sweep {len(bursts[order[0]])}, {time.perf_counter() - started:.0f} s", end="\r", file=sys.stderr)
    for server in servers.values():
        server.stdin.close()
        server.wait()
    return bursts


def _fast_state(values: list[float]) -> float:
    """The 2nd percentile, interpolated between order statistics (the definition in docs/LATENCY.md)."""
    ordered = sorted(values)
    position = FAST_QUANTILE * (len(ordered) - 1)
    low = int(position)
    return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (position - low)


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
        started = time.perf_counter()
        bursts = _independent_fast_state(files, runtime.threads, args.seconds, args.seed, reference,
                                         table.deployment_reference_ms)
        seconds = time.perf_counter() - started
    measured = {k: _fast_state(v) for k, v in bursts.items()}
    ratio = measured[reference] / table.deployment_reference_ms
    moved = sorted(bursts[reference])[int(0.9 * (len(bursts[reference]) - 1))] / measured[reference]
    rows = [{"key": k, "arch": a.to_dict(), "predicted_ms": table.predict_ms(a), "measured_ms": measured[k],
             "p50_ms": statistics.median(bursts[k]), "bursts": len(bursts[k])} for k, a in archs.items()]
    groups = {"random": [r for r in rows if "@" not in r["key"] and not r["key"].startswith("pick:")],
              "corners": [r for r in rows if "@" in r["key"]],
              "picks": [r for r in rows if r["key"].startswith("pick:")]}
    stats = {g: error_stats([r["predicted_ms"] for r in rs], [r["measured_ms"] for r in rs])
             for g, rs in groups.items() if rs}
    print(f"## {table.table_id} against an independent harness ({seconds:.0f} s window)\n")
    print(f"M0 now {measured[reference]:.3f} ms, in the table {table.deployment_reference_ms:.3f} ms (x{ratio:.3f}); "
          f"the machine moved {moved:.2f}x during the window\n")
    print("| archs | n | ±10% | median err | worst err | Spearman |\n|---|---|---|---|---|---|")
    for group, st in stats.items():
        print(f"| {group} | {len(groups[group])} | {st['within_10pct']:.0%} | {st['median_abs_err']:.1%} "
              f"| {st['worst_abs_err']:.1%} | {st['spearman']:.3f} |")
    for r in groups["corners"] + groups["picks"]:
        print(f"{r['key']}: predicted {r['predicted_ms']:.3f} ms, measured {r['measured_ms']:.3f} ms")
    save_result(f"latency_truth_{args.name}", "python scripts/bench_latency.py truth --target "
                f"{args.target} --samples {args.samples} --seconds {args.seconds:g} --seed {args.seed} "
                f"--name {args.name}" + "".join(f" --arch {p}" for p in args.arch),
                {"table_id": table.table_id, "reference_now_ms": measured[reference],
                 "reference_at_build_ms": table.deployment_reference_ms, "reference_ratio": ratio, "moved": moved,
                 "seconds": seconds, "stats": stats, "rows": rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = parser.add_subparsers(dest="part", required=True)
    agree = parts.add_parser("agreement")
    agree.add_argument("--tables", nargs=2, required=True)
    independent = parts.add_parser("truth")
    independent.add_argument("--target", required=True)
    independent.add_argument("--seconds", type=float, default=60.0, help="the window (at least)")
    independent.add_argument("--arch", action="append", default=[], help="a search's pick (YAML), repeatable")
    for part in (agree, independent):
        part.add_argument("--samples", type=int, default=40)
        part.add_argument("--seed", type=int, default=0)
        part.add_argument("--name", default="run")
    args = parser.parse_args()
    {"agreement": agreement, "truth": truth}[args.part](args)


if __name__ == "__main__":
    main()
