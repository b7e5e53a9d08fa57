"""Our network against timm's reference EfficientViT: same state-dict keys and shapes, same outputs.

Random weights with randomised BN statistics and attention biases, so a wrong residual, a swapped
child or a misplaced ReLU shows up in the outputs (with fresh init many branches start at zero)."""

import pytest
import torch
from hypothesis import given, settings
from timm.models.efficientvit_msra import EfficientVitMsra

from effvit_nas import Arch, build_model
from effvit_nas.arch import PRESETS
from effvit_nas.export import timm_kwargs
from tests.strategies import space_archs

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                n = module.num_features
                module.weight.copy_(1 + 0.3 * torch.randn(n, generator=gen))
                module.bias.copy_(0.3 * torch.randn(n, generator=gen))
                module.running_mean.copy_(0.3 * torch.randn(n, generator=gen))
                module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            if hasattr(module, "attention_biases"):
                module.attention_biases.copy_(torch.randn(module.attention_biases.shape, generator=gen))
    return model.eval()


def assert_parity(arch: Arch, reference: torch.nn.Module, batch: int = 2) -> None:
    reference = randomise(reference)
    ours = build_model(arch).eval()
    theirs = reference.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert all(ours.state_dict()[k].shape == v.shape for k, v in theirs.items())
    ours.load_state_dict(theirs, strict=True)
    x = torch.randn(batch, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference(x)
        # Two implementations of the same ops round differently in float32, more so in deep nets with
        # large outputs (a 12-block arch at 288 px differed by 1.7e-5); a wiring error is O(output).
        scale = max(1.0, expected.abs().max().item())
        torch.testing.assert_close(ours(x), expected, rtol=0, atol=5e-5 * scale)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_load_timm_state_dicts_strictly_with_equal_outputs(name):
    import timm

    assert_parity(Arch.preset(name), timm.create_model(f"efficientvit_{name}"))


@pytest.mark.parametrize("resolution", [160, 256])
def test_parity_holds_off_224_where_windows_pad(resolution):
    arch = Arch.preset("m0").replace(resolution=resolution)
    assert_parity(arch, EfficientVitMsra(**timm_kwargs(arch)))


@settings(max_examples=3, deadline=None)  # the M presets are checked one by one above; these add random ones
@given(arch=space_archs(paper_family=True))
def test_random_paper_family_archs_match_timm(arch):
    assert_parity(arch, EfficientVitMsra(**timm_kwargs(arch)), batch=1)
