"""Any effvit-nas arch in timm's model registry: ``timm.create_model("effvit_nas", arch="best.yaml")``.

timm's own ``EfficientVitMsra`` fixes the FFN ratio at 2, so most found archs cannot be written as
its kwargs (``effnas export`` says so); this entry builds every arch of every space. Importing this
module registers it (timm has no plug-in discovery, so something must import it first):

    import effvit_nas.timm_model
    model = timm.create_model("effvit_nas", arch="runs/.../best.yaml", num_classes=10)

and timm's own training script trains a found arch through it, unchanged:

    python -m effvit_nas.timm_model path/to/timm/train.py --model effvit_nas \\
        --model-kwargs arch=runs/.../best.yaml --data-dir ... (any other train.py flag)

``arch`` is a YAML path, a preset name (m0..m5) or an arch dict. The model carries a
``pretrained_cfg`` whose ``input_size`` is the arch's resolution, so timm's data config (and with
it train.py's transforms) trains and evaluates at the size the arch was searched and timed at.
There are no pretrained weights: ``pretrained=True`` is refused in one line.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model

from .arch import Arch
from .errors import EffNasError

__all__ = ["effvit_nas", "arch_from"]

# kwargs timm's create_model and train.py may pass that mean nothing to this network; they are
# accepted when left at "off" and refused with a reason otherwise
_IGNORED_WHEN_OFF = {"drop_path_rate": 0.0, "drop_block_rate": 0.0, "global_pool": "avg", "cache_dir": None}


def arch_from(value: str | dict | Arch) -> Arch:
    if isinstance(value, Arch):
        return value
    if isinstance(value, dict):
        return Arch.from_dict(value)
    if str(value).lower() in {f"m{i}" for i in range(6)}:
        return Arch.preset(str(value))
    if not Path(value).is_file():
        raise EffNasError(f"effvit_nas arch= must be an arch YAML file, a preset m0..m5 or an arch dict, but "
                          f"{value!r} is none of these; pass arch=runs/.../best.yaml")
    return Arch.from_yaml(value)


@register_model
def effvit_nas(pretrained: bool = False, arch: str | dict | Arch = "m0", num_classes: int = 1000,
               in_chans: int = 3, drop_rate: float = 0.0, pretrained_cfg: Any = None,
               pretrained_cfg_overlay: dict | None = None, **kwargs: Any) -> Any:
    """The EfficientViT of ``arch`` (timm registry entry; see the module docstring)."""
    from .model import build_model

    if pretrained:
        raise EffNasError("effvit_nas has no pretrained weights (archs are found per task): pass "
                          "pretrained=False and train it, or load a checkpoint with checkpoint_path=")
    extra = {k: v for k, v in kwargs.items() if v is not None and _IGNORED_WHEN_OFF.get(k, object()) != v}
    if extra:
        raise EffNasError(f"effvit_nas takes arch, num_classes, in_chans and drop_rate, but got {sorted(extra)}; "
                          "drop them (the network has no such option)")
    found = arch_from(arch)
    model = build_model(found, num_classes=num_classes, in_chans=in_chans)
    if drop_rate and num_classes > 0:
        model.head.drop.p = drop_rate
    side = found.resolution
    model.pretrained_cfg = {
        "architecture": "effvit_nas", "input_size": (in_chans, side, side), "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "crop_pct": 0.875, "interpolation": "bicubic",
        "num_classes": num_classes, "first_conv": "patch_embed.conv1.conv", "classifier": "head.linear",
        **(pretrained_cfg_overlay or {}),
    }
    model.default_cfg = model.pretrained_cfg
    return model


def main(argv: list[str]) -> None:
    """``python -m effvit_nas.timm_model SCRIPT [ARGS...]``: run a timm script with this entry registered."""
    if not argv or not Path(argv[0]).is_file():
        sys.stderr.write("effnas: usage: python -m effvit_nas.timm_model SCRIPT.py [ARGS...] (SCRIPT must be a "
                         f"file, e.g. timm's train.py, but got {argv[0] if argv else 'nothing'!r})\n")
        raise SystemExit(2)
    sys.argv = list(argv)
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
