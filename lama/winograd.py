"""Winograd F(4x4, 3x3) convolution, for the 3x3 convolutions of LaMa's FFC blocks on CPUs.

A 3x3 convolution costs 9 multiply-adds per output pixel and channel pair; Winograd's minimal
filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016) computes a
4x4 output tile from a 6x6 input tile with 36, i.e. 2.25 per pixel instead of 9. In the transformed
domain a convolution is 36 independent matrix products ``[tiles, C_in] @ [C_in, C_out]``, and
convolutions that produce the same output simply add up there. The input and output transforms are
small matrix products too. On a CPU whose direct convolution already runs at the machine's peak
this is the only way to go faster; the price is a relative error near 1e-5 in float32 instead of
1e-7, far below what the network's output can show.

Tensors here are ``[B, H, W, C]`` (channels-last memory seen as it lies), and the work goes a band
of tile rows at a time so that the transformed tiles stay in cache.
"""

from __future__ import annotations

import torch

# Lavin & Gray's F(4x4, 3x3) matrices (interpolation points 0, ±1, ±2 and infinity): for a 6x6 tile d
# and a 3x3 filter g, the 4x4 correlation output is  AT [(G g G^T) * (BT d BT^T)] AT^T.
BT = [[4, 0, -5, 0, 1, 0],
      [0, -4, -4, 1, 1, 0],
      [0, 4, -4, -1, 1, 0],
      [0, -2, -1, 2, 1, 0],
      [0, 2, -1, -2, 1, 0],
      [0, 4, 0, -5, 0, 1]]
G = [[1 / 4, 0, 0],
     [-1 / 6, -1 / 6, -1 / 6],
     [-1 / 6, 1 / 6, -1 / 6],
     [1 / 24, 1 / 12, 1 / 6],
     [1 / 24, -1 / 12, 1 / 6],
     [0, 0, 1]]
AT = [[1, 1, 1, 1, 1, 0],
      [0, 1, -1, 2, -2, 0],
      [0, 1, 1, 4, 4, 0],
      [0, 1, -1, 8, -8, 1]]
M, R = 4, 3  # output tile, filter size
A = M + R - 1  # input tile
# AT's column for the point 1 is all ones, so a bias added to transformed component (1, 1) reaches every
# output pixel of the tile once.
BIAS = 1 * A + 1
TILES_PER_BAND = 256  # transformed tiles of one band: 36 x 256 x 512 channels = 19 MB in float32


def filter_transform(weight: torch.Tensor) -> torch.Tensor:
    """``[C_out, C_in, 3, 3]`` weights -> ``[36, C_in, C_out]`` (computed in float64)."""
    g = torch.tensor(G, dtype=torch.float64)
    u = torch.einsum("ik,ockl,jl->ijco", g, weight.double(), g)
    return u.reshape(A * A, weight.shape[1], weight.shape[0])


def _kron(m) -> torch.Tensor:
    t = torch.tensor(m, dtype=torch.float64)
    return torch.kron(t, t)


class Winograd:
    """Transforms of one dtype and device; ``bands`` cuts an input into bands of tile rows."""

    def __init__(self, dtype: torch.dtype, device: torch.device | str):
        self.bt = _kron(BT).to(device, dtype)  # [36, 36] on the flattened (row, col) tile
        self.at = _kron(AT).to(device, dtype)  # [16, 36]

    def input_tiles(self, xp: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """Transformed tiles of tile rows ``r0:r1`` of the padded ``[B, Hp, Wp, C]`` input: ``[36, T, C]``.

        ``Hp, Wp`` are ``4 * tiles + 2``; tile (i, j) reads rows ``4i .. 4i+5`` and columns ``4j .. 4j+5``.
        """
        b, _, wp, c = xp.shape
        tw = (wp - 2) // M
        d = xp[:, M * r0: M * r1 + 2].unfold(1, A, M).unfold(2, A, M)  # [B, tr, tw, C, 6, 6], a view
        d = d.permute(4, 5, 0, 1, 2, 3).reshape(A * A, -1)  # the one copy: [36, tiles * C]
        return (self.bt @ d).view(A * A, b * (r1 - r0) * tw, c)

    def output_tiles(self, m: torch.Tensor, b: int, tr: int, tw: int) -> torch.Tensor:
        """``[36, T, C]`` products -> output pixels ``[B, 4 tr, 4 tw, C]`` (a permuted view, not yet copied)."""
        c = m.shape[-1]
        y = (self.at @ m.view(A * A, -1)).view(M, M, b, tr, tw, c)
        return y.permute(2, 3, 0, 4, 1, 5)  # [B, tr, 4, tw, 4, C]


def pad_for_tiles(x: torch.Tensor) -> torch.Tensor:
    """``[B, H, W, C]`` -> reflect-padded by one (as the convolutions are), then zero-padded at the
    bottom and right to whole 4x4 tiles: ``[B, 4 th + 2, 4 tw + 2, C]``."""
    b, h, w, c = x.shape
    th, tw = -(-h // M), -(-w // M)
    xp = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (1, 1, 1, 1), mode="reflect")
    eh, ew = M * th - h, M * tw - w
    if eh or ew:
        xp = torch.nn.functional.pad(xp, (0, ew, 0, eh))
    return xp.permute(0, 2, 3, 1)
