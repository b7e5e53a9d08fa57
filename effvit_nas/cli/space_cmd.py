"""``effnas space info [--space YAML]``: a search space's choices, size and extremes."""

from __future__ import annotations

import argparse

from ..counting import count
from ._common import human, load_space


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("space", help="inspect a search space")
    commands = parser.add_subparsers(dest="space_command", metavar="SPACE_COMMAND", parser_class=type(parser))
    info = commands.add_parser("info", help="print a search space's choices, size and smallest/largest archs")
    info.add_argument("--space", default=None, help="search space YAML (default: the built-in one)")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    space = load_space(args.space)
    print(f"space       {space.name}  (content hash {space.content_hash})")
    print(f"size        {space.size():,} distinct architectures ({space.size():.2e})")
    print(f"resolution  {list(space.resolutions)}")
    print(f"kernels     {list(space.kernels)}")
    for i, s in enumerate(space.stages, 1):
        print(f"stage {i}     width {list(s.widths)} depth {list(s.depths)} heads {list(s.heads)} "
              f"key_dim {list(s.key_dims)} ffn {list(s.ffn_ratios)} window {list(s.window_sizes)}")
    for label, arch in (("smallest", space.smallest()), ("largest", space.largest())):
        cost = count(arch)
        print(f"{label:<11} {arch}  params {human(cost.params)}  MACs {human(cost.macs)}")
    return 0
