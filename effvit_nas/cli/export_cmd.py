"""``effnas export ARCH.yaml [--onnx PATH] [--checkpoint CKPT | --from-supernet CKPT --out PATH]``:
hand an architecture over (ONNX, timm kwargs, or the subnet's weights cut from a trained supernet)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EffNasError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export an arch to ONNX (checked against torch) and timm kwargs")
    parser.add_argument("arch", metavar="ARCH", help="a preset (m0..m5) or an architecture YAML file")
    parser.add_argument("--onnx", default=None, help="write the BN-fused model as ONNX here")
    weights = parser.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", default=None,
                         help="weights to export (effnas train's checkpoint.pt, a state dict or {'model': ...})")
    weights.add_argument("--from-supernet", default=None, metavar="CKPT",
                         help="cut the arch's weights from this supernet.pt (BN recalibrated) and write them to --out")
    parser.add_argument("--out", default=None,
                        help="checkpoint written by --from-supernet, a file that does not exist yet "
                        "(default: runs/subnet-<arch>/checkpoint.pt)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .._io import check_out_file
    from ..export import timm_kwargs
    from ._common import load_arch

    if args.out and not args.from_supernet:
        raise EffNasError("--out names the checkpoint --from-supernet writes, but no --from-supernet was given; "
                          "add --from-supernet CKPT or drop --out")
    arch = load_arch(args.arch)
    out = None
    if args.from_supernet:  # both paths checked before any work, so a bad one costs nothing
        out = Path(args.out) if args.out else Path("runs") / f"subnet-{arch.name or arch.arch_id}" / "checkpoint.pt"
        check_out_file(out, "--out", overwrite=False)
    if args.onnx:
        check_out_file(args.onnx, "--onnx")
    print(f"arch {arch}")
    given = args.arch if Path(args.arch).is_file() else args.arch.lower()
    if arch.is_paper_family():
        print(f"timm: timm.models.efficientvit_msra.EfficientVitMsra(**{timm_kwargs(arch)})")
    else:
        print(f"timm: EfficientVitMsra cannot express it (FFN ratios {list(arch.ffn_ratios)}; timm fixes 2)")
    # every arch, through timm's registry (effvit_nas/timm_model.py): timm's factory and train.py build it
    print(f"timm registry: import effvit_nas.timm_model; timm.create_model('effvit_nas', arch={given!r}); "
          f"timm's train.py: python -m effvit_nas.timm_model train.py --model effvit_nas --model-kwargs arch={given}")
    checkpoint = args.checkpoint
    if out is not None:
        from ..supernet import export_subnet

        _, checkpoint = export_subnet(arch, args.from_supernet, out)
        print(f"wrote {checkpoint}: the subnet's weights from {args.from_supernet} (BN recalibrated); fine-tune with "
              f"effnas train {args.arch} --init-from {checkpoint}")
    if args.onnx:
        from ..export import export_arch_onnx

        path, diff, notes = export_arch_onnx(arch, args.onnx, checkpoint)
        for note in notes:
            print(f"checkpoint: {note}")
        print(f"wrote {path}: onnx.checker passed, max |onnxruntime - torch| = {diff:.2e}")
    return 0
