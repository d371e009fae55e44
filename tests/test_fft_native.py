"""The compiled FFTs of the Fourier unit (lama/fft_native.c through lama.native): torch.fft's values, computed in
float64 as the reference, for every radix and odd sizes; LaMa's ortho-normalised 2-D real transform and its
inverse when composed as lama.fast composes them; tensors that do not fit are refused before any C code runs."""

import pytest
import torch

from lama import native

needs_library = pytest.mark.skipif(native.compiler() is None or native.library() is None,
                                   reason="no compiled kernels on this machine")

# every butterfly (4, 2, 3, 5, 7), odd and one-point transforms, channel counts that are not whole vectors
SIZES = [(64, 64, 192), (1, 1, 3), (2, 3, 5), (7, 12, 17), (30, 45, 33), (125, 96, 40), (49, 14, 16), (6, 10, 1)]


def _rfft2(lib, x):
    h, w, c = x.shape
    rows = torch.full((h, 2, w // 2 + 1, c), float("nan"))
    native.fft_rows(lib, x, rows, w ** -0.5)
    spec = torch.full((2, h, w // 2 + 1, c), float("nan"))
    native.fft_cols(lib, rows, spec.transpose(0, 1), False, h ** -0.5)
    return spec


def _irfft2_add(lib, spec, x):
    _, h, wf, c = spec.shape
    rows = torch.full((h, 2, wf, c), float("nan"))
    native.fft_cols(lib, spec.transpose(0, 1), rows, True, h ** -0.5)
    native.ifft_rows_add(lib, rows, x, x.shape[1] ** -0.5)


@needs_library
@pytest.mark.parametrize(("h", "w", "c"), SIZES)
def test_forward_transform_equals_torch_rfftn(h, w, c):
    x = torch.randn(h, w, c, generator=torch.Generator().manual_seed(h * w + c))
    ref = torch.fft.rfftn(x.double(), dim=(0, 1), norm="ortho")
    spec = _rfft2(native.library(), x)
    assert (spec[0].double() - ref.real).abs().max() <= 1e-5 and (spec[1].double() - ref.imag).abs().max() <= 1e-5


@needs_library
@pytest.mark.parametrize(("h", "w", "c"), SIZES)
def test_inverse_transform_adds_torch_irfftn(h, w, c):
    """Any half spectrum, also one that no real map has (imaginary parts at the zero and Nyquist columns, which
    irfftn ignores), as the Fourier unit's conv and ReLU make it."""
    gen = torch.Generator().manual_seed(h + w * c)
    spec, x = torch.randn(2, h, w // 2 + 1, c, generator=gen), torch.randn(h, w, c, generator=gen)
    ref = x.double() + torch.fft.irfftn(torch.complex(spec[0].double(), spec[1].double()), s=(h, w), dim=(0, 1),
                                        norm="ortho")
    _irfft2_add(native.library(), spec, x)
    assert (x.double() - ref).abs().max() <= 1e-5


@needs_library
def test_column_transform_on_strided_views():
    """The columns of a wider spectrum, the layout lama.fast hands over for a group of columns: the values outside
    the group are left alone."""
    lib = native.library()
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(12, 2, 9, 20, generator=gen)
    before = rows.clone()
    cols = rows[:, :, 3:7]
    out = torch.empty(2, 12, 4, 20)
    native.fft_cols(lib, cols, out.transpose(0, 1), False, 1.0)
    ref = torch.fft.fft(torch.complex(cols[:, 0].double(), cols[:, 1].double()), dim=0)
    assert (out[0].double() - ref.real).abs().max() <= 1e-4 and (out[1].double() - ref.imag).abs().max() <= 1e-4
    native.fft_cols(lib, out.transpose(0, 1), cols, True, 1 / 12)  # and back, into the columns only
    assert (rows - before).abs().max() <= 1e-5
    assert torch.equal(rows[:, :, :3], before[:, :, :3]) and torch.equal(rows[:, :, 7:], before[:, :, 7:])


@pytest.mark.parametrize(("n", "ok"), [(1, True), (64, True), (96, True), (125, True), (49, True), (210, True),
                                       (11, False), (26, False), (67, False), (121, False)])
def test_sizes_with_small_prime_factors_only(n, ok):
    assert native.fft_size_ok(n) == ok


@needs_library
def test_tensors_that_do_not_fit_are_refused():
    lib = native.library()
    x = torch.zeros(8, 8, 16)
    with pytest.raises(ValueError, match="do not fit"):
        native.fft_rows(lib, x, torch.zeros(8, 2, 4, 16), 1.0)  # W // 2 + 1 = 5 columns
    with pytest.raises(ValueError, match="do not fit"):
        native.fft_rows(lib, x.double(), torch.zeros(8, 2, 5, 16, dtype=torch.float64), 1.0)  # float32 only
    with pytest.raises(ValueError, match="do not fit"):
        native.fft_rows(lib, torch.zeros(8, 11, 16), torch.zeros(8, 2, 6, 16), 1.0)  # 11 has no butterfly
    with pytest.raises(ValueError, match="do not fit"):
        native.ifft_rows_add(lib, torch.zeros(8, 2, 5, 16), x[:, ::2], 1.0)  # not contiguous
    with pytest.raises(ValueError, match="do not fit"):
        native.fft_cols(lib, torch.zeros(8, 2, 3, 16), torch.zeros(8, 2, 4, 16), False, 1.0)  # other shapes
    with pytest.raises(ValueError, match="do not fit"):
        native.fft_cols(lib, torch.zeros(8, 2, 3, 32)[..., ::2], torch.zeros(8, 2, 3, 16), False, 1.0)  # strided C


@needs_library
def test_column_transform_of_the_relu_with_a_bias():
    """The Fourier unit's BN bias and ReLU, applied as the inverse transform reads its input."""
    lib = native.library()
    gen = torch.Generator().manual_seed(2)
    src, bias = torch.randn(2, 10, 6, 40, generator=gen), torch.randn(2, 40, generator=gen)
    out = torch.empty(10, 2, 6, 40)
    native.fft_cols(lib, src.transpose(0, 1), out, True, 0.5, relu_bias=bias)
    act = torch.relu(src.double() + bias.double()[:, None, None])
    ref = 0.5 * torch.fft.ifft(torch.complex(act[0], act[1]), dim=0, norm="forward")
    assert (out[:, 0].double() - ref.real).abs().max() <= 1e-5 and (out[:, 1].double() - ref.imag).abs().max() <= 1e-5
    assert torch.equal(src, torch.randn(2, 10, 6, 40, generator=torch.Generator().manual_seed(2)))  # read only
    with pytest.raises(ValueError, match="do not fit"):
        native.fft_cols(lib, src.transpose(0, 1), out, True, 0.5, relu_bias=bias[:, :20])
