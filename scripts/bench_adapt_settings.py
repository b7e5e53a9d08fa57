"""Issue 15: how many networks and rounds an adaptation needs, offline from committed measurements.

Run:  python scripts/bench_adapt_settings.py        (seconds; measures nothing)

Reads every docs/results/adapt_*.json that ``bench_adapt.py`` wrote with its per-network rows: in one
deployment-rule run, the adaptation's planned networks and random archs nobody fitted on, each in
3 rounds. For N planned networks and the first k of their rounds, the transfer is fitted as
``effnas table adapt --networks N --rounds k`` fits it (its lowest leave-one-out form; on the medians as
measured only, where adapt may also keep the per-round-reference reading) and judged
on the random archs' 3-round medians of the same run: fit and judge share the machine's state, so
what differs between settings is what the settings change. One run per adaptation: where rows of a
column differ by a few points, that is the judge's own noise (40 archs: one arch is 2.5 points).

Writes docs/results/adapt_settings.json and prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from _results import RESULTS_DIR, save_result

from effvit_nas.latency.adapt import plan_adapt_archs
from effvit_nas.latency.fit import error_stats
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.transfer import fit_transfer
from effvit_nas.latency.validate import sample_validation_archs

NETWORKS = (8, 10, 12, 16, 20, 24, 32, 40)
ROUNDS = (1, 2, 3)


def judged_settings(result: Path) -> dict | None:
    """Every (N, k) judged on one committed bench_adapt run; None for a run without per-network rows."""
    data = json.loads(result.read_text())
    (name, pair), = data["pairs"].items()
    if "rows" not in pair:
        return None
    source = LatencyTable.load(pair["source"].split("@")[0])
    target = LatencyTable.load(pair["full_build"]["table_id"].split("@")[0]) if pair["full_build"] else None
    rows = {r["arch_id"]: r for r in pair["rows"]}
    plan = [a for a in plan_adapt_archs(source, max(NETWORKS)) if a.arch_id in rows]
    planned_ids = {a.arch_id for a in plan}
    # the random archs are regenerated from the seed: the rows keep their ids, not the archs
    judge_space_table = target or source
    randoms = [a for a in sample_validation_archs(judge_space_table, data["samples"], data["seed"])
               if a.arch_id in rows and a.arch_id not in planned_ids]
    if len(randoms) < 0.8 * data["samples"]:
        raise SystemExit(f"{result.name}: only {len(randoms)} of {data['samples']} random archs regenerated; "
                         "the sampling changed since it was measured")
    judge_inputs = [source.transfer_inputs(a) for a in randoms]
    measured = [rows[a.arch_id]["measured_ms"] for a in randoms]
    cells = []
    for n in (n for n in NETWORKS if n <= len(plan)):
        for k in ROUNDS:
            times = [statistics.median(rows[a.arch_id]["rounds_ms"][:k]) for a in plan[:n]]
            transfer, _ = fit_transfer([source.transfer_inputs(a) for a in plan[:n]], times)
            stats = error_stats([transfer.apply(x) for x in judge_inputs], measured)
            cells.append({"networks": n, "rounds": k, "form": transfer.form,
                          **{key: round(stats[key], 4) for key in ("within_10pct", "median_abs_err", "spearman")}})
    return {"pair": name, "from": result.name, "judged_on": len(randoms), "cells": cells}


def main() -> None:
    runs = [r for r in (judged_settings(p) for p in sorted(RESULTS_DIR.glob("adapt_*_seed*.json"))) if r]
    if not runs:
        raise SystemExit("no bench_adapt.py result with per-network rows in docs/results/: run it first")
    print("| N networks | rounds | " + " | ".join(f"{r['pair']} ({r['from']}): ±10% / median / Spearman"
                                                for r in runs) + " |")
    print("|---|---|" + "---|" * len(runs))
    for n in NETWORKS:
        for k in ROUNDS:
            cells = [next((c for c in r["cells"] if c["networks"] == n and c["rounds"] == k), None) for r in runs]
            if any(c is None for c in cells):
                continue
            print(f"| {n} | {k} | " + " | ".join(f"{c['within_10pct']:.0%} / {c['median_abs_err']:.1%} / "
                                                  f"{c['spearman']:.3f}" for c in cells) + " |")
    path = save_result("adapt_settings", "python scripts/bench_adapt_settings.py " + " ".join(sys.argv[1:]),
                       {"runs": runs})
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
