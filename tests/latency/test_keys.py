import torch
from hypothesis import given, settings

from effvit_nas import Arch
from effvit_nas.latency.blocks import build_block
from effvit_nas.latency.keys import block_keys, parse_key
from tests.strategies import space_archs


def test_m0_walks_into_the_papers_blocks():
    keys = block_keys(Arch.preset("m0"))
    kinds = [k.kind for k in keys]
    # stem, 1 block (3 keys), subsample (3), 2 blocks, subsample, 3 blocks, head
    assert len(keys) == 1 + 3 * 1 + 3 + 3 * 2 + 3 + 3 * 3 + 1 == 26
    assert kinds[0] == "stem" and kinds[-1] == "head" and kinds.count("merge") == 2 and kinds.count("attention") == 6
    assert str(keys[2]) == "attention:1-14-64-4-16-7-5.5.5.5"


@settings(max_examples=25, deadline=None)
@given(arch=space_archs())
def test_keys_round_trip_through_their_text(arch):
    for key in block_keys(arch, batch=4):
        assert parse_key(str(key)) == key and key.batch == 4
        assert len(key.features()) == len(key.feature_names)


@settings(max_examples=5, deadline=None)
@given(arch=space_archs())
def test_blocks_chain_into_the_network_shapes(arch):
    """Each key's module takes the previous one's output: the walker covers the network in order."""
    x = torch.randn(1, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        for key in block_keys(arch):
            assert tuple(x.shape) == key.input_shape(), key
            x = build_block(key)(x)
    assert tuple(x.shape) == (1, 1000)
