"""The fast inference path computes the reference generator's function."""

import numpy as np
import pytest
import torch
from conftest import OFFICIAL, SMALL_GENERATOR, randomize_bn

import lama
from lama.fast import FastGenerator, FastSpectral, supports
from lama.generator import build_preset, generator_from_config
from lama.inpainter import Inpainter
from lama.winograd import Workspace


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(4)
    return randomize_bn(generator_from_config(SMALL_GENERATOR), seed=4).eval()


# (42, 40) and (22, 24): odd heights at the half-resolution level, so the head's last band meets the image's bottom
# edge with a reflected row (in a band of 3 output rows, and of 2, whose input is then padded as a copy)
@pytest.mark.parametrize(("h", "w"), [(64, 64), (40, 96), (128, 72), (16, 16), (42, 40), (22, 24), (32, 64)])
@pytest.mark.parametrize("bands", ["one", "many"])
@pytest.mark.parametrize("kernel", ["winograd", "direct"])
def test_fast_generator_equals_the_reference(small, h, w, bands, kernel, monkeypatch):
    if bands == "many":  # the smallest bands: head and tail 16 rows, FFC blocks one row of tiles
        monkeypatch.setattr("lama.fast.BAND_ELEMENTS", 1)
        monkeypatch.setattr("lama.fast.TILES_PER_BAND", 1)
    x = torch.rand(2, 4, h, w)
    with torch.no_grad():
        ref = small(x)
    assert (FastGenerator(small, kernel=kernel)(x) - ref).abs().max() <= 1e-5


@pytest.mark.parametrize(("h", "w"), [(64, 64), (32, 96)])
def test_spectral_path_added_in_the_winograd_output_pass(small, h, w, monkeypatch):
    """Where the blocks' maps are whole 4x4 tiles (8x8 and 4x12 here) the spectral path runs first and the
    Winograd output pass adds it, ReLU and residual included: the same values as adding it after the conv."""
    from lama.fast import WinogradKernel

    x = torch.rand(2, 4, h, w)
    fast = FastGenerator(small, kernel="winograd")
    assert all(layer.conv.fuses_global(h // 8, w // 8) for block in fast.blocks for layer in (block.conv1, block.conv2))
    fused = fast(x)
    monkeypatch.setattr(WinogradKernel, "fuses_global", lambda self, h, w: False)
    assert (fused - fast(x)).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="whole 4x4 tiles"):
        layer = fast.blocks[0].conv1
        t = torch.rand(1, 6, 6, layer.conv.taps_local.shape[1])
        layer.conv(t, torch.empty_like(t), Workspace(torch.float32, "cpu"), pre_global=lambda *a: None)


def test_big_lama_structure_equals_the_reference():
    torch.manual_seed(0)
    g = randomize_bn(build_preset("big-lama")).eval()
    x = torch.rand(1, 4, 64, 80)
    with torch.no_grad():
        ref = g(x)
    assert (FastGenerator(g)(x) - ref).abs().max() <= 1e-4


def test_official_reference_checkpoint_through_the_fast_path():
    model = lama.load_model(OFFICIAL)
    assert model.fast is not None
    ref = torch.load(OFFICIAL / "expected.pt", weights_only=True)
    assert (model.predict_batch(ref["image"], ref["mask"]) - ref["inpainted"]).abs().max() <= 1e-5


@pytest.mark.parametrize(("h", "w"), [(45, 61), (100, 33), (17, 200)])
def test_inpainter_paths_agree_on_sizes_that_are_not_multiples_of_8(small, h, w):
    fast, ref = Inpainter(small), Inpainter(small, fast=False)
    assert fast.fast is not None and ref.fast is None
    images, masks = torch.rand(1, 3, h, w), (torch.rand(1, 1, h, w) > 0.6).float()
    assert (fast.predict_batch(images, masks) - ref.predict_batch(images, masks)).abs().max() <= 1e-5
    rgb = (images[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    m = masks[0, 0].numpy() > 0
    a, b = fast(rgb, m), ref(rgb, m)
    assert np.array_equal(a[~m], rgb[~m]) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.parametrize("kernel", ["winograd", "direct"])
def test_bfloat16_fast_path_stays_close(small, kernel):
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        ref = small(x)
    out = FastGenerator(small, kernel=kernel).to(torch.bfloat16)(x.bfloat16()).float()
    assert (out - ref).abs().max() < 0.05


def test_other_structures_keep_the_reference_path():
    cfg = dict(SMALL_GENERATOR, resnet_conv_kwargs={"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": True})
    g = generator_from_config(cfg)
    assert not supports(g)
    assert Inpainter(g).fast is None
    with pytest.raises(ValueError, match="published LaMa structure"):
        FastGenerator(g)


@pytest.mark.parametrize(("h", "w", "k", "stride", "pad"), [(20, 23, 3, 2, 1), (21, 20, 7, 1, 3), (16, 16, 3, 2, 1),
                                                           (9, 13, 3, 1, 1), (17, 17, 3, 2, 1), (40, 33, 7, 1, 3)])
def test_reflect_padded_conv_without_the_padded_copy(h, w, k, stride, pad):
    import torch.nn.functional as F

    from lama.fast import conv2d_reflect

    # float64: this checks the indexing of the edge strips, not float32 rounding (outputs reach ~50 here, where
    # the two convolutions' kernels may round differently on another CPU)
    x = torch.randn(1, 5, h, w, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(6, 5, k, k, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
    ref = F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), wt, b, stride)
    out = conv2d_reflect(x, wt, b, stride, pad)
    assert out.shape == ref.shape and (out - ref).abs().max() <= 1e-10


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_convolutions_with_relu_equal_convolution_then_relu(fused, dtype, monkeypatch):
    """The head's and tail's ReLUs inside oneDNN's convolutions (or after them, where the fused ops are missing)."""
    import torch.nn.functional as F

    import lama.fast
    from lama.fast import conv2d_reflect, conv_transpose2d_relu

    monkeypatch.setattr("lama.fast._HAS_POINTWISE", fused and lama.fast._HAS_POINTWISE)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 21, 20, generator=g).to(dtype).contiguous(memory_format=torch.channels_last)
    wt, b = torch.randn(16, 8, 3, 3, generator=g).to(dtype), torch.randn(16, generator=g).to(dtype)
    tol = 1e-4 if dtype == torch.float32 else 0.1  # bf16: a few units in the last place of values up to ~20
    for stride in (1, 2):
        ref = torch.relu(F.conv2d(F.pad(x.double(), (1,) * 4, mode="reflect"), wt.double(), b.double(), stride))
        out = conv2d_reflect(x, wt, b, stride, 1, relu=True)
        assert out.shape == ref.shape and (out.double() - ref).abs().max() <= tol
    wt_t = torch.randn(8, 16, 3, 3, generator=g).to(dtype)
    ref = torch.relu(F.conv_transpose2d(x.double(), wt_t.double(), b.double(), 2, 1, 1))
    out = conv_transpose2d_relu(x, wt_t, b, 2, 1, 1)
    assert out.shape == ref.shape and (out.double() - ref).abs().max() <= tol


@pytest.mark.parametrize(("h", "w"), [(48, 88), (4, 4), (7, 30)])  # down to the smallest size reflect padding takes
def test_output_conv_in_two_passes(small, h, w):
    """The tail's output conv as a vertical and a horizontal pass, over row bands and the image's edges."""
    fast = FastGenerator(small)
    x = torch.rand(1, 4, 4 * h, 4 * w)
    with torch.no_grad():
        ref = small(x)
    assert (fast(x) - ref).abs().max() <= 1e-5


def test_two_pass_weights_compute_the_same_conv():
    from torch.nn import functional as F

    from lama.fast import _two_pass_weights

    torch.manual_seed(0)
    w, x = torch.randn(3, 5, 7, 7, dtype=torch.float64), torch.randn(1, 5, 9, 26, dtype=torch.float64)
    vertical, horizontal = _two_pass_weights(w)
    assert vertical.shape == (21, 5, 7, 1) and horizontal.shape == (3, 21, 1, 7)
    assert torch.allclose(F.conv2d(F.conv2d(x, vertical), horizontal), F.conv2d(x, w), atol=1e-10)


def test_winograd_is_the_default_on_the_cpu(small):
    from lama.fast import WinogradKernel

    fast = FastGenerator(small)
    assert fast.kernel == "winograd" and all(isinstance(b.conv1.conv, WinogradKernel) for b in fast.blocks)
    assert FastGenerator(small, kernel="direct").kernel == "direct"
    with pytest.raises(ValueError, match="unknown 3x3 kernel"):
        FastGenerator(small, kernel="fft")


@pytest.mark.parametrize(("h", "w"), [(64, 64), (40, 96), (24, 40), (56, 120)])
@pytest.mark.parametrize("groups", ["one", "per column"])  # the spectrum's columns in one group, or one by one
@pytest.mark.parametrize("path", ["dft", "compiled"])
def test_fourier_units_by_dft_products_or_compiled_ffts_equal_the_reference(small, h, w, groups, path, monkeypatch):
    """At these inputs the blocks' maps (8, 5, 3, 7 pixels a side, and 12, 15) take every radix of the compiled
    FFTs; the reference generator uses pocketfft."""
    from lama import native
    from lama.fast import FastSpectral

    if path == "compiled" and native.library() is None:
        pytest.skip("no compiled kernels on this machine")
    if groups == "per column":
        monkeypatch.setattr("lama.fast.DFT_GROUP_BYTES", 1)
    x = torch.rand(2, 4, h, w)
    with torch.no_grad():
        ref = small(x)
    fast = FastGenerator(small)
    monkeypatch.setattr(FastSpectral, "fourier_path", lambda self, h, w: path)
    assert (fast(x) - ref).abs().max() <= 1e-5


def test_fourier_path_per_dtype_and_size(small, monkeypatch):
    """float32 takes the compiled FFTs where they build and the size has no prime factor above 7, else DFT
    products on small maps and pocketfft on large ones; bfloat16 keeps its DFT products (the matrix units) on maps
    up to 256."""
    from lama import native

    spectral = FastGenerator(small).to(torch.bfloat16).blocks[0].conv1.spectral
    assert [spectral.fourier_path(*hw) for hw in [(64, 64), (256, 256), (1024, 64)]] == ["dft", "dft", "pocketfft"]
    spectral = FastGenerator(small).blocks[0].conv1.spectral
    if native.library() is not None:
        assert spectral.fourier_path(64, 96) == spectral.fourier_path(256, 250) == "compiled"
    assert spectral.fourier_path(64, 67) == "dft" and spectral.fourier_path(128, 127) == "dft"  # 67, 127: primes
    assert spectral.fourier_path(256, 262) == "pocketfft"  # 131: prime
    monkeypatch.setenv("LAMA_NATIVE", "0")
    assert spectral.fourier_path(64, 64) == "dft" and spectral.fourier_path(256, 256) == "pocketfft"


def test_reflect_padded_conv_in_bfloat16_has_no_nans():
    """oneDNN's bf16 convolution with a one-column output, run right after another convolution, returned NaNs
    now and then on an AMX CPU; the edge strips are at least two outputs wide."""
    import torch.nn.functional as F

    from lama.fast import conv2d_reflect

    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        x = torch.rand(2, 32, 16, 16, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)
        wt = torch.randn(64, 32, 3, 3, generator=gen).bfloat16().contiguous(memory_format=torch.channels_last)
        b = torch.randn(64, generator=gen).bfloat16()
        ref = F.conv2d(F.pad(x.double(), (1,) * 4, mode="reflect"), wt.double(), b.double(), 2)
        out = conv2d_reflect(x, wt, b, 2, 1)
        assert (out.double() - ref).abs().max() <= 0.05 * ref.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matrix_product_weights_stay_contiguous(small, dtype):
    """The generator's conversion to channels-last is for 4-D convolution weights; the spectral path's weights
    are matrix operands, which a strided layout slows down."""
    fast = FastGenerator(small, dtype=dtype)
    for m in fast.modules():
        if isinstance(m, FastSpectral):
            assert all(t.is_contiguous() for t in (m.w1, m.w2, m.w_fu, m.b_fu))


def _cached(fast):
    from lama.fast import WinogradKernel

    return [k._filters is not None for k in fast.modules() if isinstance(k, WinogradKernel)]


def test_filters_streamed_for_large_maps_give_the_cached_filters_output(small, monkeypatch):
    """Blocks' maps of STREAM_FILTER_PIXELS and more (batch included) transform the Winograd filters for each use,
    none kept after the pass; smaller ones cache them. Same values either way."""
    monkeypatch.setattr("lama.fast.STREAM_FILTER_PIXELS", 2 * 8 * 8)
    fast = FastGenerator(small, kernel="winograd")
    x = torch.rand(2, 4, 64, 64)  # blocks' maps 2 x 8x8: streamed
    small_x = x[:, :, :56].contiguous()  # 2 x 7x8: cached
    cached_small = fast(small_x)
    assert all(_cached(fast)) and _cached(fast)
    streamed = fast(x)
    assert not any(_cached(fast))
    assert torch.equal(fast(small_x), cached_small) and all(_cached(fast))
    monkeypatch.setattr("lama.fast.STREAM_FILTER_PIXELS", 10**9)
    assert torch.equal(fast(x), streamed)


def test_cached_filters_follow_the_weights_dtype(small):
    """A fast generator converted after a pass transforms its filters again, as one built in that dtype."""
    fast = FastGenerator(small, kernel="winograd")
    x = torch.rand(1, 4, 32, 32)
    fast(x)
    fast.to(torch.bfloat16)
    expected = FastGenerator(small, kernel="winograd", dtype=torch.bfloat16)(x.bfloat16())
    assert torch.equal(fast(x.bfloat16()), expected)
