"""How good is a table adapted from a few networks, against the full build of the same target, both
judged by deployment measurement of unseen archs?

Run:  python scripts/bench_adapt.py [--pairs ort2-ort1,ort-openvino] [--samples 40] [--seed 0]

For each pair (a shipped source table, a target configuration, and the full build of that target where
one ships):

1. the user's command, timed from start to exit: ``effnas table adapt --from SOURCE ...`` with its
   defaults (a fresh process; its table is kept in a temporary folder): its wall time and its own check;
2. one window of the deployment rule under the target configuration: ``--samples`` random archs that
   no build or adaptation measured (``validate_table``), judging the adapted table and the full build
   on the same figures.

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
from effvit_nas.latency.fit import error_stats
from effvit_nas.latency.runtimes import RuntimeConfig
from effvit_nas.latency.table import LatencyTable, list_tables
from effvit_nas.latency.validate import validate_table

PAIRS = {  # name: (source table, target config, full build of the target or None)
    "ort2-ort1": ("amd-epyc-2core-ort-b1", RuntimeConfig(threads=1), None),
    "ort-openvino": ("amd-epyc-2core-ort-b1", RuntimeConfig(runtime="openvino", threads=2),
                     "amd-epyc-2core-openvino-b1"),
}


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
    log(done.stdout.strip())
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


def run_pair(name: str, samples: int, seed: int, scratch: Path, search_budget: str | None) -> dict:
    source_name, config, full_name = PAIRS[name]
    source = LatencyTable.load(source_name)
    full = LatencyTable.load(full_name) if full_name and full_name in list_tables() else None
    log(f"{name}: effnas table adapt --from {source_name} ({config})")
    adapted, wall = adapt_as_a_user(source_name, config, scratch / f"{name}.json")
    log(f"{name}: adapted in {wall:.1f} s; measuring {samples} unseen networks")
    report = validate_table(adapted, samples, seed=seed)
    archs = [Arch.from_dict(r["arch"]) for r in report.rows]
    measured = [r["measured_ms"] for r in report.rows]
    searched = None
    if search_budget:
        log(f"{name}: effnas search --budget {search_budget} on the adapted table, then effnas verify of its pick")
        searched = search_and_verify(scratch / f"{name}.json", search_budget, scratch / f"{name}-search")
    check = adapted.data["deployment"]["check"]
    return {"source": source.table_id, "config": config.to_dict(), "adapt_wall_s": round(wall, 1),
            "adapt_check": {k: check[k] for k in ("median_abs_err", "within_10pct", "spearman", "passed", "misses")},
            "adapt_networks": adapted.data["adapted"]["networks"], "adapt_form": adapted.transfer.form,
            "adapt_machine": adapted.data["build"]["machine"], "search_and_verify": searched,
            "unseen_archs": len(archs), "measure_seconds": round(report.seconds, 1), "machine": report.machine,
            "reference_ratio": report.reference_ratio,
            "adapted_table": judge([adapted.predict_ms(a) for a in archs], measured),
            "full_build": ({"table_id": full.table_id, **judge([full.predict_ms(a) for a in archs], measured)}
                           if full else None),
            "rows": [{k: r[k] for k in ("arch_id", "measured_ms", "p50_ms")}
                     | {"source_ms": source.predict_ms(a), "adapted_ms": adapted.predict_ms(a),
                        "full_ms": full.predict_ms(a) if full else None}
                     for r, a in zip(report.rows, archs)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default=",".join(PAIRS))
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0, help="which random archs judge (another seed: another set)")
    parser.add_argument("--search-budget", default=None, metavar="BUDGET",
                        help="then search on each adapted table under BUDGET (e.g. 2ms) and verify the pick here")
    args = parser.parse_args()
    names = args.pairs.split(",")
    unknown = sorted(set(names) - set(PAIRS))
    if unknown:
        raise SystemExit(f"--pairs must name pairs of {sorted(PAIRS)}, but got {unknown}")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in names:
            results[name] = run_pair(name, args.samples, args.seed, Path(scratch), args.search_budget)
    print("| adaptation | adapt wall s | own check (leave-one-out): median / ±10% / passed | unseen: ±10% / median / "
          "Spearman | full build, same figures | machine moved |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        c, a, f = r["adapt_check"], r["adapted_table"], r["full_build"]
        full = f"{f['within_10pct']:.0%} / {f['median_abs_err']:.1%} / {f['spearman']:.3f}" if f else "none shipped"
        print(f"| {name} | {r['adapt_wall_s']:.0f} | {c['median_abs_err']:.1%} / {c['within_10pct']:.0%} / "
              f"{'yes' if c['passed'] else 'NO'} | {a['within_10pct']:.0%} / {a['median_abs_err']:.1%} / "
              f"{a['spearman']:.3f} | {full} | {r['machine']['moved']:.2f}x |")
    for name, r in results.items():
        if (v := r["search_and_verify"]) is not None and "error" in v:
            print(f"{name}: search on the adapted table under {v['budget']} failed: {v['error']}")
        elif v is not None:
            print(f"{name}: search on the adapted table under {v['budget']} ({v['search_wall_s']:.0f} s) picked "
                  f"{v['pick']}, predicted {v['predicted_ms']:.3f} ms; verify measured {v['judged_ms']:.3f} ms: "
                  f"{v['verdict']}")
    save_result(f"adapt_{'_'.join(n.replace('-', '') for n in names)}_seed{args.seed}",
                "python scripts/bench_adapt.py " + " ".join(sys.argv[1:]),
                {"samples": args.samples, "seed": args.seed, "pairs": results})


if __name__ == "__main__":
    main()
