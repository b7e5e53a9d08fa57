"""Atomic writes: the whole new file or the old one, with the permissions a plain open() gives."""

import os
import stat

import pytest

from effvit_nas._io import atomic_path, atomic_write_text


def test_a_written_file_gets_the_umask_permissions_not_owner_only(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    atomic_write_text(tmp_path / "a.json", "{}\n")
    # mkstemp creates 0600; a file others cannot read is a surprise for an exported model or a table
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~mask


def test_a_failed_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target, suffix=".onnx") as tmp:
        tmp.write_text("half")
        raise RuntimeError("the exporter failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
