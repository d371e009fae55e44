"""A faster inference path for LaMa's generator, derived from the same weights.

Same function as :class:`~lama.generator.FFCResNetGenerator` in eval mode (within 1e-4 in float32),
rearranged for speed and memory on CPUs and GPUs:

- BatchNorm folded into the convolution before it (:func:`fold_batchnorm`, weights scaled, a bias added);
- the resnet blocks work on ``[B, H, W, C]`` maps (channels-last memory, local channels first), one layer
  type (:class:`FastFFC`): its 3x3 convolutions by a pluggable kernel (:data:`KERNELS`: Winograd
  F(4x4, 3x3) with 4x fewer multiplications, :mod:`lama.winograd`, or the device's direct convolution),
  chosen per machine by :mod:`lama.kernel_choice`; then the spectral path (:class:`FastSpectral`), whose
  1x1 convolutions are matrix products and whose Fourier unit uses compiled FFTs in float32
  (:mod:`lama.native`), or DFT matrix products in the network's dtype on small maps (:mod:`lama.dft`), or
  pocketfft;
- activations in place; buffers reused across layers, and on the CPU freed memory kept for reuse by malloc
  (:mod:`lama.heap`): fresh large tensors cost page faults;
- the full-resolution head and tail run in row bands, reflect padding without padded copies of large
  maps, and the 3-channel output conv runs as a vertical and a horizontal pass (:func:`_two_pass_weights`), in
  float32 on the CPU compiled with pixels along its vectors (:func:`lama.native.out_conv`).

Only the published LaMa structure is rebuilt (ratio 0 stem and downsampling, 0.75 resnet blocks,
no LFU); :func:`supports` says whether a generator has it, and other ones keep the reference path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from . import heap, native
from .dft import dft_matrices
from .ffc import FFC_BN_ACT, FFCResnetBlock, SpectralTransform
from .generator import FFCResNetGenerator
from .winograd import TILES_PER_BAND, A, M, Workspace, band_tiles, output_tiles, taps, transform_filters

if TYPE_CHECKING:
    import ctypes

CL = torch.channels_last
BAND_ELEMENTS = 1 << 22  # values per full-resolution band (16 MB in float32: under the mmap threshold)
FFT_GROUP_BYTES = 16 << 20  # spectrum bytes per FFT call
DFT_GROUP_BYTES = 8 << 20  # spectrum bytes per group of columns in the DFT products (FastSpectral._fourier_dft)
HEAD_LEVELS = TAIL_LEVELS = 2  # downsamplings / upsamplings done in row bands with the full-resolution ends
# Fourier units on maps up to this side use DFT products instead of pocketfft: in bfloat16 up to 2048x2048 inputs
# (no float32 round trip; at 2048x2048 6.5 s against 10.5 s with pocketfft), in float32 up to 1024x1024 inputs
# (3% faster there than pocketfft; measured on an AMX Xeon). float16 (CUDA) keeps its FFTs in float32: a float16
# spectrum can overflow, and no GPU has measured the products.
DFT_MAX_SIDE = {torch.float32: 128, torch.bfloat16: 256}
# Resnet block maps of at least this many pixels (batch included; inputs from 1536x1536) transform their Winograd
# filters for each use instead of caching them (WinogradKernel.filters): the cache is 600 MB for Big LaMa in float32
# and 300 MB in bfloat16, and it is not held while the largest maps are. The transforms are memory-bound, about
# 0.11 s a pass on a 2-core EPYC: 0.4% of a 2048x2048 float32 pass there, 0.6% in bfloat16.
STREAM_FILTER_PIXELS = 192 * 192


def relu_add(y: torch.Tensor, x: torch.Tensor | None, bias: torch.Tensor | None = None) -> None:
    """``y = relu(y + bias) + x`` in place (``bias``, ``x`` None: left out) on ``[rows, C]`` views: one compiled
    pass (:mod:`lama.native`) where it runs, else two or three. Also the spectral path's ReLUs, with the biases of
    its matrix products: PyTorch's bfloat16 ReLU took 100 us on a [4096, 192] map on an AMX Xeon, as long as half
    the matrix product before it, and a float32 ``addmm`` copies its bias into the output before the product."""
    parts = [t for t in (y, x, bias) if t is not None]
    lib = native.library() if native.supports(*parts) else None
    if lib is not None and y.stride(1) == 1 and (x is None or x.stride(1) == 1):
        native.relu_add(lib, y, x, bias)
        return
    if bias is not None:
        y.add_(bias)
    torch.relu_(y)
    if x is not None:
        y.add_(x)


def fold_batchnorm(weight: torch.Tensor, bn: nn.BatchNorm2d, out_dim: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BatchNorm after a bias-free convolution, folded into it: ``weight`` scaled along its output
    dimension ``out_dim`` (1 for ``ConvTranspose2d``), and the bias the BatchNorm adds. Detached copies."""
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        shape = [1] * weight.dim()
        shape[out_dim] = -1
        return weight * scale.view(shape), bn.bias - bn.running_mean * scale


_HAS_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _onednn_fusion(x: torch.Tensor) -> bool:
    """Whether oneDNN's fused convolution + ReLU runs here: on the CPU in float32 or bfloat16, not while tracing
    or exporting (the fused ops are not in ONNX), and where this torch build has them."""
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.bfloat16) and _HAS_POINTWISE
            and not torch.jit.is_tracing() and not torch.compiler.is_compiling())


def conv2d_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int = 1,
                padding: int = 0) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias, stride, padding))``, with the ReLU inside oneDNN's convolution where it
    runs (:func:`_onednn_fusion`): no second pass over a full-resolution map (a fifth of the head's time in bf16)."""
    if _onednn_fusion(x):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [padding] * 2, [stride] * 2, [1, 1], 1,
                                                       "relu", [], "")
    return torch.relu_(F.conv2d(x, weight, bias, stride, padding))


def conv_transpose2d_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int, padding: int,
                          output_padding: int) -> torch.Tensor:
    """``relu(conv_transpose2d(...))`` for square strides and paddings, fused as :func:`conv2d_relu`."""
    if _onednn_fusion(x):
        return torch.ops.mkldnn._convolution_transpose_pointwise(
            x, weight, bias, [padding] * 2, [output_padding] * 2, [stride] * 2, [1, 1], 1, "relu", [], "")
    return torch.relu_(F.conv_transpose2d(x, weight, bias, stride, padding, output_padding))


def _edge_outputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad: int,
                  dim: int, o0: int, o1: int, relu: bool) -> torch.Tensor:
    """Outputs ``o0:o1`` along ``dim`` (-2 rows, -1 columns) of the reflect-padded convolution, from the thin
    strip of ``x`` they read, reflect-padded where it meets the image's edge and fully along the other axis."""
    k, n = weight.shape[-1], x.shape[dim]
    i0, i1 = o0 * stride - pad, (o1 - 1) * stride - pad + k
    strip = x.narrow(dim, max(0, i0), min(n, i1) - max(0, i0))
    lo, hi = max(0, -i0), max(0, i1 - n)
    strip = F.pad(strip, (lo, hi, pad, pad) if dim == -1 else (pad, pad, lo, hi), mode="reflect")
    return conv2d_relu(strip, weight, bias, stride) if relu else F.conv2d(strip, weight, bias, stride)


def conv2d_reflect(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int, pad: int,
                   relu: bool = False) -> torch.Tensor:
    """``conv2d(F.pad(x, pad, mode="reflect"), ...)`` (then ReLU if ``relu``) without the padded copy of ``x``.

    At full resolution that copy is the largest tensor alive (64 channels x 2048² = 1 GB). The
    convolution runs with zero padding instead, and only the output rows and columns that see the
    border are recomputed from thin reflect-padded strips. Each strip gives at least two outputs: oneDNN's
    bfloat16 convolution with a one-wide output sometimes returned NaNs on an AMX CPU. A float32 map of up to
    :data:`lama.heap.MMAP_THRESHOLD` bytes is padded as a copy: the strips' float32 work cost more than the copy
    (the split conv at 512x512: 28.8 against 26.0 ms; in bfloat16 4.8 against 5.5 ms, so there the strips stay).
    """
    small_copy = x.dtype == torch.float32 and x.numel() * x.element_size() <= heap.MMAP_THRESHOLD
    if pad == 0 or small_copy:  # a small copy is recycled memory, and cheaper than float32 strips (split conv at 512²)
        x = F.pad(x, (pad,) * 4, mode="reflect") if pad else x
        return conv2d_relu(x, weight, bias, stride) if relu else F.conv2d(x, weight, bias, stride)
    k = weight.shape[-1]
    out = conv2d_relu(x, weight, bias, stride, pad) if relu else F.conv2d(x, weight, bias, stride, padding=pad)
    n_lo = -(-pad // stride)  # first outputs whose window starts above/left of the image
    for dim in (-2, -1):
        n_in, n_out = x.shape[dim], out.shape[dim]
        first_hi = max(n_lo, (n_in - k + pad) // stride + 1)  # first output whose window passes the far edge
        ranges = [(0, min(n_out, max(n_lo, 2)))] if n_lo else []
        if first_hi < n_out:
            ranges.append((max(0, min(first_hi, n_out - 2)), n_out))
        for o0, o1 in ranges:
            out.narrow(dim, o0, o1 - o0).copy_(_edge_outputs(x, weight, bias, stride, pad, dim, o0, o1, relu))
    return out


def _two_pass_weights(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A KxK conv with few output channels as two convs: a vertical Kx1 one with an output channel per
    (kx, c_out), ``[K C_out, C_in, K, 1]``, then a horizontal 1xK one that sums, for each c_out, channel
    (kx, c_out) at column offset kx, ``[C_out, K C_out, 1, K]`` (weights 0 or 1).

    oneDNN vectorises over output channels, so LaMa's last conv (64 -> 3, 7x7) ran at a fifth of the speed of
    the others; its vertical pass has 21 outputs and all the multiplications, and the horizontal one is cheap."""
    c_out, c_in, k, _ = w.shape
    vertical = w.permute(3, 0, 1, 2).reshape(k * c_out, c_in, k, 1)
    horizontal = w.new_zeros(c_out, k, c_out, 1, k)
    for kx in range(k):
        horizontal[:, kx, :, 0, kx] = torch.eye(c_out, dtype=w.dtype)
    return vertical, horizontal.reshape(c_out, k * c_out, 1, k)


def supports(gen: nn.Module) -> bool:
    """True when ``gen`` has the published LaMa structure that :class:`FastGenerator` rebuilds."""
    if not isinstance(gen, FFCResNetGenerator):
        return False
    layers = list(gen.model)
    blocks = [m for m in layers if isinstance(m, FFCResnetBlock)]
    ffcs = [m for m in layers if isinstance(m, FFC_BN_ACT)]
    if len(ffcs) < 3 or not blocks:  # stem, at least one plain downsampling, the splitting one
        return False
    stem = ffcs[0].ffc.convl2l
    if stem.kernel_size != (7, 7) or stem.stride != (1, 1) or not isinstance(layers[0], nn.ReflectionPad2d):
        return False
    for f in ffcs[1:-1]:  # plain downsamplings: run in row bands with 3x3/stride-2/pad-1 arithmetic
        c = f.ffc.convl2l
        if c.kernel_size != (3, 3) or c.stride != (2, 2) or c.padding != (1, 1) or c.padding_mode != "reflect":
            return False
    ups = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
    if not ups or any(u.kernel_size != (3, 3) or u.stride != (2, 2) or u.padding != (1, 1)
                      or u.output_padding != (1, 1) for u in ups):
        return False
    out_conv = [m for m in layers if isinstance(m, nn.Conv2d)][-1]
    if out_conv.kernel_size != (7, 7) or out_conv.padding != (0, 0):
        return False
    if any(f.ffc.ratio_gin != 0 for f in ffcs) or any(f.ffc.ratio_gout != 0 for f in ffcs[:-1]):
        return False
    for b in blocks:
        for layer in (b.conv1, b.conv2):
            f = layer.ffc
            if f.ratio_gin != f.ratio_gout or not isinstance(f.convl2l, nn.Conv2d) or f.convg2g.enable_lfu:
                return False
            if f.convl2l.dilation != (1, 1) or f.convl2l.padding_mode != "reflect":
                return False
    return True


class DirectKernel(nn.Module):
    """A resnet block layer's 3x3 convolutions by the device's own convolution (oneDNN, cuDNN): l2l and l2g
    read the local channels, so they run as one convolution; g2l adds into its local half."""

    name = "direct"
    in_place = False  # returns a new map; writes into no given buffer

    def __init__(self, w_l2l: torch.Tensor, w_g2l: torch.Tensor, w_l2g: torch.Tensor, b_l: torch.Tensor,
                 b_g: torch.Tensor):
        super().__init__()
        self.n_l = w_l2l.shape[0]
        self.register_buffer("w_local", torch.cat([w_l2l, w_l2g]).contiguous(memory_format=CL))
        self.register_buffer("b_local", torch.cat([b_l, b_g]))
        self.register_buffer("w_g2l", w_g2l.contiguous(memory_format=CL))

    def fuses_global(self, h: int, w: int) -> bool:
        """Whether :meth:`forward` takes ``pre_global`` (:meth:`WinogradKernel.fuses_global`): no."""
        return False

    def forward(self, x: torch.Tensor, out: torch.Tensor | None, ws: Workspace,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, H, W, C]``, local channels first. Returns ``[B, H, W, C]``: local channels
        ``relu(l2l + g2l + b_l)`` (plus ``residual``'s, if given), global ones ``l2g + b_g`` (a new tensor; ``out``
        is not used)."""
        n_l, xc = self.n_l, x.permute(0, 3, 1, 2)
        y = F.conv2d(F.pad(xc[:, :n_l], (1, 1, 1, 1), mode="reflect"), self.w_local, self.b_local)
        y_l = y[:, :n_l]
        torch.relu_(y_l.add_(F.conv2d(F.pad(xc[:, n_l:], (1, 1, 1, 1), mode="reflect"), self.w_g2l)))
        if residual is not None:
            y_l.add_(residual.permute(0, 3, 1, 2)[:, :n_l])
        return y.permute(0, 2, 3, 1)


class WinogradKernel(nn.Module):
    """The same convolutions by Winograd F(4x4, 3x3) (:mod:`lama.winograd`): l2l and g2l add up in the
    transformed domain, so the local output is one product over all input channels, and l2g is one more
    over the local channels."""

    name = "winograd"
    in_place = True  # writes into a given buffer, which may be its input

    def __init__(self, w_l2l: torch.Tensor, w_g2l: torch.Tensor, w_l2g: torch.Tensor, b_l: torch.Tensor,
                 b_g: torch.Tensor):
        super().__init__()
        self.n_l = w_l2l.shape[0]
        # the 3x3 weights are kept; their transforms (4x the size: 600 MB for Big LaMa in float32) are made on first
        # use and cached (filters), or, for large maps, made for each use into the pass's workspace
        self.register_buffer("taps_local", taps(torch.cat([w_l2l, w_g2l], 1)))  # [9, C, n_l]
        self.register_buffer("taps_l2g", taps(w_l2g))  # [9, n_l, C_g]
        self.register_buffer("b_local", b_l)
        self.register_buffer("b_global", b_g)
        self._filters: tuple[object, torch.Tensor, torch.Tensor] | None = None  # (taps' identity, u_local, u_l2g)

    def filters(self, ws: Workspace) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed filters ``[36, C, n_l]`` and ``[36, n_l, C_g]``: cached, made again where the taps
        changed (moved, converted), or, where ``ws.stream_filters``, made into ``ws``'s buffers (the cache
        dropped)."""
        t_l, t_g = self.taps_local, self.taps_l2g
        if ws.stream_filters:
            self._filters = None
            return (transform_filters(t_l, ws.get("u_local", (A * A, *t_l.shape[1:]))),
                    transform_filters(t_g, ws.get("u_l2g", (A * A, *t_g.shape[1:]))))
        key = [(t.data_ptr(), t.dtype, t.device) for t in (t_l, t_g)]
        cached = self._filters
        if cached is None or cached[0] != key:
            cached = self._filters = None  # the old ones freed first
            made = (transform_filters(t, t.new_empty(A * A, *t.shape[1:])) for t in (t_l, t_g))
            cached = self._filters = (key, *made)
        return cached[1], cached[2]

    def drop_filters(self) -> None:
        """Free the cached transformed filters (:meth:`filters` makes them again when needed)."""
        self._filters = None

    def fuses_global(self, h: int, w: int) -> bool:
        """Whether :meth:`forward` takes ``pre_global`` on an ``h`` x ``w`` map: where the outputs go straight
        into ``out`` (whole tiles)."""
        return h % M == 0 and w % M == 0

    def forward(self, x: torch.Tensor, out: torch.Tensor, ws: Workspace, residual: torch.Tensor | None = None,
                pre_global: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
        """As :meth:`DirectKernel.forward`, written into ``out`` (contiguous ``[B, H, W, C]``), which may be ``x``
        itself: band by band, each band's input read before its output is written, and the one input row
        the next band needs from this band saved first.

        ``pre_global(r0, r1, dst)`` (where :meth:`fuses_global`), if given, writes into ``dst``, the global channels
        of output rows ``r0:r1``, what they add before their ReLU (the spectral path): the global outputs are then
        ``relu(l2g + b_g + that)``, plus ``residual``'s global channels, in the output transform's one pass."""
        b, h, w, c = x.shape
        n_l = self.n_l
        th, tw = -(-h // M), -(-w // M)
        whole = self.fuses_global(h, w)  # whole tiles: outputs go straight into ``out``
        if pre_global is not None and not whole:
            raise ValueError(f"pre_global needs whole 4x4 tiles, not a {h}x{w} map")
        step = max(1, TILES_PER_BAND // (2 if x.dtype == torch.float32 else 1) // (b * tw))
        in_place = out.data_ptr() == x.data_ptr()
        u_local, u_l2g = self.filters(ws)
        for r0 in range(0, th, step):
            r1 = min(th, r0 + step)
            tr = r1 - r0
            halo = ws.get("halo", (b, w, c)) if in_place and r0 else None  # row M r0 - 1, saved before overwritten
            # bf16: the l2g product's operand, the local channels, also written contiguous (fp32 products gain nothing)
            v, v_l = band_tiles(x, M * r0 - 1, tr, ws, halo, lo=n_l, copy_lo=x.dtype != torch.float32)
            if in_place and r1 < th:
                ws.get("halo", (b, w, c)).copy_(x[:, M * r1 - 1])  # after this band's tiles have read the last one
            m_l = torch.bmm(v, u_local, out=ws.get("m_local", (v.shape[0], v.shape[1], n_l)))
            m_g = torch.bmm(v_l, u_l2g, out=ws.get("m_global", (v.shape[0], v.shape[1], c - n_l)))
            dst = out[:, M * r0: M * r1].view(b, tr, M, tw, M, c) if whole else ws.get("dst", (b, tr, M, tw, M, c))
            res = residual[:, M * r0: M * r1].view(b, tr, M, tw, M, c) if whole and residual is not None else None
            res_l, res_g = (None, None) if res is None else (res[..., :n_l], res[..., n_l:])
            output_tiles(m_l, dst[..., :n_l], ws, self.b_local, relu=True, residual=res_l)
            if pre_global is not None:
                pre_global(M * r0, M * r1, out[:, M * r0: M * r1, :, n_l:])
                output_tiles(m_g, dst[..., n_l:], ws, self.b_global, relu=True, residual=res_g, accumulate=True)
            else:
                output_tiles(m_g, dst[..., n_l:], ws, self.b_global)
            if not whole:
                rows = min(h, M * r1) - M * r0
                out[:, M * r0: M * r0 + rows] = dst.view(b, M * tr, M * tw, c)[:, :rows, :w]
                if residual is not None:
                    out[:, M * r0: M * r0 + rows, :, :n_l] += residual[:, M * r0: M * r0 + rows, :, :n_l]
        return out


KERNELS = {k.name: k for k in (WinogradKernel, DirectKernel)}


def _dft_factors(h: int, w: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """:func:`lama.dft.dft_matrices` arranged for :meth:`FastSpectral._fourier_dft`, so that each DFT stage is one
    product: along W the cos and sin rows stacked (``[2 Wf, W]``, per map row, giving ``[H, 2, Wf, C]``); along H
    the complex transforms as one real ``[2H, 2H]`` matrix on those (row, part) pairs, the forward one giving
    ``[2, H, Wf, C]`` (parts outermost, as the unit's 1x1 conv reads them) and the inverse one reading that and
    giving ``[H, 2, Wf, C]`` again, which the inverse along W (``[W, 2 Wf]``) reads per row. Made once per forward
    (:meth:`Workspace.memo`): nothing cached outlives a trace."""
    m = dft_matrices(h, w, dtype, device)
    c, s = m["h_cos"], m["h_sin"]
    # e^{-i..}: (C re + S im, C im - S re), on (part, row) stacked inputs; then columns reordered to (row, part)
    fwd = torch.cat([torch.cat([c, s], 1), torch.cat([-s, c], 1)]).view(2 * h, 2, h).transpose(1, 2)
    inv = torch.cat([torch.cat([c, -s], 1), torch.cat([s, c], 1)]).view(2, h, 2 * h).transpose(0, 1)  # e^{+i..}
    wf = w // 2 + 1
    return {"w": torch.cat([m["w_cos"], m["w_sin"]]).expand(h, 2 * wf, w),
            "h": fwd.reshape(2 * h, 2 * h), "ih": inv.reshape(2 * h, 2 * h),
            "iw": torch.cat([m["iw_cos"], m["iw_sin"]], 1).expand(h, w, 2 * wf)}


class FastSpectral(nn.Module):
    """The g2g path of a resnet block layer on ``[B H W, C]`` rows: ``out = relu(out + w2 (s + FU(s)))`` with
    ``s = relu(w1 x + b1)``, BatchNorms folded, 1x1 convolutions as matrix products.

    The Fourier unit (rFFT, 1x1 conv + BN + ReLU on (re, im), inverse) runs (:meth:`fourier_path`) with the
    compiled FFTs in float32 (at 512x512 1% faster than the DFT products, at 1024x1024 7%, at 2048x2048 10% faster
    than pocketfft, whole passes on an AMX Xeon), or with its DFTs as matrix products in the network's dtype for
    small maps (:mod:`lama.dft`: in bfloat16 no float32 round trip, and the products run on the CPU's matrix units),
    or with pocketfft in float32.
    """

    def __init__(self, st: SpectralTransform, bn_g: nn.BatchNorm2d):
        super().__init__()
        w1, b1 = fold_batchnorm(st.conv1[0].weight, st.conv1[1])
        w_fu, b_fu = fold_batchnorm(st.fu.conv_layer.weight, st.fu.bn)
        w2, _ = fold_batchnorm(st.conv2.weight, bn_g)  # bn_g scales the sum l2g + g2g: both parts
        c2 = w1.shape[0]
        self.register_buffer("w1", w1.flatten(1))
        self.register_buffer("b1", b1)
        self.register_buffer("w2", w2.flatten(1))
        # the unit's channels interleave (re, im) per channel; kept as blocks [(out part, in part), C_in, C_out],
        # 3-D so that the generator's conversion to channels-last leaves them contiguous
        self.register_buffer("w_fu", w_fu.view(c2, 2, c2, 2).permute(1, 3, 2, 0).reshape(4, c2, c2))
        self.register_buffer("b_fu", b_fu.view(c2, 2).t().contiguous())

    def fourier_path(self, h: int, w: int) -> str:
        """How the Fourier unit transforms an ``h`` x ``w`` map: ``"compiled"`` FFTs (:mod:`lama.native`, float32 on
        the CPU, sizes with no prime factor above 7), ``"dft"`` matrix products (small maps), else ``"pocketfft"``."""
        if (self.w1.dtype == torch.float32 and self.w1.device.type == "cpu" and native.fft_size_ok(h)
                and native.fft_size_ok(w) and native.library() is not None):
            return "compiled"
        return "dft" if max(h, w) <= DFT_MAX_SIDE.get(self.w1.dtype, 0) else "pocketfft"

    def reduce(self, x_g: torch.Tensor, ws: Workspace) -> torch.Tensor:
        """``s = relu(w1 x_g + b1)`` from ``x_g``, a ``[B H W, C]`` view (rows may be strided); done before the
        layer's convolution, which may then overwrite its input."""
        s = ws.get("s", (x_g.shape[0], self.w1.shape[0]))
        relu_add(torch.mm(x_g, self.w1.t(), out=s), None, self.b1)
        return s

    def forward(self, s: torch.Tensor, out_g: torch.Tensor, bhw: tuple[int, int, int], ws: Workspace,
                residual_g: torch.Tensor | None = None) -> None:
        """``out_g = relu(out_g + w2 (s + FU(s))) (+ residual_g)``; ``out_g`` a ``[B H W, C]`` view, updated in
        place."""
        self.fourier(s, bhw, ws)
        relu_add(out_g.addmm_(s, self.w2.t()), residual_g)

    def fourier(self, s: torch.Tensor, bhw: tuple[int, int, int], ws: Workspace) -> None:
        """``s += FU(s)``, on the path :meth:`fourier_path` names."""
        path = self.fourier_path(*bhw[1:])
        if path == "pocketfft":
            self._fourier_fft(s, bhw, ws)
        else:
            self._fourier_dft(s, bhw, ws, native.library() if path == "compiled" else None)

    def product(self, s: torch.Tensor, bhw: tuple[int, int, int], r0: int, r1: int, dst: torch.Tensor) -> None:
        """``dst = w2 s`` for map rows ``r0:r1`` of ``s`` (``s + FU(s)`` by then, ``[B H W, C2]``); ``dst`` a
        ``[B, r1 - r0, W, C]`` view whose pixels' channels are contiguous, overwritten."""
        b, h, w = bhw
        rows = s.view(b, h * w, -1)[:, r0 * w: r1 * w]
        for i in range(b):
            dst[i].view(-1, dst.shape[-1]).addmm_(rows[i], self.w2.t(), beta=0)

    def _fourier_fft(self, s: torch.Tensor, bhw: tuple[int, int, int], ws: Workspace) -> None:
        """``s += FU(s)`` with pocketfft in float32 on channel groups (their internal temporaries then stay
        under glibc's mmap threshold and are recycled instead of page-faulted in afresh for every layer)."""
        b, h, w = bhw
        c2 = s.shape[1]
        f32 = s if s.dtype == torch.float32 else ws.get("s32", s.shape, torch.float32).copy_(s)
        wf = w // 2 + 1
        group = max(1, min(c2, FFT_GROUP_BYTES // (b * h * wf * 8)))
        spec = ws.get("spec", (b, h, wf, c2), torch.complex64)
        for c0 in range(0, c2, group):
            torch.fft.rfftn(f32.view(b, h, w, c2)[..., c0: c0 + group], dim=(1, 2), norm="ortho",
                            out=spec[..., c0: c0 + group])
        z = torch.view_as_real(spec).view(-1, 2 * c2)  # channels re0, im0, re1, ... : no copy
        if s.dtype != torch.float32:
            z = ws.get("z", z.shape).copy_(z)
        w_fu = self.w_fu.view(2, 2, c2, c2).permute(3, 0, 2, 1).reshape(2 * c2, 2 * c2)  # interleaved [out, in]
        fu = torch.mm(z, w_fu.t(), out=ws.get("fu", z.shape))
        relu_add(fu, None, self.b_fu.t().reshape(-1))
        if fu.dtype != torch.float32:
            fu = ws.get("fu32", fu.shape, torch.float32).copy_(fu)
        fu = torch.view_as_complex(fu.view(b, h, wf, c2, 2))
        back = torch.view_as_real(spec).view(-1)[: b * h * w * c2].view(b, h, w, c2)  # spec is free now: reused
        for c0 in range(0, c2, group):
            torch.fft.irfftn(fu[..., c0: c0 + group], s=(h, w), dim=(1, 2), norm="ortho",
                             out=back[..., c0: c0 + group])
        s.add_(back.view(-1, c2))

    def _fourier_dft(self, s: torch.Tensor, bhw: tuple[int, int, int], ws: Workspace,
                     lib: ctypes.CDLL | None = None) -> None:
        """``s += FU(s)``, one transform per axis and direction: by the compiled FFTs of ``lib`` (:mod:`lama.native`),
        where given, or by DFT matrix products (:func:`_dft_factors`), one product per stage. The stages between the
        transforms along W (the one along H, the unit's conv, the inverse along H) go a group of spectrum columns at
        a time, so that two of the three spectrum-sized buffers are :data:`DFT_GROUP_BYTES` at most (at a 2048x2048
        bfloat16 input they were 25 MB each)."""
        b, h, w = bhw
        c2 = s.shape[1]
        wf = w // 2 + 1
        d = None if lib else ws.memo(("dft", h, w), lambda: _dft_factors(h, w, s.dtype, s.device))
        sw, sh = w ** -0.5, h ** -0.5  # the compiled FFTs' ortho scaling; the DFT matrices have it
        group = max(1, min(wf, DFT_GROUP_BYTES // (2 * h * c2 * s.element_size())))
        rows = ws.get("rows", (h, 2, wf, c2))  # each map row's spectrum along W
        for si in s.view(b, h, w, c2):
            if lib:
                native.fft_rows(lib, si, rows, sw)
            else:
                torch.bmm(d["w"], si, out=rows.view(h, 2 * wf, c2))
            for q0 in range(0, wf, group):
                q1 = min(wf, q0 + group)
                cols = rows[:, :, q0:q1]  # [H, 2, columns, C], strided; for the products [(H, 2), (columns, C)]
                flat = rows.view(2 * h, wf * c2)[:, q0 * c2: q1 * c2]
                spec = ws.get("spec", (2, h, q1 - q0, c2))  # along H: [2, H, columns, C]
                fu = ws.get("fu", spec.shape)
                if lib:
                    native.fft_cols(lib, cols, spec.transpose(0, 1), False, sh)
                else:
                    torch.mm(d["h"], flat, out=spec.view(2 * h, -1))
                re, im = spec.view(2, -1, c2)
                for o, fu_o in enumerate(fu.view(2, -1, c2)):  # the unit's 1x1 conv + BN + ReLU, per output part
                    torch.mm(re, self.w_fu[2 * o], out=fu_o).addmm_(im, self.w_fu[2 * o + 1])
                    if not lib:
                        relu_add(fu_o, None, self.b_fu[o])
                if lib:  # inverse along H (of the ReLU, with the bias, read there), back into these columns
                    native.fft_cols(lib, fu.transpose(0, 1), cols, True, sh, relu_bias=self.b_fu)
                else:
                    torch.mm(d["ih"], fu.view(2 * h, -1), out=flat)
            if lib:  # inverse along W, added to s
                native.ifft_rows_add(lib, rows, si, sw)
            else:
                si.baddbmm_(d["iw"], rows.view(h, 2 * wf, c2))


class FastFFC(nn.Module):
    """One FFC+BN+ReLU layer of a resnet block, on ``[B, H, W, C]`` maps with the local channels first: the
    3x3 convolutions by a pluggable kernel (:data:`KERNELS`), then the spectral path added to the global
    channels."""

    def __init__(self, layer: FFC_BN_ACT, kernel: str):
        super().__init__()
        f = layer.ffc
        w_l2l, b_l = fold_batchnorm(f.convl2l.weight, layer.bn_l)
        w_g2l, _ = fold_batchnorm(f.convg2l.weight, layer.bn_l)
        w_l2g, b_g = fold_batchnorm(f.convl2g.weight, layer.bn_g)
        self.conv = KERNELS[kernel](w_l2l, w_g2l, w_l2g, b_l, b_g)
        self.spectral = FastSpectral(f.convg2g, layer.bn_g)

    def forward(self, x: torch.Tensor, out: torch.Tensor | None, ws: Workspace,
                residual: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, H, W, C]``; the result (plus ``residual``, if given: a resnet block's input, added in the
        passes that write the output) is written into ``out`` (which may be ``x`` itself) by kernels that take
        one, else returned as a new tensor."""
        b, h, w, c = x.shape
        n_l = self.conv.n_l
        s = self.spectral.reduce(x.reshape(-1, c)[:, n_l:], ws)
        if self.conv.fuses_global(h, w):  # the spectral path first: the conv's output pass adds it, ReLU included
            self.spectral.fourier(s, (b, h, w), ws)
            return self.conv(x, out, ws, residual,
                             pre_global=lambda r0, r1, dst: self.spectral.product(s, (b, h, w), r0, r1, dst))
        y = self.conv(x, out, ws, residual)
        res_g = None if residual is None else residual.reshape(-1, c)[:, n_l:]
        self.spectral(s, y.view(-1, c)[:, n_l:], (b, h, w), ws, res_g)
        return y


class FastBlock(nn.Module):
    def __init__(self, block: FFCResnetBlock, kernel: str):
        super().__init__()
        self.conv1, self.conv2 = FastFFC(block.conv1, kernel), FastFFC(block.conv2, kernel)

    def forward(self, x: torch.Tensor, spare: list[torch.Tensor | None], ws: Workspace) -> torch.Tensor:
        """``x`` + the block's output. Kernels that write into given buffers get ``spare[0]`` for the first
        layer, whose output the second layer then overwrites in place: two maps alive, not three (128 MB at
        a 2048x2048 input in float32). ``x`` becomes the next block's spare."""
        t = self.conv1(x, spare[0], ws)
        y = self.conv2(t, t if spare[0] is not None else None, ws, residual=x)
        if spare[0] is not None:
            spare[0] = x
        return y


class _ConvBNReLU(nn.Module):
    """Reflect pad + conv (+ folded BN) + ReLU, for the stem and the downsampling layers."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, pad: int):
        super().__init__()
        w, b = fold_batchnorm(conv.weight, bn)
        self.w = nn.Parameter(w.contiguous(memory_format=CL), requires_grad=False)
        self.b = nn.Parameter(b, requires_grad=False)
        self.stride, self.pad = conv.stride, pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_reflect(x, self.w, self.b, self.stride[0], self.pad, relu=True)


class _UpBNReLU(nn.Module):
    def __init__(self, conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d):
        super().__init__()
        w, b = fold_batchnorm(conv.weight, bn, out_dim=1)  # ConvTranspose2d weights are [in, out, k, k]
        self.w = nn.Parameter(w.contiguous(memory_format=CL), requires_grad=False)
        self.b = nn.Parameter(b + conv.bias * (bn.weight / torch.sqrt(bn.running_var + bn.eps)), requires_grad=False)
        self.stride, self.padding, self.output_padding = conv.stride, conv.padding, conv.output_padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_transpose2d_relu(x, self.w, self.b, self.stride[0], self.padding[0], self.output_padding[0])


class FastGenerator(nn.Module):
    """The generator's function with the rearrangements above; build with ``FastGenerator(gen)``."""

    def __init__(self, gen: FFCResNetGenerator, kernel: str | None = None, dtype: torch.dtype | None = None):
        """``dtype``: the dtype to run in. Each resnet block is converted as soon as it is built (its BatchNorms
        folded in float32 first), so the float32 weights of all blocks never exist at once: the load's peak memory
        in bfloat16. The Winograd filters are transformed on first use (:meth:`WinogradKernel.filters`)."""
        super().__init__()
        if not supports(gen):
            raise ValueError("FastGenerator rebuilds the published LaMa structure only; use the generator itself")
        if kernel is None:  # GPUs have their own fast convolutions; build on the device it will run on
            kernel = "winograd" if next(gen.parameters()).device.type == "cpu" else "direct"
        if kernel not in KERNELS:
            raise ValueError(f"unknown 3x3 kernel {kernel!r}; known: {', '.join(KERNELS)}")
        gen = gen.eval()
        layers = list(gen.model)
        ffcs = [m for m in layers if isinstance(m, FFC_BN_ACT)]
        stem = ffcs[0]
        self.stem = _ConvBNReLU(stem.ffc.convl2l, stem.bn_l, pad=3)
        self.down = nn.ModuleList(_ConvBNReLU(f.ffc.convl2l, f.bn_l, pad=f.ffc.convl2l.padding[0]) for f in ffcs[1:-1])
        last = ffcs[-1]
        # the last downsampling layer splits channels: its l2l and l2g read the same input, so one conv
        w_l, b_l = fold_batchnorm(last.ffc.convl2l.weight, last.bn_l)
        w_g, b_g = fold_batchnorm(last.ffc.convl2g.weight, last.bn_g)
        self.split_conv = nn.Conv2d(w_l.shape[1], w_l.shape[0] + w_g.shape[0], w_l.shape[2], stride=2)
        with torch.no_grad():
            self.split_conv.weight.copy_(torch.cat([w_l, w_g]))
            self.split_conv.bias.copy_(torch.cat([b_l, b_g]))
        self.split_pad = last.ffc.convl2l.padding[0]
        self.n_l = w_l.shape[0]
        self.kernel = kernel
        self.blocks = nn.ModuleList(FastBlock(m, kernel).to(dtype) for m in layers if isinstance(m, FFCResnetBlock))
        ups = [m for m in layers if isinstance(m, nn.ConvTranspose2d)]
        bns = [layers[layers.index(u) + 1] for u in ups]
        self.up = nn.ModuleList(_UpBNReLU(u, bn) for u, bn in zip(ups, bns, strict=True))
        oc = [m for m in layers if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            vertical, horizontal = _two_pass_weights(oc.weight.detach())
            self.out_vertical = nn.Parameter(vertical, requires_grad=False)
            self.out_horizontal = nn.Parameter(horizontal, requires_grad=False)
            bias = oc.bias if oc.bias is not None else oc.weight.new_zeros(oc.out_channels)
            self.out_bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.out_act = layers[-1] if isinstance(layers[-1], nn.Sigmoid | nn.Tanh) else nn.Identity()
        self.requires_grad_(False)
        self.to(dtype=dtype, memory_format=CL)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}"

    def _band_rows(self, width: int) -> int:
        """Rows per band so that a 64-channel full-resolution band stays near BAND_ELEMENTS values."""
        return max(16, BAND_ELEMENTS // (64 * width))

    def _down_rows(self, x: torch.Tensor, level: int, a0: int, a1: int, heights: list[int]) -> torch.Tensor:
        """Rows ``a0:a1`` of the stem's output (level 0) or of ``down[level - 1]``'s, from the input ``x``; each
        level computes just the rows that the next one reads. ``heights``: the rows of each level's output."""
        if level == 0:  # input rows a0 - 3 .. a1 + 2, reflect-padded by 3 where they pass the image's edges
            lo, hi = max(0, a0 - 3), min(heights[0], a1 + 3)
            band = F.pad(x[..., lo:hi, :], (3, 3, lo - (a0 - 3), a1 + 3 - hi), mode="reflect")  # 4 channels
            return conv2d_relu(band, self.stem.w, self.stem.b)
        d = self.down[level - 1]
        n = heights[level - 1]  # rows of this level's input
        lo, hi = max(0, 2 * a0 - 1), min(n, 2 * a1)  # a 3x3/stride-2 window at row a reads 2a-1 .. 2a+1
        rows = self._down_rows(x, level - 1, lo, hi, heights)
        # the image's edges: reflect, as the padded conv would (computing the band unpadded and redoing its edges, as
        # conv2d_reflect does, was 2% slower in one process, alternating: the bands are small)
        band = F.pad(rows, (1, 1, 1 if a0 == 0 else 0, 1 if 2 * a1 > n else 0), mode="reflect")
        return conv2d_relu(band, d.w, d.b, 2)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Stem + the first downsamplings (up to HEAD_LEVELS) in row bands: the full- and half-resolution
        maps never exist whole."""
        levels = min(HEAD_LEVELS, len(self.down))
        b, _, h, w = x.shape
        heights, widths = [h], [w]
        for _ in range(levels):  # a 3x3/stride-2 conv padded by 1 gives ceil(n / 2)
            heights.append((heights[-1] + 1) // 2)
            widths.append((widths[-1] + 1) // 2)
        ho = heights[-1]
        out = torch.empty(b, self.down[levels - 1].w.shape[0], ho, widths[-1], dtype=x.dtype, device=x.device,
                          memory_format=CL)
        step = max(1, self._band_rows(w) >> levels)
        for a0 in range(0, ho, step):
            a1 = min(ho, a0 + step)
            out[..., a0:a1, :] = self._down_rows(x, levels, a0, a1, heights)
        return out

    def _up_rows(self, x: torch.Tensor, ups: list[_UpBNReLU], lo: int, hi: int) -> torch.Tensor:
        """Rows ``lo:hi`` of the output of the transposed convs ``ups`` applied to ``x``, from the rows
        of ``x`` they need."""
        if not ups:
            return x[..., lo:hi, :]
        up = ups[-1]
        n = x.shape[-2] << (len(ups) - 1)  # rows of this level's input
        i0, i1 = max(0, (lo - 1) // 2), min(n, hi // 2 + 1)  # input rows that make output rows lo:hi complete
        y = conv_transpose2d_relu(self._up_rows(x, ups[:-1], i0, i1), up.w, up.b, up.stride[0], up.padding[0],
                                  up.output_padding[0])
        return y[..., lo - 2 * i0: hi - 2 * i0, :]

    def _tail(self, x: torch.Tensor) -> torch.Tensor:
        """The last upsamplings (up to TAIL_LEVELS) + output conv in row bands: the full- and half-resolution
        maps never exist whole."""
        ups = list(self.up[-TAIL_LEVELS:])
        b, _, h, w = x.shape
        ho, wo = h << len(ups), w << len(ups)
        out = torch.empty(b, self.out_bias.shape[0], ho, wo, dtype=x.dtype, device=x.device)
        step = self._band_rows(wo)
        lib = self._out_conv_library(wo)
        if lib is not None:  # the compiled conv's weights [ky, C, (kx, c_out)] and scratch
            wv = self.out_vertical[..., 0].permute(2, 1, 0).contiguous()
            scratch = x.new_empty(min(step, ho) * wv.shape[2] * wo)
        for r0 in range(0, ho, step):
            r1 = min(ho, r0 + step)
            lo, hi = max(0, r0 - 3), min(ho, r1 + 3)  # rows the 7x7 output conv reads
            y = self._up_rows(x, ups, lo, hi)
            top, bottom = 3 if lo == 0 else 0, 3 if hi == ho else 0
            if top or bottom:  # the image's first or last rows: reflected rows above or below the band
                y = F.pad(y, (0, 0, top, bottom), mode="reflect")
            if lib is not None:
                y = y.contiguous(memory_format=CL)
                for i in range(b):
                    native.out_conv(lib, y[i], wv, self.out_bias, out[i, :, r0:r1], scratch)
                continue
            v = F.conv2d(y, self.out_vertical)  # [B, (kx, c_out), r1 - r0, wo]: 21 channels, not 64
            out[..., r0:r1, :] = F.conv2d(F.pad(v, (3, 3, 0, 0), mode="reflect"), self.out_horizontal, self.out_bias)
        return out

    def _out_conv_library(self, width: int) -> ctypes.CDLL | None:
        """The compiled library, where it runs this output conv (:func:`lama.native.out_conv`: float32 on the CPU, a
        7x7 conv to 3 channels, maps wider than 3; 1.5x oneDNN's two passes on an AMX Xeon), else None: oneDNN's or
        cuDNN's two passes (in bfloat16 oneDNN's run on the matrix units)."""
        w = self.out_vertical
        if (w.dtype != torch.float32 or w.device.type != "cpu" or width <= native.OUT_K // 2
                or tuple(w.shape[::2]) != (native.OUT_K * native.OUT_C, native.OUT_K)):
            return None
        return native.library()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run([x])

    @torch.inference_mode()
    def run(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """:meth:`forward` on ``inputs``' one tensor, which it takes out of the list: where the caller keeps no other
        reference, the input is freed after the head (64 MB at a 2048x2048 input in float32, alive otherwise
        through the downsampling and the blocks, where the pass's memory peaks)."""
        x = inputs.pop()
        if x.device.type == "cpu":
            heap.keep_freed_memory()  # freed layers' memory reused, not page-faulted in afresh (lama.heap)
        b, _, h, w = x.shape
        f = 2 ** (len(self.down) + 1)  # the stride-2 convs before the blocks (down, split_conv)
        block_map = (b, -(-h // f), -(-w // f), self.split_conv.out_channels)
        stream = math.prod(block_map[:3]) >= STREAM_FILTER_PIXELS
        if stream:  # large maps: the cached filters and the heap's free memory handed back before the head, a peak too
            for k in self.modules():
                if isinstance(k, WinogradKernel):
                    k.drop_filters()
            heap.release_freed_memory(math.prod(block_map) * x.element_size())
        x = self._head(x.contiguous(memory_format=CL))
        heap.release_freed_memory(x.numel() * x.element_size())  # the head's bands, where the maps are large
        for d in self.down[HEAD_LEVELS:]:
            x = d(x)
        # without the padded copy of its input (256 MB at a 2048x2048 input in float32: the peak)
        y = conv2d_reflect(x, self.split_conv.weight, self.split_conv.bias, 2, self.split_pad, relu=True)
        del x
        x = y.permute(0, 2, 3, 1)  # [B, H, W, C], local channels first: a view
        ws = Workspace(x.dtype, x.device, stream_filters=stream)
        spare = [torch.empty_like(x) if KERNELS[self.kernel].in_place else None]
        for block in self.blocks:
            x = block(x, spare, ws)
        del spare, ws
        heap.release_freed_memory(x.numel() * x.element_size())  # the blocks' workspace, before the upsampling
        x = x.permute(0, 3, 1, 2)
        del y
        for u in self.up[:-TAIL_LEVELS]:
            x = u(x)
        return self.out_act(self._tail(x)).contiguous()
