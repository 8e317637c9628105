"""X3KD's loss terms, one module each (formulas in DESIGN.md, "Losses"), and the criterion that
combines the enabled ones."""
from .criterion import X3KDLoss, total_loss
from detection.det_loss import det_loss, gaussian_focal_loss
from .ds import ds_loss
from .xat import BevDiscriminator, grad_reverse, xat_loss
from .xfd import xfd_loss
from .xis import XISHeads, xis_loss
from .xod import xod_loss

__all__ = ["X3KDLoss", "total_loss", "det_loss", "gaussian_focal_loss", "ds_loss", "BevDiscriminator",
           "grad_reverse", "xat_loss", "xfd_loss", "XISHeads", "xis_loss", "xod_loss"]
