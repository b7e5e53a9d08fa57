"""Checkpoints: read with one-line errors, matched to the arch, adapted only where it is sound."""

from __future__ import annotations

import pytest
import torch

from effvit_nas import Arch, build_model
from effvit_nas.train.checkpoint import CheckpointError, load_weights, read_checkpoint, save_checkpoint


def test_corrupt_truncated_and_missing_files_are_one_line_errors(tmp_path):
    good = save_checkpoint({"model": build_model(Arch.preset("m0"), num_classes=10).state_dict()}, tmp_path / "a.pt")
    truncated = tmp_path / "t.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path, fragment in [(truncated, "could not be read"), (garbage, "could not be read"),
                           (tmp_path / "none.pt", "was not found")]:
        with pytest.raises(CheckpointError, match=fragment) as info:
            read_checkpoint(path)
        assert "\n" not in str(info.value)
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="must hold a state dict"):
        read_checkpoint(tmp_path / "list.pt")


def test_plain_state_dicts_load_and_leave_no_temp_files(tmp_path):
    source = build_model(Arch.preset("m0"), num_classes=10)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    target = build_model(Arch.preset("m0"), num_classes=10)
    assert load_weights(target, Arch.preset("m0"), read_checkpoint(tmp_path / "plain.pt")) == []
    for key, value in source.state_dict().items():
        assert torch.equal(value, target.state_dict()[key]), key
    save_checkpoint({"model": source.state_dict()}, tmp_path / "ckpt.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "plain.pt"]


def test_a_checkpoint_for_another_arch_is_refused():
    m0, m1 = Arch.preset("m0"), Arch.preset("m1")
    recorded = {"model": build_model(m0, num_classes=10).state_dict(), "arch": m0.to_dict()}
    with pytest.raises(CheckpointError, match=f"must be trained for this arch \\({m1.arch_id}\\), but it holds arch "
                                              f"{m0.arch_id}"):
        load_weights(build_model(m1, num_classes=10), m1, recorded)
    plain = {"model": recorded["model"]}
    with pytest.raises(CheckpointError, match=f"must match the arch {m1.arch_id}, but it does not"):
        load_weights(build_model(m1, num_classes=10), m1, plain)
    with pytest.raises(CheckpointError, match="head.linear.weight is \\(10, 192\\), the arch needs \\(5, 192\\)"):
        load_weights(build_model(m0, num_classes=5), m0, plain)


def test_another_resolution_resamples_attention_biases_and_a_new_head_is_opt_in():
    m0 = Arch.preset("m0")
    trained = build_model(m0, num_classes=10)
    small = m0.replace(resolution=160)  # windows 7, 7, 4 -> 7, 5, 3
    model = build_model(small, num_classes=3)
    notes = load_weights(model, small, {"model": trained.state_dict(), "arch": m0.to_dict()}, new_head_ok=True)
    assert any("resampled for 5 layers" in n for n in notes) and any("classifier" in n for n in notes)
    assert torch.equal(model.state_dict()["stages.0.blocks.0.mixer.m.attn.attention_biases"],
                       trained.state_dict()["stages.0.blocks.0.mixer.m.attn.attention_biases"])
    assert model.state_dict()["stages.2.blocks.0.mixer.m.attn.attention_biases"].shape == (4, 9)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 3, 160, 160))).all()
