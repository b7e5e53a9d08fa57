import numpy as np
import pytest
import torch
from hypothesis import given, settings

from effvit_nas import Arch, build_model
from effvit_nas.arch import PRESETS
from effvit_nas.counting import count
from effvit_nas.export import export_onnx, onnx_max_abs_diff
from tests.model.test_timm_parity import randomise
from tests.strategies import space_archs

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


def images(arch: Arch, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_fuse_folds_every_batchnorm_with_the_same_outputs(name):
    arch = Arch.preset(name)
    model = randomise(build_model(arch))
    x = images(arch)
    with torch.no_grad():
        before = model(x)
        model.fuse()
        after = model(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_fuse_refuses_training_mode():
    with pytest.raises(RuntimeError, match="eval"):
        build_model(Arch.preset("m0")).fuse()


def test_initialisation_follows_the_paper():
    model = build_model(Arch.preset("m0"))
    block = model.stages[0].blocks[0]
    # residual branches that end in a BN start at zero, so a fresh block is the identity map ...
    for bn in (block.dw0.m.bn, block.ffn0.m.pw2.bn, block.mixer.m.attn.proj[1].bn):
        assert torch.count_nonzero(bn.weight) == 0
    # ... except the subsample's depthwise convs, which start at one
    assert torch.all(model.stages[1].downsample.res1[0].m.bn.weight == 1)
    assert model.head.linear.weight.std().item() == pytest.approx(0.02, rel=0.1)


@settings(max_examples=4, deadline=None)  # each exports ONNX (~2 s here); more examples add CI minutes, not cover
@given(arch=space_archs())
def test_random_archs_build_run_count_and_export(tmp_path_factory, arch):
    model = randomise(build_model(arch, num_classes=10))
    with torch.no_grad():
        out = model(images(arch, batch=1))
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    cost = count(arch, num_classes=10)
    assert cost.params == sum(p.numel() for p in model.parameters())
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", arch.resolution)
    assert onnx_max_abs_diff(path, model, arch.resolution) < 1e-4


@settings(max_examples=6, deadline=None)
@given(arch=space_archs())
def test_random_archs_fuse_exactly(arch):
    model = randomise(build_model(arch))
    x = images(arch, batch=1)
    with torch.no_grad():
        before = model(x)
        after = model.fuse()(x)
    np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=0, atol=1e-4)
