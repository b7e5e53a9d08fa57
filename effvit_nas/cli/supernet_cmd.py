"""``effnas supernet train --space YAML --data digits|PATH``: train the weight-sharing supernet once;
``effnas supernet eval ARCH --supernet CKPT``: a subnet's inherited accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._training import add_process_flags, add_recipe_flags, is_main_process, recipe_from_args, show_log


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("supernet", help="train a weight-sharing supernet; score subnets with it")
    commands = parser.add_subparsers(dest="supernet_command", metavar="SUBCOMMAND", required=True,
                                     parser_class=type(parser))
    train = commands.add_parser("train", help="sandwich-rule training with in-place distillation; torchrun-ready")
    train.add_argument("--space", default=None, help="search space YAML (default: the built-in one)")
    add_recipe_flags(train, default_recipe="auto")
    train.add_argument("--img-size", type=int, default=None,
                       help="train every subnet at this input size (default: each arch at its own resolution)")
    train.add_argument("--random-subnets", type=int, default=2,
                       help="random subnets per step between the largest and the smallest (default 2)")
    train.add_argument("--out", default=None, help="output folder (default: runs/supernet-<space>)")
    train.add_argument("--resume", action="store_true", help="continue the run in --out after its last epoch")
    add_process_flags(train)
    train.set_defaults(handler=run_train)

    evaluate = commands.add_parser("eval", help="inherited top-1 of archs after BN recalibration")
    evaluate.add_argument("arch", metavar="ARCH", nargs="+", help="presets (m0..m5) or architecture YAML files")
    evaluate.add_argument("--supernet", required=True, help="supernet.pt from effnas supernet train")
    evaluate.set_defaults(handler=run_eval)


def run_train(args: argparse.Namespace) -> int:
    from .._io import check_out_dir
    from ._common import load_space, progress_bar

    space = load_space(args.space)
    out = check_out_dir(Path(args.out) if args.out else Path("runs") / f"supernet-{space.name}")
    recipe_name, recipe = recipe_from_args(args)
    from ..supernet import SUPERNET_CHECKPOINT, SupernetSettings, train_supernet  # torch: after the checks
    settings = SupernetSettings(space=space, data=args.data, recipe=recipe, out_dir=out, img_size=args.img_size,
                                random_subnets=args.random_subnets, seed=args.seed, workers=args.workers,
                                device=args.device, resume=args.resume, recipe_name=recipe_name)
    main_process = is_main_process()
    if main_process:
        show_log("effvit_nas.supernet")
        size = f"{args.img_size} px" if args.img_size else "each arch's resolution"
        print(f"training the supernet of {space.name} at {size} on {args.data} with the {recipe_name} recipe "
              f"({recipe.epochs} epochs, batch {recipe.batch_size}, lr {recipe.scaled_lr():.2e}, "
              f"{args.random_subnets + 2} subnets per step); out {out}/")
    with progress_bar("supernet", enabled=main_process) as progress:
        def report(row: dict) -> None:
            progress.write(f"epoch {row['epoch']:>3}: loss {row['train_loss']:.4f} / distill {row['distill_loss']:.4f}"
                           f"  largest {row['val_top1_largest']:.2f}%  smallest {row['val_top1_smallest']:.2f}%")

        summary = train_supernet(settings, progress=progress, on_epoch=report)
    if main_process:
        print(f"largest {summary['val_top1_largest']:.2f}%, smallest {summary['val_top1_smallest']:.2f}% after "
              f"{summary['epochs_done']} epochs; wrote {out}/{SUPERNET_CHECKPOINT}, metrics.json, curves.png")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ..estimators import create_estimator
    from ._common import load_arch

    archs = [load_arch(a) for a in args.arch]
    estimator = create_estimator("supernet", checkpoint=args.supernet)
    for spec, arch in zip(args.arch, archs):
        print(f"{estimator.score(arch):6.2f}%  {spec}  {arch}")
    return 0
