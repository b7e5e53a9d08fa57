"""``effnas verify ARCH.yaml --target NAME --budget 2ms``: measure the real model on the target."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OVER_BUDGET = 1  # distinct from 2 (bad input): the check ran and the model failed it


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="measure an arch on the target; exit 1 if over budget")
    parser.add_argument("arch", metavar="ARCH", help="a preset (m0..m5) or an architecture YAML file")
    parser.add_argument("--target", required=True, help="latency table (name or .json) whose hardware this is")
    parser.add_argument("--budget", required=True, help="latency budget with a unit, e.g. 2ms")
    parser.add_argument("--checkpoint", default=None, help="trained weights (effnas train's checkpoint.pt)")
    parser.add_argument("--data", default=None, help="evaluate top-1 on this data's val split (digits, noisy-digits, "
                        "shapes or an ImageFolder DIR)")
    parser.add_argument("--out", default=None, help="report folder (default: runs/verify-<arch>-<target>)")
    parser.add_argument("--force", action="store_true", help="measure even on hardware that is not the table's")
    parser.add_argument("--rounds", type=int, default=5,
                        help="fresh processes timing the model (deployment rule); the verdict uses their median")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..units import parse_budget_ms
    from ..verify import REPORT_JSON, REPORT_MD, VerifySettings, verify
    from ._common import load_arch, load_table

    arch = load_arch(args.arch)
    budget_ms = parse_budget_ms(args.budget)
    table = load_table(args.target)
    out = Path(args.out) if args.out else Path("runs") / f"verify-{arch.name or arch.arch_id}-{table.target}"
    settings = VerifySettings(arch=arch, table=table, budget_ms=budget_ms, out_dir=out, checkpoint=args.checkpoint,
                              data=args.data, force=args.force, rounds=args.rounds)
    if args.force:
        sys.stderr.write("effnas: WARNING: --force: a mismatch between this machine and the table's is reported, "
                         "not refused\n")
    report = verify(settings, progress=lambda what: print(f"... {what}", flush=True))
    if report["forced_on_other_hardware"]:
        sys.stderr.write(f"effnas: WARNING: FORCED on other hardware: {report['forced_on_other_hardware']}\n")
    lat = report["latency"]
    predicted = f"{report['predicted_ms']:.3f} ms" if report["predicted_ms"] else "n/a"
    print(f"{report['verdict']}: measured {report['judged_ms']:.3f} ms vs budget {budget_ms:.3f} ms "
          f"(predicted {predicted}; machine at x{lat['reference_ms'] / lat['reference_at_build_ms']:.2f} of its "
          f"build-time speed)")
    if report["accuracy"]:
        print(f"top-1 {report['accuracy']['top1']:.2f}% on {report['accuracy']['val_images']} held-out images")
    print(f"wrote {out / REPORT_JSON}, {out / REPORT_MD}, {report['onnx']['path']}")
    return 0 if report["within_budget"] else OVER_BUDGET
