"""Training data: an ImageFolder tree for real use, scikit-learn's digits as the built-in set.

Real data is ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` (torchvision's ImageFolder), checked
up front so a wrong layout is one clear line, not a traceback from a worker process. The built-in
``digits`` set ships inside scikit-learn (1,797 grey 8x8 images of 10 digits; nothing is
downloaded): a fixed stratified 80/20 split, upscaled once to 32 px so random crops cut at
sub-digit-pixel steps, then resized by the transforms like any other image. ``noisy-digits`` is
the same split made hard (where digits saturate near 99% and cannot rank networks): each digit is
rotated, scaled and shifted, laid over a fainter distractor digit of another class, with pixel
noise; generated once per process from a fixed seed, so identical everywhere. ``shapes`` (32
classes of textured shapes at 96 px, train/val/test; train/shapes.py) is the task on which network
size and input resolution both matter (``shapes-mini``: its first images, for trying a pipeline); they
alone have a held-out ``test`` split that no search sees.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._io import atomic_write_text
from ..errors import EffNasError
from ..locations import effnas_home

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from .recipe import Recipe

__all__ = ["ImageData", "open_data", "class_count", "check_images_decode", "BUILTIN_DATASETS", "DataError"]

SHAPES_VARIANTS = ("shapes", "shapes-mini")  # train/shapes.py VARIANTS (not imported here: it pulls in numpy)
BUILTIN_DATASETS = ("digits", "noisy-digits", *SHAPES_VARIANTS)
DIGITS_BASE_PX = 32
DIGITS_VAL_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0  # fixed: the held-out digits are the same in every run, study and test


class DataError(EffNasError):
    """--data does not name usable images."""


@dataclass
class ImageData:
    """A train and a validation set with their class names; transforms are set by ``with_transforms``."""

    source: str  # "digits" or the resolved directory
    classes: tuple[str, ...]
    train: Dataset
    val: Dataset
    test: Dataset | None = None  # held out from search and training alike (built-in ``shapes``; DIR/test/)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint records, so a resume on other data is refused."""
        return {"source": self.source, "classes": list(self.classes), "train_images": len(self.train),
                "val_images": len(self.val)}

    def with_transforms(self, recipe: Recipe, img_size: int) -> ImageData:
        self.train.transform = train_transform(recipe, img_size)
        self.val.transform = eval_transform(recipe, img_size)
        if self.test is not None:
            self.test.transform = eval_transform(recipe, img_size)
        return self


class DigitsDataset:
    """One split of scikit-learn's digits as RGB PIL images (a map-style torch dataset)."""

    def __init__(self, split: str) -> None:
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        indices = np.arange(len(digits.target))
        train_idx, val_idx = train_test_split(indices, test_size=DIGITS_VAL_FRACTION, stratify=digits.target,
                                              random_state=DIGITS_SPLIT_SEED)
        chosen = train_idx if split == "train" else val_idx
        pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 17 grey levels -> 0..255
        size = (DIGITS_BASE_PX, DIGITS_BASE_PX)
        self.images = [Image.fromarray(pixels[i]).resize(size, Image.BICUBIC).convert("RGB") for i in chosen]
        self.targets = [int(digits.target[i]) for i in chosen]
        self.transform = None

    def __len__(self) -> int:
        return len(self.images)

    def make_noisy(self, seed: int) -> DigitsDataset:
        """Replace every image by a distorted one over a distractor (see the module docstring)."""
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(seed)
        grey = [np.asarray(img.convert("L"), dtype=np.float32) for img in self.images]
        by_class: dict[int, list[int]] = {}
        for i, label in enumerate(self.targets):
            by_class.setdefault(label, []).append(i)

        def distorted(pixels: np.ndarray, max_shift: float) -> np.ndarray:
            image = Image.fromarray(pixels.astype(np.uint8))
            size = int(round(DIGITS_BASE_PX * rng.uniform(0.75, 1.05)))
            image = image.resize((size, size), Image.BICUBIC)
            canvas = Image.new("L", (DIGITS_BASE_PX, DIGITS_BASE_PX))
            offset = (DIGITS_BASE_PX - size) // 2
            canvas.paste(image, (offset, offset))
            shift = tuple(int(v) for v in rng.uniform(-max_shift, max_shift, 2) * DIGITS_BASE_PX)
            canvas = canvas.rotate(float(rng.uniform(-25, 25)), resample=Image.BICUBIC, translate=shift)
            return np.asarray(canvas, dtype=np.float32)

        noisy = []
        for i, label in enumerate(self.targets):
            other = int(rng.choice([c for c in by_class if c != label]))
            distractor = grey[int(rng.choice(by_class[other]))]
            pixels = np.maximum(distorted(grey[i], 0.12), 0.55 * distorted(distractor, 0.3))
            pixels = np.clip(pixels + rng.normal(0, 30, pixels.shape), 0, 255).astype(np.uint8)
            noisy.append(Image.fromarray(pixels).convert("RGB"))
        self.images = noisy
        return self

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), self.targets[index]


def open_data(spec: str) -> ImageData:
    """``digits`` or an ImageFolder directory with ``train/`` and ``val/``."""
    if spec in SHAPES_VARIANTS:
        from .shapes import VARIANTS, ShapesDataset, class_names

        train, val, test = (ShapesDataset(split, size) for split, size in VARIANTS[spec].items())
        return ImageData(spec, class_names(), train, val, test)
    if spec in BUILTIN_DATASETS:
        train, val = DigitsDataset("train"), DigitsDataset("val")
        if spec == "noisy-digits":
            train, val = train.make_noisy(seed=1), val.make_noisy(seed=2)
        return ImageData(spec, tuple(str(d) for d in range(10)), train, val)
    root = Path(spec)
    if not root.is_dir():
        raise DataError(f"--data must be {', '.join(BUILTIN_DATASETS)} or an existing directory, but {spec!r} "
                        f"{'is a file' if root.exists() else 'does not exist'}; pass --data digits to try the "
                        "built-in set")
    train_classes = _check_split(root, "train")
    val_classes = _check_split(root, "val")
    if train_classes != val_classes:
        only_train = sorted(set(train_classes) - set(val_classes))
        only_val = sorted(set(val_classes) - set(train_classes))
        raise DataError(f"--data train/ and val/ must hold the same class folders, but only train/ has "
                        f"{only_train or 'none'} and only val/ has {only_val or 'none'}; add or remove folders")
    from torchvision.datasets import ImageFolder

    test = None
    if (root / "test").is_dir():  # optional: a split held out from search and training, scored once at the end
        if _check_split(root, "test") != train_classes:
            raise DataError(f"--data test/ must hold the class folders of train/ ({len(train_classes)}), but "
                            f"{str(root / 'test')!r} holds others; fix test/ or remove it")
        test = ImageFolder(root / "test")
    check_images_decode(root, ("train", "val", "test") if test is not None else ("train", "val"))
    return ImageData(str(root.resolve()), train_classes, ImageFolder(root / "train"), ImageFolder(root / "val"), test)


def class_count(spec: str) -> int:
    """How many classes ``--data`` has, without loading an image (a data-free score needs only this)."""
    if spec in SHAPES_VARIANTS:
        from .shapes import class_names

        return len(class_names())
    if spec in BUILTIN_DATASETS:
        return 10
    return len(_check_split(Path(spec), "train"))


def _check_split(root: Path, split: str) -> tuple[str, ...]:
    """The split's class names, after checking every class folder holds at least one image."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    folder = root / split
    if not folder.is_dir():
        raise DataError(f"--data must have the ImageFolder layout DIR/train/<class>/*.jpg and DIR/val/<class>/*.jpg, "
                        f"but {str(root)!r} has no {split}/ folder; move the images into that layout")
    classes = tuple(sorted(entry.name for entry in os.scandir(folder) if entry.is_dir()))
    if not classes:
        raise DataError(f"--data {split}/ must hold one folder per class, but {str(folder)!r} has no sub-folders; "
                        f"put each class's images in {split}/<class>/")
    for name in classes:
        if not any(_is_image(f, IMG_EXTENSIONS) for _, _, files in os.walk(folder / name) for f in files):
            raise DataError(f"--data class folders must each hold at least one image ({', '.join(IMG_EXTENSIONS)}), "
                            f"but {str(folder / name)!r} has none; add images or remove the folder")
    return classes


def check_images_decode(root: Path, splits: tuple[str, ...]) -> None:
    """Every image of ``splits`` opens and decodes in full, or ``DataError`` naming the first that does not
    and how many. A file that cannot be read would otherwise stop a search or a training mid-way, in a
    loader worker, with its output half written. Each file is decoded once: the ones that passed are
    remembered (size and modification time) under ``$EFFNAS_HOME/checked-images/``, so a later run
    over the same folder only looks at each file's size and time."""
    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    files = sorted(Path(folder) / name for split in splits for folder, _, names in os.walk(root / split)
                   for name in names if _is_image(name, IMG_EXTENSIONS))
    record = effnas_home() / "checked-images" / f"{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]}.json"
    try:
        passed = json.loads(record.read_text())
    except (OSError, ValueError):
        passed = {}
    bad = []
    for path in files:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        if passed.get(str(path)) == stamp:
            continue
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            bad.append((path, exc))
            continue
        passed[str(path)] = stamp
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(record, json.dumps(passed))
    except OSError:  # a read-only home only costs the next run the same check
        pass
    if bad:
        path, exc = bad[0]
        raise DataError(f"--data images must all decode, but {len(bad)} of {len(files)} cannot, the first "
                        f"{str(path)!r} ({exc}); remove or replace them and run again")


def _is_image(filename: str, extensions: tuple[str, ...]) -> bool:
    return filename.lower().endswith(extensions)


def train_transform(recipe: Recipe, img_size: int) -> Any:
    """The paper's training transform through timm: random resized crop (bicubic), flip, RandAugment,
    normalisation, random erasing; each piece's strength comes from the recipe."""
    from timm.data import create_transform

    return create_transform(
        img_size, is_training=True, scale=tuple(recipe.crop_scale), hflip=recipe.hflip,
        color_jitter=recipe.color_jitter, auto_augment=recipe.randaug or None, interpolation="bicubic",
        re_prob=recipe.reprob, re_mode="pixel", re_count=1,
    )


def eval_transform(recipe: Recipe, img_size: int) -> Any:
    """Resize to img_size / crop_pct and centre-crop img_size (the paper: 256 then 224)."""
    from timm.data import create_transform

    return create_transform(img_size, is_training=False, crop_pct=recipe.crop_pct, interpolation="bicubic")
