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
of tile rows at a time so that the transformed tiles stay in cache. The input and output transforms
are fused passes compiled for the machine (:mod:`lama.native`), or else matrix products (``BT ⊗ BT``,
``AT ⊗ AT`` on gathered tiles).
"""

from __future__ import annotations

import math

import torch

from . import native

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
# Transformed tiles of one band in bfloat16: 36 x 256 x 512 channels = 9.4 MB. float32 bands hold half as many
# tiles, the same bytes (4% faster at 512x512 and 1024x1024 on an AMX Xeon than 256 tiles). Fewer bf16 tiles were
# slower (128 tiles took 18% longer at 512x512: smaller products, each reading all the layer's filters).
TILES_PER_BAND = 256


def taps(weight: torch.Tensor) -> torch.Tensor:
    """``[C_out, C_in, 3, 3]`` weights -> ``[9, C_in, C_out]`` (a copy): the layout :func:`transform_filters` reads."""
    return weight.permute(2, 3, 1, 0).reshape(R * R, weight.shape[1], weight.shape[0])


def filter_matrix() -> torch.Tensor:
    """``G ⊗ G`` as ``[36, 9]`` float64: row ``6 i + j``, column ``3 a + b`` is ``G[i][a] G[j][b]``."""
    g = torch.tensor(G, dtype=torch.float64)
    return torch.einsum("ia,jb->ijab", g, g).reshape(A * A, R * R)


def transform_filters(taps: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` (``[36, C_in, C_out]``) = ``G g G^T`` of every filter in ``taps`` (``[9, C_in, C_out]``), as one
    ``[36, 9]`` product, computed in float32 (float64 for float64 taps) and rounded to ``out``'s dtype once: the
    matrix's entries (1/6, 1/24, ...) are not exact in bfloat16. Memory-bound: about 3 ms per Big LaMa layer on 2
    cores (20 MB written and read in float32)."""
    ct = torch.float64 if taps.dtype == torch.float64 else torch.float32
    gg = filter_matrix().to(taps.device, ct)
    flat = taps.reshape(R * R, -1)
    if out.dtype == ct:
        return torch.mm(gg, flat, out=out.view(A * A, -1)).view(out.shape)
    out.view(A * A, -1).copy_(torch.mm(gg, flat.to(ct)))
    return out


def filter_transform(weight: torch.Tensor) -> torch.Tensor:
    """``[C_out, C_in, 3, 3]`` weights -> ``[36, C_in, C_out]``, in the weights' dtype."""
    t = taps(weight)
    return transform_filters(t, t.new_empty(A * A, *t.shape[1:]))


class Workspace:
    """Named buffers reused across bands and layers, and values made once per forward pass (:meth:`memo`).

    A fresh tensor of more than a few MB is fresh memory from the OS, and its first touch costs a
    page fault per 4 KB page: at 2048x2048 that was a fifth of the run time. Reusing buffers also
    keeps the peak memory flat.

    ``stream_filters``: layers transform their Winograd filters into this workspace's buffers for each use instead
    of keeping them (:meth:`lama.fast.WinogradKernel.filters`), for passes whose maps are large.
    """

    def __init__(self, dtype: torch.dtype, device: torch.device | str, stream_filters: bool = False):
        self.dtype, self.device = dtype, device
        self.stream_filters = stream_filters
        self._bufs: dict[str, torch.Tensor] = {}
        self._memo: dict[object, object] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype | None = None) -> torch.Tensor:
        dtype = dtype or self.dtype
        n = math.prod(shape)
        buf = self._bufs.get(name)
        if buf is None or buf.numel() < n or buf.dtype != dtype:
            buf = self._bufs[name] = torch.empty(n, dtype=dtype, device=self.device)
        return buf[:n].view(shape)

    def memo(self, key: object, make):
        """``make()``, computed once per workspace (one forward pass), e.g. the DFT matrices of a map size."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]


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


def _transforms(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2-D transforms as matrices on flattened tiles: ``BT ⊗ BT`` [36, 36] and ``AT ⊗ AT`` [16, 36]; their
    entries are small integers, exact in bfloat16 too. Made per call (microseconds), not cached."""
    bt, at = torch.tensor(BT, dtype=torch.float64), torch.tensor(AT, dtype=torch.float64)
    return torch.kron(bt, bt).to(dtype=dtype, device=device), torch.kron(at, at).to(dtype=dtype, device=device)


def input_tiles(slab: torch.Tensor, ws: Workspace) -> torch.Tensor:
    """Transformed tiles of a ``[B, 4 tr + 2, 4 tw + 2, C]`` slab: ``[36, B tr tw, C]``.

    Tile (i, j) reads rows ``4i .. 4i+5`` and columns ``4j .. 4j+5``: gathered by one copy into
    ``[36, tiles, C]``, then transformed by one matrix product with ``BT ⊗ BT``, which in bfloat16 rounds
    once instead of after each of a dozen elementwise passes.
    """
    b, hp, wp, c = slab.shape
    tr, tw = (hp - 2) // M, (wp - 2) // M
    tiles = ws.get("tiles", (A, A, b, tr, tw, c))
    tiles.copy_(slab.unfold(1, A, M).unfold(2, A, M).permute(4, 5, 0, 1, 2, 3))
    bt2, _ = _transforms(slab.dtype, slab.device)
    return torch.mm(bt2, tiles.view(A * A, -1), out=ws.get("v", (A * A, b * tr * tw * c))).view(A * A, -1, c)


def band_tiles(x: torch.Tensor, top: int, tr: int, ws: Workspace, halo: torch.Tensor | None = None,
               lo: int = 0, copy_lo: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Transformed tiles ``[36, B tr tw, C]`` of the band of ``tr`` tile rows of ``x`` [B, H, W, C] whose first
    input row is ``top``, reflect-padded by one pixel; ``halo`` [B, W, C], if given, stands for row ``top``
    (a layer that writes its output over its input has already overwritten it). Also returned: the tiles' first
    ``lo`` channels, a view, or with ``copy_lo`` a contiguous copy where the compiled transform writes them a
    second time (a matrix product reads a contiguous operand faster: bf16 l2g products 15% faster on an AMX Xeon).

    The compiled transform (:mod:`lama.native`) reads the tiles straight from ``x``; without it the band is
    copied into a padded slab first (:func:`fill_slab`, :func:`input_tiles`).
    """
    b, h, w, c = x.shape
    tw = -(-w // M)
    lib = native.library() if native.supports(x) and x.is_contiguous() else None
    if lib is not None:
        v = ws.get("v", (A * A, b * tr * tw, c))
        v_lo = ws.get("v_lo", (A * A, b * tr * tw, lo)) if copy_lo and 0 < lo < c else None
        native.input_tiles(lib, x, v, top, tr, halo, v_lo)
        return v, v[..., :lo] if v_lo is None else v_lo
    slab = ws.get("slab", (b, M * tr + 2, M * tw + 2, c))
    fill_slab(x, slab, top)
    if halo is not None:  # row ``top`` of the slab, and where the bottom edge reflects it (a last band of one row)
        for i in (0, h - top) if h - 2 == top else (0,):
            slab[:, i, 1: w + 1] = halo
            slab[:, i, 0], slab[:, i, w + 1] = slab[:, i, 2], slab[:, i, w - 1]
    v = input_tiles(slab, ws)
    return v, v[..., :lo]


def output_tiles(m: torch.Tensor, dst: torch.Tensor, ws: Workspace, bias: torch.Tensor | None = None,
                 relu: bool = False, residual: torch.Tensor | None = None, accumulate: bool = False) -> None:
    """Write ``[36, T, C]`` products as output pixels into ``dst``, a ``[B, tr, 4, tw, 4, C]`` view, adding
    ``bias`` and, if ``accumulate``, the values already in ``dst``, applying ReLU if asked, then adding
    ``residual`` (a view like ``dst``): compiled in one pass (:mod:`lama.native`), or one matrix product with
    ``AT ⊗ AT`` and one pass that scatters the 4x4 tiles (and applies ReLU), and one more for the residual."""
    b, tr, _, tw, _, c = dst.shape
    lib = native.library() if native.supports(m, dst) else None
    if lib is not None and m.is_contiguous() and dst.stride(-1) == 1 and (
            residual is None or residual.stride() == dst.stride()):
        native.output_tiles(lib, m, dst, None if bias is None else bias.contiguous(), relu, residual, accumulate)
        return
    if bias is not None:
        m[BIAS].add_(bias)  # AT's column for the point 1 is all ones: the bias reaches each pixel once
    _, at2 = _transforms(m.dtype, m.device)
    y = torch.mm(at2, m.reshape(A * A, -1), out=ws.get("y", (M * M, b * tr * tw * c)))
    pixels = y.view(M, M, b, tr, tw, c).permute(2, 3, 0, 4, 1, 5)
    if accumulate:
        pixels = pixels.add_(dst)
    if relu:
        torch.clamp_min(pixels, 0, out=dst)
    else:
        dst.copy_(pixels)
    if residual is not None:
        dst.add_(residual)
