"""Scoring only what can fit: the README's main job and the default family, this checkout against an
earlier revision, interleaved in one run.

Run:  python scripts/bench_feasible_scoring.py --before REV [--seeds 0 1 2] [--target T] [--name run2]

For each seed and each of ``--budget 2ms`` and ``--budget 1.5ms,2ms,3ms,5ms`` (everything else the
defaults: synflow, 300 trials, confidence 0.95), both revisions run ``effnas search`` as a user does (a
fresh process from an empty folder, timed from start to exit), one right after the other, so both meet
the machine in the same state. Per run: wall seconds, trials scored, scored candidates that can fit,
proposals, and each budget's pick (arch id, synflow score, predicted latency). Per budget and seed: the
pick's score now minus before (the same estimator, the same seed). The earlier revision is checked out
into a temporary git worktree. Writes docs/results/feasible_scoring[_NAME].json and prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import checked_out, save_result

REPO = Path(__file__).resolve().parents[1]
BUDGETS = ("2ms", "1.5ms,2ms,3ms,5ms")


def search(tree: Path, target: str, budget: str, seed: int, out: Path) -> dict:
    """``effnas search`` from ``tree``'s code (``python -m`` from the tree puts it first on the path)."""
    command = [sys.executable, "-m", "effvit_nas", "search", "--target", target, "--budget", budget,
               "--seed", str(seed), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} from {tree} exited {done.returncode}: {done.stderr.strip()[-400:]}")
    metadata = json.loads((out / "metadata.json").read_text())
    return {"under_each_limit": scored_under_each_limit(out, metadata, target),
            "wall_s": wall, "git_revision": metadata["git_revision"], "search_s": metadata["search_seconds"],
            "scored": metadata["trials_complete"], "feasible": metadata["feasible"],
            "can_fit": metadata.get("trials_can_fit"),  # what --trials counts now (absent before)
            "proposals": metadata.get("proposals", metadata["trials_complete"] + metadata.get("trials_pruned", 0)),
            "picks": {label: {"variant": b["name"], "score": b["score"],
                              "predicted_ms": next(iter(b["predicted_latency_ms"].values()))}
                      for label, b in metadata["best"].items()}}


def scored_under_each_limit(out: Path, metadata: dict, target: str) -> dict[str, int]:
    """Per budget, the distinct scored archs predicted within its limit (budget / q): the candidates it
    could pick from (the study file is read the same way for either revision)."""
    import optuna

    from effvit_nas.search._study import STUDY_NAME, open_storage

    trials = optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out)).get_trials(deepcopy=False)
    scored = {t.user_attrs["arch"].__repr__(): t.user_attrs["latency_ms"][target] for t in trials
              if t.state == optuna.trial.TrialState.COMPLETE}
    return {label: sum(ms <= best["limit_ms"][target] for ms in scored.values())
            for label, best in metadata["best"].items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the revision to compare with")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    parser.add_argument("--name", default="", help="saved as docs/results/feasible_scoring_NAME.json (one per run)")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[dict]]] = {b: {"before": [], "now": []} for b in BUDGETS}
    with tempfile.TemporaryDirectory() as tmp, checked_out(args.before, Path(tmp)) as before:
        trees = {"before": before, "now": REPO}
        for seed in args.seeds:
            for budget in BUDGETS:
                for name, tree in trees.items():
                    run = search(tree, args.target, budget, seed, Path(tmp) / f"{name}-{seed}-{len(budget)}")
                    runs[budget][name].append({"seed": seed, **run})
                    print(f"seed {seed} --budget {budget} {name}: {run['wall_s']:.1f} s, {run['scored']} scored, "
                          f"{run['feasible']} feasible, {run['proposals']} proposals, under each limit "
                          f"{run['under_each_limit']}", file=sys.stderr, flush=True)
    summary = {}
    print(f"| --budget | wall {args.before} (s) | wall now (s) | now / before, pairs' median | scored within each "
          f"limit, {args.before} | now | pick's score, now - before, per seed |\n|---|---|---|---|---|---|---|")
    for budget, by in runs.items():
        wall = {k: statistics.median(r["wall_s"] for r in v) for k, v in by.items()}
        feasible = {k: statistics.median(r["feasible"] for r in v) for k, v in by.items()}
        # what each budget could pick from (a family's "feasible" is what fits its largest budget)
        within = {k: {label: statistics.median(r["under_each_limit"][label] for r in v)
                      for label in v[0]["under_each_limit"]} for k, v in by.items()}
        gains = {label: [n["picks"][label]["score"] - b["picks"][label]["score"]
                         for b, n in zip(by["before"], by["now"]) if label in b["picks"] and label in n["picks"]]
                 for label in by["now"][0]["picks"]}
        # each pair ran back to back: the median of the pairs' ratios, not the ratio of medians
        ratio = statistics.median(n["wall_s"] / b["wall_s"] for b, n in zip(by["before"], by["now"]))
        summary[budget] = {"wall_s": wall, "ratio": ratio, "feasible": feasible, "within_each_limit": within,
                           "score_gain_per_seed": gains}
        print(f"| {budget} | {wall['before']:.1f} | {wall['now']:.1f} | {ratio:.2f} | "
              + " / ".join(f"{v:.0f}" for v in within["before"].values()) + " | "
              + " / ".join(f"{v:.0f}" for v in within["now"].values()) + " | "
              + "; ".join(f"{label}: " + ", ".join(f"{g:+.2f}" for g in gs) for label, gs in gains.items()) + " |")
    name = "feasible_scoring" + (f"_{args.name}" if args.name else "")
    path = save_result(name, " ".join(["python scripts/bench_feasible_scoring.py", *argv]),
                       {"before": args.before, "target": args.target, "seeds": args.seeds, "summary": summary,
                        "runs": runs})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
