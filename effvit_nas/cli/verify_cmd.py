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
    parser.add_argument("--budget", required=True, help="a time (2ms) or a model (m1, 0.8xm2, m1@96: no slower than "
                        "that model here, measured beside it)")
    parser.add_argument("--checkpoint", default=None, help="trained weights (effnas train's checkpoint.pt)")
    parser.add_argument("--data", default=None, help="evaluate top-1 on this data's val split (digits, noisy-digits, "
                        "shapes or an ImageFolder DIR)")
    parser.add_argument("--out", default=None, help="report folder (default: runs/verify-<arch>-<target>)")
    parser.add_argument("--force", action="store_true", help="measure even on hardware that is not the table's")
    parser.add_argument("--seconds", type=float, default=None,
                        help="the measuring window (deployment rule; default 60): the figure is the fast state of "
                             "the model's bursts over it")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..budget import parse_budget
    from ..latency.deploy import DeploymentRule
    from ..verify import REPORT_JSON, REPORT_MD, VerifySettings, verify
    from ._common import load_arch, load_table

    arch = load_arch(args.arch)
    budget = parse_budget(args.budget)
    rule = DeploymentRule() if args.seconds is None else DeploymentRule(min_seconds=args.seconds)
    table = load_table(args.target)
    out = Path(args.out) if args.out else Path("runs") / f"verify-{arch.name or arch.arch_id}-{table.target}"
    settings = VerifySettings(arch=arch, table=table, budget=budget, out_dir=out, checkpoint=args.checkpoint,
                              data=args.data, force=args.force, rule=rule)
    if args.force:
        sys.stderr.write("effnas: WARNING: --force: a mismatch between this machine and the table's is reported, "
                         "not refused\n")
    report = verify(settings, progress=lambda what: print(f"... {what}", flush=True))
    if report["forced_on_other_hardware"]:
        sys.stderr.write(f"effnas: WARNING: FORCED on other hardware: {report['forced_on_other_hardware']}\n")
    lat = report["latency"]
    predicted = f"{report['predicted_ms']:.3f} ms" if report["predicted_ms"] else "n/a"
    model = f" ({budget.describe()} measured beside it)" if budget.model is not None else ""
    print(f"{report['verdict']}: measured {report['judged_ms']:.3f} ms vs budget {report['budget_ms']:.3f} ms{model} "
          f"(predicted {predicted}); this machine moved {lat['machine']['moved']:.2f}x during the measurement, its "
          f"reference at x{lat['reference_ratio']:.2f} of the table's")
    if report["accuracy"]:
        print(f"top-1 {report['accuracy']['top1']:.2f}% on {report['accuracy']['val_images']} held-out images")
    print(f"wrote {out / REPORT_JSON}, {out / REPORT_MD}, {report['onnx']['path']}")
    return 0 if report["within_budget"] else OVER_BUDGET
