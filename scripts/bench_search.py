"""Search benchmarks on the table's predictions: wall time of the main job, quality against random
search, and the M-series check. (Budget use and the picks' measured compliance: bench_budget_use.py.)

Run:  python scripts/bench_search.py [--target amd-epyc-2core-ort-b1] [--seeds 5] [--trials 150]

Prints Markdown for docs/BENCHMARKS.md and writes each part's figures to docs/results/search_*.json.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import save_result

from effvit_nas import Arch, SearchSpace
from effvit_nas.estimators import create_estimator
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import SearchProblem, Target, best_per_budget, feasible_candidates
from effvit_nas.search.optuna_backend import run_optuna

# The issue-4 figures in docs/BENCHMARKS.md used the size prior and no margin (the defaults then);
# --margin 5 reproduces the fixed rule before --confidence. The size prior fills budgets, which is
# what a compliance check needs (a pick far under its budget proves nothing).
ESTIMATOR, MARGIN, CONFIDENCE = "size-prior", None, None


def target(table: LatencyTable, budgets: tuple[float, ...]) -> Target:
    return Target(table, budgets, MARGIN, CONFIDENCE)


def best_under(table_name: str, budget: float, trials: int, seed: int, sampler: str, with_presets: bool = True):
    """The best arch a search finds under ``budget`` (a study in memory: nothing to save here).
    ``with_presets=False`` leaves M0-M5 out of the first trials, so a comparison with them is fair."""
    problem = SearchProblem(SearchSpace.default(), [target(LatencyTable.load(table_name), (budget,))],
                            create_estimator(ESTIMATOR), seed_with_references=with_presets)
    study = run_optuna(problem, None, trials=trials, seed=seed, sampler=sampler)
    return best_per_budget(feasible_candidates(study, problem), problem)[budget]


def main_job_seconds(target: str) -> float:
    out = Path(tempfile.mkdtemp())
    shutil.rmtree(out)
    start = time.perf_counter()
    rule = ["--margin", f"{MARGIN * 100:g}"] if MARGIN is not None else ["--confidence", str(CONFIDENCE or 0.95)]
    subprocess.run([sys.executable, "-m", "effvit_nas.cli.main", "search", "--target", target, "--budget", "2ms",
                    "--estimator", ESTIMATOR, *rule, "--out", str(out)], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    shutil.rmtree(out)
    return seconds


def main() -> None:
    global ESTIMATOR, MARGIN, CONFIDENCE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=150)
    parser.add_argument("--estimator", default=ESTIMATOR)
    parser.add_argument("--margin", type=float, default=None, help="percent: the fixed rule instead of a confidence")
    parser.add_argument("--confidence", type=float, default=None, help="the table's conformal rule (e.g. 0.95)")
    parser.add_argument("--only", choices=["main", "samplers", "m-series"], default=None,
                        help="run one part")
    args = parser.parse_args()
    ESTIMATOR, CONFIDENCE = args.estimator, args.confidence
    MARGIN = args.margin / 100 if args.margin is not None else None
    table = LatencyTable.load(args.target)

    print(f"estimator {ESTIMATOR}, margin {MARGIN}, confidence {CONFIDENCE}\n")
    if args.only in (None, "main"):
        print(f"## `effnas search --target {args.target} --budget 2ms` (300 trials, default)\n")
        print(f"wall time including start-up: {main_job_seconds(args.target):.1f} s\n")
    if args.only in (None, "samplers"):
        samplers(args)
    if args.only in (None, "m-series"):
        m_series(args, table)


def samplers(args: argparse.Namespace) -> None:
    print(f"## TPE against random search, {args.trials} trials, budget 2 ms, seeds 0..{args.seeds - 1}\n")
    print("| seed | TPE best score | random best score |\n|---|---|---|")
    tpe, rnd = [], []
    for seed in range(args.seeds):
        tpe.append(best_under(args.target, 2.0, args.trials, seed, "tpe").score)
        rnd.append(best_under(args.target, 2.0, args.trials, seed, "random").score)
        print(f"| {seed} | {tpe[-1]:.2f} | {rnd[-1]:.2f} |")
    print(f"| **median** | **{statistics.median(tpe):.2f}** | **{statistics.median(rnd):.2f}** |\n")
    save_result("search_samplers", "python scripts/bench_search.py --only samplers " + _flags(args),
                {"estimator": ESTIMATOR, "margin": MARGIN, "budget_ms": 2.0, "tpe": tpe, "random": rnd})


def m_series(args: argparse.Namespace, table: LatencyTable) -> None:
    """With M0-M5 NOT among the trials (else the preset itself fits and the comparison holds by
    construction), does a search find something that scores higher at the M model's latency?"""
    seeds = range(args.seeds)
    print(f"\n## Against the M-series: budget = the M model's predicted latency, M0-M5 not enqueued "
          f"({args.trials} trials, TPE and random, seeds 0..{args.seeds - 1}, median)\n")
    estimator = create_estimator(ESTIMATOR)
    print("| model | budget ms | M score | TPE best (median) | random best (median) | TPE wins on seeds |\n"
          "|---|---|---|---|---|---|")
    rows = []
    for name in ("m0", "m1", "m2", "m3", "m4", "m5"):
        arch = Arch.preset(name)
        budget = table.predict_ms(arch)
        tpe = [best_under(args.target, budget, args.trials, s, "tpe", with_presets=False).score for s in seeds]
        rnd = [best_under(args.target, budget, args.trials, s, "random", with_presets=False).score for s in seeds]
        m_score = estimator.score(arch)
        wins = sum(t > m_score for t in tpe)
        rows.append({"model": name, "budget_ms": budget, "m_score": m_score, "tpe": tpe, "random": rnd})
        print(f"| {name.upper()} | {budget:.3f} | {m_score:.2f} | {statistics.median(tpe):.2f} | "
              f"{statistics.median(rnd):.2f} | {wins}/{len(tpe)} |")
    save_result("search_vs_mseries", "python scripts/bench_search.py --only m-series " + _flags(args),
                {"estimator": ESTIMATOR, "margin": MARGIN, "trials": args.trials, "rows": rows})


def _flags(args: argparse.Namespace) -> str:
    rule = f"--margin {args.margin:g}" if args.margin is not None else f"--confidence {args.confidence}"
    return f"--target {args.target} --seeds {args.seeds} --trials {args.trials} --estimator {args.estimator} {rule}"

if __name__ == "__main__":
    main()
