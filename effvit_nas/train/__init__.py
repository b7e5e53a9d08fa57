"""Train an architecture with the paper's recipe (timm's utilities), resumable and DDP-ready.

``train(TrainSettings(...))`` runs under plain ``python`` or ``torchrun``; see ``loop.py`` for how a
resume reproduces an uninterrupted run exactly.
"""

from .checkpoint import CheckpointError, load_weights, read_checkpoint
from .data import BUILTIN_DATASETS, DataError, ImageData, open_data
from .loop import CHECKPOINT_NAME, CURVES_NAME, METRICS_NAME, TrainingError, TrainSettings, train
from .recipe import RECIPES, Recipe, recipe_for

__all__ = [
    "train", "TrainSettings", "TrainingError", "Recipe", "RECIPES", "recipe_for", "open_data", "ImageData",
    "BUILTIN_DATASETS", "DataError", "read_checkpoint", "load_weights", "CheckpointError",
    "CHECKPOINT_NAME", "METRICS_NAME", "CURVES_NAME",
]
