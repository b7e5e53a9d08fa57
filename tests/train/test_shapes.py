"""The built-in ``shapes`` task: identical everywhere, balanced, three disjoint splits, cached once,
and a task where input resolution matters (its textures do not survive 64 px)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from effvit_nas.train import shapes
from effvit_nas.train.data import open_data


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFNAS_CACHE", str(tmp_path / "cache"))


def test_a_split_is_drawn_from_fixed_seeds_balanced_and_unlike_the_other_splits():
    images, labels = shapes.render_split("val", per_class=2)
    again, _ = shapes.render_split("val", per_class=2)
    assert images.shape == (64, 96, 96, 3) and images.dtype == np.uint8
    assert np.array_equal(images, again)  # the same bytes in every process and on every machine
    assert Counter(labels.tolist()) == {c: 2 for c in range(32)}
    other, _ = shapes.render_split("test", per_class=2)
    assert not any(np.array_equal(a, b) for a in images for b in other)
    assert len(shapes.class_names()) == 32 == len(set(shapes.class_names()))


def test_the_split_is_cached_atomically_and_read_back(monkeypatch, tmp_path):
    images, labels = shapes.load_split("val", 1)
    cached = list((tmp_path / "cache").iterdir())
    assert [p.suffix for p in cached] == [".npz"]  # no .partial left behind
    monkeypatch.setattr(shapes, "render_split", lambda *a: pytest.fail("read from the cache, not drawn again"))
    again, again_labels = shapes.load_split("val", 1)
    assert np.array_equal(images, again) and np.array_equal(labels, again_labels)


def energy_above_nyquist_of(image: np.ndarray, side: int) -> float:
    """Mean power of the grey image at frequencies a ``side``-px copy cannot hold (above its Nyquist)."""
    grey = np.asarray(Image.fromarray(image).convert("L"), dtype=np.float32)
    power = np.abs(np.fft.fft2(grey - grey.mean())) ** 2 / grey.size ** 2
    freq = np.abs(np.fft.fftfreq(grey.shape[0]))
    beyond = np.maximum(freq[:, None], freq[None, :]) > 0.5 * side / grey.shape[0]
    return float(power[beyond].sum())


def test_the_textures_carry_detail_that_64_px_cannot_hold():
    images, labels = shapes.render_split("val", per_class=4)
    per_texture = {t: np.median([energy_above_nyquist_of(img, 64) for img, label in zip(images, labels)
                                 if shapes.TEXTURES[label % 4] == t]) for t in shapes.TEXTURES}
    # solid shapes have only edges and pixel noise up there; every texture adds its own (measured 1.5-2.1x)
    for texture in ("stripes", "checks", "dots"):
        assert per_texture[texture] > 1.3 * per_texture["solid"], per_texture


def test_open_data_gives_train_val_and_a_held_out_test_split_and_mini_is_a_subset(monkeypatch):
    monkeypatch.setitem(shapes.VARIANTS, "shapes", {"train": 2, "val": 1, "test": 1})
    monkeypatch.setitem(shapes.VARIANTS, "shapes-mini", {"train": 1, "val": 1, "test": 1})
    data, mini = open_data("shapes"), open_data("shapes-mini")
    assert data.num_classes == 32 and (len(data.train), len(data.val), len(data.test)) == (64, 32, 32)
    image, label = data.test[5]
    assert image.size == (96, 96) and label == 5
    assert len(mini.train) == 32 and np.array_equal(mini.train.images, data.train.images[:32])


def test_an_unwritable_cache_is_one_line_naming_the_variable(tmp_path, monkeypatch):
    from effvit_nas.train.data import DataError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("EFFNAS_CACHE", str(blocker / "cache"))
    with pytest.raises(DataError, match="the shapes cache must be writable, .* set EFFNAS_CACHE"):
        shapes.load_split("val", 1)
