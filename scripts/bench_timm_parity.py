"""Parity with timm's EfficientViT, as figures: max |ours - timm| per preset, before and after fuse().

Run:  python scripts/bench_timm_parity.py      (writes docs/results/timm_parity.json)

The same set-up as tests/model/test_timm_parity.py (which asserts the bounds): timm's model with
randomised weights, BN statistics and attention biases, its state dict loaded into ours with
strict=True, a batch of 2 random images at the preset's resolution.
"""

from __future__ import annotations

import sys
from pathlib import Path

import timm
import torch
from _results import save_result

from effvit_nas import Arch, build_model
from effvit_nas.arch import PRESETS

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' randomiser, not a copy of it
from tests.model.test_timm_parity import randomise  # noqa: E402


def max_differences(name: str) -> dict[str, float]:
    arch = Arch.preset(name)
    torch.manual_seed(0)  # timm initialises the weights from the global generator
    reference = randomise(timm.create_model(f"efficientvit_{name}"))
    ours = build_model(arch).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        plain = (ours(x) - expected).abs().max().item()
        fused = (ours.fuse()(x) - expected).abs().max().item()
    return {"max_abs_diff": plain, "max_abs_diff_fused": fused, "max_abs_output": expected.abs().max().item()}


def main() -> None:
    rows = {name: max_differences(name) for name in sorted(PRESETS)}
    print("| model | max abs diff | after fuse() | max abs output |\n|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name.upper()} | {row['max_abs_diff']:.1e} | {row['max_abs_diff_fused']:.1e} | "
              f"{row['max_abs_output']:.2f} |")
    save_result("timm_parity", "python scripts/bench_timm_parity.py", {"presets": rows})


if __name__ == "__main__":
    main()
