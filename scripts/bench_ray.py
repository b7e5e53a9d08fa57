"""Ray Tune backend benchmarks: its overhead against the embedded Optuna backend, trials per hour
with 1 and 2 workers when trials train, and the same answer on both backends.

Run:  python scripts/bench_ray.py [overhead] [workers] [same-arch]     (all three by default)
          [--target amd-epyc-2core-ort-b1] [--rounds 3]

Each search runs as a user runs it, ``effnas search ... --backend optuna|ray`` in a fresh process
(Ray: a local cluster started by the command, so its start-up counts). Rounds interleave the two
sides; figures are medians. Prints Markdown for docs/BENCHMARKS.md.
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

import optuna

from effvit_nas.search.optuna_backend import STUDY_NAME, open_storage


def search(out: Path, target: str, *args: str) -> float:
    """Wall seconds of one ``effnas search`` into ``out``."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "effvit_nas", "search", "--target", target, "--out", str(out), *args],
                   check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def trials_of(out: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY_NAME, storage=open_storage(out)).trials


def overhead(target: str, rounds: int) -> str:
    """Table-only search (size prior): everything but the backend is the same."""
    args = ["--budget", "2ms", "--estimator", "size-prior", "--trials", "150"]
    seconds: dict[str, list[float]] = {"optuna": [], "ray": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            order = ("optuna", "ray") if r % 2 == 0 else ("ray", "optuna")
            for backend in order:
                seconds[backend].append(search(Path(tmp) / f"{backend}{r}", target, *args, "--backend", backend))
    optuna_s, ray_s = (statistics.median(seconds[b]) for b in ("optuna", "ray"))
    return (f"table-only search, 150 trials, size prior, {rounds} interleaved rounds (median wall time of the "
            f"command):\n\n| backend | seconds | per trial |\n|---|---|---|\n"
            f"| optuna (embedded) | {optuna_s:.1f} | {optuna_s / 150 * 1000:.0f} ms |\n"
            f"| ray (local cluster, 1 worker) | {ray_s:.1f} | {ray_s / 150 * 1000:.0f} ms |\n\n"
            f"Ray / Optuna: {ray_s / optuna_s:.2f}x; all runs: {json.dumps(seconds)}")


def workers(target: str, rounds: int, trials: int = 12) -> str:
    """Short-training trials (2 epochs, noisy-digits, 64 px; ASHA on) with 1 worker x 2 CPUs against
    2 workers x 1 CPU: the machine's 2 cores either way."""
    setups = {"1 worker x 2 CPUs": ["--workers", "1", "--cpus-per-trial", "2"],
              "2 workers x 1 CPU": ["--workers", "2", "--cpus-per-trial", "1"]}
    args = ["--budget", "2ms", "--estimator", "short-training", "--estimator-arg", "epochs=2", "--trials",
            str(trials), "--backend", "ray"]
    rows: dict[str, list[dict]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            names = list(setups) if r % 2 == 0 else list(reversed(setups))
            for name in names:
                out = Path(tmp) / f"{name.replace(' ', '')}{r}"
                seconds = search(out, target, *args, *setups[name])
                states = [t.state.name for t in trials_of(out)]
                rows[name].append({"seconds": seconds, "complete": states.count("COMPLETE"),
                                   "pruned": states.count("PRUNED")})
    lines = [f"short-training trials (2 epochs on noisy-digits at 64 px, ASHA), {trials} trials per search, "
             f"{rounds} interleaved rounds, median:\n", "| setup | seconds | trials/hour | complete / pruned |",
             "|---|---|---|---|"]
    rate = {}
    for name, runs in rows.items():
        s = statistics.median(r["seconds"] for r in runs)
        rate[name] = trials * 3600 / s
        counts = "; ".join(f"{r['complete']}/{r['pruned']}" for r in runs)
        lines.append(f"| {name} | {s:.0f} | {rate[name]:.0f} | {counts} |")
    names = list(setups)
    lines.append(f"\nspeed-up of 2 workers: {rate[names[1]] / rate[names[0]]:.2f}x")
    return "\n".join(lines)


def same_arch(target: str) -> str:
    """A deterministic estimator (synflow, seeded), the same seed and trials on both backends."""
    args = ["--budget", "2ms", "--estimator", "synflow", "--trials", "60", "--seed", "3"]
    with tempfile.TemporaryDirectory() as tmp:
        outs = {b: Path(tmp) / b for b in ("optuna", "ray")}
        for backend, out in outs.items():
            search(out, target, *args, "--backend", backend)
        best = {b: (out / "best.yaml").read_text().split("\n# ", 1)[0] for b, out in outs.items()}
        sequences = {b: [t.params for t in trials_of(out)] for b, out in outs.items()}
        scores = {b: [t.values[0] for t in trials_of(out)] for b, out in outs.items()}
    same_best = best["optuna"] == best["ray"]
    # the workers run torch with --cpus-per-trial threads (1), the embedded backend with 2: sums are
    # reduced in another order, so scores may differ in the last bits
    worst = max(abs(a - b) / abs(a) for a, b in zip(scores["optuna"], scores["ray"]))
    return (f"synflow, seed 3, 60 trials: same best arch on both backends: {same_best}; same 60 trial parameters "
            f"in the same order: {sequences['optuna'] == sequences['ray']}; largest relative score difference "
            f"{worst:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["overhead", "workers", "same-arch"])
    parser.add_argument("--target", default="amd-epyc-2core-ort-b1")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for part in args.parts:
        if part == "overhead":
            print(overhead(args.target, args.rounds), flush=True)
        elif part == "workers":
            print(workers(args.target, args.rounds), flush=True)
        elif part == "same-arch":
            print(same_arch(args.target), flush=True)
        print()


if __name__ == "__main__":
    main()
