"""``effnas arch info m0|ARCH.yaml``: the config, params and MACs of one architecture."""

from __future__ import annotations

import argparse

from ..counting import count
from ._common import human, load_arch, load_space, load_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("arch", help="inspect an architecture")
    commands = parser.add_subparsers(dest="arch_command", metavar="ARCH_COMMAND", parser_class=type(parser))
    info = commands.add_parser("info", help="print an architecture's config, params and MACs")
    info.add_argument("arch", metavar="ARCH", help="a preset (m0..m5) or an architecture YAML file")
    info.add_argument(
        "--space", default=None, help="search space YAML to check membership in (default: the built-in one)"
    )
    info.add_argument("--num-classes", type=int, default=1000, help="classifier size for the counts (default 1000)")
    info.add_argument("--target", action="append", default=[],
                      help="latency table (name or .json) to predict the latency on; repeatable")
    info.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    arch = load_arch(args.arch)
    space = load_space(args.space)
    cost = count(arch, num_classes=args.num_classes)
    reason = space.why_not(arch)
    rows = [
        ("name", arch.name or "-"),
        ("arch id", arch.arch_id),
        ("resolution", arch.resolution),
        ("widths", list(arch.widths)),
        ("depths", list(arch.depths)),
        ("heads", list(arch.heads)),
        ("key dims", list(arch.key_dims)),
        ("ffn ratios", list(arch.ffn_ratios)),
        ("windows", list(arch.window_sizes)),
        ("q kernels", list(arch.kernels)),
        ("stage sizes", list(arch.stage_resolutions)),
        ("params", f"{human(cost.params)} ({cost.params:,})"),
        ("MACs", f"{human(cost.macs)} ({cost.macs:,})"),
        (f"in space {space.name}", "yes" if reason is None else f"no: {reason}"),
    ]
    for target in args.target:
        table = load_table(target)
        r = table.runtime
        rows.append((f"latency on {table.target}", f"{table.predict_ms(arch):.3f} ms predicted "
                     f"({r.runtime} {r.device}, batch {r.batch_size}, {r.threads} threads)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
