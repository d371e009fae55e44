"""lama.dft: LaMa's 2-D real FFTs as matrix products equal torch.fft's, and its cache holds only real values."""

import pytest
import torch

from lama.dft import dft_matrices, irfft2, rfft2


@pytest.mark.parametrize(("h", "w"), [(64, 64), (8, 10), (7, 9), (16, 24)])
def test_products_equal_torch_fft(h, w):
    x = torch.randn(2, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    spec = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")
    re, im = rfft2(x)
    assert (re - spec.real).abs().max() < 1e-12 and (im - spec.imag).abs().max() < 1e-12
    # any half spectrum, also one that is not Hermitian in its zero/Nyquist columns: irfftn ignores that part
    z = torch.randn_like(spec)
    ref = torch.fft.irfftn(z, s=(h, w), dim=(-2, -1), norm="ortho")
    assert (irfft2(z.real.contiguous(), z.imag.contiguous(), (h, w)) - ref).abs().max() < 1e-12


def test_matrices_made_while_tracing_do_not_poison_the_cache():
    """An ONNX export traces with fake tensors; the fast path then asked the same cache for real matrices."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        dft_matrices(12, 20)
    m = dft_matrices(12, 20, torch.float64)
    x = torch.randn(12, 20, dtype=torch.float64)
    assert (x @ m["w_cos"].T - torch.fft.rfft(x, norm="backward").real / 20 ** 0.5).abs().max() < 1e-12
