"""Supernet benchmarks: fine-tuning from supernet weights against training from scratch at equal
epochs, and the cost of a subnet's forward and backward against its static model's.

Run:  python scripts/bench_supernet.py finetune --supernet runs/supernet-study/supernet.pt
          [--archs M0,M3,M5,S00,S05,S10] [--epochs 3,10] [--seed 0] [--out docs/study]
      python scripts/bench_supernet.py overhead [--rounds 5]

For each arch of the estimator study (same labels), and each epoch count E: train E epochs of the
screening recipe on the supernet's data at its resolution (the study's setting: noisy-digits, 64 px)
once from scratch and once from the subnet's weights (``effnas export --from-supernet``, BN
recalibrated), same seed. Rows go to ``OUT/finetune.jsonl`` as they finish (a killed run resumes);
a Markdown table goes to stdout. The supernet's own inherited top-1 (0 epochs) is in the table too.

``overhead``: forward + backward at batch 64 and 64 px of the default space's largest arch and M0,
through the supernet (gathering its parts) and through the extracted static model, interleaved
rounds, median.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from study_estimators import append_row, read_rows, study_archs

from effvit_nas.estimators import create_estimator
from effvit_nas.supernet import export_subnet
from effvit_nas.train import TrainSettings, train
from effvit_nas.train.recipe import SCREENING


def run(args: argparse.Namespace) -> list[dict]:
    archs = study_archs(20)
    labels = args.archs.split(",")
    path = Path(args.out) / "finetune.jsonl"
    done = {(r["label"], r["epochs"], r["start"]) for r in read_rows(path)}
    inherited = create_estimator("supernet", checkpoint=args.supernet)
    for label in labels:
        arch = archs[label]
        if (label, 0, "supernet") not in done:
            append_row(path, {"label": label, "epochs": 0, "start": "supernet", "top1": inherited.score(arch),
                              "seconds": 0.0})
        for epochs in (int(e) for e in args.epochs.split(",")):
            recipe = SCREENING.updated({"epochs": str(epochs), "warmup_epochs": str(min(1.0, epochs / 3))})
            for start in ("scratch", "supernet"):
                if (label, epochs, start) in done:
                    continue
                began = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    init = None
                    if start == "supernet":
                        init = str(export_subnet(arch, args.supernet, Path(tmp) / "subnet.pt")[1])
                    metrics = train(TrainSettings(arch=arch, data=inherited.data, recipe=recipe,
                                                  out_dir=Path(tmp) / "run", seed=args.seed,
                                                  img_size=inherited.img_size, init_from=init))
                row = {"label": label, "epochs": epochs, "start": start, "top1": metrics["val_top1"],
                       "seconds": time.perf_counter() - began}
                append_row(path, row)
                print(f"  {label} {epochs} epochs from {start}: {row['top1']:.2f}%", flush=True)
    return [r for r in read_rows(path) if r["label"] in labels]


def overhead(rounds: int) -> str:
    import torch

    from effvit_nas import Arch, SearchSpace
    from effvit_nas.supernet import Supernet

    space = SearchSpace.default()
    net = Supernet.from_space(space, num_classes=10).train()
    archs = {"largest": space.largest().replace(resolution=64), "M0": Arch.preset("m0").replace(resolution=64)}
    models = {name: net.extract(arch).train() for name, arch in archs.items()}
    x = torch.randn(64, 3, 64, 64)
    calls = {f"{name} {kind}": (lambda n=name, k=kind: (net(x, archs[n]) if k == "supernet" else models[n](x)))
             for name in archs for kind in ("supernet", "static")}
    times: dict[str, list[float]] = {key: [] for key in calls}
    for r in range(rounds + 1):  # round 0 warms up
        for key, call in calls.items():
            start = time.perf_counter()
            call().sum().backward()
            if r:
                times[key].append((time.perf_counter() - start) * 1000)
    lines = ["| arch (64 px, batch 64) | supernet ms | static ms | extra ms |", "|---|---|---|---|"]
    for name in archs:
        sup, sta = (statistics.median(times[f"{name} {k}"]) for k in ("supernet", "static"))
        lines.append(f"| {name} | {sup:.0f} | {sta:.0f} | {sup - sta:.0f} |")
    return "\n".join(lines)


def markdown(rows: list[dict], labels: list[str]) -> str:
    top1 = {(r["label"], r["epochs"], r["start"]): r["top1"] for r in rows}
    epochs = sorted({r["epochs"] for r in rows if r["epochs"] > 0})
    head = "| arch | inherited (0 epochs) | " + " | ".join(f"{e} ep scratch | {e} ep from supernet" for e in epochs)
    lines = [head + " |", "|---" * (2 + 2 * len(epochs)) + "|"]
    for label in labels:
        cells = [f"{top1[(label, 0, 'supernet')]:.2f}"]
        for e in epochs:
            cells += [f"{top1[(label, e, 'scratch')]:.2f}", f"{top1[(label, e, 'supernet')]:.2f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    mean = [f"{statistics.mean(top1[(x, 0, 'supernet')] for x in labels):.2f}"]
    for e in epochs:
        mean += [f"{statistics.mean(top1[(x, e, s)] for x in labels):.2f}" for s in ("scratch", "supernet")]
    lines.append("| **mean** | " + " | ".join(mean) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["finetune", "overhead"])
    parser.add_argument("--supernet", default=None, help="for finetune")
    parser.add_argument("--rounds", type=int, default=5, help="for overhead")
    parser.add_argument("--archs", default="M0,M3,M5,S00,S05,S10")
    parser.add_argument("--epochs", default="3,10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/study")
    args = parser.parse_args()
    if args.part == "overhead":
        print(overhead(args.rounds))
        return
    if not args.supernet:
        parser.error("finetune needs --supernet")
    rows = run(args)
    print(markdown(rows, args.archs.split(",")))


if __name__ == "__main__":
    main()
