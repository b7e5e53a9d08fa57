"""``effnas train ARCH.yaml --data digits|PATH``: train a found arch with the paper's recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._training import add_process_flags, add_recipe_flags, is_main_process, recipe_from_args, show_log


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train an arch (the paper's recipe via timm); torchrun-ready")
    parser.add_argument("arch", metavar="ARCH", help="a preset (m0..m5) or an architecture YAML file")
    add_recipe_flags(parser)
    parser.add_argument("--img-size", type=int, default=None,
                        help="train at this resolution (default: the arch's); attention biases follow the windows")
    parser.add_argument("--out", default=None, help="output folder (default: runs/train-<arch>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    parser.add_argument("--init-from", default=None, help="start from these weights (e.g. a supernet subnet)")
    add_process_flags(parser)
    parser.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms (bitwise repeats)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .._io import check_out_dir
    from ..train import TrainSettings, train
    from ._common import load_arch, progress_bar

    arch = load_arch(args.arch)
    out = check_out_dir(Path(args.out) if args.out else Path("runs") / f"train-{arch.name or arch.arch_id}")
    recipe_name, recipe = recipe_from_args(args)
    settings = TrainSettings(arch=arch, data=args.data, recipe=recipe, out_dir=out, seed=args.seed,
                             workers=args.workers, device=args.device, img_size=args.img_size, init_from=args.init_from,
                             resume=args.resume, deterministic=args.deterministic, recipe_name=recipe_name)
    main_process = is_main_process()
    if main_process:  # the loop's notes (resuming after epoch N, weights adapted by --init-from) are for the user
        show_log("effvit_nas.train")
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
        held_out = metrics.get("test_top1")
        test = f"; test top-1 {held_out:.2f}% (held out)" if held_out is not None else ""
        print(f"val top-1 {metrics['val_top1']:.2f}% (best {metrics['best_val_top1']:.2f}%) after "
              f"{metrics['epochs_done']} epochs{test}; wrote {out}/checkpoint.pt, metrics.json, curves.png")
    return 0
