"""The supernet's weight sharing: subnets equal their extracted models, and share the documented parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effvit_nas import Arch
from effvit_nas.errors import InvalidArchError
from effvit_nas.supernet import Supernet, recalibrate_bn

pytestmark = pytest.mark.slow  # trains, measures or spawns processes: `pytest -m "not slow"` skips it


@pytest.fixture(scope="module")
def supernet(space):
    """The default space's supernet with every weight and BN statistic random, so nothing is trivially 0/1."""
    torch.manual_seed(0)
    net = Supernet.from_space(space, num_classes=10)
    with torch.no_grad():
        for tensor in net.parameters():
            tensor.normal_(0.0, 0.05 if tensor.dim() > 1 else 0.3)
        for name, tensor in net.named_buffers():
            if name.endswith("running_mean"):
                tensor.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
    return net


def _archs(space, count=8):
    rng = np.random.default_rng(7)
    sampled = [space.sample(rng) for _ in range(count)]
    return [space.largest(), space.smallest(), Arch.preset("m1"), *sampled]


def test_every_subnet_computes_exactly_its_extracted_model(supernet, space):
    for arch in _archs(space):
        x = torch.randn(2, 3, arch.resolution, arch.resolution)
        model = supernet.extract(arch)
        supernet.eval(), model.eval()
        with torch.no_grad():
            diff = (supernet(x, arch) - model(x)).abs().max().item()
        assert diff <= 1e-5, (arch, diff)


def test_train_mode_outputs_and_gradients_match_too(supernet, space):
    arch = space.sample(3).replace(resolution=128)
    x = torch.randn(4, 3, 128, 128)
    model = supernet.extract(arch).train()
    supernet.train()
    try:
        ours, theirs = supernet(x, arch), model(x)
        assert (ours - theirs).abs().max().item() <= 1e-5
        ours.square().sum().backward()
        theirs.square().sum().backward()
    finally:
        supernet.eval()
    name = "stages.1.blocks.0.ffn0.m.pw1.conv.weight"
    grad = dict(supernet.named_parameters())[name].grad
    ref = dict(model.named_parameters())[name].grad
    assert torch.allclose(grad[: ref.shape[0], : ref.shape[1]], ref, atol=1e-5)
    assert grad[ref.shape[0]:].abs().sum() == 0 and grad[:, ref.shape[1]:].abs().sum() == 0  # nothing else moved
    supernet.zero_grad(set_to_none=True)


def test_the_shared_parts_are_the_documented_ones(supernet, space):
    full = dict(supernet.named_parameters())
    arch = Arch.preset("m1")  # stage 2: width 144, 3 heads (value dim 48), key dim 16, kernels 7,5,3
    state = supernet.extract(arch).state_dict()
    max_kd = max(space.stages[1].key_dims)
    qkv = "stages.1.blocks.0.mixer.m.attn.qkvs.1.conv.weight"
    rows = [*range(16), *range(max_kd, max_kd + 16), *range(2 * max_kd, 2 * max_kd + 48)]
    assert torch.equal(state[qkv], full[qkv][rows, :48])  # q | k | v sections, each a prefix
    qconv = "stages.1.blocks.0.mixer.m.attn.dws.2.conv.weight"  # head 3 of M1: kernel 3 inside the 7x7
    assert torch.equal(state[qconv], full[qconv][:16, :, 2:5, 2:5])
    bias = "stages.0.blocks.0.mixer.m.attn.attention_biases"  # window 7; the supernet's stage-1 table is 14x14
    side = round(full[bias].shape[1] ** 0.5)
    expected = full[bias][:2].reshape(2, side, side)[:, :7, :7].reshape(2, 49)  # bias by offset (|dy|, |dx|)
    assert torch.equal(state[bias], expected)
    ffn = "stages.2.blocks.1.ffn1.m.pw2.conv.weight"
    assert torch.equal(state[ffn], full[ffn][:192, :384])  # plain prefix


def test_a_deeper_or_wider_subnet_contains_the_smaller_ones_weights(supernet):
    small = Arch.preset("m0")
    big = small.replace(depths=(1, 3, 4), widths=(64, 128, 256))
    small_state, big_state = supernet.subnet_state_dict(small), supernet.subnet_state_dict(big)
    for name, tensor in small_state.items():
        if name.startswith("stages.2") or name.startswith("head"):
            continue  # stage 3 widths differ: those are prefixes, checked above
        assert torch.equal(big_state[name], tensor), name


def test_training_a_subnet_updates_only_its_bn_statistics(supernet, space):
    arch = Arch.preset("m1")
    name = "stages.1.blocks.0.mixer.m.attn.qkvs.0.bn.running_mean"  # a gathered (q|k|v) buffer
    before = dict(supernet.named_buffers())[name].clone()
    supernet.train()
    try:
        with torch.no_grad():
            supernet(torch.randn(2, 3, 224, 224), arch)
    finally:
        supernet.eval()
    after = dict(supernet.named_buffers())[name]
    max_kd = max(space.stages[1].key_dims)
    used = torch.zeros_like(before, dtype=torch.bool)
    used[:16] = used[max_kd:max_kd + 16] = used[2 * max_kd:2 * max_kd + 48] = True
    assert not torch.equal(after[used], before[used])  # written back through the gather
    assert torch.equal(after[~used], before[~used])


def test_archs_it_has_no_weights_for_are_refused(supernet):
    with pytest.raises(InvalidArchError, match="supernet's space"):
        supernet.extract(Arch.preset("m0").replace(widths=(72, 128, 192)))
    with pytest.raises(InvalidArchError, match="at most"):
        supernet(torch.zeros(1, 3, 320, 320), Arch.preset("m0").replace(resolution=320))
    assert supernet.extract(Arch.preset("m0").replace(resolution=64)) is not None  # below: just a smaller input


def test_recalibration_measures_the_statistics_of_the_given_batches(supernet):
    model = supernet.extract(Arch.preset("m0").replace(resolution=64))
    batches = [torch.randn(8, 3, 64, 64) * 2 + 1 for _ in range(3)]
    recalibrate_bn(model, batches)
    assert not model.training
    first = model.patch_embed.conv1
    with torch.no_grad():
        outputs = torch.cat([first.conv(b) for b in batches])
    assert torch.allclose(first.bn.running_mean, outputs.mean((0, 2, 3)), atol=1e-4)
    assert first.bn.momentum == 0.1  # restored
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate_bn(model, [])


def test_index_tensors_are_made_once_per_arch_on_the_supernet_s_device(supernet):
    """Made per call on the CPU, they would be hundreds of blocking copies to a GPU each forward."""
    arch = Arch.preset("m1")
    subnet = supernet._subnet(arch)
    first, again = (supernet._subnet_tensors(supernet._subnet(arch), supernet._full) for _ in range(2))
    assert subnet.bias_indices and all(first[n] is again[n] for n in subnet.bias_indices)
    gathered = [p for s in subnet.selections.values() for p in s if not isinstance(p, slice)]
    assert gathered and all(p.device == next(supernet.parameters()).device for p in gathered)
