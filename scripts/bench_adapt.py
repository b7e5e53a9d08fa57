"""Issue 15: how good is a table adapted from a few networks, against the full build of the same target,
both judged by deployment measurement of unseen archs?

Run:  python scripts/bench_adapt.py [--pairs ort2-ort1,ort-openvino,torch16-ort] [--samples 40] [--seed 0]

For each pair (a shipped source table, a target configuration, and the full build of that target where
one ships):

1. the user's command, timed from start to exit: ``effnas table adapt --from SOURCE ...`` with its default
   networks and rounds (a fresh process; its table is kept in a temporary folder);
2. one deployment-rule measurement, under the target configuration, of the adaptation's planned networks
   (the first 80: a plan of N networks is the first N of it) and ``--samples`` random archs that no
   build or adaptation measured (``validate_table``, chunked beside the reference);
3. offline, from those measurements: the transfer fitted on the first 10, 20, 40, 80 planned networks,
   judged on the random archs of the same run (no drift between fit and judge); the table of step 1 and
   the full build, judged on the same archs with the reference's drift correction (they were measured
   in other runs), raw figures beside.

With ``--search-budget 2ms``, also what a user does next with the adapted table: ``effnas search`` on it
under that budget, then ``effnas verify`` of the pick on this machine (is it within the budget when
deployed?), both as user commands in their own processes.

Writes docs/results/adapt_<pairs>_seed<S>.json and prints Markdown for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _results import run_timed, save_result

from effvit_nas import Arch
from effvit_nas.latency.adapt import plan_adapt_archs
from effvit_nas.latency.fit import error_stats
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.table import LatencyTable
from effvit_nas.latency.transfer import fit_transfer
from effvit_nas.latency.validate import validate_table

PAIRS = {  # name: (source table, target config, full build of the target or None)
    "ort2-ort1": ("amd-epyc-2core-ort-b1", RuntimeConfig(threads=1), None),
    "ort-openvino": ("amd-epyc-2core-ort-b1", None, "amd-epyc-2core-openvino-b1"),
    "torch16-ort": ("amd-epyc-2core-torch-b16", None, "amd-epyc-2core-ort-b1"),
}
GROWTH = (10, 20, 40, 80)


def log(message: str) -> None:
    print(f"[bench_adapt] {message}", file=sys.stderr, flush=True)


def adapt_as_a_user(source: str, config: RuntimeConfig, out: Path) -> tuple[LatencyTable, float]:
    command = [sys.executable, "-m", "effvit_nas", "table", "adapt", "--from", source, "--target", str(out),
               "--runtime", config.runtime, "--device", config.device, "--threads", str(config.threads),
               "--batch-size", str(config.batch_size), "--dtype", config.dtype, "--accept-below-bar"]
    done, wall = run_timed(command)
    if done.returncode != 0:
        raise SystemExit(f"effnas table adapt must succeed, but exited {done.returncode}: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    return LatencyTable.load(out), wall


def search_and_verify(table_path: Path, budget: str, out: Path) -> dict:
    """``effnas search`` on the adapted table, then ``effnas verify`` of its pick: the deployment's verdict."""
    search = [sys.executable, "-m", "effvit_nas", "search", "--target", str(table_path), "--budget", budget,
              "--out", str(out / "search")]
    done, search_wall = run_timed(search)
    if done.returncode != 0:  # a result to report (a user would meet it), not a reason to lose the run
        log(f"effnas search on the adapted table exited {done.returncode}: {done.stderr.strip().splitlines()[-1:]}")
        return {"budget": budget, "search_exit": done.returncode, "error": done.stderr.strip().splitlines()[-1:]}
    verify = [sys.executable, "-m", "effvit_nas", "verify", str(out / "search" / "best.yaml"), "--target",
              str(table_path), "--budget", budget, "--out", str(out / "verify")]
    done, verify_wall = run_timed(verify)
    if done.returncode not in (0, 1):  # 1: measured over the budget, a result to report
        raise SystemExit(f"effnas verify must run, but exited {done.returncode}: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    report = json.loads((out / "verify" / "verify.json").read_text())
    best = next(iter(json.loads((out / "search" / "metadata.json").read_text())["best"].values()))
    return {"budget": budget, "search_wall_s": round(search_wall, 1), "verify_wall_s": round(verify_wall, 1),
            "pick": best["name"], "pick_predicted_ms": best["predicted_latency_ms"],
            "limit_ms": best["limit_ms"], "verify_exit": done.returncode,
            **{k: report[k] for k in ("verdict", "within_budget", "judged_ms", "budget_ms", "predicted_ms",
                                      "measured_over_predicted", "latency")}}


def judge(predicted: list[float], measured: list[float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in error_stats(predicted, measured).items()}


def run_pair(name: str, samples: int, seed: int, scratch: Path, growth: tuple[int, ...],
             search_budget: str | None) -> dict:
    source_name, config, full_name = PAIRS[name]
    source = LatencyTable.load(source_name)
    full = LatencyTable.load(full_name) if full_name else None
    config = config or full.runtime
    log(f"{name}: effnas table adapt --from {source_name} ({config})")
    adapted, wall = adapt_as_a_user(source_name, config, scratch / f"{name}.json")
    log(f"{name}: adapted in {wall:.1f} s; measuring {max(growth)} planned and {samples} random networks")
    plan = plan_adapt_archs(source, max(growth))
    meter_table = full or adapted  # validate measures under its table's runtime: the target's
    report = validate_table(meter_table, samples, seed=seed, extra={"plan": plan})
    reference_now = report.reference_ratio * meter_table.deployment_reference_ms
    rows = {r["arch_id"]: r for r in report.rows}
    planned = [rows[a.arch_id] for a in plan]
    unseen = [r for r in report.rows if r["group"] == "random" and r["arch_id"] not in {a.arch_id for a in plan}]
    archs = [Arch.from_dict(r["arch"]) for r in unseen]
    measured = [r["measured_ms"] for r in unseen]
    by_networks = {}
    for n in growth:
        transfer, _ = fit_transfer([source.transfer_inputs(Arch.from_dict(r["arch"])) for r in planned[:n]],
                                   [r["measured_ms"] for r in planned[:n]])
        by_networks[n] = {"form": transfer.form,
                          **judge([transfer.apply(source.transfer_inputs(a)) for a in archs], measured)}

    def against(table: LatencyTable) -> dict:
        drift = table.drift_factor(reference_now, deployed=True)
        predicted = [table.predict_ms(a) for a in archs]
        return {"table_id": table.table_id, "drift": round(drift, 4),
                "corrected": judge(predicted, [m / drift for m in measured]), "raw": judge(predicted, measured)}

    searched = None
    if search_budget:
        log(f"{name}: effnas search --budget {search_budget} on the adapted table, then effnas verify of its pick")
        searched = search_and_verify(scratch / f"{name}.json", search_budget, scratch / f"{name}-search")
    return {"source": source.table_id, "config": config.to_dict(), "adapt_wall_s": round(wall, 1),
            "search_and_verify": searched,
            "adapt_networks": adapted.data["adapted"]["networks"],
            "adapt_rounds": adapted.data["adapted"]["settings"]["rule"]["rounds"], "adapt_form": adapted.transfer.form,
            "adapt_leave_one_out": {k: adapted.data["deployment"]["check"][k]
                                    for k in ("median_abs_err", "within_10pct", "spearman")},
            "unseen_archs": len(archs), "measure_seconds": round(report.seconds, 1),
            "adapted_table": against(adapted), "full_build": against(full) if full else None,
            "transfer_by_networks": by_networks,
            "adapted_points": adapted.data["adapted"]["points"], "adapted_reading": adapted.data["adapted"]["reading"],
            "rows": [{k: r[k] for k in ("arch_id", "group", "measured_ms", "measured_per_round_ms", "rounds_ms")}
                     | {"source_ms": source.predict_ms(Arch.from_dict(r["arch"])),
                        "adapted_ms": adapted.predict_ms(Arch.from_dict(r["arch"])),
                        "full_ms": full.predict_ms(Arch.from_dict(r["arch"])) if full else None}
                     for r in report.rows]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="which random archs judge (another seed: another set)")
    parser.add_argument("--max-networks", type=int, default=max(GROWTH), help="planned networks measured (the "
                        "transfer is fitted on the first 10, 20, ... of them)")
    parser.add_argument("--search-budget", default=None, metavar="BUDGET",
                        help="then search on each adapted table under BUDGET (e.g. 2ms) and verify the pick here")
    args = parser.parse_args()
    names = args.pairs.split(",")
    growth = tuple(n for n in GROWTH if n <= args.max_networks)
    unknown = sorted(set(names) - set(PAIRS))
    if unknown:
        raise SystemExit(f"--pairs must name pairs of {sorted(PAIRS)}, but got {unknown}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            results[name] = run_pair(name, args.samples, args.seed, Path(scratch), growth, args.search_budget)
    print("| adaptation | adapt wall s | networks x rounds | form | adapted: ±10% / median / Spearman | "
          "full build: ±10% / median / Spearman | transfer on N planned: ±10% (N = "
          + ", ".join(map(str, growth)) + ") |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        a = r["adapted_table"]["corrected"]
        f = r["full_build"]["corrected"] if r["full_build"] else None
        by_n = ", ".join(f"{r['transfer_by_networks'][n]['within_10pct']:.0%}" for n in growth)
        full = f"{f['within_10pct']:.0%} / {f['median_abs_err']:.1%} / {f['spearman']:.3f}" if f else "none shipped"
        print(f"| {name} | {r['adapt_wall_s']:.0f} | {r['adapt_networks']} x {r['adapt_rounds']} | {r['adapt_form']} | "
              f"{a['within_10pct']:.0%} / "
              f"{a['median_abs_err']:.1%} / {a['spearman']:.3f} | {full} | {by_n} |")
    for name, r in results.items():
        if (v := r["search_and_verify"]) is not None and "error" in v:
            print(f"{name}: search on the adapted table under {v['budget']} failed: {v['error']}")
        elif v is not None:
            print(f"{name}: search on the adapted table under {v['budget']} ({v['search_wall_s']:.0f} s) picked "
                  f"{v['pick']}, predicted {v['predicted_ms']:.3f} ms; verify measured {v['judged_ms']:.3f} ms: "
                  f"{v['verdict']}")
    save_result(f"adapt_{'_'.join(n.replace('-', '') for n in names)}_seed{args.seed}",
                "python scripts/bench_adapt.py " + " ".join(sys.argv[1:]),
                {"samples": args.samples, "seed": args.seed, "growth": list(growth), "pairs": results})


if __name__ == "__main__":
    main()
