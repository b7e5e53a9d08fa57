"""Weight-sharing supernet over a search space: ``Supernet.from_space(space)``, ``net(x, arch)``,
``net.extract(arch)``, ``recalibrate_bn``, sandwich-rule training and checkpoint loading."""

from .calibrate import calibration_batches, recalibrate_bn
from .files import export_subnet, load_supernet
from .network import Supernet
from .training import SUPERNET_CHECKPOINT, SupernetSettings, train_supernet

__all__ = ["Supernet", "recalibrate_bn", "calibration_batches", "load_supernet", "export_subnet", "SupernetSettings",
           "train_supernet", "SUPERNET_CHECKPOINT"]
