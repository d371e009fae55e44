"""Winograd F(4x4, 3x3): the published matrices compute a 3x3 correlation, and the FFC layer built on
them equals the direct-convolution layer."""

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_bn
from torch import nn

from lama import winograd
from lama.fast import FastFFC
from lama.ffc import FFC_BN_ACT
from lama.winograd import A, Workspace, filter_transform


def test_matrices_compute_a_3x3_correlation():
    at, bt = torch.tensor(winograd.AT, dtype=torch.float64), torch.tensor(winograd.BT, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        d = torch.randn(6, 6, generator=gen, dtype=torch.float64)
        g = torch.randn(3, 3, generator=gen, dtype=torch.float64)
        u = filter_transform(g[None, None])[:, 0, 0].view(6, 6)
        y = at @ (u * (bt @ d @ bt.T)) @ at.T
        assert torch.allclose(y, F.conv2d(d[None, None], g[None, None])[0, 0], atol=1e-12)


def test_bias_component_reaches_every_output_pixel_once():
    at = torch.tensor(winograd.AT, dtype=torch.float64)
    e = torch.zeros(A * A, dtype=torch.float64)
    e[winograd.BIAS] = 1
    assert torch.equal(at @ e.view(A, A) @ at.T, torch.ones(4, 4, dtype=torch.float64))


@pytest.mark.parametrize(("h", "w"), [(16, 16), (13, 18), (2, 5), (5, 2), (70, 9), (9, 7), (6, 11)])
@pytest.mark.parametrize("tiles_per_band", [1, 256])
@pytest.mark.parametrize("compiled", ["1", "0"])  # lama.native's transforms, or the PyTorch ones
def test_winograd_layer_equals_the_direct_layer(h, w, tiles_per_band, compiled, monkeypatch):
    monkeypatch.setattr("lama.fast.TILES_PER_BAND", tiles_per_band)
    monkeypatch.setenv("LAMA_NATIVE", compiled)
    torch.manual_seed(1)
    layer = FFC_BN_ACT(32, 32, 3, 0.75, 0.75, padding=1, padding_type="reflect", activation_layer=nn.ReLU,
                       enable_lfu=False)
    randomize_bn(layer).eval()
    x = torch.randn(2, h, w, 32)
    with torch.inference_mode():
        ref = FastFFC(layer, "direct")(x, None, Workspace(torch.float32, "cpu"))
        out = torch.full_like(x, float("nan"))  # every output value must be written
        y = FastFFC(layer, "winograd")(x, out, Workspace(torch.float32, "cpu"))
        official_l, official_g = layer((x[..., :8].permute(0, 3, 1, 2), x[..., 8:].permute(0, 3, 1, 2)))
        same = x.clone()  # the output overwrites the input, band by band
        y_in_place = FastFFC(layer, "winograd")(same, same, Workspace(torch.float32, "cpu"))
    assert y.data_ptr() == out.data_ptr() and y_in_place.data_ptr() == same.data_ptr()
    assert (y - ref).abs().max() <= 5e-5 and (y_in_place - ref).abs().max() <= 5e-5
    assert (ref - torch.cat([official_l, official_g], 1).permute(0, 2, 3, 1)).abs().max() <= 5e-5


def test_workspace_reuses_its_buffers():
    ws = Workspace(torch.float32, "cpu")
    a = ws.get("x", (4, 5))
    b = ws.get("x", (2, 3))
    assert b.data_ptr() == a.data_ptr() and b.shape == (2, 3)
    assert ws.get("x", (10, 10)).numel() == 100  # grows when asked for more


def test_bfloat16_filters_transformed_in_float32_and_rounded_once():
    """The transform's entries (1/6, 1/24, ...) are not exact in bfloat16: the filters are computed in float32 from
    the bfloat16 taps and rounded once, so each is within half a bfloat16 step of the exact value (plus float32's
    error on the sum of its terms; a bfloat16 product errs by about 2**-9 of that sum)."""
    t = torch.randn(9, 64, 32).bfloat16()
    out = winograd.transform_filters(t, torch.empty(A * A, 64, 32, dtype=torch.bfloat16)).double()
    exact = winograd.transform_filters(t.double(), torch.empty(A * A, 64, 32, dtype=torch.float64))
    terms = (winograd.filter_matrix().abs() @ t.double().abs().view(9, -1)).view(exact.shape)
    half_step = 2.0 ** (torch.floor(torch.log2(exact.abs().clamp_min(1e-30))) - 8)
    assert ((out - exact).abs() <= half_step + 1e-6 * terms).all()
