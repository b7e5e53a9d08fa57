"""Sandwich-rule supernet training with in-place distillation (BigNAS / Once-for-All style).

Every step trains, on one batch, the space's largest arch on the labels, then ``random_subnets``
random archs and the smallest arch on the largest's predictions (soft targets, detached); gradients
of all of them add up before one optimizer step. Training the two ends every step is what keeps the
small subnets good and the large one from being dragged down by them.

Resume and DDP follow ``effvit_nas.train.loop``: each epoch reseeds everything (the random archs
too) from (seed, epoch, rank), so a resumed run repeats the uninterrupted one. Under ``torchrun``
the ranks draw different random archs; gradients are averaged by hand after the sandwich (one flat
all-reduce) over the tensors any rank used, so a tensor no subnet touched keeps no gradient, as in
a single process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..arch import Arch
from ..provenance import stamp
from ..space import SearchSpace
from ..train.checkpoint import read_checkpoint, save_checkpoint
from ..train.data import ImageData, open_data
from ..train.distributed import Processes, start_processes, stop_processes
from ..train.loop import (
    EpochRunner,
    Progress,
    RunState,
    TrainingError,
    check_run,
    check_run_settings,
    check_same_run,
    epoch_seed,
    seed_everything,
    start_epoch,
    train_loader,
)
from ..train.metrics import METRICS_NAME, plot_curves
from ..train.recipe import Recipe
from .calibrate import CALIBRATION_BATCHES, calibration_batches
from .evaluate import resized, subnet_accuracy
from .network import Supernet

log = logging.getLogger(__name__)

__all__ = ["SupernetSettings", "train_supernet", "SUPERNET_CHECKPOINT", "SUPERNET_FORMAT", "ENDS"]

SUPERNET_CHECKPOINT = "supernet.pt"
SUPERNET_FORMAT = "effvit-nas-supernet/1"
ENDS = ("largest", "smallest")  # the sandwich's ends, evaluated after every epoch


@dataclass(frozen=True)
class SupernetSettings:
    space: SearchSpace
    data: str  # "digits", "noisy-digits" or an ImageFolder directory
    recipe: Recipe
    out_dir: Path
    img_size: int | None = None  # every subnet at this input size (None: each arch at its own resolution)
    random_subnets: int = 2  # between the largest and the smallest, per step
    calibration_batches: int = CALIBRATION_BATCHES  # BN recalibration before evaluating the ends each epoch
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    resume: bool = False
    deterministic: bool = False
    recipe_name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        check_run_settings(self.workers, self.out_dir)
        if self.img_size is not None:  # checked before the data is loaded, by the rule every arch obeys
            self.space.smallest().replace(resolution=self.img_size)

    @property
    def input_size(self) -> int:
        """Side of the batches the loader makes: the largest any subnet is trained at."""
        return max(self.space.resolutions) if self.img_size is None else self.img_size

    def at_training_size(self, arch: Arch) -> Arch:
        return arch if self.img_size is None else arch.replace(resolution=self.img_size)

    def ends(self) -> dict[str, Arch]:
        return {"largest": self.at_training_size(self.space.largest()),
                "smallest": self.at_training_size(self.space.smallest())}

    def fingerprint(self, data: ImageData, world_size: int) -> dict[str, Any]:
        """What must not change across a resume."""
        return {"space": self.space.to_dict(), "img_size": self.img_size, "data": data.describe(),
                "recipe": self.recipe.to_dict(), "random_subnets": self.random_subnets,
                "calibration_batches": self.calibration_batches, "seed": self.seed, "world_size": world_size,
                "workers": self.workers}


def train_supernet(settings: SupernetSettings, *, progress: Progress | None = None,
                   on_epoch: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train the supernet of ``settings.space``; returns the summary also written to ``metrics.json``."""
    procs = start_processes(settings.device)
    try:
        recipe = settings.recipe
        check_run(recipe, procs, settings.deterministic)
        if settings.random_subnets < 0:
            raise TrainingError(f"--random-subnets must be >= 0, but got {settings.random_subnets}")
        data = open_data(settings.data).with_transforms(recipe, settings.input_size)
        fingerprint = settings.fingerprint(data, procs.world_size)
        path = settings.out_dir / SUPERNET_CHECKPOINT
        seed_everything(settings.seed, 0, 0)  # identical initial weights on every rank
        net, optimizer, state = _build(settings, data, procs, path, fingerprint)
        loader = train_loader(data, recipe, settings.seed, settings.workers, procs)
        calibration = calibration_batches(settings.data, recipe, settings.input_size, settings.calibration_batches,
                                          recipe.batch_size)
        runner = _SandwichRunner(net, optimizer, settings, data, procs, len(loader), state, calibration)
        if procs.is_main:
            log.info("training the supernet of %s (%.1fM weights) on %s: %d epochs x %d steps of %d subnets",
                     settings.space.name, sum(p.numel() for p in net.parameters()) / 1e6, data.source, recipe.epochs,
                     len(loader), settings.random_subnets + 2)
        for epoch in range(state.epoch, recipe.epochs):
            start_epoch(loader, settings.seed, epoch, procs.rank)
            state.history.append(runner.run_epoch(epoch, loader, progress if procs.is_main else None))
            _check_in_sync(net, procs)
            if procs.is_main:
                save_checkpoint(_checkpoint(net, optimizer, state, settings, fingerprint, data), path)
                _write_metrics(settings, state.history, fingerprint)
                if on_epoch:
                    on_epoch(state.history[-1])
            procs.barrier()
        return _summary(settings, state.history, fingerprint)
    finally:
        stop_processes(procs)


def _build(settings: SupernetSettings, data: ImageData, procs: Processes, path: Path,
           fingerprint: dict[str, Any]) -> tuple[Any, Any, RunState]:
    net = Supernet.from_space(settings.space, num_classes=data.num_classes).to(procs.device)
    optimizer = settings.recipe.optimizer(net)
    if not path.exists():
        return net, optimizer, RunState()
    if not settings.resume:
        raise TrainingError(f"--out must not hold a supernet already, but {str(path)!r} exists; pass --resume to "
                            "continue it or choose another --out")
    saved = read_checkpoint(path, "--resume checkpoint")
    check_same_run(saved.get("settings", {}), fingerprint, settings.out_dir)
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    log.info("resuming after epoch %d (step %d)", len(saved["history"]), saved["step"])
    return net, optimizer, RunState(int(saved["step"]), list(saved["history"]))


def _checkpoint(net: Any, optimizer: Any, state: RunState, settings: SupernetSettings, fingerprint: dict[str, Any],
                data: ImageData) -> dict[str, Any]:
    return {
        "format": SUPERNET_FORMAT,
        "space": settings.space.to_dict(),
        "img_size": settings.img_size,
        "data": settings.data,
        "classes": list(data.classes),
        "recipe": settings.recipe.to_dict(),
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
        "settings": fingerprint,
    }


def _summary(settings: SupernetSettings, history: list[dict[str, float]], fingerprint: dict[str, Any]) -> dict:
    last = history[-1] if history else {}
    return {
        "space": settings.space.name,
        "epochs_done": len(history),
        **{f"val_top1_{end}": last.get(f"val_top1_{end}") for end in ENDS},
        "train_seconds": sum(r["train_seconds"] for r in history),
        "recipe_name": settings.recipe_name,
        "settings": fingerprint,
        "epochs": history,
        **stamp(),
    }


def _write_metrics(settings: SupernetSettings, history: list[dict[str, float]], fingerprint: dict[str, Any]) -> None:
    import json

    from .._io import atomic_write_text
    from ..train.metrics import CURVES_NAME

    atomic_write_text(settings.out_dir / METRICS_NAME, json.dumps(_summary(settings, history, fingerprint),
                                                                  indent=1) + "\n")
    plot_curves(history, settings.out_dir / CURVES_NAME,
                title=f"supernet of {settings.space.name} on {fingerprint['data']['source']}",
                accuracies={f"{end} (BN recalibrated)": f"val_top1_{end}" for end in ENDS},
                losses={"largest, on labels": "train_loss", "others, on the largest": "distill_loss"})


# --------------------------------------------------------------------------- epochs
class _SandwichRunner(EpochRunner):
    """The training loop's epochs with a sandwich of subnets per batch; evaluates the sandwich's ends."""

    ddp = False  # the gradients are averaged by hand, over the tensors any rank used

    def __init__(self, net: Any, optimizer: Any, settings: SupernetSettings, data: ImageData, procs: Processes,
                 steps_per_epoch: int, state: RunState, calibration: list[Any]) -> None:
        from timm.loss import SoftTargetCrossEntropy

        super().__init__(net, optimizer, settings.recipe, data, procs, steps_per_epoch, state, workers=settings.workers)
        self.settings, self.calibration = settings, calibration
        self.distill = SoftTargetCrossEntropy()
        self.rng: Any = None

    def run_epoch(self, epoch: int, loader: Any, progress: Progress | None) -> dict[str, float]:
        import numpy as np

        self.rng = np.random.default_rng(epoch_seed(self.settings.seed, epoch, self.procs.rank))
        return super().run_epoch(epoch, loader, progress)

    def sandwich(self) -> list[Arch]:
        ends = self.settings.ends()
        middle = [self.settings.at_training_size(self.settings.space.sample(self.rng))
                  for _ in range(self.settings.random_subnets)]
        return [ends["largest"], *middle, ends["smallest"]]

    def train_step(self, images: Any, targets: Any) -> dict[str, float]:
        soft_targets, student_loss = None, 0.0
        archs = self.sandwich()
        for k, arch in enumerate(archs):
            with torch.autocast(**self.autocast):
                logits = self.net(resized(images, arch.resolution), arch)
                if soft_targets is None:  # the largest learns from the labels, the others from it
                    loss = self.criterion(logits, targets)
                    soft_targets = logits.detach().float().softmax(-1)
                else:
                    loss = self.distill(logits, soft_targets)
            self.backward(loss)
            if k == 0:
                teacher_loss = loss.item()
            else:
                student_loss += loss.item() / (len(archs) - 1)
        if self.procs.distributed:
            _average_gradients(list(self.net.parameters()), self.procs)
        return {"train_loss": teacher_loss, "distill_loss": student_loss}

    def evaluate_epoch(self) -> dict[str, float]:
        """Top-1 of the sandwich's ends with inherited weights after BN recalibration (the supernet
        estimator's number)."""
        row = {}
        for end, arch in self.settings.ends().items():
            scores = subnet_accuracy(self.net, arch, self.calibration, self.val_loader, self.procs, self.autocast)
            row.update({f"val_top1_{end}": scores["val_top1"], f"val_loss_{end}": scores["val_loss"]})
        return row


def _check_in_sync(net: torch.nn.Module, procs: Processes) -> None:
    """Every rank must hold the same weights after an epoch; a cheap checksum catches a divergence
    (a gradient some rank did not average) long before it shows as a bad accuracy."""
    if not procs.distributed:
        return
    with torch.no_grad():
        checksum = sum(float(p.double().sum()) for p in net.parameters())
    low, high = _min_max(checksum, procs)
    if abs(high - low) > 1e-6 * max(1.0, abs(high)):
        raise TrainingError(f"the processes' supernet weights must stay identical, but their checksums range "
                            f"{low:.6g}..{high:.6g}; this is a bug, please report it")


def _min_max(value: float, procs: Processes) -> tuple[float, float]:
    import torch.distributed as dist

    values = torch.tensor([value, -value], dtype=torch.float64, device=procs.device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return -values[1].item(), values[0].item()


def _average_gradients(params: list[Any], procs: Processes) -> None:
    """Mean gradient over the ranks, for the tensors some rank used (a flag per tensor rides along)."""
    import torch.distributed as dist

    flat = torch.cat([torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params]),
                      torch.tensor([float(p.grad is not None) for p in params], device=procs.device)])
    dist.all_reduce(flat)
    used = flat[-len(params):]
    offset = 0
    for p, was_used in zip(params, used.tolist()):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p) / procs.world_size if was_used else None
        offset += n
