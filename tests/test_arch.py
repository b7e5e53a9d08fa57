import pytest
import yaml
from hypothesis import given, settings

from effvit_nas import Arch, ConfigFileError, InvalidArchError, UnknownNameError
from effvit_nas.arch import PRESETS
from tests.strategies import space_archs

PAPER = {  # Liu et al. 2023, Table: embed dims, depths, heads, q-conv kernels (key dim 16, window 7)
    "m0": ((64, 128, 192), (1, 2, 3), (4, 4, 4), (5, 5, 5, 5)),
    "m1": ((128, 144, 192), (1, 2, 3), (2, 3, 3), (7, 5, 3)),
    "m2": ((128, 192, 224), (1, 2, 3), (4, 3, 2), (7, 5, 3, 3)),
    "m3": ((128, 240, 320), (1, 2, 3), (4, 3, 4), (5, 5, 5, 5)),
    "m4": ((128, 256, 384), (1, 2, 3), (4, 4, 4), (7, 5, 3, 3)),
    "m5": ((192, 288, 384), (1, 3, 4), (3, 3, 4), (7, 5, 3, 3)),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_are_the_papers_configs(name):
    arch = Arch.preset(name)
    widths, depths, heads, kernels = PAPER[name]
    assert (arch.widths, arch.depths, arch.heads, arch.kernels) == (widths, depths, heads, kernels)
    assert arch.resolution == 224 and arch.key_dims == (16, 16, 16) and arch.ffn_ratios == (2, 2, 2)
    assert arch.stage_resolutions == (14, 7, 4)
    assert arch.window_sizes == (7, 7, 4)  # window 7 on the 4x4 stage-3 map is the whole map
    assert arch.value_dims == tuple(w // h for w, h in zip(widths, heads))


def test_preset_lookup_is_case_insensitive_and_unknown_names_list_the_valid_ones():
    assert Arch.preset("M3") == Arch.preset("efficientvit_m3")
    with pytest.raises(UnknownNameError, match=r"one of \['m0', 'm1', 'm2', 'm3', 'm4', 'm5'\].*'m9'"):
        Arch.preset("m9")


def test_name_is_a_label_not_identity():
    a = Arch.preset("m0")
    b = a.replace(name="something-else")
    assert a == b and hash(a) == hash(b) and a.arch_id == b.arch_id


def test_unused_kernels_and_oversized_windows_are_canonicalised():
    m1 = Arch.preset("m1")
    assert m1 == m1.replace(kernels=(7, 5, 3, 3, 3))
    assert m1 == m1.replace(window_sizes=(7, 7, 14))
    assert m1 != m1.replace(window_sizes=(14, 7, 4))  # 14 covers the 14x14 stage-1 map: another network


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(widths=(60, 128, 192)), r"stage 1 width must be a positive multiple of 8.*60"),
        (dict(heads=(4, 5, 4)), r"stage 2 width must be divisible by its heads.*width=128, heads=5"),
        (dict(kernels=(5, 5)), r"kernels must have one entry per head.*\(4\), but got 2"),
        (dict(kernels=(5, 4, 5, 5)), r"kernels must be odd"),
        (dict(resolution=200), r"resolution must be a multiple of 16.*200"),
        (dict(depths=(1, 0, 3)), r"stage 2 depth must be at least 1"),
        (dict(ffn_ratios=(2, 2, 1.3)), r"stage 3 ffn_ratio .*whole number.*1.3"),
        (dict(widths=(64, 128)), r"widths must have one entry per stage \(3\), but got 2"),
        (dict(key_dims=(16, "16", 16)), r"key_dims\[1\] must be an integer, but got '16'"),
        (dict(window_sizes=(0, 7, 7)), r"stage 1 window_size must be at least 1"),
    ],
)
def test_invalid_archs_say_what_must_hold(change, message):
    with pytest.raises(InvalidArchError, match=message) as info:
        Arch.preset("m0").replace(**change)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_yaml_round_trip_of_presets(tmp_path, name):
    arch = Arch.preset(name)
    path = tmp_path / "arch.yaml"
    arch.to_yaml(path, metadata={"latency_ms": 1.5})
    loaded = Arch.from_yaml(path)
    assert loaded == arch and loaded.name == arch.name
    assert yaml.safe_load(path.read_text())["metadata"] == {"latency_ms": 1.5}


@settings(max_examples=50, deadline=None)
@given(arch=space_archs())
def test_yaml_round_trip_of_random_archs(tmp_path_factory, arch):
    path = tmp_path_factory.mktemp("rt") / "arch.yaml"
    arch.to_yaml(path)
    assert Arch.from_yaml(path) == arch
    assert Arch.from_dict(arch.to_dict()).arch_id == arch.arch_id


@pytest.mark.parametrize(
    "text, message",
    [
        ("resolution: [224\n", r"must be valid YAML, but it fails at line 2"),
        ("- 1\n- 2\n", r"must hold a mapping .* but holds list"),
        ("", r"must hold a mapping .* but holds NoneType"),
    ],
)
def test_unparsable_yaml_gives_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=message) as info:
        Arch.from_yaml(path)
    assert "\n" not in str(info.value)


def test_unknown_keys_missing_keys_and_schema_version_are_refused(tmp_path):
    good = Arch.preset("m0").to_dict()
    path = tmp_path / "a.yaml"
    for data, message in (
        ({**good, "widht": [1]}, r"unknown key\(s\) \['widht'\]"),
        ({k: v for k, v in good.items() if k != "depths"}, r"must have the keys \['depths'\]"),
        ({**good, "schema_version": 99}, r"schema_version 1, but has 99"),
    ):
        path.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigFileError, match=message):
            Arch.from_yaml(path)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigFileError, match=r"must exist, but .*nope.yaml' was not found"):
        Arch.from_yaml(tmp_path / "nope.yaml")


def test_bounds_are_ten_times_the_default_spaces_largest(space):
    from effvit_nas.arch import BOUND_FACTOR, DEFAULT_SPACE_MAX, MAX_KNOB, MAX_MACS, MAX_PARAMS
    from effvit_nas.counting import count

    largest = {"resolution": max(space.resolutions), "kernel": max(space.kernels)}
    for stage in space.stages:
        for knob, choices in stage.by_knob():
            largest[knob] = max(largest.get(knob, 0), max(choices))
    assert DEFAULT_SPACE_MAX == largest
    assert all(MAX_KNOB[k] == BOUND_FACTOR * v for k, v in largest.items() if k != "window_size")
    assert largest["window_size"] < MAX_KNOB["window_size"] < BOUND_FACTOR * largest["window_size"]
    cost = count(space.largest())
    assert (MAX_PARAMS, MAX_MACS) == (BOUND_FACTOR * cost.params, BOUND_FACTOR * cost.macs)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(depths=(1, 2, 100_000_000)), r"^stage 3 depth must be at most 50 \(.*\), but got 100000000;"),
        (dict(resolution=100_000), r"^resolution must be at most 2880 \(.*\), but got 100000;"),
        (dict(widths=(64, 1_000_000, 192)), r"^stage 2 width must be at most 5120 \(.*\), but got 1000000;"),
        (dict(heads=(4, 4, 64), widths=(64, 128, 256)), r"^stage 3 heads must be at most 60 .*got 64"),
        (dict(key_dims=(16, 512, 16)), r"^stage 2 key_dim must be at most 320 .*got 512"),
        (dict(ffn_ratios=(50, 2, 2)), r"^stage 1 ffn_ratio must be at most 40 .*got 50"),
        (dict(window_sizes=(7, 7, 1000)), r"^stage 3 window_size must be at most 32 .*got 1000"),
        (dict(kernels=(5, 5, 5, 101)), r"^kernels\[3\] must be at most 70 .*got 101"),
        (dict(kernels=(3,) * 1000), r"^kernels must list at most 60 entries .*got 1000"),
        # each knob within its bound, together far beyond: the whole network is bounded too
        (dict(widths=(64, 5120, 5120), depths=(1, 50, 50)), r"^arch must have at most 452M parameters .*but has"),
        (dict(resolution=2880, widths=(512, 512, 512)), r"^arch must have at most 33,378M MACs .*but has"),
    ],
)
def test_oversized_archs_are_refused_with_knob_bound_and_value(change, message):
    with pytest.raises(InvalidArchError, match=message) as info:
        Arch.preset("m0").replace(**change)
    assert "\n" not in str(info.value)


def test_an_oversized_yaml_is_refused_when_read(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump({**Arch.preset("m0").to_dict(), "depths": [1, 2, 100_000_000]}))
    with pytest.raises(InvalidArchError, match=r"stage 3 depth must be at most 50"):
        Arch.from_yaml(path)


def test_the_default_space_and_the_presets_lie_well_within_the_bounds(space):
    from effvit_nas.arch import MAX_MACS, MAX_PARAMS
    from effvit_nas.counting import count

    # constructing an arch runs every check: these would raise if a bound cut into the space
    archs = [space.largest(), space.smallest(), *(Arch.preset(n) for n in PRESETS), *map(space.sample, range(200))]
    costs = [count(a) for a in archs]
    assert max(c.params for c in costs) <= MAX_PARAMS / 5 and max(c.macs for c in costs) <= MAX_MACS / 5
