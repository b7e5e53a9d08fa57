"""Checkpoint files: written atomically, read with one-line errors, matched to the arch they load into.

A training checkpoint is a dict: ``model`` (the state dict), ``arch`` (the arch as found),
``img_size`` (the resolution it was trained at), ``classes``, and for resuming ``optimizer``, ``model_ema``, ``epoch``,
``step``, ``history`` and the ``settings`` that must not change across a resume. A plain state dict
(timm's, or ``{'model': ...}``) is accepted wherever only weights are needed.

Loading into an arch at another resolution resamples each attention-bias table bicubically as an
S x S grid of offsets, as the paper's fine-tuning does; a different class count drops the head only
where asked (``--init-from``), never silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_path
from ..arch import Arch
from ..errors import EffNasError

if TYPE_CHECKING:
    import torch

__all__ = ["CheckpointError", "save_checkpoint", "read_checkpoint", "load_weights", "trained_model", "HEAD_KEYS"]

HEAD_KEYS = ("head.linear.weight", "head.linear.bias")
CHECKPOINT_FORMAT = "effvit-nas-checkpoint/1"


class CheckpointError(EffNasError):
    """A checkpoint is missing, unreadable, or for another arch."""


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike, flag: str = "--checkpoint") -> dict[str, Any]:
    """The checkpoint as a dict with at least ``model``; plain state dicts are wrapped."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError):
        raise CheckpointError(f"{flag} must be an existing checkpoint file, but {str(path)!r} was not found") from None
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{flag} must be a torch checkpoint, but {str(path)!r} could not be read "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}); "
                              "it may be truncated: use the file a finished epoch wrote") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        return data
    if isinstance(data, dict) and data and all(hasattr(v, "shape") for v in data.values()):
        return {"model": data}
    raise CheckpointError(f"{flag} must hold a state dict or {{'model': state dict}}, but {str(path)!r} holds "
                          f"{type(data).__name__}")


def checkpoint_arch(checkpoint: dict[str, Any], flag: str) -> Arch | None:
    if "arch" not in checkpoint:
        return None
    try:
        return Arch.from_dict(dict(checkpoint["arch"]), where=f"{flag} arch")
    except EffNasError as exc:
        raise CheckpointError(f"{flag} must record a valid arch, but: {exc}") from None


def check_recorded_arch(checkpoint: dict[str, Any], arch: Arch, flag: str) -> None:
    """Refuse a checkpoint that records another arch (any resolution: weights carry across sizes).
    Needs no model: callers run it before anything slow (``train`` before loading its data)."""
    trained = checkpoint_arch(checkpoint, flag)
    if trained is not None and trained.replace(resolution=arch.resolution) != arch:
        raise CheckpointError(f"{flag} must be trained for this arch ({arch.arch_id}), but it holds arch "
                              f"{trained.arch_id} ({trained}); pass the YAML it was trained from")


def load_weights(model: torch.nn.Module, arch: Arch, checkpoint: dict[str, Any], *, flag: str = "--checkpoint",
                 new_head_ok: bool = False) -> list[str]:
    """Load ``checkpoint`` into ``model`` (built for ``arch``); returns notes on what was adapted."""
    check_recorded_arch(checkpoint, arch, flag)
    state = dict(checkpoint["model"])
    target = model.state_dict()
    notes = []
    resized = _resample_attention_biases(state, target)
    if resized:
        notes.append(f"attention biases resampled for {resized} layers (trained at another resolution)")
    if new_head_ok and any(k in state and state[k].shape != target[k].shape for k in HEAD_KEYS):
        for key in HEAD_KEYS:
            state[key] = target[key]
        notes.append("classifier re-initialised (the checkpoint has another class count)")
    missing, unexpected = _key_differences(state, target)
    shapes = [k for k in target if k in state and state[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        if missing or unexpected:
            first = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        else:
            first = f"{shapes[0]} is {tuple(state[shapes[0]].shape)}, the arch needs {tuple(target[shapes[0]].shape)}"
        raise CheckpointError(f"{flag} must match the arch {arch.arch_id}, but it does not ({first}; "
                              f"{len(missing) + len(unexpected) + len(shapes)} tensors differ); pass the checkpoint "
                              "trained for this arch")
    model.load_state_dict(state, strict=True)
    return notes


def _key_differences(state: dict, target: dict) -> tuple[list[str], list[str]]:
    return sorted(set(target) - set(state)), sorted(set(state) - set(target))


def _resample_attention_biases(state: dict, target: dict) -> int:
    """Bicubic resampling of (heads, S*S) bias tables to the target's window, in place; returns how many."""
    import torch.nn.functional as F

    count = 0
    for key, wanted in target.items():
        if not key.endswith("attention_biases") or key not in state or state[key].shape == wanted.shape:
            continue
        have = state[key]
        if have.shape[0] != wanted.shape[0]:
            continue  # another head count: a true mismatch, reported by the caller
        side_in, side_out = round(have.shape[1] ** 0.5), round(wanted.shape[1] ** 0.5)
        grid = have.reshape(1, have.shape[0], side_in, side_in)
        state[key] = F.interpolate(grid, size=(side_out, side_out), mode="bicubic", align_corners=False).reshape(
            wanted.shape)
        count += 1
    return count


def trained_model(arch: Arch, path: str | os.PathLike, flag: str = "--checkpoint") -> tuple[Any, dict[str, Any],
                                                                                           list[str]]:
    """``arch`` built with the checkpoint's class count and weights: (model, checkpoint, notes)."""
    from ..model import build_model

    checkpoint = read_checkpoint(path, flag)
    classes = checkpoint.get("classes")
    head = checkpoint["model"].get(HEAD_KEYS[0])
    num_classes = len(classes) if classes else int(head.shape[0]) if head is not None else 1000
    model = build_model(arch, num_classes=num_classes)
    return model, checkpoint, load_weights(model, arch, checkpoint, flag=flag)
