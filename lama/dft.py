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

import math

import torch


def _as_tensor(n: int, device: torch.device | str) -> torch.Tensor:
    """``n`` as a 0-d int64 tensor: under an export ``n`` may be a symbolic size, and arithmetic with a tensor
    exports as graph ops where some scalar overloads (``remainder.Scalar``) do not."""
    return torch.ones((), dtype=torch.int64, device=device) * n


def _twiddle(rows: int, cols: int, n: int, dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Angles ``2 pi (k t mod n) / n`` for ``k < rows``, ``t < cols``, in ``dtype``. The product ``k t`` is reduced
    modulo ``n`` in integers first, so the angle stays exact to float32 precision at any size, also where a
    runtime computes this subgraph in a reduced precision (``k t`` reaches n² / 2, far beyond bfloat16)."""
    k = torch.arange(rows, device=device)[:, None]
    t = torch.arange(cols, device=device)[None]
    n = _as_tensor(n, device)
    return torch.remainder(k * t, n).to(dtype) * (2 * math.pi) / n.to(dtype)


def dft_matrices(h: int, w: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
                 ) -> dict[str, torch.Tensor]:
    """The factors of the ortho-normalised 2-D real DFT of an ``h`` x ``w`` map, in ``dtype``:

    - ``w_cos``, ``w_sin``: ``[W//2+1, W]``, the real-to-half-complex transform along W;
    - ``h_cos``, ``h_sin``: ``[H, H]``, the complex transform along H (forward uses ``cos - i sin``);
    - ``iw_cos``, ``iw_sin``: ``[W, W//2+1]``, the half-complex-to-real inverse along W.

    Built from ``torch.arange`` on every call (microseconds at LaMa's map sizes), so that an export traces the
    construction from the runtime shape (``h`` and ``w`` may be symbolic) and nothing cached outlives a trace.
    The ortho scaling is split between the two axes.
    """
    wf = w // 2 + 1
    f = torch.float64 if dtype == torch.float64 else torch.float32  # float32 is exact enough for float32 and less
    ang_w, ang_h = _twiddle(wf, w, w, f, device), _twiddle(h, h, h, f, device)  # [Wf, W]; [H, H], symmetric
    w_t = _as_tensor(w, device)
    sw, sh = w_t.to(f).rsqrt(), _as_tensor(h, device).to(f).rsqrt()
    # c2r weights: every frequency but the zero and (even W) Nyquist ones stands for itself and its mirror
    k = torch.arange(wf, device=device)[:, None]
    a = 2 - (k == 0).to(f) - (2 * k == w_t).to(f)
    m = {
        "w_cos": torch.cos(ang_w) * sw,  # forward along W: re = x @ w_cos.T, im = x @ w_sin.T
        "w_sin": -torch.sin(ang_w) * sw,
        "h_cos": torch.cos(ang_h) * sh,  # along H: e^{-i..} forward, e^{+i..} inverse
        "h_sin": torch.sin(ang_h) * sh,
        "iw_cos": (a * torch.cos(ang_w) * sw).T,  # inverse along W: [W, Wf]
        "iw_sin": (-a * torch.sin(ang_w) * sw).T,
    }
    return {k: v.to(dtype).contiguous() for k, v in m.items()}


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
