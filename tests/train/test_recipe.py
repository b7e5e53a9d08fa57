"""The recipe: the paper's numbers, timm's pieces built from them, and overrides from the command line."""

from __future__ import annotations

import math

import pytest

from effvit_nas import Arch, build_model
from effvit_nas.errors import EffNasError, UnknownNameError
from effvit_nas.train.recipe import PAPER, SMALL, RecipeError, recipe_for


def test_paper_recipe_is_the_official_default():
    assert (PAPER.epochs, PAPER.batch_size, PAPER.weight_decay, PAPER.clip_grad) == (300, 2048, 0.025, 0.02)
    assert PAPER.scaled_lr() == pytest.approx(4e-3)  # 1e-3 x 2048 / 512
    assert (PAPER.mixup, PAPER.cutmix, PAPER.smoothing, PAPER.reprob, PAPER.ema_decay) == (0.8, 1.0, 0.1, 0.25, 0.99996)
    assert PAPER.randaug == "rand-m9-mstd0.5-inc1" and PAPER.repeated_aug


def test_optimizer_exempts_biases_norms_and_attention_biases_from_decay():
    model = build_model(Arch.preset("m0"), num_classes=10)
    optimizer = PAPER.optimizer(model)
    assert type(optimizer).__name__ == "AdamW"
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    names = dict(model.named_parameters())
    for name, param in names.items():
        exempt = param.ndim <= 1 or name.endswith(".bias") or name.endswith("attention_biases")
        assert decay_of[id(param)] == (0.0 if exempt else 0.025), name
    assert any(n.endswith("attention_biases") for n in names)


def test_schedule_warms_up_then_decays_to_min_lr():
    model = build_model(Arch.preset("m0"), num_classes=10)
    recipe = SMALL.updated({"epochs": "4", "warmup_epochs": "1"})
    optimizer = recipe.optimizer(model)
    scheduler = recipe.scheduler(optimizer, steps_per_epoch=10)
    lrs = []
    for step in range(41):
        scheduler.step_update(step)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(recipe.warmup_lr)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))  # linear warm-up ...
    # ... onto the cosine, which (timm without warmup_prefix, as the paper) runs from step 0
    cosine_at_10 = recipe.min_lr + 0.5 * (recipe.scaled_lr() - recipe.min_lr) * (1 + math.cos(math.pi * 10 / 40))
    assert lrs[10] == pytest.approx(cosine_at_10, rel=1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # then the cosine only falls
    assert lrs[40] == pytest.approx(recipe.min_lr, rel=1e-2)


def test_overrides_parse_to_the_field_type_and_unknown_keys_list_the_fields():
    recipe = SMALL.updated({"mixup": "0.2", "crop_scale": "0.5,1", "ema_warmup": "false", "randaug": ""})
    assert recipe.mixup == 0.2 and recipe.crop_scale == (0.5, 1.0) and recipe.ema_warmup is False
    assert recipe.randaug == "" and recipe.mixing
    with pytest.raises(UnknownNameError, match="must be a recipe field .*epochs.*, but got 'mixupp'"):
        SMALL.updated({"mixupp": "1"})
    with pytest.raises(RecipeError, match="--set epochs must be int, but got 'ten'"):
        SMALL.updated({"epochs": "ten"})
    with pytest.raises(RecipeError, match=r"below epochs \(30\), but got warmup_epochs=40"):
        SMALL.updated({"warmup_epochs": "40"})


def test_auto_recipe_follows_the_data():
    assert recipe_for("auto", "digits") == ("small", SMALL)
    assert recipe_for("auto", "/data/imagenet") == ("paper", PAPER)
    with pytest.raises(EffNasError, match="--recipe must be one of auto, paper, small, screening, but got 'fast'"):
        recipe_for("fast", "digits")
