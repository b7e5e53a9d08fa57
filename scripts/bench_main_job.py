"""The README's main job as a user runs it: ``effnas search --target T --budget 2ms``, a fresh
process each time, timed from start to exit, against the same search scoring in two worker processes.

Run:  python scripts/bench_main_job.py [--rounds 3] [--target amd-epyc-2core-ort-b1] [--budget 2ms]

Each round runs every configuration once with the round's seed (interleaved, so both see the machine's
speed state of that round); the figures are medians over rounds and the ratio of the medians. Each
run's pick (arch id, score, predicted latency) is kept and compared seed by seed: a faster
configuration that picks worse archs is no gain.
Then one default family search (``--family``), and each of its budgets searched alone, report how much
of each budget the pick uses.
Writes docs/results/main_job.json and prints Markdown for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import run_timed, save_result

from effvit_nas.search._scoring_pool import usable_cpus
from effvit_nas.units import format_ms, parse_budgets_ms

CONFIGURATIONS = {"default (one process)": [], "--workers 2": ["--workers", "2"]}


def run_once(target: str, budget: str, extra: list[str], out: Path, seed: int) -> dict:
    command = [sys.executable, "-m", "effvit_nas", "search", "--target", target, "--budget", budget,
               "--seed", str(seed), "--out", str(out), *extra]
    done, wall = run_timed(command)
    if done.returncode != 0:
        raise SystemExit(f"the main job must succeed, but {' '.join(command)} exited {done.returncode}: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    metadata = json.loads((out / "metadata.json").read_text())
    (label, best), = metadata["best"].items()
    return {"wall_s": round(wall, 2), "search_s": metadata["search_seconds"], "workers":
            metadata.get("optuna", {}).get("workers", 1), "seed": metadata["seed"], "trial": best["trial"],
            "score": best["score"], "predicted_ms": next(iter(best["predicted_latency_ms"].values())),
            "limit_ms": next(iter(best["limit_ms"].values())), "params": best["params"]}


def budget_use(target: str, family: str, out: Path) -> list[dict]:
    """One default search over ``family`` (a family, or one budget): each pick's predicted latency as a
    share of its limit (the budget after the confidence factor), the issue's "use the budget" check."""
    command = [sys.executable, "-m", "effvit_nas", "search", "--target", target, "--budget", family, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: some budget has no arch, reported below as such
        raise SystemExit(f"the family search must run, but it exited {done.returncode}: "
                         f"{done.stderr.strip().splitlines()[-1:]}")
    best = json.loads((out / "metadata.json").read_text())["best"]
    reason = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
    rows = [{"budget": b, "searched": family, "none_found": reason}
            for b in family.split(",") if format_ms(parse_budgets_ms(b)[0]) not in best]
    for label, pick in best.items():
        predicted, limit = next(iter(pick["predicted_latency_ms"].values())), next(iter(pick["limit_ms"].values()))
        rows.append({"budget": label, "searched": family, "predicted_ms": predicted, "limit_ms": limit,
                     "share_of_limit": predicted / limit,
                     "params": pick["params"], "name": pick["name"]})
    return rows


def all_budget_use(target: str, family: str, scratch: Path) -> list[dict]:
    """The family in one search, then each of its budgets searched alone, as the main job is."""
    use = budget_use(target, family, scratch / "family")
    for i, budget in enumerate(family.split(",")):
        use += budget_use(target, budget, scratch / f"single-{i}")
    return use


def print_budget_use(use: list[dict]) -> None:
    print("\n| searched | budget | pick's predicted ms | limit ms | share of the limit |\n|---|---|---|---|---|")
    for row in use:
        if "none_found" in row:
            print(f"| {row.get('searched', '')} | {row['budget']} | none found: {row['none_found']} | | |")
        else:
            share = row["share_of_limit"]
            print(f"| {row['searched']} | {row['budget']} | {row['predicted_ms']:.3f} | {row['limit_ms']:.3f} | "
                  f"{share:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    parser.add_argument("--budget", default="2ms")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="round r searches with seed first_seed + r")
    parser.add_argument("--family", default="1.5ms,2ms,3ms,5ms", help="budgets of the budget-use check")
    parser.add_argument("--budget-use-only", action="store_true",
                        help="skip the timed rounds: only the budget-use check (docs/results/budget_use.json)")
    args = parser.parse_args()
    if args.budget_use_only:
        with tempfile.TemporaryDirectory() as scratch:
            use = all_budget_use(args.target, args.family, Path(scratch))
        print_budget_use(use)
        save_result("budget_use", "python scripts/bench_main_job.py " + " ".join(sys.argv[1:]),
                    {"target": args.target, "family": args.family, "budget_use": use})
        return
    runs: dict[str, list[dict]] = {name: [] for name in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(args.rounds):
            for name, extra in CONFIGURATIONS.items():
                result = run_once(args.target, args.budget, extra, Path(scratch) / f"{r}-{name[:3]}",
                                  seed=args.first_seed + r)
                runs[name].append(result)
                print(f"[bench_main_job] round {r + 1}/{args.rounds} {name}: {result['wall_s']:.1f} s, "
                      f"{result['workers']} worker(s), score {result['score']:.3f}", file=sys.stderr, flush=True)
        use = all_budget_use(args.target, args.family, Path(scratch))
    medians = {name: statistics.median(r["wall_s"] for r in rs) for name, rs in runs.items()}
    ratio = medians["default (one process)"] / medians["--workers 2"]
    print("| configuration | workers | wall s (each round) | median s | pick's score (each round) | "
          "round 1 pick's predicted ms / limit |")
    print("|---|---|---|---|---|---|")
    for name, rs in runs.items():
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in rs)
        scores = ", ".join(f"{r['score']:.3f}" for r in rs)
        print(f"| {name} | {rs[0]['workers']} | {walls} | {medians[name]:.1f} | {scores} | "
              f"{rs[0]['predicted_ms']:.3f} / {rs[0]['limit_ms']:.3f} |")
    print(f"\ndefault / --workers 2: {ratio:.2f}x ({usable_cpus()} usable CPUs)")
    print_budget_use(use)
    save_result("main_job", "python scripts/bench_main_job.py " + " ".join(sys.argv[1:]),
                {"target": args.target, "budget": args.budget, "rounds": args.rounds, "usable_cpus": usable_cpus(),
                 "runs": runs, "median_wall_s": medians, "speedup_of_two_workers": ratio,
                 "family": args.family, "budget_use": use})


if __name__ == "__main__":
    main()
