"""Scoring only what can fit: the README's main job and the default family, this checkout against an
earlier revision, interleaved in one run.

Run:  python scripts/bench_feasible_scoring.py --before REV [--seeds 0 1 2] [--target amd-epyc-2core-ort-b1]

For each seed and each of ``--budget 2ms`` and ``--budget 1.5ms,2ms,3ms,5ms`` (everything else the
defaults: synflow, 300 trials, confidence 0.95), both revisions run ``effnas search`` as a user does (a
fresh process from an empty folder, timed from start to exit), one right after the other, so both meet
the machine in the same state. Per run: wall seconds, trials scored, scored candidates that can fit,
proposals, and each budget's pick (arch id, synflow score, predicted latency). Per budget and seed: the
pick's score now minus before (the same estimator, the same seed). The earlier revision is checked out
into a temporary git worktree. Writes docs/results/feasible_scoring.json and prints Markdown.
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

from _results import save_result

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
    return {"wall_s": wall, "git_revision": metadata["git_revision"], "search_s": metadata["search_seconds"],
            "scored": metadata["trials_complete"], "feasible": metadata["feasible"],
            "can_fit": metadata.get("trials_can_fit"),  # what --trials counts now (absent before)
            "proposals": metadata.get("proposals", metadata["trials_complete"] + metadata.get("trials_pruned", 0)),
            "picks": {label: {"variant": b["name"], "score": b["score"],
                              "predicted_ms": next(iter(b["predicted_latency_ms"].values()))}
                      for label, b in metadata["best"].items()}}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the revision to compare with")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[dict]]] = {b: {"before": [], "now": []} for b in BUDGETS}
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(before), args.before], cwd=REPO, check=True,
                       capture_output=True)
        try:
            trees = {"before": before, "now": REPO}
            for seed in args.seeds:
                for budget in BUDGETS:
                    for name, tree in trees.items():
                        run = search(tree, args.target, budget, seed, Path(tmp) / f"{name}-{seed}-{len(budget)}")
                        runs[budget][name].append({"seed": seed, **run})
                        print(f"seed {seed} --budget {budget} {name}: {run['wall_s']:.1f} s, {run['scored']} scored, "
                              f"{run['feasible']} feasible, {run['proposals']} proposals", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(before)], cwd=REPO, check=False)
    summary = {}
    print(f"| --budget | wall {args.before} (s) | wall now (s) | now / before | feasible scored {args.before} "
          "| feasible scored now | pick's score, now - before, per seed |\n|---|---|---|---|---|---|---|")
    for budget, by in runs.items():
        wall = {k: statistics.median(r["wall_s"] for r in v) for k, v in by.items()}
        feasible = {k: statistics.median(r["feasible"] for r in v) for k, v in by.items()}
        gains = {label: [n["picks"][label]["score"] - b["picks"][label]["score"]
                         for b, n in zip(by["before"], by["now"]) if label in b["picks"] and label in n["picks"]]
                 for label in by["now"][0]["picks"]}
        # each pair ran back to back: the median of the pairs' ratios, not the ratio of medians
        ratio = statistics.median(n["wall_s"] / b["wall_s"] for b, n in zip(by["before"], by["now"]))
        summary[budget] = {"wall_s": wall, "ratio": ratio, "feasible": feasible,
                           "score_gain_per_seed": gains}
        print(f"| {budget} | {wall['before']:.1f} | {wall['now']:.1f} | {ratio:.2f} | "
              f"{feasible['before']:.0f} | {feasible['now']:.0f} | "
              + "; ".join(f"{label}: " + ", ".join(f"{g:+.2f}" for g in gs) for label, gs in gains.items()) + " |")
    path = save_result("feasible_scoring", " ".join(["python scripts/bench_feasible_scoring.py", *argv]),
                       {"before": args.before, "target": args.target, "seeds": args.seeds, "summary": summary,
                        "runs": runs})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
