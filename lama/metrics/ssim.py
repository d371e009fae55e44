"""SSIM and PSNR per image, as the LaMa evaluator computes them.

LaMa's SSIM (``saicinpainting/evaluation/losses/ssim.py``, after pytorch-ssim) uses an 11-pixel
Gaussian window with sigma 1.5, **zero padding** at the borders, C1 = 0.01² and C2 = 0.03² on [0, 1]
images, and averages the SSIM map over channels and pixels of each image. torchmetrics' SSIM crops
the borders instead and gives a different number; it is offered as ``variant="torchmetrics"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_VARIANTS = ("lama", "torchmetrics")


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Normalised 2-D Gaussian window, [size, size], float64."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map_lama(pred: torch.Tensor, target: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """SSIM map [B,C,H,W] of images in [0,1], with zero padding at the borders (the LaMa evaluator's)."""
    c = pred.shape[1]
    w = gaussian_window(window_size).to(pred)[None, None].expand(c, 1, window_size, window_size)
    pad = window_size // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, padding=pad, groups=c)

    mu1, mu2 = blur(pred), blur(target)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = blur(pred * pred) - mu1_sq
    s2 = blur(target * target) - mu2_sq
    s12 = blur(pred * target) - mu12
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))


def ssim_lama(pred: torch.Tensor, target: torch.Tensor, window_size: int = 11) -> torch.Tensor:
    """Per-image SSIM [B]: the map's mean over channels and pixels."""
    return ssim_map_lama(pred, target, window_size).flatten(1).mean(dim=1)


def ssim(pred: torch.Tensor, target: torch.Tensor, variant: str = "lama") -> torch.Tensor:
    """Per-image SSIM [B]; ``variant`` "lama" (the paper's) or "torchmetrics" (borders cropped)."""
    if variant == "lama":
        return ssim_lama(pred, target)
    if variant == "torchmetrics":
        from torchmetrics.functional.image import structural_similarity_index_measure

        return structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")
    raise ValueError(f"unknown SSIM variant {variant!r}; choose from {SSIM_VARIANTS}")


def psnr(pred: torch.Tensor, target: torch.Tensor, max_db: float = 100.0) -> torch.Tensor:
    """Per-image PSNR [B] in dB on full [0,1] images; identical images give ``max_db`` instead of inf."""
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    floor = 10 ** (-max_db / 10)
    return 10 * torch.log10(1.0 / mse.clamp(min=floor))
