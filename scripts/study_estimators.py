"""Ground-truth study: how well does each accuracy estimator rank architectures the way training does?

Run:  python scripts/study_estimators.py [--archs 20] [--seeds 2] [--epochs 10] [--data noisy-digits]
                                          [--resolution 64] [--out docs/study]
      On the shapes task (each arch at its own resolution, M0-M5 at the task's 96 px):
      python scripts/study_estimators.py --data shapes --space shapes --preset-px 96 \
          --resolution 0 --out docs/study-shapes

1. Architectures: M0-M5 plus ``--archs`` sampled from the default space (seeded, distinct).
2. Ground truth: each trained ``--epochs`` with the screening recipe on ``--data`` at
   ``--resolution`` with each seed; the final top-1 on the held-out split. Rows go to ``OUT/ground_truth.jsonl``
   as they finish, so a killed study resumes where it stopped.
3. Every registered estimator scores every arch, timed (``OUT/scores.jsonl``). The data-driven ones
   see the same data and resolution as the ground truth; short training uses a seed the ground truth
   does not, so it does not share its noise. The supernet estimator joins with ``--supernet CKPT``,
   a supernet trained on the same data at the same resolution:
       effnas supernet train --data noisy-digits --img-size 64 --recipe screening --epochs 40 \
           --set warmup_epochs=2 --out runs/supernet-study
       python scripts/study_estimators.py --supernet runs/supernet-study/supernet.pt --only scores
4. Analysis (``OUT/study.json``, ``OUT/correlation.png``, Markdown on stdout): Spearman, Kendall
   and top-5 overlap of each estimator against the seed-mean ground truth; the noise floor (seed
   against seed); and each estimator's ranking of M0-M5 against the paper's ImageNet top-1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from effvit_nas import Arch, SearchSpace
from effvit_nas.arch import PRESETS
from effvit_nas.counting import count
from effvit_nas.estimators import create_estimator
from effvit_nas.estimators._proxies import OWN_RESOLUTION, PROXY_DATA
from effvit_nas.estimators._size_prior import PAPER_TOP1
from effvit_nas.train import TrainSettings, train
from effvit_nas.train.recipe import SCREENING

ESTIMATORS = ["params", "macs", "size-prior", "grad-norm", "synflow", "naswot", "zico", "short-training", "supernet"]
SHORT_TRAINING_SEED = 100


def study_archs(samples: int, seed: int = 0, space: SearchSpace | None = None,
                preset_px: int | None = None) -> dict[str, Arch]:
    """M0-M5 (at ``preset_px`` when given: a task's reference resolution) and ``samples`` archs of ``space``."""
    archs = {name.upper(): Arch.preset(name).replace(**({"resolution": preset_px} if preset_px else {}))
             for name in PRESETS}
    space, rng = space or SearchSpace.default(), np.random.default_rng([seed, 6])
    while len(archs) < len(PRESETS) + samples:
        arch = space.sample(rng)
        if arch not in archs.values():
            archs[f"S{len(archs) - len(PRESETS):02d}"] = arch
    return archs


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a torn last line from a kill
            break
    return rows


def append_row(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def ground_truth(archs: dict[str, Arch], args: argparse.Namespace, path: Path) -> None:
    done = {(r["label"], r["seed"]) for r in read_rows(path)}
    recipe = SCREENING.updated({"epochs": str(args.epochs)})
    for seed in range(args.seeds):
        for label, arch in archs.items():
            if (label, seed) in done:
                continue
            start = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                metrics = train(TrainSettings(arch=arch, data=args.data, recipe=recipe, out_dir=Path(tmp), seed=seed,
                                              img_size=args.resolution or None))
            row = {"label": label, "arch_id": arch.arch_id, "seed": seed, "top1": metrics["val_top1"],
                   "top1_ema": metrics["val_top1_ema"], "seconds": time.perf_counter() - start}
            append_row(path, row)
            print(f"  trained {label} seed {seed}: {row['top1']:.2f}% in {row['seconds']:.0f} s", flush=True)


def estimator_scores(archs: dict[str, Arch], args: argparse.Namespace, path: Path) -> None:
    done = {(r["estimator"], r["label"]) for r in read_rows(path)}
    for name in ESTIMATORS:
        if name == "supernet":
            if not args.supernet:
                continue
            estimator = create_estimator(name, checkpoint=args.supernet)
            if (estimator.img_size, estimator.data) != (args.resolution or None, args.data):
                raise SystemExit(f"--supernet must be trained on {args.data} at {args.resolution} px like the ground "
                                 f"truth, but was trained on {estimator.data} at {estimator.img_size}")
        elif name in ("params", "macs", "size-prior"):
            estimator = create_estimator(name)
        elif name == "short-training":
            estimator = create_estimator(name, epochs=2, seed=SHORT_TRAINING_SEED, resolution=args.resolution,
                                         data=args.data)
        else:
            estimator = create_estimator(name, resolution=args.resolution, data=args.data)
        for label, arch in archs.items():
            if (name, label) in done:
                continue
            start = time.perf_counter()
            value = estimator.score(arch)
            append_row(path, {"estimator": name, "label": label, "score": value,
                              "seconds": time.perf_counter() - start})
        print(f"  scored {len(archs)} archs with {name}", flush=True)


def top_k_overlap(a: dict[str, float], b: dict[str, float], k: int = 5) -> float:
    top = lambda d: set(sorted(d, key=d.get, reverse=True)[:k])  # noqa: E731
    return len(top(a) & top(b)) / k


def analyse(archs: dict[str, Arch], args: argparse.Namespace, out: Path) -> dict:
    truth_rows = read_rows(out / "ground_truth.jsonl")
    per_seed = {s: {r["label"]: r["top1"] for r in truth_rows if r["seed"] == s} for s in range(args.seeds)}
    truth = {label: statistics.mean(per_seed[s][label] for s in per_seed) for label in archs}
    scores: dict[str, dict[str, float]] = {}
    cost: dict[str, float] = {}
    for r in read_rows(out / "scores.jsonl"):
        scores.setdefault(r["estimator"], {})[r["label"]] = r["score"]
        cost.setdefault(r["estimator"], 0.0)
        cost[r["estimator"]] += r["seconds"] / len(archs)
    labels = list(archs)
    t = [truth[x] for x in labels]
    noise = [spearmanr([per_seed[a][x] for x in labels], [per_seed[b][x] for x in labels]).statistic
             for a in per_seed for b in per_seed if a < b]
    noise_kendall = [kendalltau([per_seed[a][x] for x in labels], [per_seed[b][x] for x in labels]).statistic
                     for a in per_seed for b in per_seed if a < b]
    seed_sd = statistics.mean(statistics.stdev([per_seed[s][x] for s in per_seed]) for x in labels)
    table = {}
    estimators = [name for name in ESTIMATORS if name in scores]
    for name in estimators:
        e = [scores[name][x] for x in labels]
        m_series = [x for x in labels if x.startswith("M")]
        table[name] = {
            "spearman": spearmanr(e, t).statistic,
            "kendall": kendalltau(e, t).statistic,
            "top5_overlap": top_k_overlap(scores[name], truth),
            "m_series_spearman_vs_paper": spearmanr([scores[name][x] for x in m_series],
                                                    [PAPER_TOP1[x.lower()] for x in m_series]).statistic,
            "m_series_kendall_vs_paper": kendalltau([scores[name][x] for x in m_series],
                                                    [PAPER_TOP1[x.lower()] for x in m_series]).statistic,
            "seconds_per_arch": cost[name],
        }
    truth_time = statistics.median(r["seconds"] for r in truth_rows)  # median: robust to a busy spell
    result = {
        "settings": {"archs": len(archs), "seeds": args.seeds, "epochs": args.epochs, "data": args.data,
                     "resolution": args.resolution},
        "noise_floor": {"spearman_seed_vs_seed": noise, "kendall_seed_vs_seed": noise_kendall,
                        "mean_seed_sd_points": seed_sd},
        "ground_truth_seconds_per_run": truth_time,
        "estimators": table,
        "archs": {x: {"arch": archs[x].to_dict(), "top1_mean": truth[x],
                      "top1_per_seed": [per_seed[s][x] for s in per_seed],
                      "params": count(archs[x]).params, "macs": count(archs[x]).macs,
                      "scores": {n: scores[n][x] for n in estimators}} for x in labels},
    }
    (out / "study.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, out / "correlation.png")
    return result


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["estimators"])
    rows = -(-len(names) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(12, 3.6 * rows))
    truth = [a["top1_mean"] for a in result["archs"].values()]
    for ax, name in zip(axes.flat, names):
        est = [a["scores"][name] for a in result["archs"].values()]
        colours = ["tab:red" if x.startswith("M") else "tab:blue" for x in result["archs"]]
        ax.scatter(est, truth, c=colours, s=18)
        stats = result["estimators"][name]
        ax.set(title=f"{name}: Spearman {stats['spearman']:.2f}", xlabel="estimator score",
               ylabel="trained top-1 (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{result['settings']['archs']} archs (M0-M5 red), trained on {result['settings']['data']} at "
                 f"{result['settings']['resolution']} px, mean of {result['settings']['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(result: dict) -> str:
    noise = result["noise_floor"]
    lines = [f"noise floor (seed vs seed): Spearman {statistics.mean(noise['spearman_seed_vs_seed']):.3f}, "
             f"Kendall {statistics.mean(noise['kendall_seed_vs_seed']):.3f}, mean per-arch seed sd "
             f"{noise['mean_seed_sd_points']:.2f} points; one ground-truth run "
             f"{result['ground_truth_seconds_per_run']:.0f} s (median)\n",
             "| estimator | Spearman | Kendall | top-5 overlap | M0-M5 vs paper (Spearman / Kendall) | s per arch |",
             "|---|---|---|---|---|---|"]
    for name, s in result["estimators"].items():
        lines.append(f"| {name} | {s['spearman']:.3f} | {s['kendall']:.3f} | {s['top5_overlap']:.1f} | "
                     f"{s['m_series_spearman_vs_paper']:.2f} / {s['m_series_kendall_vs_paper']:.2f} | "
                     f"{s['seconds_per_arch']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default=PROXY_DATA)
    # 64: the noisy-digits study (32 px images, every network at one size); 0: each arch at its own
    parser.add_argument("--resolution", type=int, default=64, help=f"{OWN_RESOLUTION}: each arch at its own")
    parser.add_argument("--space", default=None, help="search space YAML the archs are drawn from (default: built-in)")
    parser.add_argument("--preset-px", type=int, default=None, help="M0-M5 at this resolution (a task's reference)")
    parser.add_argument("--out", default="docs/study")
    parser.add_argument("--supernet", default=None, help="a supernet.pt trained like the ground truth (see above)")
    parser.add_argument("--only", choices=["truth", "scores", "analyse"], default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    archs = study_archs(args.archs, space=SearchSpace.from_yaml(args.space) if args.space else None,
                        preset_px=args.preset_px)
    if args.only in (None, "scores"):
        print("scoring with every estimator", flush=True)
        estimator_scores(archs, args, out / "scores.jsonl")
    if args.only in (None, "truth"):
        print("training the ground truth", flush=True)
        ground_truth(archs, args, out / "ground_truth.jsonl")
    if args.only in (None, "analyse"):
        print(markdown(analyse(archs, args, out)))


if __name__ == "__main__":
    main()
