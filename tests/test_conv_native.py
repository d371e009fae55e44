"""The compiled output convolution (lama/conv_native.c through lama.native.out_conv): PyTorch's 7x7 convolution of
the reflect-padded band, computed in float64 as the reference, for widths that are not whole vectors and one-row
bands; the generator's fast path using it; tensors that do not fit are refused before any C code runs."""

import pytest
import torch
import torch.nn.functional as F

from lama import fast, native
from lama.generator import build_preset
from lama.testing import randomize_bn

needs_library = pytest.mark.skipif(native.compiler() is None or native.library() is None,
                                   reason="no compiled kernels on this machine")


def _band(rows: int, w: int, c: int, seed: int):
    """A channels-last band [C, rows + 6, W] (3 rows of context above and below), weights [3, C, 7, 7], a bias."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(1, c, rows + 6, w, generator=gen).contiguous(memory_format=torch.channels_last)[0]
    return y, torch.randn(3, c, 7, 7, generator=gen) / (7 * c ** 0.5), torch.randn(3, generator=gen)


def _compiled(y, weight, bias, out=None):
    c, rp, w = y.shape
    out = torch.full((3, rp - 6, w), float("nan")) if out is None else out
    wv = weight.permute(2, 1, 3, 0).reshape(7, c, 21).contiguous()  # [ky, c, (kx, o)]
    native.out_conv(native.library(), y, wv, bias, out, torch.empty((rp - 6) * 21 * w))
    return out


@needs_library
@pytest.mark.parametrize(("rows", "w", "c"), [(1, 4, 1), (5, 17, 3), (16, 32, 64), (9, 70, 64), (33, 100, 20)])
def test_output_conv_equals_the_reflect_padded_conv(rows, w, c):
    y, weight, bias = _band(rows, w, c, seed=rows * w + c)
    ref = F.conv2d(F.pad(y[None].double(), (3, 3, 0, 0), mode="reflect"), weight.double(), bias.double())[0]
    assert (_compiled(y, weight, bias).double() - ref).abs().max() <= 1e-5


@needs_library
def test_output_conv_writes_rows_of_a_larger_map_only():
    """The band's rows of an output map [3, H, W]: rows outside it keep their values."""
    y, weight, bias = _band(6, 24, 8, seed=1)
    out = torch.zeros(3, 20, 24)
    _compiled(y, weight, bias, out[:, 7:13])
    ref = F.conv2d(F.pad(y[None], (3, 3, 0, 0), mode="reflect"), weight, bias)[0]
    assert (out[:, 7:13] - ref).abs().max() <= 1e-5
    assert out[:, :7].eq(0).all() and out[:, 13:].eq(0).all()


@needs_library
def test_output_conv_refuses_what_does_not_fit():
    lib = native.library()
    y, weight, bias = _band(4, 16, 8, seed=2)
    wv = weight.permute(2, 1, 3, 0).reshape(7, 8, 21).contiguous()
    out, v = torch.empty(3, 4, 16), torch.empty(4 * 21 * 16)
    bad = [
        (y.contiguous(), wv, bias, out, v),  # channels not innermost
        (y.bfloat16(), wv, bias, out, v),
        (y, wv[:, :4], bias, out, v),  # weights for other channels
        (y, wv, bias, torch.empty(3, 5, 16), v),  # rows that the band does not give
        (y, wv, bias, out, torch.empty(10)),  # scratch too small
        (y[:, :, :3], wv, bias, torch.empty(3, 4, 3), v),  # narrower than the reflection
    ]
    for args in bad:
        with pytest.raises(ValueError, match="out_conv"):
            native.out_conv(lib, *args)


@needs_library
def test_fast_generator_uses_the_compiled_output_conv_in_float32_only():
    g = randomize_bn(build_preset("lama-fourier")).eval()
    x = torch.rand(2, 4, 40, 72, generator=torch.Generator().manual_seed(3))
    f32 = fast.FastGenerator(g, "winograd", torch.float32)
    assert f32._out_conv_library(72) is not None and f32._out_conv_library(3) is None
    assert fast.FastGenerator(g, "winograd", torch.bfloat16)._out_conv_library(72) is None
    with torch.no_grad():
        ref = g(x)
    assert (f32(x) - ref).abs().max() <= 1e-4
