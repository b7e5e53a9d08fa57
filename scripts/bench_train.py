"""Training benchmarks: throughput against timm, exact resume after a kill, DDP against one process.

Run:  python scripts/bench_train.py [throughput] [resume] [ddp]     (all three by default)

Prints Markdown for docs/BENCHMARKS.md; ddp also writes docs/results/train_ddp.json.
- throughput: training steps (forward, backward, AdamW) of our M0 and timm's ``efficientvit_m0``
  on the same random batch, interleaved over rounds on 2 threads; median img/s and the ratio.
- resume: M0 at 64 px on digits, 4 epochs uninterrupted, and the same run killed (SIGKILL) in its
  third epoch then resumed; every per-epoch figure and every weight compared for equality.
- ddp: M0 at 64 px on digits for 15 epochs, 1 process (2 threads) and 2 gloo processes under
  torchrun (1 thread each), seeds 0 and 1: the seed-to-seed spread is the noise to compare against.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import save_result

EFFNAS = [sys.executable, "-m", "effvit_nas"]


def throughput(batch: int = 32, resolution: int = 224, rounds: int = 7, steps: int = 3) -> None:
    import timm
    import torch

    from effvit_nas import Arch, build_model

    torch.set_num_threads(2)
    torch.manual_seed(0)
    models = {"effvit-nas M0": build_model(Arch.preset("m0"), num_classes=1000),
              "timm efficientvit_m0": timm.create_model("efficientvit_m0", num_classes=1000)}
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, 1000, (batch,))
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}

    def step(name: str) -> None:
        model, optimizer = models[name], optimizers[name]
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for name in models:
        models[name].train()
        step(name)  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in models}
    for r in range(rounds):
        for name in (list(models) if r % 2 == 0 else list(models)[::-1]):
            start = time.perf_counter()
            for _ in range(steps):
                step(name)
            rates[name].append(batch * steps / (time.perf_counter() - start))
    ours, theirs = (statistics.median(v) for v in rates.values())
    print(f"## Training throughput, batch {batch} at {resolution} px, 2 threads, {rounds} interleaved rounds\n")
    print("| model | median img/s | min | max |\n|---|---|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")
    print(f"\nratio ours / timm: {ours / theirs:.3f}\n")


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def resume() -> None:
    import torch

    args = ["train", "m0", "--data", "digits", "--img-size", "64", "--epochs", "4", "--deterministic"]
    with tempfile.TemporaryDirectory() as tmp:
        straight, killed = Path(tmp) / "straight", Path(tmp) / "killed"
        subprocess.run([*EFFNAS, *args, "--out", str(straight)], check=True, capture_output=True)
        process = subprocess.Popen([*EFFNAS, *args, "--out", str(killed)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        while not ((killed / "metrics.json").exists() and _metrics(killed)["epochs_done"] >= 2):
            time.sleep(0.05)
        time.sleep(1.0)
        process.send_signal(signal.SIGKILL)
        process.wait()
        done_at_kill = _metrics(killed)["epochs_done"]
        subprocess.run([*EFFNAS, *args, "--out", str(killed), "--resume"], check=True, capture_output=True)
        a, b = _metrics(straight), _metrics(killed)
        same_rows = all(ra[k] == rb[k] for ra, rb in zip(a["epochs"], b["epochs"], strict=True)
                        for k in ("train_loss", "val_loss", "val_top1", "val_ema_top1", "lr"))
        wa = torch.load(straight / "checkpoint.pt", weights_only=True)["model"]
        wb = torch.load(killed / "checkpoint.pt", weights_only=True)["model"]
        same_weights = all(torch.equal(wa[k], wb[k]) for k in wa)
    print("## Resume after a kill (M0, 64 px, digits, 4 epochs, --deterministic)\n")
    print(f"killed (SIGKILL) during epoch {done_at_kill + 1}, resumed with --resume\n")
    print("| run | val top-1 per epoch | final train loss |\n|---|---|---|")
    for label, m in (("uninterrupted", a), ("killed + resumed", b)):
        tops = ", ".join(f"{r['val_top1']:.2f}" for r in m["epochs"])
        print(f"| {label} | {tops} | {m['epochs'][-1]['train_loss']:.6f} |")
    print(f"\nevery per-epoch figure equal: {same_rows}; every weight bitwise equal: {same_weights}\n")


def ddp(epochs: int = 15, seeds: tuple[int, ...] = (0, 1)) -> None:
    args = ["train", "m0", "--data", "digits", "--img-size", "64", "--epochs", str(epochs)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for procs in (1, 2):
                out = Path(tmp) / f"p{procs}-s{seed}"
                launcher = EFFNAS if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                      "--nproc_per_node", "2", "-m", "effvit_nas"]
                start = time.perf_counter()
                subprocess.run([*launcher, *args, "--seed", str(seed), "--out", str(out)], check=True,
                               capture_output=True)
                m = _metrics(out)
                rows.append((procs, seed, m["val_top1"], m["val_top1_ema"], m["train_img_per_s"],
                             time.perf_counter() - start))
    print(f"## DDP: 2 gloo processes against 1 process (M0, 64 px, digits, {epochs} epochs, global batch 64)\n")
    print("| processes | seed | final val top-1 | EMA top-1 | train img/s | wall s |\n|---|---|---|---|---|---|")
    for procs, seed, top1, ema, rate, wall in rows:
        print(f"| {procs} | {seed} | {top1:.2f} | {ema:.2f} | {rate:.0f} | {wall:.0f} |")
    for procs in (1, 2):
        tops = [r[2] for r in rows if r[0] == procs]
        print(f"\n{procs} process(es): mean final top-1 {statistics.mean(tops):.2f}, seed spread "
              f"{max(tops) - min(tops):.2f} points")
    print()
    keys = ("processes", "seed", "val_top1", "val_top1_ema", "train_img_per_s", "wall_s")
    save_result("train_ddp", "python scripts/bench_train.py ddp",
                {"run": " ".join(args), "rows": [dict(zip(keys, row)) for row in rows]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = {"throughput": throughput, "resume": resume, "ddp": ddp}
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(parts)} (default: all)")
    chosen = parser.parse_args().parts or list(parts)
    unknown = sorted(set(chosen) - set(parts))
    if unknown:
        parser.error(f"parts must be among {', '.join(parts)}, but got {', '.join(unknown)}")
    for part in chosen:
        parts[part]()


if __name__ == "__main__":
    main()
