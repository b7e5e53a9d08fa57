"""Reading a supernet checkpoint (``effnas supernet train``'s ``supernet.pt``) back into a ``Supernet``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..arch import Arch
from ..errors import EffNasError
from ..space import SearchSpace
from ..train.checkpoint import CHECKPOINT_FORMAT, CheckpointError, read_checkpoint
from ..train.recipe import Recipe
from .calibrate import CALIBRATION_BATCH_SIZE, CALIBRATION_BATCHES, calibration_batches
from .network import Supernet
from .training import SUPERNET_FORMAT

__all__ = ["load_supernet", "export_subnet", "calibration_for", "at_training_size", "input_size", "saved_recipe"]


def load_supernet(path: str | os.PathLike, flag: str = "--supernet") -> tuple[Supernet, dict[str, Any]]:
    """The trained supernet and its checkpoint (space, classes, data, img_size, history)."""
    checkpoint = read_checkpoint(path, flag)
    if checkpoint.get("format") != SUPERNET_FORMAT:
        what = "a training checkpoint (effnas train)" if "arch" in checkpoint else "not a supernet checkpoint"
        raise CheckpointError(f"{flag} must be a supernet checkpoint written by effnas supernet train, but "
                              f"{str(path)!r} is {what}")
    try:
        space = SearchSpace.from_dict(checkpoint["space"], where=f"{flag} space")
    except EffNasError as exc:
        raise CheckpointError(f"{flag} must record a valid search space, but: {exc}") from None
    net = Supernet.from_space(space, num_classes=len(checkpoint["classes"]))
    net.load_state_dict(checkpoint["model"])
    return net.eval(), checkpoint


def at_training_size(saved: dict[str, Any], arch: Arch) -> Arch:
    """``arch`` at the input size its supernet trained every subnet at (if it had one)."""
    return arch if saved["img_size"] is None else arch.replace(resolution=saved["img_size"])


def input_size(net: Supernet, saved: dict[str, Any]) -> int:
    """Side of the images the supernet's data is loaded at: its training size, else its largest resolution."""
    return saved["img_size"] or max(net.space.resolutions)


def saved_recipe(saved: dict[str, Any]) -> Recipe:
    return Recipe(**saved["recipe"])


def calibration_for(net: Supernet, saved: dict[str, Any], batches: int = CALIBRATION_BATCHES,
                    batch_size: int = CALIBRATION_BATCH_SIZE, seed: int = 0) -> list[Any]:
    """The fixed training images a subnet of this supernet recalibrates its BN on."""
    return calibration_batches(saved["data"], saved_recipe(saved), input_size(net, saved), batches, batch_size, seed)


def export_subnet(arch: Arch, supernet_path: str | os.PathLike, out: str | os.PathLike,
                  flag: str = "--from-supernet") -> tuple[Any, Path]:
    """Cut ``arch`` from the supernet, recalibrate its BN on the supernet's training data, and write it
    as a training checkpoint (``effnas train --init-from`` fine-tunes it; ``export``/``verify
    --checkpoint`` read it). Returns the model (eval mode) and the path written."""
    from ..train.checkpoint import save_checkpoint
    from .evaluate import recalibrated_subnet

    net, saved = load_supernet(supernet_path, flag)
    at_size = at_training_size(saved, arch)
    net.check(at_size)
    model = recalibrated_subnet(net, at_size, calibration_for(net, saved))  # as the supernet estimator scores it
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch.to_dict(),
        "img_size": at_size.resolution,
        "classes": list(saved["classes"]),
        "model": model.state_dict(),
        "from_supernet": {"path": str(Path(supernet_path).resolve()), "epochs": int(saved["epoch"]),
                          "space": net.space.name, "data": saved["data"]},
    }
    return model, save_checkpoint(payload, out)
