"""``shapes``: a built-in task generated offline on which network size and input resolution matter.

Why another built-in set: on digits and noisy-digits the M-series land within noise of each other (a
32 px, 10-class task a small network saturates), and the images hold no detail that a higher input
resolution could recover, so a search has nothing to trade. Here each class is one of 8 shapes
filled with one of 4 fine textures (32 classes); the texture period is 2.5-4 px at the native 96 px,
so a network that reads the image at 64 px sees the stripes, checks and dots near or past their
Nyquist limit and must tell the classes from aliased remains. Capacity is asked for by the
variation within a class: random size, rotation, position, colours, a graded background, two smaller
distractor shapes with their own shapes and textures, and pixel noise.

Every image is drawn from its own seed (split, index), so the set is identical on every machine and
needs no download; the arrays are cached as one ``.npy`` per split under ``EFFNAS_CACHE`` (default
``~/.cache/effvit_nas``), written atomically, so generating happens once per machine.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SHAPES", "TEXTURES", "NATIVE_PX", "VARIANTS", "ShapesDataset", "class_names", "render_split", "load_split"]

SHAPES = ("disk", "ring", "square", "diamond", "triangle", "cross", "star", "hexagon")
TEXTURES = ("solid", "stripes", "checks", "dots")
NATIVE_PX = 96
SUPERSAMPLE = 2  # drawn at 2x and averaged down: edges and textures anti-aliased like a photograph
# images per class and split; ``shapes-mini`` is the first images of each split of ``shapes`` (the same
# seeds), small enough to try a pipeline in a minute
VARIANTS = {"shapes": {"train": 160, "val": 25, "test": 50}, "shapes-mini": {"train": 20, "val": 5, "test": 5}}
SPLIT_SEEDS = {"train": 11, "val": 12, "test": 13}
VERSION = 1  # bump when the drawing changes: the cache key holds it


def class_names() -> tuple[str, ...]:
    return tuple(f"{shape}-{texture}" for shape in SHAPES for texture in TEXTURES)


def _shape_mask(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-ness in the shape's own frame (unit size, centred): a bool array like ``u``."""
    if name == "disk":
        return u * u + v * v <= 1.0
    if name == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.45)
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if name == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if name == "triangle":  # three half-planes at 120 degrees
        return (v >= -0.5) & (0.866 * u - 0.5 * v >= -0.5) & (-0.866 * u - 0.5 * v >= -0.5)
    if name == "cross":
        return ((np.abs(u) <= 0.32) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.32) & (np.abs(u) <= 0.95))
    if name == "star":  # five lobes: radius swings between 0.45 and 1 with the angle
        return np.sqrt(u * u + v * v) <= 0.72 + 0.28 * np.cos(5 * np.arctan2(v, u))
    if name == "hexagon":
        return np.maximum.reduce([np.abs(u), np.abs(0.5 * u + 0.866 * v), np.abs(0.5 * u - 0.866 * v)]) <= 0.85
    raise ValueError(name)


def _texture(name: str, a: np.ndarray, b: np.ndarray, period: np.ndarray) -> np.ndarray:
    """Which of the two fill colours each pixel takes (True: the first), from pixel-scale coordinates."""
    if name == "solid":
        return np.ones_like(a, dtype=bool)
    if name == "stripes":
        return np.sin(2 * np.pi * a / period) > 0
    if name == "checks":
        return np.sin(2 * np.pi * a / period) * np.sin(2 * np.pi * b / period) > 0
    if name == "dots":
        fa, fb = a / period % 1.0 - 0.5, b / period % 1.0 - 0.5
        return fa * fa + fb * fb > 0.09  # dots of the second colour on the first
    raise ValueError(name)


def _draw(canvas: np.ndarray, rng: np.random.Generator, shape: str, texture: str, size_px: float,
          grid: tuple[np.ndarray, np.ndarray]) -> None:
    """Paint one textured shape onto ``canvas`` (H, W, 3 float, supersampled) in place."""
    side = canvas.shape[0]
    cx, cy = rng.uniform(size_px, side - size_px, 2)
    angle = rng.uniform(0, 2 * np.pi)
    cos, sin = np.cos(angle), np.sin(angle)
    # only the box the shape can reach (every mask lies within 1.35 units of its centre): drawing
    # distractors over the whole canvas would cost most of the time
    reach = 1.35 * size_px
    rows = slice(max(0, int(cy - reach)), min(side, int(cy + reach) + 1))
    cols = slice(max(0, int(cx - reach)), min(side, int(cx + reach) + 1))
    ys, xs = grid[0][rows, cols], grid[1][rows, cols]
    canvas = canvas[rows, cols]  # a view: painting it paints the image
    dx, dy = xs - cx, ys - cy
    a, b = cos * dx + sin * dy, -sin * dx + cos * dy  # the shape's frame, in (supersampled) pixels
    mask = _shape_mask(shape, a / size_px, b / size_px)
    # the texture turns with its own angle, not the shape's, so orientation says nothing of the class
    t_angle = rng.uniform(0, np.pi)
    ta, tb = np.cos(t_angle) * dx + np.sin(t_angle) * dy, -np.sin(t_angle) * dx + np.cos(t_angle) * dy
    period = rng.uniform(2.5, 4.0) * SUPERSAMPLE
    first = _texture(texture, ta, tb, np.float32(period))
    colour_a = rng.uniform(0, 255, 3)
    colour_b = 255 - colour_a + rng.uniform(-40, 40, 3)  # far enough apart to show the texture
    fill = np.where(first[..., None], colour_a, np.clip(colour_b, 0, 255))
    canvas[mask] = fill[mask]


def _render_image(seed: tuple[int, int, int], label: int, grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    rng = np.random.default_rng(seed)
    side = NATIVE_PX * SUPERSAMPLE
    ys, xs = grid
    # background: a colour gradient in a random direction
    start, end = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    direction = rng.uniform(0, 2 * np.pi)
    ramp = (np.float32(np.cos(direction)) * xs + np.float32(np.sin(direction)) * ys) / side * 0.7 + 0.5
    canvas = start + (end - start) * np.clip(ramp, 0, 1)[..., None]
    for _ in range(2):  # distractors: smaller, any shape and texture
        _draw(canvas, rng, SHAPES[rng.integers(len(SHAPES))], TEXTURES[rng.integers(len(TEXTURES))],
              rng.uniform(0.10, 0.17) * side, (ys, xs))
    shape, texture = SHAPES[label // len(TEXTURES)], TEXTURES[label % len(TEXTURES)]
    _draw(canvas, rng, shape, texture, rng.uniform(0.24, 0.36) * side, (ys, xs))
    image = canvas.reshape(NATIVE_PX, SUPERSAMPLE, NATIVE_PX, SUPERSAMPLE, 3).mean(axis=(1, 3))
    image += rng.normal(0, 10, image.shape).astype(np.float32)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render_split(split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """(images N x 96 x 96 x 3 uint8, labels N) of one split, drawn now (no cache)."""
    n_classes = len(SHAPES) * len(TEXTURES)
    labels = np.tile(np.arange(n_classes), per_class)
    images = np.empty((len(labels), NATIVE_PX, NATIVE_PX, 3), np.uint8)
    side = NATIVE_PX * SUPERSAMPLE
    grid = tuple(np.mgrid[0:side, 0:side].astype(np.float32))
    for i, label in enumerate(labels):
        images[i] = _render_image((VERSION, SPLIT_SEEDS[split], i), int(label), grid)
    return images, labels


def cache_dir() -> Path:
    return Path(os.environ.get("EFFNAS_CACHE", Path.home() / ".cache" / "effvit_nas"))


def load_split(split: str, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """The split from the cache, drawing and caching it first if needed."""
    path = cache_dir() / f"shapes-v{VERSION}-{NATIVE_PX}px-{split}-{per_class}.npz"
    if path.exists():
        with np.load(path) as stored:
            return stored["images"], stored["labels"]
    images, labels = render_split(split, per_class)
    # unique per writer (processes on several hosts may share the cache), renamed into place atomically:
    # a concurrent reader sees the whole file or none
    partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as handle:
            np.savez(handle, images=images, labels=labels)
        os.replace(partial, path)
    except OSError as exc:
        from .data import DataError

        if partial.is_file():
            partial.unlink()
        raise DataError(f"the shapes cache must be writable, but {str(path.parent)!r} is not ({exc.strerror}); "
                        "set EFFNAS_CACHE to a writable folder") from None
    return images, labels


class ShapesDataset:
    """One split of ``shapes`` as RGB PIL images (a map-style torch dataset)."""

    def __init__(self, split: str, per_class: int) -> None:
        self.images, labels = load_split(split, per_class)
        self.targets = [int(t) for t in labels]
        self.transform = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from PIL import Image

        image = Image.fromarray(self.images[index])
        return (self.transform(image) if self.transform else image), self.targets[index]
