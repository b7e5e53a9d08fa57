"""The training loop: one epoch at a time, a checkpoint after each, exact resume, DDP-ready.

Exact resume without saving random states: every epoch reseeds Python, NumPy and torch (and the
data loader's generator, which seeds its workers) from (seed, epoch, rank), and the learning rate
is a function of the update count. So epoch e runs the same whether it follows epoch e-1 in this
process or a checkpoint written before a kill; the model, optimizer and EMA come from the
checkpoint. A kill mid-epoch loses only that epoch's partial work.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import check_out_dir
from .._progress import Progress
from ..arch import Arch
from ..errors import EffNasError
from .checkpoint import CHECKPOINT_FORMAT, check_recorded_arch, load_weights, read_checkpoint, save_checkpoint
from .data import ImageData, open_data
from .distributed import Processes, start_processes, stop_processes
from .metrics import CURVES_NAME, METRICS_NAME, summarise, write_metrics
from .recipe import Recipe

log = logging.getLogger(__name__)

__all__ = ["TrainSettings", "TrainingError", "train", "CHECKPOINT_NAME", "METRICS_NAME", "CURVES_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


class TrainingError(EffNasError):
    """Training cannot start or continue as asked."""


@dataclass(frozen=True)
class TrainSettings:
    arch: Arch  # as found and deployed; checkpoints record it
    data: str  # "digits" or an ImageFolder directory
    recipe: Recipe
    out_dir: Path
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    init_from: str | None = None
    resume: bool = False
    deterministic: bool = False
    img_size: int | None = None  # train at another resolution than the arch's (None: the arch's)
    score_test: bool = True  # top-1 on the data's test split after the last epoch (estimators never look)
    recipe_name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        check_run_settings(self.workers, self.out_dir)

    @property
    def train_arch(self) -> Arch:
        """The network trained: the arch at the training resolution (windows clamp to smaller maps)."""
        return self.arch if self.img_size is None else self.arch.replace(resolution=self.img_size)

    def fingerprint(self, data: ImageData, world_size: int) -> dict[str, Any]:
        """What must not change across a resume."""
        return {"arch": self.arch.to_dict(), "img_size": self.train_arch.resolution, "data": data.describe(),
                "recipe": self.recipe.to_dict(), "seed": self.seed, "world_size": world_size,
                "workers": self.workers, "init_from": self.init_from}


def check_run_settings(workers: int, out_dir: Path) -> None:
    """What a training run (plain or supernet) needs before it starts: checked up front, so a bad value
    fails in one line instead of in a loader process or at the first checkpoint."""
    if workers < 0:
        raise TrainingError(f"--workers must be >= 0, but got {workers}; 0 loads data in the training process")
    check_out_dir(out_dir)


@dataclass
class RunState:
    step: int = 0  # optimizer updates so far
    history: list[dict[str, float]] = field(default_factory=list)  # one row per completed epoch

    @property
    def epoch(self) -> int:
        """Completed epochs."""
        return len(self.history)


def train(settings: TrainSettings, *, progress: Progress | None = None,
          on_epoch: Callable[[dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train ``settings.arch``; returns the metrics also written to ``out_dir/metrics.json``."""
    procs = start_processes(settings.device)
    try:
        recipe = settings.recipe
        check_run(recipe, procs, settings.deterministic)
        checkpoint_path = settings.out_dir / CHECKPOINT_NAME
        init = _starting_weights(settings, checkpoint_path)  # before the data: a wrong path is refused at once
        data = open_data(settings.data).with_transforms(recipe, settings.train_arch.resolution)
        fingerprint = settings.fingerprint(data, procs.world_size)
        seed_everything(settings.seed, 0, 0)  # identical initial weights on every rank
        model, ema, optimizer, state = _build(settings, data, procs, checkpoint_path, fingerprint, init)
        loader = train_loader(data, recipe, settings.seed, settings.workers, procs)
        runner = EpochRunner(model, optimizer, recipe, data, procs, len(loader), state, ema=ema,
                             workers=settings.workers)
        if procs.is_main:
            log.info("training %s on %s: %d epochs x %d steps, lr %.2e", settings.arch.arch_id, data.source,
                     recipe.epochs, len(loader), recipe.scaled_lr())
        for epoch in range(state.epoch, recipe.epochs):
            start_epoch(loader, settings.seed, epoch, procs.rank)
            row = runner.run_epoch(epoch, loader, progress if procs.is_main else None)
            state.history.append(row)
            if procs.is_main:
                save_checkpoint(_checkpoint(model, ema, optimizer, state, settings, fingerprint, data), checkpoint_path)
                write_metrics(settings.out_dir, state.history, settings, fingerprint)
                if on_epoch:
                    on_epoch(row)
            procs.barrier()
        if data.test is None or not settings.score_test:
            return summarise(state.history, settings, fingerprint)  # as written after the last epoch
        # the held-out test split, once, after the last epoch: no epoch, checkpoint or choice sees it
        test = runner.evaluate_split(eval_loader(data.test, recipe.batch_size, procs, settings.workers), "test")
        if procs.is_main:
            write_metrics(settings.out_dir, state.history, settings, fingerprint, test)
        return summarise(state.history, settings, fingerprint, test)
    finally:
        stop_processes(procs)


# --------------------------------------------------------------------------- setup
def check_run(recipe: Recipe, procs: Processes, deterministic: bool) -> None:
    """What every training run checks first; deterministic mode is process-wide in torch."""
    import torch

    if recipe.batch_size % procs.world_size:
        raise TrainingError(f"--batch-size must divide evenly over {procs.world_size} processes, but is "
                            f"{recipe.batch_size}; use a multiple of {procs.world_size}")
    if deterministic:
        if procs.device.type == "cuda":
            # cuBLAS is deterministic only with a fixed workspace; without this torch raises at the first
            # matmul under use_deterministic_algorithms. It is read when cuBLAS first runs, so set it here.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 1_009 + rank) % 2**31


def seed_everything(seed: int, epoch: int, rank: int) -> None:
    import numpy as np
    import torch

    value = epoch_seed(seed, epoch, rank)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def _starting_weights(settings: TrainSettings, checkpoint_path: Path) -> dict[str, Any] | None:
    """The ``--init-from`` checkpoint, or None; refuses an ``--out`` that holds a run unless resumed (which
    continues it: ``--init-from`` is then not read)."""
    if checkpoint_path.exists():
        if not settings.resume:
            raise TrainingError(f"--out must not hold a run already, but {str(checkpoint_path)!r} exists; pass "
                                "--resume to continue it or choose another --out")
        return None
    if not settings.init_from:
        return None
    init = read_checkpoint(settings.init_from, "--init-from")
    check_recorded_arch(init, settings.train_arch, "--init-from")  # another arch's weights: refused before the data
    return init


def _build(settings: TrainSettings, data: ImageData, procs: Processes, checkpoint_path: Path,
           fingerprint: dict[str, Any], init: dict[str, Any] | None) -> tuple[Any, Any, Any, RunState]:
    from ..model import build_model

    model = build_model(settings.train_arch, num_classes=data.num_classes).to(procs.device)
    state = RunState()
    saved = None
    if checkpoint_path.exists():  # resumed (_starting_weights refused it otherwise)
        saved = read_checkpoint(checkpoint_path, "--resume checkpoint")
        check_same_run(saved.get("settings", {}), fingerprint, settings.out_dir)
    elif init is not None:
        notes = load_weights(model, settings.train_arch, init, flag="--init-from", new_head_ok=True)
        for note in notes:
            log.info("--init-from: %s", note)
    optimizer = settings.recipe.optimizer(model)
    ema = None
    if settings.recipe.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=settings.recipe.ema_decay, use_warmup=settings.recipe.ema_warmup)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if ema is not None:
            ema.module.load_state_dict(saved["model_ema"])
        state = RunState(saved["step"], list(saved["history"]))
        log.info("resuming after epoch %d (step %d)", state.epoch, state.step)
    return model, ema, optimizer, state


def check_same_run(saved: dict[str, Any], now: dict[str, Any], out_dir: Path) -> None:
    changed = []
    for key in now:
        old, new = saved.get(key), now[key]
        if isinstance(new, dict) and isinstance(old, dict):
            changed += [f"{key}.{k} was {old.get(k)!r}, now {v!r}" for k, v in new.items() if old.get(k) != v]
        elif old != new:
            changed.append(f"{key} was {old!r}, now {new!r}")
    if changed:
        raise TrainingError(f"--resume must continue the run in {str(out_dir)!r} with the same settings, but "
                            f"{'; '.join(changed[:3])}; rerun with the original flags or choose another --out")


def train_loader(data: ImageData, recipe: Recipe, seed: int, workers: int, procs: Processes) -> Any:
    """Shuffled per epoch (``set_epoch``) and split over processes; the generator seeds the workers."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    # Repeated augmentation (DeiT) puts each image's copies on different processes, where they get
    # different augmentations within one global batch. In one process all copies would land in the same
    # local batch, so there the plain shuffle stands in for it (docs/TRAINING.md).
    if recipe.repeated_aug and procs.distributed:
        from timm.data.distributed_sampler import RepeatAugSampler

        sampler = RepeatAugSampler(data.train, num_replicas=procs.world_size, rank=procs.rank)
    else:
        sampler = DistributedSampler(data.train, num_replicas=procs.world_size, rank=procs.rank, shuffle=True,
                                     seed=seed, drop_last=True)
    loader = DataLoader(data.train, batch_size=recipe.batch_size // procs.world_size, sampler=sampler,
                        num_workers=workers, drop_last=True, generator=torch.Generator(),
                        pin_memory=procs.device.type == "cuda")
    if len(loader) == 0:
        raise TrainingError(f"--batch-size must be at most the training images per process "
                            f"({len(data.train) // procs.world_size}), but is {recipe.batch_size}")
    return loader


def start_epoch(loader: Any, seed: int, epoch: int, rank: int) -> None:
    """Reseed everything for ``epoch`` (Python, NumPy, torch, the sampler's shuffle, the workers): what
    makes a resumed run repeat the uninterrupted one."""
    seed_everything(seed, epoch, rank)
    loader.sampler.set_epoch(epoch)
    loader.generator.manual_seed(epoch_seed(seed, epoch, rank))


def _checkpoint(model: Any, ema: Any, optimizer: Any, state: RunState, settings: TrainSettings,
                fingerprint: dict[str, Any], data: ImageData) -> dict[str, Any]:
    return {
        "format": CHECKPOINT_FORMAT,
        "arch": settings.arch.to_dict(),
        "img_size": settings.train_arch.resolution,
        "classes": list(data.classes),
        "model": model.state_dict(),
        "model_ema": ema.module.state_dict() if ema is not None else None,
        "optimizer": optimizer.state_dict(),
        "epoch": state.epoch,
        "step": state.step,
        "history": state.history,
        "settings": fingerprint,
    }


# --------------------------------------------------------------------------- epochs
class EpochRunner:
    """Trains one epoch and evaluates, holding what every epoch uses: the scheduler, mixing, loss, AGC,
    autocast and validation loader. A network trains as is; the supernet overrides ``train_step`` (the
    losses of one batch) and ``evaluate_epoch``."""

    ddp = True  # wrap the network in DistributedDataParallel under torchrun

    def __init__(self, model: Any, optimizer: Any, recipe: Recipe, data: ImageData, procs: Processes,
                 steps_per_epoch: int, state: RunState, *, ema: Any = None, workers: int = 0) -> None:
        import torch

        self.model, self.ema, self.optimizer, self.recipe, self.procs = model, ema, optimizer, recipe, procs
        self.steps_per_epoch, self.state = steps_per_epoch, state
        self.net = model
        if procs.distributed and self.ddp:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(model, device_ids=[procs.device.index] if procs.device.index is not None
                                               else None)
        self.scheduler = recipe.scheduler(optimizer, steps_per_epoch)
        # a new scheduler sets the warm-up's first lr; a resumed run needs the lr of where it stopped
        self.scheduler.step_update(state.step)
        self.mixer = recipe.mixer(data.num_classes)
        self.criterion = recipe.loss()
        # AGC (timm) leaves the classifier out: its weights are meant to move freely
        self.clipped = [p for name, p in model.named_parameters() if not name.startswith("head.linear")]
        self.autocast = dict(device_type=procs.device.type, dtype=torch.bfloat16,
                             enabled=procs.device.type == "cuda" and recipe.amp)
        self.val_loader = eval_loader(data.val, recipe.batch_size, procs, workers)
        self.position = ""  # "epoch E step S", for errors

    def run_epoch(self, epoch: int, loader: Any, progress: Progress | None) -> dict[str, float]:
        from timm.utils import dispatch_clip_grad

        self.net.train()
        device, recipe = self.procs.device, self.recipe
        sums: dict[str, float] = {}
        seen, start = 0, time.perf_counter()
        for i, (images, targets) in enumerate(loader):
            self.position = f"epoch {epoch + 1} step {i + 1}"
            images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            if self.mixer is not None:
                images, targets = self.mixer(images, targets)
            self.optimizer.zero_grad(set_to_none=True)
            losses = self.train_step(images, targets)
            if recipe.clip_grad:
                dispatch_clip_grad(self.clipped, recipe.clip_grad, mode="agc")  # skips tensors with no gradient
            self.optimizer.step()
            self.state.step += 1
            self.scheduler.step_update(self.state.step)
            if self.ema is not None:
                self.ema.update(self.model, step=self.state.step)
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value * len(images)
            seen += len(images)
            if progress:
                progress(epoch * self.steps_per_epoch + i + 1, recipe.epochs * self.steps_per_epoch,
                         f"epoch {epoch + 1}/{recipe.epochs} loss {'/'.join(f'{v:.3f}' for v in losses.values())}")
        train_s = time.perf_counter() - start
        *totals, seen = self.procs.all_sum(*sums.values(), seen)
        row = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
               **{name: total / seen for name, total in zip(sums, totals)},
               "train_seconds": train_s, "train_img_per_s": seen / train_s}
        row.update(self.evaluate_epoch())
        return row

    def train_step(self, images: Any, targets: Any) -> dict[str, float]:
        """Forward and backward on one batch (the runner zeroed the gradients and steps after); returns
        the batch's mean losses by their name in the epoch's row."""
        import torch

        with torch.autocast(**self.autocast):
            loss = self.criterion(self.net(images), targets)
        self.backward(loss)
        return {"train_loss": loss.item()}

    def backward(self, loss: Any) -> None:
        value = loss.item()
        if not self.procs.all_finite(value):
            where = "" if not self.procs.distributed else f" on rank {self.procs.rank} (some rank's is not)"
            raise TrainingError(f"the training loss must stay finite, but it is {value}{where} at {self.position}; "
                                "lower --lr or raise warmup_epochs with --set")
        loss.backward()

    def evaluate_epoch(self) -> dict[str, float]:
        return self.evaluate_split(self.val_loader, "val")

    def evaluate_split(self, loader: Any, prefix: str) -> dict[str, float]:
        """Top-1 and loss of the model (``{prefix}_top1``) and of its EMA (``{prefix}_ema_top1``)."""
        row = evaluate(self.model, loader, self.procs, prefix, self.autocast)
        if self.ema is not None:
            row.update(evaluate(self.ema.module, loader, self.procs, f"{prefix}_ema", self.autocast))
        return row


def eval_loader(dataset: Any, batch_size: int, procs: Processes, workers: int = 0) -> Any:
    """Every rank evaluates a disjoint slice, so the summed counts are the whole set, once. Decoded by
    as many workers as training (an ImageFolder's JPEGs cost as much to read here as there)."""
    from torch.utils.data import DataLoader, Subset

    shard = Subset(dataset, range(procs.rank, len(dataset), procs.world_size))
    return DataLoader(shard, batch_size=max(1, batch_size // procs.world_size), shuffle=False, num_workers=workers,
                      pin_memory=procs.device.type == "cuda", persistent_workers=workers > 0)


def evaluate(model: Any, loader: Any, procs: Processes, prefix: str, autocast: dict[str, Any]) -> dict[str, float]:
    """Top-1 and loss of ``model`` over ``loader``'s shards, summed over the processes."""
    import torch

    model.eval()
    correct = loss_sum = count = 0.0
    with torch.no_grad(), torch.autocast(**autocast):
        for images, targets in loader:
            images, targets = images.to(procs.device), targets.to(procs.device)
            logits = model(images).float()
            loss_sum += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item()
            correct += (logits.argmax(1) == targets).sum().item()
            count += len(targets)
    correct, loss_sum, count = procs.all_sum(correct, loss_sum, count)
    return {f"{prefix}_top1": 100.0 * correct / count, f"{prefix}_loss": loss_sum / count}
