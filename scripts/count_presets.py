"""Params and MACs of M0–M5: our analytic count, torch's FlopCounterMode on our network, the paper.

Run:  python scripts/count_presets.py
Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from effvit_nas import Arch, build_model
from effvit_nas.arch import PRESETS
from effvit_nas.counting import count

# Paper / official README: params (M) and FLOPs (M; these are MACs).
PAPER = {"m0": (2.3, 79), "m1": (3.0, 167), "m2": (4.2, 201), "m3": (6.9, 263), "m4": (8.8, 299), "m5": (12.4, 522)}


def main() -> None:
    print("| model | params (ours) | params (torch) | params (paper) | MACs (ours) | MACs (torch) | MACs (paper) |")
    print("|---|---|---|---|---|---|---|")
    for name in sorted(PRESETS):
        arch = Arch.preset(name)
        model = build_model(arch).eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, arch.resolution, arch.resolution))
        torch_params = sum(p.numel() for p in model.parameters())
        cost = count(arch)
        paper_params, paper_macs = PAPER[name]
        print(f"| {name.upper()} | {cost.params:,} | {torch_params:,} | {paper_params}M | {cost.macs / 1e6:.2f}M "
              f"| {counter.get_total_flops() / 2e6:.2f}M | {paper_macs}M |")


if __name__ == "__main__":
    main()
