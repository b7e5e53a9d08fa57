"""What a search costs beyond its estimator: the size-prior search (an estimator that costs nothing)
at 300 and 1000 trials, saved to a study file as `effnas search` does, for this checkout and an
earlier revision, interleaved in the same run; plus where the time goes in this checkout (cProfile).

Run:  python scripts/bench_search_machinery.py [--before REV] [--rounds 2] [--trials 300 1000]

Each measurement is a fresh interpreter (imports not counted: the search's own wall time). The
earlier revision is checked out into a temporary git worktree. Writes docs/results/search_machinery.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _results import checked_out, save_result

REPO = Path(__file__).resolve().parents[1]

# One search in a fresh interpreter: the default space and ORT table, budget 2 ms with a 5% margin,
# size prior, TPE, a study saved in a new folder (what the CLI's default backend does).
SEARCH = """
import sys, tempfile, time
from pathlib import Path
from effvit_nas import SearchSpace
from effvit_nas.estimators import create_estimator
from effvit_nas.latency.table import LatencyTable
from effvit_nas.search import SearchProblem, Target
from effvit_nas.search.optuna_backend import run_optuna
table = LatencyTable.load("amd-epyc-2core-ort-b1")
problem = SearchProblem(SearchSpace.default(), [Target(table, (2.0,), margin=0.05)], create_estimator("size-prior"))
out = Path(tempfile.mkdtemp()) / "run"
if PROFILE:
    import cProfile, pstats
    profile = cProfile.Profile()
    profile.enable()
start = time.perf_counter()
run_optuna(problem, out, trials=TRIALS, seed=0)
seconds = time.perf_counter() - start
if PROFILE:
    profile.disable()
    stats = pstats.Stats(profile)
    shares = {}
    for (path, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for part, where in (("sampler", "samplers/"), ("storage", "storages/"), ("estimator", "estimators/"),
                            ("latency prediction", "latency/table.py")):
            if where in path and name in ("sample_relative", "sample_independent", "create_new_trial",
                                          "set_trial_param", "set_trial_user_attr", "set_trial_system_attr",
                                          "set_trial_state_values", "score", "predict_ms"):
                shares[part] = shares.get(part, 0.0) + cumulative
    print("SHARES", json.dumps(shares))
import effvit_nas
print("SECONDS", seconds)
print("FROM", effvit_nas.__file__)
"""


def run_search(tree: Path, trials: int, profile: bool = False) -> tuple[float, dict]:
    code = f"import json\nTRIALS = {trials}\nPROFILE = {profile}\n{SEARCH}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, check=True)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines()
                 if line.startswith(("SECONDS", "SHARES", "FROM")))
    if not lines["FROM"].startswith(str(tree)):  # an editable install can shadow PYTHONPATH
        raise SystemExit(f"the search ran {lines['FROM']}, not the code in {tree}")
    return float(lines["SECONDS"]), json.loads(lines.get("SHARES", "{}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="529d9d1", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, nargs="+", default=[300, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, checked_out(args.before, Path(tmp)) as before:
        trees = {"before": before, "now": REPO}
        seconds: dict[str, dict[int, list[float]]] = {k: {n: [] for n in args.trials} for k in trees}
        for round_ in range(args.rounds):
            for trials in args.trials:
                for name, tree in trees.items():
                    seconds[name][trials].append(run_search(tree, trials)[0])
                    print(f"round {round_ + 1}: {name} {trials} trials {seconds[name][trials][-1]:.1f} s",
                          file=sys.stderr, flush=True)
        _, shares = run_search(REPO, max(args.trials), profile=True)
    print(f"| trials | {args.before} (s) | now (s) | ratio | now, trials/s |\n|---|---|---|---|---|")
    result = {"before": args.before, "rounds": args.rounds, "seconds": seconds, "profile_cumulative_s": shares}
    for trials in args.trials:
        b, n = statistics.median(seconds["before"][trials]), statistics.median(seconds["now"][trials])
        print(f"| {trials} | {b:.1f} | {n:.1f} | {b / n:.1f}x | {trials / n:.0f} |")
    print(f"\nwhere {max(args.trials)} trials spend their time now (cumulative s, profiled): "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(shares.items())))
    save_result("search_machinery", "python scripts/bench_search_machinery.py " + " ".join(sys.argv[1:]), result)


if __name__ == "__main__":
    main()
