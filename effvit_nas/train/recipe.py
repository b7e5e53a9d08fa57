"""The paper's training recipe as data, and the timm pieces built from it.

``PAPER`` is the default of the official EfficientViT repository's ``main.py``: AdamW at 1e-3 per 512
images with weight decay 0.025 (none on biases, norms and attention biases), 5 warm-up epochs into a
cosine, label smoothing 0.1 inside Mixup 0.8 / CutMix 1.0, RandAugment m9, random erasing 0.25,
repeated augmentation, EMA 0.99996 and adaptive gradient clipping at 0.02, for 300 epochs at a
global batch of 2048. ``SMALL`` scales it to a few thousand images on a CPU: fewer epochs, a
higher learning rate per image, lighter augmentation, no flips (digits are not mirror-symmetric),
and an EMA whose horizon is a few epochs rather than a few hundred.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._io import parse_like
from ..errors import EffNasError, UnknownNameError

if TYPE_CHECKING:
    import torch

__all__ = ["Recipe", "RECIPES", "recipe_for", "RecipeError"]


class RecipeError(EffNasError):
    """A recipe value is out of range or unknown."""


@dataclass(frozen=True)
class Recipe:
    epochs: int = 300
    batch_size: int = 2048  # global: split evenly over DDP processes
    lr: float = 1e-3  # per 512 images; the optimizer gets lr * batch_size / 512 (linear scaling rule)
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: float = 5.0
    weight_decay: float = 0.025
    clip_grad: float = 0.02  # adaptive gradient clipping (AGC) ratio; 0 turns clipping off
    smoothing: float = 0.1
    mixup: float = 0.8  # Mixup alpha; 0 with cutmix 0 turns both off
    cutmix: float = 1.0
    randaug: str = "rand-m9-mstd0.5-inc1"  # timm RandAugment spec; "" turns it off
    color_jitter: float = 0.4  # timm ignores it while RandAugment is on, as in the paper
    reprob: float = 0.25  # random erasing probability
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: float = 0.5
    crop_pct: float = 0.875  # evaluation: resize to img/crop_pct, centre-crop img
    ema_decay: float = 0.99996  # 0 turns the EMA off
    ema_warmup: bool = False  # ramp the EMA decay up over the first steps (timm ModelEmaV3)
    repeated_aug: bool = True  # every image 3x per epoch on different processes (DeiT's RASampler)
    amp: bool = True  # bf16 autocast on a GPU; CPUs train in fp32 like the paper

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs", "at least 1"),
            (self.batch_size >= 2, "batch_size", "at least 2"),
            (self.lr > 0, "lr", "> 0"),
            (self.min_lr >= 0 and self.warmup_lr >= 0, "min_lr/warmup_lr", ">= 0"),
            (0 <= self.warmup_epochs < self.epochs, "warmup_epochs", f">= 0 and below epochs ({self.epochs})"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.clip_grad >= 0, "clip_grad", ">= 0"),
            (0 <= self.smoothing < 1, "smoothing", "in [0, 1)"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup/cutmix", ">= 0"),
            (0 <= self.reprob <= 1, "reprob", "in [0, 1]"),
            (0 <= self.hflip <= 1, "hflip", "in [0, 1]"),
            (len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1, "crop_scale",
             "two numbers 0 < low <= high <= 1"),
            (0 < self.crop_pct <= 1, "crop_pct", "in (0, 1]"),
            (0 <= self.ema_decay < 1, "ema_decay", "in [0, 1)"),
        ]
        for ok, name, rule in checks:
            if not ok:
                given = ", ".join(f"{n}={getattr(self, n)!r}" for n in name.split("/"))
                raise RecipeError(f"recipe {name} must be {rule}, but got {given}; change it with --set")

    @property
    def mixing(self) -> bool:
        return self.mixup > 0 or self.cutmix > 0

    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 512

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["crop_scale"] = list(self.crop_scale)
        return data

    def updated(self, changes: dict[str, str]) -> Recipe:
        """A copy with ``KEY=VALUE`` overrides from the command line, each parsed to the field's type.
        Fewer epochs than the warm-up (and no warm-up given) scale the warm-up with them."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        parsed: dict[str, Any] = {}
        for key, text in changes.items():
            if key not in fields:
                raise UnknownNameError(f"--set KEY must be a recipe field ({', '.join(fields)}), but got {key!r}")
            try:
                parsed[key] = parse_like(text, getattr(self, key))
            except ValueError as exc:
                raise RecipeError(f"--set {key} must be {exc}, but got {text!r}") from None
        if "epochs" in parsed and "warmup_epochs" not in parsed and parsed["epochs"] <= self.warmup_epochs:
            # a short trial run keeps the recipe's shape: it warms up for the same share of its epochs
            parsed["warmup_epochs"] = self.warmup_epochs * parsed["epochs"] / self.epochs
        return dataclasses.replace(self, **parsed)

    # ------------------------------------------------------------- timm pieces
    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        """AdamW; timm's factory exempts 1-D params, biases and ``model.no_weight_decay()`` from decay."""
        from timm.optim import create_optimizer_v2

        return create_optimizer_v2(model, "adamw", lr=self.scaled_lr(), weight_decay=self.weight_decay, eps=1e-8)

    def scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
        """Cosine with linear warm-up, stepped per update (smooth even when an epoch is a few steps)."""
        from timm.scheduler import create_scheduler_v2

        scheduler, _ = create_scheduler_v2(
            optimizer, "cosine", num_epochs=self.epochs, warmup_epochs=self.warmup_epochs, warmup_lr=self.warmup_lr,
            min_lr=self.min_lr, step_on_epochs=False, updates_per_epoch=steps_per_epoch,
        )
        return scheduler

    def mixer(self, num_classes: int) -> Any:
        """timm's Mixup/CutMix with the label smoothing folded in, or None when both are off."""
        if not self.mixing:
            return None
        from timm.data import Mixup

        return Mixup(mixup_alpha=self.mixup, cutmix_alpha=self.cutmix, prob=1.0, switch_prob=0.5, mode="batch",
                     label_smoothing=self.smoothing, num_classes=num_classes)

    def loss(self) -> torch.nn.Module:
        """Soft-target cross-entropy after Mixup (which smooths the labels); smoothed CE otherwise."""
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

        if self.mixing:
            return SoftTargetCrossEntropy()
        return LabelSmoothingCrossEntropy(self.smoothing)


PAPER = Recipe()
SMALL = Recipe(
    epochs=30, batch_size=64, lr=1e-2, min_lr=1e-5, warmup_lr=1e-5, warmup_epochs=2.0, weight_decay=0.025,
    clip_grad=0.02, smoothing=0.1, mixup=0.0, cutmix=0.0, randaug="rand-m5-mstd0.5-inc1", reprob=0.1,
    crop_scale=(0.6, 1.0), hflip=0.0, crop_pct=1.0, ema_decay=0.998, ema_warmup=True, repeated_aug=False,
)
# Short runs that must converge in about 10 epochs (the estimator study, short-training estimates):
# the small recipe at 3x its learning rate, so the accuracy plateaus before the run ends and ranks
# networks by what they reach rather than by how fast they start.
SCREENING = SMALL.updated({"lr": "3e-2", "epochs": "10", "warmup_epochs": "1"})
RECIPES = {"paper": PAPER, "small": SMALL, "screening": SCREENING}


def recipe_for(name: str, data: str) -> tuple[str, Recipe]:
    """``auto`` picks ``small`` for the built-in data sets and ``paper`` for a directory of real images."""
    if name == "auto":
        from .data import BUILTIN_DATASETS

        name = "small" if data in BUILTIN_DATASETS else "paper"
    if name not in RECIPES:
        raise UnknownNameError(f"--recipe must be one of auto, {', '.join(RECIPES)}, but got {name!r}")
    return name, RECIPES[name]
