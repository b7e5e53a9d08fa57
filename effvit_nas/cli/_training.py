"""Flags and set-up shared by the commands that train (``effnas train``, ``effnas supernet train``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from ._common import parse_overrides


def add_recipe_flags(parser: argparse.ArgumentParser, default_recipe: str = "auto") -> None:
    parser.add_argument("--data", required=True,
                        help="digits, noisy-digits or shapes (built in), or an ImageFolder dir with train/ and val/ "
                             "(and an optional test/, scored once after the last epoch)")
    parser.add_argument("--recipe", default=default_recipe,
                        help="paper, small, screening, or auto (small for the built-in data, else paper)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (split over DDP processes)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate per 512 images (linear scaling)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any other recipe field, e.g. --set mixup=0 --set randaug=rand-m5-mstd0.5")


def add_process_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes per training process")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def recipe_from_args(args: argparse.Namespace) -> tuple[str, Any]:
    """The named recipe with the command line's changes."""
    from ..train import recipe_for

    recipe_name, recipe = recipe_for(args.recipe, args.data)
    flags = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr}
    changes = {**{k: str(v) for k, v in flags.items() if v is not None}, **parse_overrides(args.set)}
    return recipe_name, recipe.updated(changes)


def is_main_process() -> bool:
    """Rank 0 under torchrun (or no torchrun): the process that talks to the user."""
    return os.environ.get("RANK", "0") == "0"


def show_log(logger: str) -> None:
    """Print a library logger's notes (resuming after epoch N, weights adapted) on stderr, bare."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger(logger).addHandler(handler)
    logging.getLogger(logger).setLevel(logging.INFO)
