"""A found arch through timm's own factory: ``timm.create_model("effvit_nas", arch=...)``, including
archs timm's EfficientVitMsra cannot express, and timm scripts run with the entry registered."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch
from timm.data import resolve_data_config

import effvit_nas.timm_model  # noqa: F401 - registers the entry
from effvit_nas import Arch, EffNasError
from effvit_nas.counting import count
from effvit_nas.export import timm_kwargs

FOUND = Arch.preset("m1").replace(resolution=96, ffn_ratios=(3, 2, 1.5), depths=(2, 1, 2), name="found")


def test_timm_builds_an_arch_its_own_efficientvit_cannot_express(tmp_path):
    path = tmp_path / "best.yaml"
    FOUND.to_yaml(path)
    with pytest.raises(EffNasError, match="FFN ratio"):
        timm_kwargs(FOUND)
    model = timm.create_model("effvit_nas", arch=str(path), num_classes=32)
    assert "effvit_nas" in timm.list_models("effvit*")
    assert sum(p.numel() for p in model.parameters()) == count(FOUND, num_classes=32).params
    config = resolve_data_config({}, model=model)  # what timm's train.py builds its transforms from
    assert config["input_size"] == (3, 96, 96) and config["interpolation"] == "bicubic"
    assert model.eval()(torch.zeros(2, *config["input_size"])).shape == (2, 32)


def test_presets_dicts_and_bad_arguments():
    assert timm.create_model("effvit_nas", arch="m0").pretrained_cfg["input_size"] == (3, 224, 224)
    assert timm.create_model("effvit_nas", arch=FOUND.to_dict(), num_classes=0)(torch.zeros(1, 3, 96, 96)).shape == \
        (1, FOUND.widths[-1])
    with pytest.raises(EffNasError, match="no pretrained weights"):
        timm.create_model("effvit_nas", pretrained=True)
    with pytest.raises(EffNasError, match="arch= must be an arch YAML file"):
        timm.create_model("effvit_nas", arch="nowhere.yaml")
    with pytest.raises(EffNasError, match=r"got \['drop_path_rate'\]"):
        timm.create_model("effvit_nas", drop_path_rate=0.1)


def test_a_timm_script_runs_with_the_entry_registered(tmp_path):
    script = tmp_path / "script.py"
    script.write_text("import sys, timm\nmodel = timm.create_model(sys.argv[1], arch=sys.argv[2], num_classes=5)\n"
                      "print(type(model).__name__, model.pretrained_cfg['input_size'])\n")
    result = subprocess.run([sys.executable, "-m", "effvit_nas.timm_model", str(script), "effvit_nas", "m2"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "EfficientViT (3, 224, 224)"
    missing = subprocess.run([sys.executable, "-m", "effvit_nas.timm_model", str(tmp_path / "none.py")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "SCRIPT must be a file" in missing.stderr
