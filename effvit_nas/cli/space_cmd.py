"""``effnas space info [--space NAME|YAML] [--target TABLE]``: a search space's choices, size and extremes."""

from __future__ import annotations

import argparse

from ..arch import Arch
from ..counting import count
from ._common import human, load_space, load_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("space", help="inspect a search space")
    commands = parser.add_subparsers(dest="space_command", metavar="SPACE_COMMAND", parser_class=type(parser))
    info = commands.add_parser("info", help="print a search space's choices, size and smallest/largest archs")
    info.add_argument("--space", default=None, help="a shipped space's name (efficientvit_m, shapes) or a YAML file "
                      "(default: efficientvit_m)")
    info.add_argument("--target", default=None, help="latency table (name or .json): also print the predicted "
                      "latency of the smallest and largest archs, against M0's")
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
    table = load_table(args.target) if args.target else None
    reference_ms = table.predict_ms(Arch.preset("m0")) if table and table.space.contains(Arch.preset("m0")) else None
    for label, arch in (("smallest", space.smallest()), ("largest", space.largest())):
        cost = count(arch)
        latency = ""
        if table is not None:
            ms = table.predict_ms(arch)
            latency = f"  {ms:.3f} ms on {table.target}" + (f" ({ms / reference_ms:.2f}x M0's {reference_ms:.3f} ms)"
                                                           if reference_ms else "")
        print(f"{label:<11} {arch}  params {human(cost.params)}  MACs {human(cost.macs)}{latency}")
    return 0
