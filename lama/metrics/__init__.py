"""Image-quality metrics, computed as the LaMa paper computed them (FID, LPIPS, SSIM, PSNR).

``FID``, ``LPIPS``, ``SSIM`` and ``PSNR`` are ``torchmetrics.Metric`` objects (:mod:`.objects`); torchmetrics and
the metric networks' weights are imported only when one is used, so ``import lama.metrics`` stays light.
"""

from .ssim import psnr, ssim

_OBJECTS = ("FID", "LPIPS", "SSIM", "PSNR", "PerImageMetric")
__all__ = ["psnr", "ssim", *_OBJECTS]


def __getattr__(name: str):
    if name in _OBJECTS:
        from . import objects

        return getattr(objects, name)
    raise AttributeError(f"module 'lama.metrics' has no attribute {name!r}")
