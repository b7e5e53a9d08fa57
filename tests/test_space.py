import itertools

import numpy as np
import optuna
import pytest
import yaml

from effvit_nas import Arch, ConfigFileError, InvalidSpaceError, SearchSpace
from effvit_nas.arch import PRESETS

TINY = {
    "schema_version": 1,
    "name": "tiny",
    "resolution": [64, 224],
    "kernels": [3, 5],
    "stages": [
        {"width": [16, 24], "depth": [1], "heads": [1, 2, 4], "key_dim": [8], "ffn_ratio": [2], "window_size": [7]},
        {"width": [32], "depth": [1, 2], "heads": [1, 2], "key_dim": [8, 16], "ffn_ratio": [2], "window_size": [7]},
        {"width": [48], "depth": [1], "heads": [3], "key_dim": [8], "ffn_ratio": [2, 3], "window_size": [7, 14]},
    ],
}


def brute_force_distinct(space: SearchSpace) -> set[Arch]:
    """Every combination of choices, as Arch objects: the set dedupes equal networks."""
    found = set()
    for res in space.resolutions:
        per_stage = [
            itertools.product(s.pairs, s.depths, s.key_dims, s.ffn_ratios, s.window_sizes) for s in space.stages
        ]
        for combo in itertools.product(*per_stage):
            n_heads = max(c[0][1] for c in combo)
            for kernels in itertools.product(space.kernels, repeat=n_heads):
                found.add(Arch(
                    resolution=res,
                    widths=tuple(c[0][0] for c in combo),
                    heads=tuple(c[0][1] for c in combo),
                    depths=tuple(c[1] for c in combo),
                    key_dims=tuple(c[2] for c in combo),
                    ffn_ratios=tuple(c[3] for c in combo),
                    window_sizes=tuple(c[4] for c in combo),
                    kernels=kernels,
                ))
    return found


def test_size_counts_distinct_networks_exactly():
    space = SearchSpace.from_dict(TINY)
    archs = brute_force_distinct(space)
    assert space.size() == len(archs)
    assert all(space.contains(a) for a in archs)


def test_default_space_contains_every_preset_and_reaches_beyond_them(space):
    for name in PRESETS:
        assert space.contains(Arch.preset(name)), space.why_not(Arch.preset(name))
    small, large = space.smallest(), space.largest()
    for name in PRESETS:
        preset = Arch.preset(name)
        assert small.resolution < preset.resolution and max(small.widths) < min(preset.widths[1:])
        assert large.resolution > preset.resolution and sum(large.depths) > sum(preset.depths)
        assert all(lw >= pw for lw, pw in zip(large.widths, preset.widths))
    assert space.size() > 10**12


def test_sampling_is_seeded_and_stays_in_the_space(space):
    first = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    again = [space.sample(np.random.default_rng(7)) for _ in range(3)]
    assert first == again
    assert space.sample(1) == space.sample(1) != space.sample(2)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(300)]
    assert all(space.contains(a) for a in archs)
    assert len(set(archs)) == 300
    # every choice of every knob shows up: uniform sampling does not starve any corner
    assert {a.resolution for a in archs} == set(space.resolutions)
    assert {a.depths[2] for a in archs} == set(space.stages[2].depths)


def test_why_not_names_the_knob_outside_the_space(space):
    outside = Arch.preset("m0").replace(widths=(64, 136, 192))
    assert space.why_not(outside) == "stage 2 width 136 is not one of " + str(list(space.stages[1].widths))
    assert not space.contains(Arch.preset("m0").replace(resolution=320))


def test_optuna_suggest_round_trips_through_enqueued_presets(space, tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for name in PRESETS:
        study.enqueue_trial(space.to_params(Arch.preset(name)))
    suggested = []
    study.optimize(lambda t: len(suggested.append(space.suggest(t)) or []), n_trials=len(PRESETS) + 20)
    assert suggested[: len(PRESETS)] == [Arch.preset(n) for n in PRESETS]
    assert all(space.contains(a) for a in suggested)
    for trial, arch in zip(study.trials, suggested):
        assert space.from_params(trial.params) == arch


def test_content_hash_ignores_comments_but_not_choices(tmp_path):
    base = SearchSpace.from_dict(TINY)
    path = tmp_path / "s.yaml"
    path.write_text("# a comment\n" + yaml.safe_dump(TINY))
    assert SearchSpace.from_yaml(path).content_hash == base.content_hash
    changed = {**TINY, "resolution": [64, 256]}
    assert SearchSpace.from_dict(changed).content_hash != base.content_hash


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (lambda d: d.update(stages=d["stages"][:2]), ConfigFileError, r"must list 3 stages"),
        (lambda d: d["stages"][0].update(heads=[5]), InvalidSpaceError, r"heads=5 divides none of \[16, 24\]"),
        (lambda d: d["stages"][1].update(width=[]), ConfigFileError, r"stage 2 width must be a non-empty list"),
        (lambda d: d["stages"][1].update(width=[36]), InvalidSpaceError, r"multiples of 8.*width=36"),
        (lambda d: d.update(kernels=[4]), InvalidSpaceError, r"kernels must be odd"),
        (lambda d: d.update(resolution=[64, 64]), ConfigFileError, r"must not repeat a choice"),
        (lambda d: d["stages"][2].update(window=[7]), ConfigFileError, r"unknown key\(s\) \['window'\]"),
        (lambda d: d.update(schema_version=2), ConfigFileError, r"schema_version 1, but has 2"),
        (lambda d: d["stages"][2].update(depth=[1, 100_000_000]), InvalidSpaceError,
         r"stage 3 depth must be at most 50 .*but got 100000000"),
        (lambda d: d.update(resolution=[64, 100_000]), InvalidSpaceError, r"resolution must be at most 2880"),
        # heads 64 divides only width 128, so neither extreme takes it: each choice is bounded on its own
        (lambda d: d["stages"][0].update(width=[16, 128, 136], heads=[1, 64]), InvalidSpaceError,
         r"stage 1 heads must be at most 60 .*got 64"),
        (lambda d: d["stages"][1].update(width=[32, 5120], depth=[1, 50], ffn_ratio=[2, 40]), InvalidSpaceError,
         r"has choices no valid arch can use: arch must have at most 452M parameters"),
    ],
)
def test_malformed_spaces_are_refused_in_one_line(mutate, error, message):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    mutate(data)
    with pytest.raises(error, match=message) as info:
        SearchSpace.from_dict(data)
    assert "\n" not in str(info.value)


def test_an_oversized_space_file_is_refused_when_read(tmp_path):
    data = yaml.safe_load(yaml.safe_dump(TINY))
    data["stages"][0]["width"] = [16, 1_000_000]
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidSpaceError, match=r"huge.yaml' stage 1 width must be at most 5120 .*got 1000000"):
        SearchSpace.from_yaml(path)
