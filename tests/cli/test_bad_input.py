"""Input that must be refused in one line with exit 2 before any work: an arch or space far beyond any
sane size, a bad space file, and an --out that names an existing file."""

from __future__ import annotations

import time

import pytest
import yaml

from effvit_nas import Arch
from tests.cli.helpers import assert_one_line_error, effnas, effnas_here
from tests.test_space import TINY


def test_export_of_an_oversized_arch_is_refused_at_once(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump({**Arch.preset("m0").to_dict(), "depths": [1, 2, 100_000_000]}))
    start = time.perf_counter()
    result = effnas("export", str(path), "--onnx", str(tmp_path / "huge.onnx"))
    assert time.perf_counter() - start < 30  # the process start-up, not a build of the network
    assert_one_line_error(result, "stage 3 depth must be at most 50", "but got 100000000")
    assert not (tmp_path / "huge.onnx").exists()


def _space_file(tmp_path, change) -> str:
    data = yaml.safe_load(yaml.safe_dump(TINY))
    change(data)
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "make_path, fragments",
    [
        (lambda p: str(p / "nope.yaml"), ["search space file must exist", "nope.yaml"]),
        (lambda p: _space_file(p, lambda d: d.update(depth=[1])), ["unknown key(s) ['depth']"]),
        (lambda p: _space_file(p, lambda d: d.update(schema_version=7)), ["schema_version 1, but has 7"]),
        (lambda p: _space_file(p, lambda d: d["stages"][1].update(width=[32, 10**6])),
         ["stage 2 width must be at most 5120", "but got 1000000"]),
        (lambda p: str(p), ["search space file must be a readable text file"]),
    ],
)
def test_space_info_refuses_bad_input_in_one_line(tmp_path, make_path, fragments):
    assert_one_line_error(effnas_here("space", "info", "--space", make_path(tmp_path)), *fragments)


@pytest.fixture()
def a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("keep me\n")
    return path


@pytest.mark.parametrize(
    "command",
    [
        ["train", "m0", "--data", "digits", "--epochs", "1"],
        ["supernet", "train", "--data", "digits", "--epochs", "1"],
        ["table", "validate", "--target", "amd-epyc-2core-ort-b1", "--samples", "1"],
    ],
)
def test_an_output_folder_that_is_a_file_is_refused(a_file, command):
    assert_one_line_error(effnas_here(*command, "--out", str(a_file)), "--out must be a folder", "is a file")
    assert_one_line_error(effnas_here(*command, "--out", str(a_file / "run")), "--out must lie in a folder",
                          "is a file")
    assert a_file.read_text() == "keep me\n"


def test_export_refuses_an_existing_out_file_and_a_folder_as_onnx(tmp_path, a_file):
    # refused before the supernet is read: this one does not even exist
    supernet = str(tmp_path / "supernet.pt")
    assert_one_line_error(effnas_here("export", "m0", "--from-supernet", supernet, "--out", str(a_file)),
                          "--out must name a file that does not exist yet", "exists")
    assert_one_line_error(effnas_here("export", "m0", "--from-supernet", supernet, "--out", str(a_file / "c.pt")),
                          "--out must lie in a folder")
    assert_one_line_error(effnas("export", "m0", "--onnx", str(tmp_path)), "--onnx must name a file",
                          "is a folder")
    assert a_file.read_text() == "keep me\n"
