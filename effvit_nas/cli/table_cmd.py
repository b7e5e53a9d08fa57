"""``effnas table build|list|show|validate``: latency tables measured on this machine."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TypeVar

from ..errors import EffNasError

T = TypeVar("T")

# Defaults per runtime and device: onnxruntime CPU at batch 1 on every core (deployment), torch CPU
# at batch 16 on one thread and torch CUDA at batch 2048 in fp16 (the paper's speed test settings).
DEFAULTS = {
    ("onnxruntime", "cpu"): dict(batch_size=1, threads=None, dtype="float32"),
    ("torch", "cpu"): dict(batch_size=16, threads=1, dtype="float32"),
    ("torch", "cuda"): dict(batch_size=2048, threads=1, dtype="float16"),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("table", help="build, inspect and validate latency tables")
    commands = parser.add_subparsers(dest="table_command", metavar="TABLE_COMMAND", parser_class=type(parser))

    build = commands.add_parser("build", help="measure a latency table on this machine (resumable)")
    build.add_argument("--target", required=True,
                       help="table name (written to latency_tables/NAME.json) or a .json path")
    build.add_argument("--runtime", choices=["onnxruntime", "torch"], default="onnxruntime")
    build.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    build.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores for "
                       "onnxruntime, 1 for torch, as the paper measured CPUs)")
    build.add_argument("--batch-size", type=int, default=None, help="default: 1 onnxruntime, 16 torch CPU, 2048 CUDA")
    build.add_argument("--dtype", choices=["float32", "float16"], default=None, help="default: float16 on CUDA")
    build.add_argument("--space", default=None, help="search space YAML (default: the built-in one)")
    build.add_argument("--calibration-archs", type=int, default=150, help="whole networks measured for calibration")
    build.add_argument("--max-wait", type=float, default=120.0,
                       help="seconds the build may wait in all for the machine to return to its usual speed")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--overwrite", action="store_true", help="replace an existing complete table")
    build.set_defaults(handler=run_build)

    listing = commands.add_parser("list", help="list the tables in latency_tables/")
    listing.set_defaults(handler=run_list)

    show = commands.add_parser("show", help="print a table's metadata")
    show.add_argument("target", help="table name or .json path")
    show.set_defaults(handler=run_show)

    validate = commands.add_parser("validate", help="measure random archs end to end and compare with predictions")
    validate.add_argument("--target", required=True, help="table name or .json path")
    validate.add_argument("--samples", type=int, default=30, help="random archs, none used by the calibration")
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--max-wait", type=float, default=120.0,
                          help="seconds to wait in all for the machine to return to its build-time speed")
    validate.add_argument("--out", default=None, help="folder for report.json and scatter.png "
                          "(default: validation/<target>)")
    validate.set_defaults(handler=run_validate)


def _given_or(value: T | None, default: T) -> T:
    """The flag's value if it was given at all: a 0 is the user's, for the library to refuse, not a
    cue to fall back to the default as ``value or default`` would."""
    return default if value is None else value


def run_build(args: argparse.Namespace) -> int:
    from ..latency.build import BuildSettings, build_table
    from ..latency.measure import RuntimeConfig
    from ..latency.table import table_path
    from ._common import load_space, progress_bar

    defaults = DEFAULTS.get((args.runtime, args.device))
    if defaults is None:
        raise EffNasError(f"device 'cuda' needs --runtime torch, but got --runtime {args.runtime}; "
                          "use --runtime torch --device cuda")
    # settings first: a bad number is refused before anything is looked at or measured
    config = RuntimeConfig(
        runtime=args.runtime, device=args.device,
        threads=_given_or(args.threads, defaults["threads"] or os.cpu_count() or 1),
        batch_size=_given_or(args.batch_size, defaults["batch_size"]), dtype=_given_or(args.dtype, defaults["dtype"]),
    )
    settings = BuildSettings(calibration_archs=args.calibration_archs, seed=args.seed, max_wait_s=args.max_wait)
    path = table_path(args.target)
    if path.exists() and not args.overwrite:
        raise EffNasError(f"table {str(path)!r} must not exist yet, but it does; pass --overwrite to measure it "
                          "again, or pick another --target")
    space = load_space(args.space)
    with progress_bar("measuring") as progress:
        table = build_table(path.stem, path, config, space, settings, progress=progress)
    cal = table.calibration
    print(f"wrote {path}: {len(table.entries)} blocks, {cal.archs} calibration networks "
          f"(median fit error {cal.median_abs_rel_err:.1%}), reference {table.reference_ms:.3f} ms, "
          f"{table.data['build']['seconds']:.0f} s")
    return 0


def run_list(args: argparse.Namespace) -> int:
    from ..latency.table import TABLES_DIR, LatencyTable, list_tables

    names = list_tables()
    if not names:
        print(f"no tables in {TABLES_DIR}; build one with: effnas table build --target NAME")
        return 0
    print(f"{'target':<36} {'runtime':<12} {'device':<6} {'batch':>5} {'threads':>7} {'blocks':>6}  hardware")
    for name in names:
        table = LatencyTable.load(name)
        r, hw = table.runtime, table.data["hardware"]
        hardware = hw.get("gpu") if r.device == "cuda" else f"{hw['cpu_model']} ({hw['cores']} cores)"
        print(f"{name:<36} {r.runtime:<12} {r.device:<6} {r.batch_size:>5} {r.threads:>7} {len(table.entries):>6}  "
              f"{hardware}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from ..latency.table import LatencyTable

    print(json.dumps(LatencyTable.load(args.target).summary(), indent=2))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from .._io import atomic_write_text
    from ..latency.table import LatencyTable
    from ..latency.validate import validate_table
    from ._common import progress_bar

    table = LatencyTable.load(args.target)
    out = Path(args.out) if args.out else Path("validation") / table.target
    with progress_bar("validating") as progress:
        report = validate_table(table, args.samples, seed=args.seed, max_wait_s=args.max_wait, progress=progress)
    atomic_write_text(out / "report.json", json.dumps(report.to_dict(), indent=1) + "\n")
    plot = report.plot(out / "scatter.png")
    print(f"{table.table_id}: {args.samples} unseen archs; reference now / at build x{report.reference_ratio:.3f}, "
          f"drift correction applied x{report.drift:.3f} (1 when within the reference's own noise)")
    if report.waited_s:
        print(f"waited {report.waited_s:.0f} s for the machine to return to its build-time speed")
    if abs(report.reference_ratio - 1) > 0.15:
        print("warning: this machine runs far from its speed during the build; the raw figures mix table "
              "error with that change, and the corrected ones assume it slows every operator alike")
    print(f"{'':<34} {'±5%':>6} {'±10%':>6} {'median':>7} {'worst':>7} {'Spearman':>9}")
    for label, s in report.stats().items():
        print(f"{label:<34} {s['within_5pct']:>6.0%} {s['within_10pct']:>6.0%} {s['median_abs_err']:>7.1%} "
              f"{s['worst_abs_err']:>7.1%} {s['spearman']:>9.3f}")
    print(f"wrote {out / 'report.json'} and {plot}")
    return 0
