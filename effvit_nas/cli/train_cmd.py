"""``effnas train ARCH.yaml --data digits|PATH``: train a found arch with the paper's recipe."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from ..errors import EffNasError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an arch (the paper's recipe via timm); torchrun-ready")
    parser.add_argument("arch", metavar="ARCH", help="a preset (m0..m5) or an architecture YAML file")
    parser.add_argument("--data", required=True, help="digits (built in) or an ImageFolder dir with train/ and val/")
    parser.add_argument("--recipe", default="auto", help="paper, small, or auto (small for digits, else paper)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (split over DDP processes)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate per 512 images (linear scaling)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other recipe field, e.g. --set mixup=0 --set randaug=rand-m5-mstd0.5")
    parser.add_argument("--img-size", type=int, default=None,
                        help="train at this resolution (default: the arch's); attention biases follow the windows")
    parser.add_argument("--out", default=None, help="output folder (default: runs/train-<arch>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    parser.add_argument("--init-from", default=None, help="start from these weights (e.g. a supernet subnet)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes per training process")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (bitwise repeats)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainSettings, recipe_for, train
    from ._common import load_arch, parse_overrides, progress_bar

    arch = load_arch(args.arch)
    recipe_name, recipe = recipe_for(args.recipe, args.data)
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    changes = {**{k: str(v) for k, v in flags.items() if v is not None}, **parse_overrides(args.set)}
    if "epochs" in changes and "warmup_epochs" not in changes and int(changes["epochs"]) <= recipe.warmup_epochs:
        # a short trial run keeps the recipe's shape: warm up for the same share of it
        changes["warmup_epochs"] = str(recipe.warmup_epochs * int(changes["epochs"]) / recipe.epochs)
    recipe = recipe.updated(changes)
    out = Path(args.out) if args.out else Path("runs") / f"train-{arch.name or arch.arch_id}"
    if args.workers < 0:
        raise EffNasError(f"--workers must be >= 0, but got {args.workers}")
    settings = TrainSettings(arch=arch, data=args.data, recipe=recipe, out_dir=out, seed=args.seed,
                             workers=args.workers, device=args.device, img_size=args.img_size, init_from=args.init_from,
                             resume=args.resume, deterministic=args.deterministic, recipe_name=recipe_name)
    main_process = os.environ.get("RANK", "0") == "0"
    if main_process:  # the loop's notes (resuming after epoch N, weights adapted by --init-from) are for the user
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("effvit_nas.train").addHandler(handler)
        logging.getLogger("effvit_nas.train").setLevel(logging.INFO)
    if main_process:
        print(f"training {arch.name or arch.arch_id} at {settings.train_arch.resolution} px on {args.data} with the "
              f"{recipe_name} recipe ({recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.scaled_lr():.2e}); "
              f"out {out}/")
    with progress_bar("training", enabled=main_process) as progress:
        def report(row: dict) -> None:
            ema = f"  EMA {row['val_ema_top1']:.2f}%" if "val_ema_top1" in row else ""
            progress.write(f"epoch {row['epoch']:>3}: loss {row['train_loss']:.4f}  val top-1 {row['val_top1']:.2f}%"
                           f"{ema}  {row['train_img_per_s']:.0f} img/s")

        metrics = train(settings, progress=progress, on_epoch=report)
    if main_process:
        print(f"val top-1 {metrics['val_top1']:.2f}% (best {metrics['best_val_top1']:.2f}%) after "
              f"{metrics['epochs_done']} epochs; wrote {out}/checkpoint.pt, metrics.json, curves.png")
    return 0
