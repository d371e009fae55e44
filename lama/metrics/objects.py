"""The LaMa-protocol metrics as ``torchmetrics.Metric`` objects: ``update(pred, target)`` then ``compute()``.

The same object works in a notebook, in ``evaluation/`` and in a DDP training loop: the states are lists of
per-image values (FID: per-image Inception features) that torchmetrics concatenates across processes
(``dist_reduce_fx="cat"``), so a synced ``compute()`` sees every image once. Per-image values stay available
(:meth:`PerImageMetric.per_image`, :meth:`FID.features`) for the evaluation's mask-area bins. Values are kept in
float64, as the official evaluator averages them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from .fid import InceptionFeatures, fid_from_features
from .lpips_metric import LPIPSDistance
from .ssim import psnr, ssim


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"expected pred and target [B,3,H,W] of the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")


class PerImageMetric(Metric):
    """The mean over images of a per-image value; subclasses say how one batch's values are computed."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def values_of(self, pred: Tensor, target: Tensor) -> Tensor:
        """[B] values of one batch of [B,3,H,W] images in [0,1] (no state is changed)."""
        raise NotImplementedError

    def update(self, pred: Tensor, target: Tensor) -> None:
        _check_pair(pred, target)
        self.values.append(self.values_of(pred, target).detach().double())

    def per_image(self) -> Tensor:
        """Every image's value so far, in update order (across processes once synced, as in ``compute``)."""
        with self.sync_context(should_unsync=True):
            return dim_zero_cat(self.values).clone()

    def compute(self) -> Tensor:
        return dim_zero_cat(self.values).mean()


class LPIPS(PerImageMetric):
    """LPIPS as the paper: the ``lpips`` package, VGG trunk (or ``net="alex"``), v0.1 linear layers."""

    higher_is_better = False

    def __init__(self, net: str = "vgg", **kwargs) -> None:
        super().__init__(**kwargs)
        self.distance = LPIPSDistance(net=net)

    def values_of(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.distance(pred, target)


class SSIM(PerImageMetric):
    """SSIM as the LaMa evaluator: 11-px Gaussian window, zero padding (``variant="torchmetrics"`` crops)."""

    higher_is_better = True

    def __init__(self, variant: str = "lama", **kwargs) -> None:
        super().__init__(**kwargs)
        self.variant = variant

    def values_of(self, pred: Tensor, target: Tensor) -> Tensor:
        return ssim(pred, target, self.variant)


class PSNR(PerImageMetric):
    """PSNR per image on full [0,1] images, capped at ``max_db`` for identical ones, averaged over images."""

    higher_is_better = True

    def __init__(self, max_db: float = 100.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_db = max_db

    def values_of(self, pred: Tensor, target: Tensor) -> Tensor:
        return psnr(pred, target, self.max_db)


class FID(Metric):
    """FID as the paper: pytorch-fid's Inception, plain bilinear resize to 299 (``resize`` names alternatives),
    Fréchet distance in float64 between the features of the predictions and of the targets."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, resize: str = "lama", **kwargs) -> None:
        super().__init__(**kwargs)
        self.inception = InceptionFeatures(resize=resize)
        self.add_state("fake", default=[], dist_reduce_fx="cat")
        self.add_state("real", default=[], dist_reduce_fx="cat")

    def features(self, images: Tensor) -> Tensor:
        """[B,2048] float64 Inception features of [B,3,H,W] images in [0,1] (no state is changed)."""
        return self.inception(images).detach().double()

    def update(self, pred: Tensor, target: Tensor) -> None:
        _check_pair(pred, target)
        self.fake.append(self.features(pred))
        self.real.append(self.features(target))

    def compute(self) -> Tensor:
        real, fake = dim_zero_cat(self.real), dim_zero_cat(self.fake)
        return torch.tensor(fid_from_features(real, fake), dtype=torch.float64)
