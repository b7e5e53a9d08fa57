"""``effnas table build|adapt|list|show|validate``: latency tables measured on this machine."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..errors import EffNasError


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..latency.adapt import AdaptSettings  # its defaults are the help's (no torch imported)

    parser = subparsers.add_parser("table", help="build, inspect and validate latency tables")
    commands = parser.add_subparsers(dest="table_command", metavar="TABLE_COMMAND", parser_class=type(parser))

    build = commands.add_parser("build", help="measure a latency table on this machine (resumable)")
    build.add_argument("--target", required=True,
                       help="the new table's name (written to NAME.json in the user's tables folder, "
                       "$EFFNAS_HOME/tables) or a .json path")
    build.add_argument("--runtime", default="onnxruntime", help="onnxruntime, openvino, torch, tensorrt "
                       "(effnas table runtimes lists them with their defaults)")
    build.add_argument("--device", default="cpu", help="cpu or cuda")
    build.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the runtime's)")
    build.add_argument("--batch-size", type=int, default=None, help="default: the runtime's on the device")
    build.add_argument("--dtype", default=None, help="float32 or float16 (default: the runtime's on the device)")
    build.add_argument("--space", default=None, help="search space YAML (default: the built-in one)")
    build.add_argument("--calibration-archs", type=int, default=None,
                       help="networks timed under the deployment rule to fit the calibration (default 48)")
    build.add_argument("--check-archs", type=int, default=None,
                       help="networks held out to check the table before it is written (default 20)")
    build.add_argument("--seconds", type=float, default=None, help="each measuring window, of the blocks and of the "
                       "networks (default 60): the figures are the fast state of bursts spread over it")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--accept-below-bar", action="store_true",
                       help="write the table even if its held-out networks miss the bar (it records that they did)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing complete table")
    build.set_defaults(handler=run_build)

    adapt = commands.add_parser("adapt", help="a table for this machine or runtime from another table and a few "
                                "networks measured here (about a minute; resumable)")
    adapt.add_argument("--from", dest="source", required=True, help="the table to adapt (name or .json path)")
    adapt.add_argument("--target", required=True, help="the new table's name (written to NAME.json in the user's "
                       "tables folder, $EFFNAS_HOME/tables) or a .json path")
    adapt.add_argument("--runtime", default=None, help="default: the source's")
    adapt.add_argument("--device", default=None, help="default: the source's")
    adapt.add_argument("--threads", type=int, default=None, help="default: the source's (another runtime or "
                       "device: that runtime's)")
    adapt.add_argument("--batch-size", type=int, default=None, help="default: as --threads")
    adapt.add_argument("--dtype", default=None, help="default: as --threads")
    adapt.add_argument("--space", default=None, help="search space YAML the new table must cover (refused when the "
                       "source does not)")
    adapt.add_argument("--networks", type=int, default=None, help="networks measured under the deployment rule "
                       f"(default {AdaptSettings.networks})")
    adapt.add_argument("--seconds", type=float, default=None,
                       help=f"the measuring window (default {AdaptSettings.rule.min_seconds:g}): the figures are the "
                            "fast state of bursts spread over it")
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--accept-below-bar", action="store_true",
                       help="write the table even if its leave-one-out error misses the bar (it records that)")
    adapt.add_argument("--overwrite", action="store_true", help="replace an existing complete table")
    adapt.set_defaults(handler=run_adapt)

    listing = commands.add_parser("list", help="list the tables --target finds: the user's, then those shipped "
                                  "with effvit-nas")
    listing.set_defaults(handler=run_list)

    runtimes = commands.add_parser("runtimes", help="list the runtimes, their devices and defaults")
    runtimes.set_defaults(handler=run_runtimes)

    show = commands.add_parser("show", help="print a table's metadata")
    show.add_argument("target", help="table name or .json path")
    show.set_defaults(handler=run_show)

    validate = commands.add_parser("validate", help="measure random archs end to end and compare with predictions")
    validate.add_argument("--target", required=True, help="table name or .json path")
    validate.add_argument("--samples", type=int, default=30, help="random archs, none used by the calibration")
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--seconds", type=float, default=None,
                          help="the measuring window (deployment rule; default 60)")
    validate.add_argument("--arch", action="append", default=[], metavar="YAML",
                          help="also validate this arch (repeatable): the corners or picks a search visits")
    validate.add_argument("--out", default=None, help="folder for report.json and scatter.png "
                          "(default: validation/<target>)")
    validate.set_defaults(handler=run_validate)


def run_build(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..latency.build import BuildSettings, TableBelowBar, build_table
    from ..latency.runtimes import runtime_class
    from ..latency.table import table_path
    from ._common import load_space, progress_bar

    # settings first: a bad number is refused before anything is looked at or measured
    config = runtime_class(args.runtime, args.device).config_for(
        args.device, threads=args.threads, batch_size=args.batch_size, dtype=args.dtype)
    default = BuildSettings(seed=args.seed)
    window = {"min_seconds": args.seconds} if args.seconds is not None else {}
    given = {"calibration_archs": args.calibration_archs, "check_archs": args.check_archs,
             "blocks": replace(default.blocks, **window), "rule": replace(default.rule, **window)}
    settings = replace(default, **{k: v for k, v in given.items() if v is not None})
    path = table_path(args.target)
    if path.exists() and not args.overwrite:
        raise EffNasError(f"table {str(path)!r} must not exist yet, but it does; pass --overwrite to measure it "
                          "again, or pick another --target")
    space = load_space(args.space)
    try:
        with progress_bar("measuring") as progress:
            table = build_table(path.stem, path, config, space, settings, progress=progress,
                                accept_below_bar=args.accept_below_bar)
    except TableBelowBar as exc:
        print(f"effnas: {exc}", file=sys.stderr)
        return 1
    cal, check, machine = table.calibration, table.data["deployment"]["check"], table.data["build"]["machine"]
    print(f"wrote {path}: {len(table.entries)} blocks, {cal.archs} calibration networks under the deployment rule, "
          f"reference {table.deployment_reference_ms:.3f} ms deployed, {table.data['build']['seconds']:.0f} s "
          f"measuring; this machine moved {machine['blocks']['moved']:.2f}x while the blocks were timed, "
          f"{machine['networks']['moved']:.2f}x while the networks were")
    verdict = "met the bar" if check["passed"] else f"BELOW THE BAR ({'; '.join(check['misses'])}), written as asked"
    print(f"check on {check['archs']} held-out networks: median error {check['median_abs_err']:.1%}, "
          f"{check['within_10pct']:.0%} within ±10%, worst {check['worst_abs_err']:.1%}: {verdict}")
    return 0


def run_adapt(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..latency.adapt import AdaptSettings, adapt_table, adapted_config, check_source
    from ..latency.build import TableBelowBar
    from ..latency.table import table_path
    from ._common import load_space, load_table, progress_bar

    default = AdaptSettings(seed=args.seed)
    given = {"networks": args.networks,
             "rule": replace(default.rule, min_seconds=args.seconds) if args.seconds is not None else None}
    settings = replace(default, **{k: v for k, v in given.items() if v is not None})
    source = load_table(args.source)
    config = adapted_config(source, runtime=args.runtime, device=args.device, threads=args.threads,
                            batch_size=args.batch_size, dtype=args.dtype)
    path = table_path(args.target)
    check_source(source, path)
    if path.exists() and not args.overwrite:
        raise EffNasError(f"table {str(path)!r} must not exist yet, but it does; pass --overwrite to adapt it "
                          "again, or pick another --target")
    if args.space:
        source.check_covers(load_space(args.space))
    try:
        with progress_bar("adapting") as progress:
            table = adapt_table(source, path.stem, path, config, settings, progress=progress,
                                accept_below_bar=args.accept_below_bar)
    except TableBelowBar as exc:
        print(f"effnas: {exc}", file=sys.stderr)
        return 1
    adapted, check = table.data["adapted"], table.data["deployment"]["check"]
    verdict = "met the bar" if check["passed"] else f"BELOW THE BAR ({'; '.join(check['misses'])}), written as asked"
    print(f"wrote {path}: adapted from {source.table_id} with {adapted['networks']} networks under the deployment "
          f"rule ({table.data['build']['seconds']:.0f} s measuring; this machine moved "
          f"{table.data['build']['machine']['networks']['moved']:.2f}x), transfer {adapted['transfer']['form']!r}")
    print(f"leave-one-out over those networks: median error {check['median_abs_err']:.1%}, "
          f"{check['within_10pct']:.0%} within ±10%, worst {check['worst_abs_err']:.1%}, Spearman "
          f"{check['spearman']:.3f}: {verdict}; check it on unseen archs with effnas table validate --target "
          f"{args.target}")
    _say_what_a_search_on_it_needs(len(table.residual_ratios()))
    return 0


def _say_what_a_search_on_it_needs(residuals: int) -> None:
    """An adapted table has one residual per network: fewer than the default confidence takes, and a
    search on it is refused until --confidence is lowered. Said now, not at the search."""
    from ..latency.table import residuals_needed
    from ..search import DEFAULT_CONFIDENCE

    needed = residuals_needed(DEFAULT_CONFIDENCE)
    if residuals < needed:
        highest = math.floor(100 * residuals / (residuals + 1)) / 100
        print(f"a search on it needs --confidence {highest:g} or lower (its {residuals} residuals are fewer than the "
              f"{needed} the default {DEFAULT_CONFIDENCE:g} takes; adapt with --networks {needed} for that)")


def run_list(args: argparse.Namespace) -> int:
    from ..latency.table import LatencyTable, list_tables, resolve_table_path, table_source
    from ..locations import SHIPPED_TABLES_DIR, user_tables_dir

    names = list_tables()
    print(f"tables --target finds: yours in {user_tables_dir()} (first), then those shipped in {SHIPPED_TABLES_DIR}")
    if not names:
        print("none; make one with: effnas table adapt --from TABLE --target NAME, or effnas table build --target NAME")
        return 0
    print(f"{'target':<30} {'from':<7} {'runtime':<11} {'device':<6} {'batch':>5} {'threads':>7}  {'hardware':<24} "
          "own check")
    for name in names:
        path = resolve_table_path(name)
        try:
            table = LatencyTable.load(path)
        except EffNasError as exc:  # one damaged file must not hide the others
            print(f"{name:<30} {table_source(path):<7} unreadable: {exc}")
            continue
        r, hw = table.runtime, table.data["hardware"]
        hardware = hw.get("gpu") if r.device == "cuda" else f"{hw['cpu_model']} ({hw['cores']} cores)"
        check = {True: "passed", False: "MISSED", None: "none"}[table.check_passed]
        print(f"{name:<30} {table_source(path):<7} {r.runtime:<11} {r.device:<6} {r.batch_size:>5} {r.threads:>7}  "
              f"{hardware:<24} {check}")
    print("(effnas table show NAME gives a table's check in full)")
    return 0


def run_runtimes(args: argparse.Namespace) -> int:
    from ..latency.runtimes import RUNTIMES, runtime_class

    runtime_class("onnxruntime")  # loads the plug-ins
    print(f"{'runtime':<12} {'device':<6} {'batch':>5} {'threads':>7} {'dtype':<8} usable here")
    for name, cls in sorted(RUNTIMES.items()):
        for device, default in cls.defaults.items():
            runtime = cls(cls.config_for(device))
            try:
                runtime.check_usable()
                usable = "yes"
            except EffNasError as exc:
                usable = f"no: {exc}"
            threads = "all" if default.threads is None else default.threads
            print(f"{name:<12} {device:<6} {default.batch_size:>5} {threads:>7} {default.dtype:<8} {usable}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..latency.table import LatencyTable

    print(json.dumps(LatencyTable.load(args.target).summary(), indent=2))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from .._io import atomic_write_text, check_out_dir
    from ..arch import Arch
    from ..latency.deploy import DeploymentRule
    from ..latency.validate import validate_table
    from ._common import load_table, progress_bar

    table = load_table(args.target)
    added = [Arch.from_yaml(p) for p in args.arch]
    rule = DeploymentRule() if args.seconds is None else DeploymentRule(min_seconds=args.seconds)
    # Checked before measuring: a validation takes minutes and must not end in an unwritable folder.
    out = check_out_dir(Path(args.out) if args.out else Path("validation") / table.target)
    with progress_bar("validating") as progress:
        report = validate_table(table, args.samples, seed=args.seed, rule=rule,
                                extra={"added": added} if added else None, progress=progress)
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=1) + "\n")
    plot = report.plot(out / "scatter.png")
    print(f"{table.table_id}: {len(report.rows)} archs under the deployment rule in {report.machine['seconds']:.0f} s; "
          f"this machine moved {report.machine['moved']:.2f}x during the measurement, its reference at "
          f"x{report.reference_ratio:.3f} of the table's")
    if abs(report.reference_ratio - 1) > 0.05:
        print("note: the reference's fast state differs from the table's by more than 5%: either the machine did not "
              "reach its fast state during this window (a longer --seconds meets it more surely) or its speed "
              "changed since the build; every figure below carries that")
    for group in report.groups():
        print(f"{group + ' archs':<34} {'±5%':>6} {'±10%':>6} {'median':>7} {'worst':>7} {'Spearman':>9}")
        for label, stats in report.stats(group).items():
            print(f"  {label:<32} {stats['within_5pct']:>6.0%} {stats['within_10pct']:>6.0%} "
                  f"{stats['median_abs_err']:>7.1%} {stats['worst_abs_err']:>7.1%} {stats['spearman']:>9.3f}")
    print(f"wrote {out / 'report.json'} and {plot}")
    return 0
