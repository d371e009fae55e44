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

import math

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
    """``[C_out, C_in, 3, 3]`` weights -> ``[36, C_in, C_out]``, in the weights' dtype.

    Done one output channel block at a time: for Big LaMa this is 600 MB of filters, and whole-layer
    temporaries would leave holes in the heap that the process keeps.
    """
    g = torch.tensor(G, dtype=weight.dtype, device=weight.device)
    c_out, c_in = weight.shape[:2]
    u = weight.new_empty(A * A, c_in, c_out)
    for o in range(0, c_out, 32):
        part = g @ weight[o: o + 32] @ g.T  # [32, C_in, 6, 6]
        u[:, :, o: o + 32] = part.permute(2, 3, 1, 0).reshape(A * A, c_in, -1)
    return u


class Workspace:
    """Named buffers reused across bands and layers.

    A fresh tensor of more than a few MB is fresh memory from the OS, and its first touch costs a
    page fault per 4 KB page: at 2048x2048 that was a fifth of the run time. Reusing buffers also
    keeps the peak memory flat.
    """

    def __init__(self, dtype: torch.dtype, device: torch.device | str):
        self.dtype, self.device = dtype, device
        self._bufs: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.dtype
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype:
            buf = self._bufs[name] = torch.empty(n, dtype=dtype, device=self.device)
        return buf[:n].view(shape)


def _input_1d(d: list[torch.Tensor], o: list[torch.Tensor], tmp: list[torch.Tensor]) -> None:
    """``o[i] = sum_k BT[i][k] d[k]`` for six views, with BT's shared sums computed once in ``tmp``."""
    d0, d1, d2, d3, d4, d5 = d
    p, q, r, t = tmp
    torch.add(d4, d0, alpha=4, out=o[0]).add_(d2, alpha=-5)
    torch.add(d4, d2, alpha=-4, out=p)
    torch.add(d3, d1, alpha=-4, out=q)
    torch.add(p, q, out=o[1])
    torch.sub(p, q, out=o[2])
    torch.sub(d4, d2, out=r)
    torch.sub(d3, d1, out=t)
    torch.add(r, t, alpha=2, out=o[3])
    torch.add(r, t, alpha=-2, out=o[4])
    torch.add(d5, d1, alpha=4, out=o[5]).add_(d3, alpha=-5)


def _output_1d(m: list[torch.Tensor], o: list[torch.Tensor], tmp: list[torch.Tensor]) -> None:
    """``o[p] = sum_i AT[p][i] m[i]`` for six views in, four out."""
    a, b, c, d = tmp
    torch.add(m[1], m[2], out=a)
    torch.sub(m[1], m[2], out=b)
    torch.add(m[3], m[4], out=c)
    torch.sub(m[3], m[4], out=d)
    torch.add(m[0], a, out=o[0]).add_(c)
    torch.add(b, d, alpha=2, out=o[1])
    torch.add(a, c, alpha=4, out=o[2])
    torch.add(b, d, alpha=8, out=o[3]).add_(m[5])


def fill_slab(x: torch.Tensor, slab: torch.Tensor, top: int) -> None:
    """Rows ``top .. top + len(slab) - 1`` of ``x`` reflect-padded by one pixel (row -1 is row 1, row
    h is row h - 2, the same for columns), zeros past that: the input of a band of tiles."""
    h, w = x.shape[1:3]
    n, wp = slab.shape[1:3]
    a, e = max(top, 0), min(top + n, h)
    slab[:, a - top: e - top, 1: w + 1] = x[:, a:e]
    if top < 0:
        slab[:, -1 - top, 1: w + 1] = x[:, 1]
    if top + n > h:
        slab[:, h - top, 1: w + 1] = x[:, h - 2]
        slab[:, h + 1 - top:] = 0
    slab[:, :, 0] = slab[:, :, 2]
    slab[:, :, w + 1] = slab[:, :, w - 1]
    slab[:, :, w + 2:] = 0


def input_tiles(slab: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """Transformed tiles of a ``[B, 4 tr + 2, 4 tw + 2, C]`` slab: ``[36, B tr tw, C]``.

    Tile (i, j) reads rows ``4i .. 4i+5`` and columns ``4j .. 4j+5``. The 2-D transform runs as two 1-D
    ones (rows, then columns) on strided views: elementwise work that stays in cache, cheaper than
    one 36x36 matrix product over gathered tiles.
    """
    b, hp, wp, c = slab.shape
    tr, tw = (hp - 2) // M, (wp - 2) // M
    rows = ws.get("rows", (A, b, tr, wp, c))
    tmp = [ws.get(f"in{i}", (b, tr, wp, c)) for i in range(4)]
    _input_1d([slab[:, k:: M][:, :tr] for k in range(A)], list(rows), tmp)
    out = ws.get("tiles", (A, A, b, tr, tw, c))
    tmp = [ws.get(f"in{i}", (A, b, tr, tw, c)) for i in range(4)]
    _input_1d([rows[:, :, :, k:: M][:, :, :, :tw] for k in range(A)], [out[:, j] for j in range(A)], tmp)
    return out.view(A * A, b * tr * tw, c)


def output_tiles(m: torch.Tensor, dst: torch.Tensor, ws: Workspace) -> None:
    """Write ``[36, T, C]`` products as output pixels into ``dst``, a ``[B, tr, 4, tw, 4, C]`` view."""
    b, tr, _, tw, _, c = dst.shape
    m = m.view(A, A, b, tr, tw, c)
    cols = ws.get("cols", (M, A, b, tr, tw, c))
    tmp = [ws.get(f"out{i}", (A, b, tr, tw, c)) for i in range(4)]
    _output_1d(list(m), list(cols), tmp)
    tmp = [ws.get(f"out{i}", (M, b, tr, tw, c)) for i in range(4)]
    _output_1d([cols[:, j] for j in range(A)], [dst[:, :, :, :, q].permute(2, 0, 1, 3, 4) for q in range(M)], tmp)
