"""FID as the LaMa paper computed it: pytorch-fid's Inception, plain bilinear resize to 299, Fréchet distance.

LaMa's evaluator (``saicinpainting/evaluation/losses/fid/inception.py``, a copy of pytorch-fid's ``InceptionV3``)
resizes the full image with ``F.interpolate(size=(299, 299), mode='bilinear', align_corners=False)`` and then maps
[0, 1] to [-1, 1] with ``2x - 1``. Other popular FID implementations feed the same network differently and move
the score by 0.3-2.8 points, so they are offered only under their own names (see :data:`RESIZE_MODES`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .weights import assert_pretrained, fid_inception_skeleton, inception_pool3, load_state_dict

INCEPTION_SIZE = 299

#: ``lama``: LaMa / pytorch-fid (plain bilinear, 2x-1). ``torchmetrics``: torchmetrics' default FID input path
#: (``(x*255).byte()``, antialiased bilinear, (x-128)/128). ``tf1``: torch-fidelity / torchmetrics(antialias=False)
#: (uint8, TensorFlow 1.x ``resize_bilinear`` without half-pixel centres, (x-128)/128).
RESIZE_MODES = ("lama", "torchmetrics", "tf1")


class InceptionFeatures(nn.Module):
    """[B,3,H,W] images in [0,1] at any size -> [B,2048] float32 pool3 features of the FID Inception.

    The network is pytorch-fid's ``fid_inception_v3()`` (built from its own blocks) with pytorch-fid's weights file
    (from the torch hub cache, provisioned offline if need be); this module only chooses how the input reaches it.
    """

    def __init__(self, resize: str = "lama") -> None:
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
        self.resize = resize
        self.net = fid_inception_skeleton()
        self.net.load_state_dict(load_state_dict("inception"))
        assert_pretrained(self.net, "FID Inception")
        self.net.eval()
        self.net.requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Stays in eval mode: BatchNorm must use the stored statistics."""
        return super().train(False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to 299x299 and scale as the chosen protocol does; returns the network's input."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(f"expected float images [B,3,H,W] in [0,1], got {tuple(images.shape)} {images.dtype}")
        x = images.to(torch.float32)
        size = (INCEPTION_SIZE, INCEPTION_SIZE)
        if self.resize == "lama":
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False) * 2 - 1
        x = (x * 255).to(torch.uint8).to(torch.float32)  # torchmetrics' normalize=True cast: truncation
        if self.resize == "torchmetrics":
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        else:
            x = resize_bilinear_tf1(x, size)
        return (x - 128) / 128

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        param = next(self.net.parameters())
        x = self.preprocess(images.to(param.device)).to(param.dtype)
        return inception_pool3(self.net, x)


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1.x ``resize_bilinear(align_corners=False)``: source = dst * in/out, no half-pixel centres.

    It samples the top-left-aligned grid and never antialiases; torch-fidelity reproduces it for its FID.
    """
    out = x
    for dim, n_out in ((3, size[1]), (2, size[0])):  # width first, as torch-fidelity
        n_in = out.shape[dim]
        src = torch.arange(n_out, dtype=torch.float32, device=x.device) * (n_in / n_out)
        lo = src.floor().long().clamp_(max=n_in - 1)
        hi = (lo + 1).clamp_(max=n_in - 1)
        frac = (src - lo.to(src.dtype)).to(x.dtype)
        shape = [1, 1, 1, 1]
        shape[dim] = n_out
        a, b = out.index_select(dim, lo), out.index_select(dim, hi)
        out = a + (b - a) * frac.view(shape)
    return out


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) in float64.

    ``tr sqrtm(sigma1 sigma2)`` equals the sum of square roots of the eigenvalues of the symmetric PSD matrix
    ``sqrt(sigma1) sigma2 sqrt(sigma1)``, so two symmetric eigendecompositions replace the general ``sqrtm``
    (about 2 s instead of 11 s at 2048-d here) and singular covariances need no diagonal offset.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt_sigma1 = (v * np.sqrt(_zero_below_rank_tol(w))) @ v.T
    inner = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    tr_covmean = np.sqrt(_zero_below_rank_tol(np.linalg.eigvalsh((inner + inner.T) / 2))).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def _zero_below_rank_tol(eigvals: np.ndarray) -> np.ndarray:
    """Eigenvalues under numpy's matrix-rank tolerance (d * eps * max) are rounding noise: set them to 0.

    Their square roots would otherwise add up (about 1e-4 for a rank-500 2048-d covariance, as in small bins).
    """
    tol = eigvals.size * np.finfo(np.float64).eps * max(float(np.abs(eigvals).max(initial=0)), 0.0)
    return np.where(eigvals > tol, eigvals, 0.0)


def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of [N,D] features in float64 (as pytorch-fid and LaMa's evaluator)."""
    act = features.detach().cpu().numpy() if isinstance(features, torch.Tensor) else np.asarray(features)
    act = act.astype(np.float64, copy=False)
    if act.ndim != 2 or act.shape[0] < 2:
        raise ValueError(f"need [N,D] features with N >= 2, got shape {act.shape}")
    return act.mean(axis=0), np.cov(act, rowvar=False)


def fid_from_features(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """FID between two sets of [N,D] Inception features."""
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))
