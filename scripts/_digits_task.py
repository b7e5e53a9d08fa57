"""A second task of real images for the benchmarks: scikit-learn's handwritten digits (shipped inside the
package, nothing downloaded) written out as an ImageFolder with train/, val/ and test/.

The built-in ``digits``/``noisy-digits`` sets have train and val only, and a benchmark's figure is top-1 on
a split no search or epoch saw. Their val split is kept as it is (so validation figures and the chance
level mean what they mean elsewhere); the test split is carved out of their train split, stratified, with a
fixed seed. The benchmark then reads the folder the way a user's data is read (``--data DIR``).
"""

from __future__ import annotations

from pathlib import Path

from effvit_nas._io import atomic_write_text

TASKS = ("digits", "noisy-digits")
TEST_FRACTION = 0.25  # of the built-in train split: 359 test images, as many as val has
SPLIT_SEED = 7  # fixed: the same test images in every run


def write_task(name: str, root: Path) -> Path:
    """``root`` holding ``name`` as train/val/test class folders of PNGs; reused when already complete."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from effvit_nas.train.data import open_data

    done = root / "complete"
    if done.exists():
        return root
    data = open_data(name)
    indices = np.arange(len(data.train))
    train_idx, test_idx = train_test_split(indices, test_size=TEST_FRACTION, stratify=data.train.targets,
                                           random_state=SPLIT_SEED)
    splits = {"train": (data.train, train_idx), "test": (data.train, test_idx),
              "val": (data.val, np.arange(len(data.val)))}
    for split, (dataset, chosen) in splits.items():
        for i in chosen:
            image, label = dataset[int(i)]
            folder = root / split / data.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"{int(i):04d}.png")
    counts = {split: len(chosen) for split, (_, chosen) in splits.items()}
    # written last: a run killed mid-way rewrites the folder rather than training on part of it
    atomic_write_text(done, f"{name}: {counts}\n")
    return root
