"""``effnas export ARCH.yaml [--onnx PATH] [--checkpoint CKPT]``: hand an architecture over."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import EffNasError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export an arch to ONNX (checked against torch) and timm kwargs")
    parser.add_argument("arch", metavar="ARCH", help="a preset (m0..m5) or an architecture YAML file")
    parser.add_argument("--onnx", default=None, help="write the BN-fused model as ONNX here")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to export (effnas train's checkpoint.pt, a state dict or {'model': ...})")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx, onnx_max_abs_diff, timm_kwargs
    from ..model import build_model
    from ..train.checkpoint import trained_model
    from ._common import load_arch

    arch = load_arch(args.arch)
    print(f"arch {arch}")
    if arch.is_paper_family():
        print(f"timm: timm.models.efficientvit_msra.EfficientVitMsra(**{timm_kwargs(arch)})")
    else:
        print(f"timm: not expressible (FFN ratios {list(arch.ffn_ratios)}; timm fixes 2); use effvit_nas.build_model")
    if args.onnx:
        if args.checkpoint:
            model, _, notes = trained_model(arch, args.checkpoint)
            for note in notes:
                print(f"checkpoint: {note}")
        else:
            model = build_model(arch)
        model = model.eval().fuse()
        path = export_onnx(model, Path(args.onnx), arch.resolution)
        diff = onnx_max_abs_diff(path, model, arch.resolution)
        if diff > 1e-3:
            path.unlink()
            raise EffNasError(f"ONNX must match torch within 1e-3, but differs by {diff:.2e}; nothing was written")
        print(f"wrote {path}: onnx.checker passed, max |onnxruntime - torch| = {diff:.2e}")
    return 0
