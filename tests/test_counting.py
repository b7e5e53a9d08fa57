import pytest
import torch
from hypothesis import given, settings
from torch.utils.flop_counter import FlopCounterMode

from effvit_nas import Arch, build_model
from effvit_nas.counting import count
from tests.strategies import space_archs

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it

# The paper's Table (params, "FLOPs" which are MACs), and timm's exact parameter counts.
PAPER = {
    "m0": (2_349_436, 79e6), "m1": (2_980_560, 167e6), "m2": (4_187_554, 201e6),
    "m3": (6_900_722, 263e6), "m4": (8_804_228, 299e6), "m5": (12_473_772, 522e6),
}


def measured(arch: Arch) -> tuple[int, int]:
    model = build_model(arch).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, arch.resolution, arch.resolution))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() // 2


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_match_the_paper(name):
    params, macs = PAPER[name]
    cost = count(Arch.preset(name))
    assert cost.params == params
    assert round(cost.macs / 1e6) == macs / 1e6


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_match_torch(name):
    arch = Arch.preset(name)
    assert (count(arch).params, count(arch).macs) == measured(arch)


@settings(max_examples=15, deadline=None)
@given(arch=space_archs())
def test_random_archs_match_torch_exactly(arch):
    assert (count(arch).params, count(arch).macs) == measured(arch)
