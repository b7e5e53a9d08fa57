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
import time
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
    TrainingError,
    check_run,
    check_same_run,
    epoch_seed,
    seed_everything,
    start_epoch,
    train_loader,
    val_loader,
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

Progress = Callable[[int, int, str], None]


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

    @property
    def input_size(self) -> int:
        """Side of the batches the loader makes: the largest any subnet is trained at."""
        return self.img_size or max(self.space.resolutions)

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
        net, optimizer, step, history = _build(settings, data, procs, path, fingerprint)
        loader = train_loader(data, recipe, settings.seed, settings.workers, procs)
        calibration = calibration_batches(settings.data, recipe, settings.input_size, settings.calibration_batches,
                                          recipe.batch_size)
        runner = _SandwichRunner(net, optimizer, settings, data, procs, len(loader), step, calibration)
        if procs.is_main:
            log.info("training the supernet of %s (%.1fM weights) on %s: %d epochs x %d steps of %d subnets",
                     settings.space.name, sum(p.numel() for p in net.parameters()) / 1e6, data.source, recipe.epochs,
                     len(loader), settings.random_subnets + 2)
        for epoch in range(len(history), recipe.epochs):
            start_epoch(loader, settings.seed, epoch, procs.rank)
            history.append(runner.run_epoch(epoch, loader, progress if procs.is_main else None))
            _check_in_sync(net, procs)
            if procs.is_main:
                save_checkpoint(_checkpoint(net, optimizer, runner.step, history, settings, fingerprint, data), path)
                _write_metrics(settings, history, fingerprint)
                if on_epoch:
                    on_epoch(history[-1])
            procs.barrier()
        return _summary(settings, history, fingerprint)
    finally:
        stop_processes(procs)


def _build(settings: SupernetSettings, data: ImageData, procs: Processes, path: Path,
           fingerprint: dict[str, Any]) -> tuple[Any, Any, int, list[dict[str, float]]]:
    net = Supernet.from_space(settings.space, num_classes=data.num_classes).to(procs.device)
    optimizer = settings.recipe.optimizer(net)
    if not path.exists():
        return net, optimizer, 0, []
    if not settings.resume:
        raise TrainingError(f"--out must not hold a supernet already, but {str(path)!r} exists; pass --resume to "
                            "continue it or choose another --out")
    saved = read_checkpoint(path, "--resume checkpoint")
    check_same_run(saved.get("settings", {}), fingerprint, settings.out_dir)
    net.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    log.info("resuming after epoch %d (step %d)", len(saved["history"]), saved["step"])
    return net, optimizer, int(saved["step"]), list(saved["history"])


def _checkpoint(net: Any, optimizer: Any, step: int, history: list[dict[str, float]], settings: SupernetSettings,
                fingerprint: dict[str, Any], data: ImageData) -> dict[str, Any]:
    return {
        "format": SUPERNET_FORMAT,
        "space": settings.space.to_dict(),
        "img_size": settings.img_size,
        "data": settings.data,
        "classes": list(data.classes),
        "recipe": settings.recipe.to_dict(),
        "model": net.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": len(history),
        "step": step,
        "history": history,
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
class _SandwichRunner:
    def __init__(self, net: Any, optimizer: Any, settings: SupernetSettings, data: ImageData, procs: Processes,
                 steps_per_epoch: int, step: int, calibration: list[Any]) -> None:
        from timm.loss import SoftTargetCrossEntropy

        self.net, self.optimizer, self.settings, self.procs = net, optimizer, settings, procs
        self.recipe = settings.recipe
        self.steps_per_epoch, self.step, self.calibration = steps_per_epoch, step, calibration
        self.scheduler = self.recipe.scheduler(optimizer, steps_per_epoch)
        self.scheduler.step_update(step)  # a resumed run continues the lr where it stopped
        self.mixer = self.recipe.mixer(data.num_classes)
        self.criterion = self.recipe.loss()
        self.distill = SoftTargetCrossEntropy()
        # AGC (timm) leaves the classifier out: its weights are meant to move freely
        self.clipped = [p for name, p in net.named_parameters() if not name.startswith("head.linear")]
        self.autocast = dict(device_type=procs.device.type, dtype=torch.bfloat16,
                             enabled=procs.device.type == "cuda" and self.recipe.amp)
        self.val_loader = val_loader(data, self.recipe.batch_size, procs)

    def sandwich(self, rng: Any) -> list[Arch]:
        ends = self.settings.ends()
        middle = [self.settings.at_training_size(self.settings.space.sample(rng))
                  for _ in range(self.settings.random_subnets)]
        return [ends["largest"], *middle, ends["smallest"]]

    def run_epoch(self, epoch: int, loader: Any, progress: Progress | None) -> dict[str, float]:
        import numpy as np
        from timm.utils import dispatch_clip_grad

        self.net.train()
        rng = np.random.default_rng(epoch_seed(self.settings.seed, epoch, self.procs.rank))
        device = self.procs.device
        teacher_sum = student_sum = 0.0
        seen, start = 0, time.perf_counter()
        for i, (images, targets) in enumerate(loader):
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if self.mixer is not None:
                images, targets = self.mixer(images, targets)
            self.optimizer.zero_grad(set_to_none=True)
            soft_targets, student_loss = None, 0.0
            archs = self.sandwich(rng)
            for k, arch in enumerate(archs):
                with torch.autocast(**self.autocast):
                    logits = self.net(resized(images, arch.resolution), arch)
                    if soft_targets is None:  # the largest learns from the labels, the others from it
                        loss = self.criterion(logits, targets)
                        soft_targets = logits.detach().float().softmax(-1)
                    else:
                        loss = self.distill(logits, soft_targets)
                _check_finite(loss, epoch, i)
                loss.backward()
                if k == 0:
                    teacher_loss = loss.item()
                else:
                    student_loss += loss.item() / (len(archs) - 1)
            if self.procs.distributed:
                _average_gradients(list(self.net.parameters()), self.procs)
            if self.recipe.clip_grad:
                dispatch_clip_grad([p for p in self.clipped if p.grad is not None], self.recipe.clip_grad, mode="agc")
            self.optimizer.step()
            self.step += 1
            self.scheduler.step_update(self.step)
            teacher_sum += teacher_loss * len(images)
            student_sum += student_loss * len(images)
            seen += len(images)
            if progress:
                progress(epoch * self.steps_per_epoch + i + 1, self.recipe.epochs * self.steps_per_epoch,
                         f"epoch {epoch + 1}/{self.recipe.epochs} loss {teacher_loss:.3f}/{student_loss:.3f}")
        train_s = time.perf_counter() - start
        teacher_sum, student_sum, seen = self.procs.all_sum(teacher_sum, student_sum, seen)
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], "train_loss": teacher_sum / seen,
               "distill_loss": student_sum / seen, "train_seconds": train_s, "train_img_per_s": seen / train_s}
        for end, arch in self.settings.ends().items():
            row.update(self.evaluate_subnet(arch, end))
        return row

    def evaluate_subnet(self, arch: Arch, label: str) -> dict[str, float]:
        """Top-1 of ``arch`` with inherited weights after BN recalibration (the supernet estimator's number)."""
        scores = subnet_accuracy(self.net, arch, self.calibration, self.val_loader, self.procs, self.autocast)
        return {f"val_top1_{label}": scores["val_top1"], f"val_loss_{label}": scores["val_loss"]}


def _check_finite(loss: Any, epoch: int, step: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingError(f"the training loss must stay finite, but it is {loss.item()} at epoch {epoch + 1} step "
                            f"{step + 1}; lower --lr or raise warmup_epochs with --set")


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
