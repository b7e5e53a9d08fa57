"""Data: the built-in digits split, and one-line refusals for every broken ImageFolder layout."""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from effvit_nas.train.data import DataError, open_data
from effvit_nas.train.recipe import SMALL


def test_digits_is_a_fixed_stratified_split():
    data = open_data("digits")
    assert (len(data.train), len(data.val), data.num_classes) == (1437, 360, 10)
    val_counts = Counter(data.val.targets)
    assert min(val_counts.values()) >= 35 and max(val_counts.values()) <= 37  # stratified: ~36 per class
    again = open_data("digits")
    assert again.val.targets == data.val.targets
    assert again.val.images[0].tobytes() == data.val.images[0].tobytes()


def test_transforms_give_tensors_at_the_training_size():
    data = open_data("digits").with_transforms(SMALL, 64)
    image, label = data.train[0]
    assert tuple(image.shape) == (3, 64, 64) and 0 <= label < 10
    image, _ = data.val[0]
    assert tuple(image.shape) == (3, 64, 64)


def make_folder(root, layout):
    """layout: {split: {class: number of images}}"""
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.new("RGB", (20, 20), (i * 40, 0, 0)).save(folder / f"{i}.png")
    return root


def test_a_good_image_folder_opens(tmp_path):
    root = make_folder(tmp_path, {"train": {"cat": 2, "dog": 3}, "val": {"cat": 1, "dog": 1}})
    data = open_data(str(root))
    assert data.classes == ("cat", "dog") and (len(data.train), len(data.val)) == (5, 2)


def test_an_image_folder_with_a_test_split_opens_it_and_refuses_other_classes(tmp_path):
    root = make_folder(tmp_path / "a", {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1},
                                         "test": {"cat": 3, "dog": 1}})
    assert len(open_data(str(root)).test) == 4
    assert open_data(str(make_folder(tmp_path / "b", {"train": {"cat": 1}, "val": {"cat": 1}}))).test is None
    bad = make_folder(tmp_path / "c", {"train": {"cat": 1, "dog": 1}, "val": {"cat": 1, "dog": 1},
                                       "test": {"cat": 1}})
    with pytest.raises(DataError, match="test/ must hold the class folders of train/"):
        open_data(str(bad))


def test_a_folder_named_like_a_builtin_set_is_a_folder(tmp_path):
    root = make_folder(tmp_path / "shapes_photos", {"train": {"cat": 1}, "val": {"cat": 1}})
    assert open_data(str(root)).classes == ("cat",)
    with pytest.raises(DataError, match="does not exist"):
        open_data(str(tmp_path / "shapes-large"))


@pytest.mark.parametrize("layout, message", [
    (None, "does not exist"),
    ({"train": {"cat": 1}}, "has no val/ folder"),
    ({"train": {}, "val": {"cat": 1}}, "has no sub-folders"),
    ({"train": {"cat": 1, "dog": 0}, "val": {"cat": 1, "dog": 1}}, "must each hold at least one image"),
    ({"train": {"cat": 1, "dog": 1}, "val": {"cat": 1, "cow": 1}}, "only train/ has ['dog'] and only val/ has ['cow']"),
])
def test_broken_layouts_are_refused_in_one_line(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout is not None:
        root.mkdir()
        for split in layout:
            (root / split).mkdir()
        make_folder(root, layout)
    with pytest.raises(DataError) as info:
        open_data(str(root))
    assert message in str(info.value) and "\n" not in str(info.value)


def _damage(folder, count):
    """``count`` JPEGs cut short, as a copy interrupted mid-file leaves them (the header reads, the pixels
    do not)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        whole = folder / f"whole{i}.jpg"
        Image.effect_noise((64, 64), 60).convert("RGB").save(whole, quality=95)
        data = whole.read_bytes()
        (folder / f"torn{i}.jpg").write_bytes(data[: len(data) // 2])
        whole.unlink()


def test_images_that_cannot_be_decoded_are_found_before_anything_starts(tmp_path):
    root = make_folder(tmp_path / "data", {"train": {"cat": 3, "dog": 3}, "val": {"cat": 1, "dog": 1}})
    open_data(str(root))  # whole: opens, and the passed files are remembered
    _damage(root / "train" / "dog", 2)
    with pytest.raises(DataError, match=r"images must all decode, but 2 of 10 cannot, the first '.*torn0\.jpg' "):
        open_data(str(root))
    for torn in (root / "train" / "dog").glob("torn*.jpg"):
        torn.unlink()
    assert len(open_data(str(root)).train) == 6


@pytest.mark.slow  # three CLI processes (verify reads --data through the same open_data, after a checkpoint)
def test_a_damaged_image_is_one_line_for_search_train_and_supernet_and_nothing_is_written(tmp_path):
    from tests.cli.helpers import assert_one_line_error, effnas

    root = make_folder(tmp_path / "data", {"train": {"cat": 2, "dog": 2}, "val": {"cat": 1, "dog": 1}})
    _damage(root / "val" / "cat", 1)
    for command in (["search", "--target", "amd-epyc-2core-ort-b1", "--budget", "5ms", "--trials", "3"],
                    ["train", "m0", "--epochs", "1"], ["supernet", "train", "--epochs", "1"]):
        out = tmp_path / "-".join(command[:2])
        result = effnas(*command, "--data", str(root), "--out", str(out))
        assert_one_line_error(result, "images must all decode, but 1 of 7 cannot")
        assert not out.exists()
