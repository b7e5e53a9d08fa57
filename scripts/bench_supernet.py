"""Fine-tuning from supernet weights against training from scratch, at equal epochs.

Run:  python scripts/bench_supernet.py --supernet runs/supernet-study/supernet.pt
          [--archs M0,M3,M5,S00,S05,S10] [--epochs 3,10] [--seed 0] [--out docs/study]

For each arch of the estimator study (same labels), and each epoch count E: train E epochs of the
screening recipe on the supernet's data at its resolution (the study's setting: noisy-digits, 64 px)
once from scratch and once from the subnet's weights (``effnas export --from-supernet``, BN
recalibrated), same seed. Rows go to ``OUT/finetune.jsonl`` as they finish (a killed run resumes);
a Markdown table goes to stdout. The supernet's own inherited top-1 (0 epochs) is in the table too.
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
    parser.add_argument("--supernet", required=True)
    parser.add_argument("--archs", default="M0,M3,M5,S00,S05,S10")
    parser.add_argument("--epochs", default="3,10")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/study")
    args = parser.parse_args()
    rows = run(args)
    print(markdown(rows, args.archs.split(",")))


if __name__ == "__main__":
    main()
