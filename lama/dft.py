"""LaMa's 2-D real FFTs (``rfftn``/``irfftn`` over H, W, ``norm="ortho"``) as matrix products.

A Fourier unit at the bottleneck of a 512x512 input transforms 64x64 maps: there a DFT written as
two small dense matrix products per direction costs little, runs in the network's dtype on the CPU's
matrix units (AMX/AVX512-BF16 in bfloat16), needs no float32 round trip, and exports to ONNX as
plain ``MatMul`` nodes that every runtime accelerates. pocketfft stays the better choice for large
maps (O(n log n) against O(n²) per axis).

Conventions (those of ``torch.fft.rfftn(x, dim=(H, W), norm="ortho")``): the real transform runs
along W and keeps ``W // 2 + 1`` frequencies, the complex one along H; the spectrum is returned as
its real and imaginary parts. The inverse treats the spectrum as Hermitian along W exactly as
``irfftn`` does, i.e. it ignores the imaginary parts of the zero and (even W) Nyquist columns.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


@functools.lru_cache(maxsize=32)
def _matrices64(h: int, w: int) -> dict[str, np.ndarray]:
    """The DFT factors in float64, ortho scaling split between the two axes. NumPy, not torch: an export
    traces with fake tensors, and a cached fake tensor would later stand in for real values."""
    wf = w // 2 + 1
    ang_w = 2 * np.pi * np.arange(wf)[:, None] * np.arange(w)[None] / w  # [Wf, W]
    sw = 1 / math.sqrt(w)
    ang_h = 2 * np.pi * np.arange(h)[:, None] * np.arange(h)[None] / h  # [H, H], symmetric
    sh = 1 / math.sqrt(h)
    # c2r weights: every frequency but the zero and (even W) Nyquist ones stands for itself and its mirror
    a = np.full((wf, 1), 2.0)
    a[0] = 1
    if w % 2 == 0:
        a[-1] = 1
    return {
        "w_cos": np.cos(ang_w) * sw,  # forward along W: re = x @ w_cos.T, im = x @ w_sin.T
        "w_sin": -np.sin(ang_w) * sw,
        "h_cos": np.cos(ang_h) * sh,  # along H: e^{-i..} forward, e^{+i..} inverse
        "h_sin": np.sin(ang_h) * sh,
        "iw_cos": np.ascontiguousarray((a * np.cos(ang_w) * sw).T),  # inverse along W: [W, Wf]
        "iw_sin": np.ascontiguousarray((-a * np.sin(ang_w) * sw).T),
    }


def dft_matrices(h: int, w: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                 ) -> dict[str, torch.Tensor]:
    """The factors of the ortho-normalised 2-D real DFT of an ``h`` x ``w`` map, in ``dtype``:

    - ``w_cos``, ``w_sin``: ``[W//2+1, W]``, the real-to-half-complex transform along W;
    - ``h_cos``, ``h_sin``: ``[H, H]``, the complex transform along H (forward uses ``cos - i sin``);
    - ``iw_cos``, ``iw_sin``: ``[W, W//2+1]``, the half-complex-to-real inverse along W.
    """
    return {k: torch.tensor(v, dtype=dtype, device=device) for k, v in _matrices64(h, w).items()}


def rfft2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")`` of a real ``[..., H, W]`` tensor, as (re, im)
    ``[..., H, W//2+1]``, by matrix products in ``x``'s dtype."""
    m = dft_matrices(*x.shape[-2:], x.dtype, x.device)
    re, im = x @ m["w_cos"].T, x @ m["w_sin"].T  # along W
    return m["h_cos"] @ re + m["h_sin"] @ im, m["h_cos"] @ im - m["h_sin"] @ re  # along H


def irfft2(re: torch.Tensor, im: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``torch.fft.irfftn(complex(re, im), s=size, dim=(-2, -1), norm="ortho")`` by matrix products."""
    m = dft_matrices(*size, re.dtype, re.device)
    re, im = m["h_cos"] @ re - m["h_sin"] @ im, m["h_sin"] @ re + m["h_cos"] @ im  # along H
    return re @ m["iw_cos"].T + im @ m["iw_sin"].T  # along W
