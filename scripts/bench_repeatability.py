"""Does the latency figure repeat? The same 12 networks measured by the deployment rule in several
runs spread over half an hour, each run one window of the rule (``LatencyMeter.archs``), nothing
else running.

    python scripts/bench_repeatability.py [--runs 5] [--every 450] [--seconds 60] [--name NAME]
                                          [--between CMD ...]

Networks: M0-M3 (224 px), the default search's picks at 2 ms and 8 ms (committed in
docs/results/search_compliance_amd-epyc-2core-ort-b1.json: synflow, seed 0, on the earlier onnxruntime
table), and one random arch of the default space at each of 128, 160, 192, 224, 256 and 288 px
(seed 0). onnxruntime, 2 threads, batch 1: the default table's deployment, whose table also gives the
reference figure each window goes on to meet (``--table``; as every measurement judged against a
table does). Each run starts ``--every``
seconds after the previous one started (later if the gap's work overran: the start times are
recorded). ``--between CMD`` (repeatable) runs one shell command in each gap, after a run has ended
and before the next starts, so that other measurements use the half hour without ever running beside
a run of this one. Per network: its figure in each run and how far each run
lies from the network's own median; the machine's movement in each run (the reference's p90 / its
figure) beside them. Every burst median is kept, so other quantiles can be judged offline.
Writes docs/results/repeatability_<name>.json.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _results import RESULTS_DIR, save_result

from effvit_nas import Arch, SearchSpace
from effvit_nas._io import atomic_write_text
from effvit_nas.latency.deploy import DeploymentRule
from effvit_nas.latency.meter import LatencyMeter
from effvit_nas.latency.table import LatencyTable
from effvit_nas.provenance import git_revision

RESOLUTIONS = (128, 160, 192, 224, 256, 288)


def networks() -> dict[str, Arch]:
    space = SearchSpace.default()
    chosen = {f"m{i}": Arch.preset(f"m{i}") for i in range(4)}
    found = json.loads((RESULTS_DIR / "search_compliance_amd-epyc-2core-ort-b1.json").read_text())["rows"]
    chosen |= {f"pick-{r['budget_ms']:g}ms": Arch.from_dict(r["arch"]) for r in found if r["budget_ms"] in (2.0, 8.0)}
    rng = np.random.default_rng([0, 11])
    for side in RESOLUTIONS:
        while True:
            arch = space.sample(rng)
            if arch.resolution == side:
                chosen[f"random-{side}px"] = arch
                break
    return chosen


# A model budget (``--budget m1``) is judged against the model measured in the same window: how well the
# ratio to M0 or M1 repeats is what such a budget's verdict rests on.
RELATIVE_TO = ("m0", "m1")


def deviation_summary(runs: list[dict], names: list[str], base: str | None = None) -> dict[str, float]:
    """Median and worst |deviation| of each network's figure (``base``: its ratio to ``base`` in the same
    run) from its own median over the runs."""
    deviations = []
    for name in names:
        if name == base:
            continue
        values = [run["timings"][name]["latency_ms"] / (run["timings"][base]["latency_ms"] if base else 1.0)
                  for run in runs]
        mid = statistics.median(values)
        deviations += [abs(v / mid - 1) for v in values]
    return {"median_abs_deviation": statistics.median(deviations), "worst_abs_deviation": max(deviations)}


def summarise(path: Path) -> int:
    """Add the summaries this script now computes to a result written by an earlier version of it."""
    record = json.loads(path.read_text())
    names = list(record["networks"])
    record["summary"] |= deviation_summary(record["runs"], names)
    record["summary"]["relative_to"] = {base: deviation_summary(record["runs"], names, base) for base in RELATIVE_TO}
    record["summary"]["summarised_at"] = git_revision()
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    print(json.dumps(record["summary"], indent=1))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--every", type=float, default=450.0, help="seconds from one run's start to the next")
    parser.add_argument("--between", action="append", default=[],
                        help="a shell command for the next gap between runs (repeatable, one per gap, in order)")
    parser.add_argument("--seconds", type=float, default=None, help="the rule's window (default: the rule's)")
    parser.add_argument("--name", default="ort-b1")
    parser.add_argument("--table", default="amd-epyc-2core-ort-b1",
                        help="the table whose reference figure each window goes on to meet")
    parser.add_argument("--summarise", type=Path, default=None, metavar="JSON",
                        help="only recompute the summaries of a result already written")
    args = parser.parse_args(argv)
    if args.summarise:
        return summarise(args.summarise)
    table = LatencyTable.load(args.table)
    config = table.runtime
    archs = networks()
    rule = DeploymentRule() if args.seconds is None else DeploymentRule(min_seconds=args.seconds)
    runs, gaps = [], []
    for r in range(args.runs):
        started = time.time()
        with LatencyMeter(config, rule=rule, reference_ms=table.deployment_reference_ms) as meter:
            run = meter.archs(archs, seed=r)
        runs.append({"started": started, "machine": run.machine(), "reference": run.references[0].to_dict(),
                     "reference_ratio": table.reference_ratio(run.reference_ms),
                     "timings": {k: t.to_dict() for k, t in run.timings.items()},
                     "bursts": {k: [round(b, 4) for b in v] for k, v in run.bursts.items()},
                     "failures": {str(k): v for k, v in run.failures.items()}})
        print(f"run {r + 1}/{args.runs}: {run.seconds:.0f} s, machine moved {run.moved:.2f}x, reference "
              f"{run.reference_ms:.3f} ms", flush=True)
        if r + 1 < args.runs:
            if r < len(args.between):
                print(f"between runs {r + 1} and {r + 2}: {args.between[r]}", flush=True)
                began = time.time()
                done = subprocess.run(args.between[r], shell=True)
                gaps.append({"after_run": r + 1, "command": args.between[r], "exit": done.returncode,
                             "seconds": time.time() - began})
            time.sleep(max(0.0, started + args.every - time.time()))
    rows = {}
    for name, arch in archs.items():
        figures = [run["timings"][name]["latency_ms"] for run in runs]
        mid = statistics.median(figures)
        rows[name] = {"arch": arch.to_dict(), "arch_id": arch.arch_id, "figures_ms": figures, "median_ms": mid,
                      "deviations": [f / mid - 1 for f in figures]}
    summary = {**deviation_summary(runs, list(archs)),
               "span_minutes": (runs[-1]["started"] - runs[0]["started"]) / 60,
               "moved_per_run": [run["machine"]["moved"] for run in runs],
               "relative_to": {base: deviation_summary(runs, list(archs), base) for base in RELATIVE_TO}}
    print(f"{len(rows)} networks x {len(runs)} runs over {summary['span_minutes']:.0f} min: median |deviation| "
          f"{summary['median_abs_deviation']:.1%}, worst {summary['worst_abs_deviation']:.1%}; machine moved "
          + ", ".join(f"{m:.2f}x" for m in summary["moved_per_run"]))
    for base, rel in summary["relative_to"].items():
        print(f"  as ratios to {base} in the same run: median |deviation| {rel['median_abs_deviation']:.1%}, "
              f"worst {rel['worst_abs_deviation']:.1%}")
    for name, row in rows.items():
        print(f"  {name:<14} {row['median_ms']:8.3f} ms  " + " ".join(f"{d:+.1%}" for d in row["deviations"]))
    command = shlex.join(["python", "scripts/bench_repeatability.py", *argv])
    path = save_result(f"repeatability_{args.name}", command.strip(),
                       {"rule": rule.to_dict(), "runtime": config.to_dict(), "table": table.table_id,
                        "table_reference_ms": table.deployment_reference_ms, "summary": summary, "networks": rows,
                        "runs": runs, "between_runs": gaps})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
