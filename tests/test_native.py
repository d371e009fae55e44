"""The compiled Winograd transforms (lama.native): the same values as the PyTorch transforms, computed in
float64 as the reference; built once per machine and cached; a missing compiler falls back, and tensors that
do not fit are refused before any C code touches memory."""

import logging

import pytest
import torch

from lama import native, winograd
from lama.winograd import Workspace

needs_compiler = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on this machine")


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache and no library loaded yet; the usual state again afterwards."""
    monkeypatch.setenv("LAMA_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("LAMA_NATIVE", "1")
    native.reset()
    yield tmp_path
    native.reset()


def _transforms(x, top, tr, halo, m, bias, relu, compiled, monkeypatch, residual=None):
    """Input tiles of a band of ``x`` and output pixels of products ``m`` into a strided channel slice (plus the
    same slice of ``residual``, if given)."""
    monkeypatch.setenv("LAMA_NATIVE", "1" if compiled else "0")
    ws = Workspace(x.dtype, "cpu")
    lo = x.shape[-1] // 2 + 1
    v, v_lo = winograd.band_tiles(x, top, tr, ws, halo, lo=lo, copy_lo=True)
    # the local channels once more (a copy where compiled, a view in PyTorch): the same values
    assert torch.equal(v_lo, v[..., :lo]) and (v_lo.is_contiguous() or not compiled)
    v = v.clone()
    view = winograd.band_tiles(x, top, tr, ws, halo, lo=lo)[1]  # without copy_lo: a view of the tiles
    assert torch.equal(view, v[..., :lo]) and view.stride(-2) == x.shape[-1]
    b, _, w, c = x.shape
    tw = -(-w // 4)
    out = torch.full((b, tr, 4, tw, 4, c + 2), float("nan"), dtype=m.dtype)
    res = None if residual is None else residual.to(m.dtype)[..., 1: 1 + c]
    winograd.output_tiles(m.clone(), out[..., 1: 1 + c], ws, bias, relu=relu, residual=res)
    return v, out


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
# (map, first input row, tile rows, halo): whole tiles, ragged edges with zero padding, the top edge's reflection,
# a halo row, a last band of one row whose bottom reflection reads the halo too, a 2-pixel map
@pytest.mark.parametrize(("b", "h", "w", "c", "top", "tr", "halo"), [
    (1, 12, 20, 70, -1, 3, False), (2, 16, 16, 128, 3, 2, True), (1, 13, 18, 3, -1, 4, False),
    (1, 9, 7, 16, 7, 1, True), (2, 2, 5, 8, -1, 1, False), (1, 14, 6, 64, 11, 1, True)])
@pytest.mark.parametrize(("relu", "residual"), [(False, False), (True, False), (True, True)])
def test_compiled_transforms_equal_the_float64_ones(dtype, b, h, w, c, top, tr, halo, relu, residual, monkeypatch):
    assert native.library() is not None  # a machine with a compiler must build it
    gen = torch.Generator().manual_seed(c)
    tw = -(-w // 4)
    x, m, bias, halo = (torch.randn(shape, generator=gen).to(dtype)
                        for shape in ((b, h, w, c), (36, b * tr * tw, c), (c,), (b, w, c) if halo else (0,)))
    halo = halo if halo.numel() else None
    # the residual added after the ReLU: a resnet block's input (values about 1), a view with the output's strides
    res = torch.randn(b, tr, 4, tw, 4, c + 2, generator=gen).to(dtype) if residual else None
    ref_v, ref_out = _transforms(x.double(), top, tr, None if halo is None else halo.double(), m.double(),
                                 bias.double(), relu, False, monkeypatch, None if res is None else res.double())
    results = {compiled: _transforms(x, top, tr, halo, m, bias, relu, compiled, monkeypatch, res)
               for compiled in (True, False)}
    for compiled, (v, out) in results.items():
        # the values reach about 60 (input) and 150 (output): float32 keeps ~1e-5 of that, bfloat16 one rounding
        tol = 1e-4 if dtype == torch.float32 else 1.0
        assert (v.double() - ref_v).abs().max() <= tol, compiled
        inner = out[..., 1: 1 + c].double()
        assert (inner - ref_out[..., 1: 1 + c]).abs().max() <= 2 * tol, compiled
        assert out[..., 0].isnan().all() and out[..., c + 1].isnan().all()  # nothing written beside the slice
    if dtype == torch.bfloat16:
        # the input transforms both round once from float32 sums: the same values up to a last-bit tie
        (v1, o1), (v0, _) = results[True], results[False]
        assert (v1 != v0).float().mean() < 0.02
        # the compiled output (bias included) is rounded once: within half a bfloat16 step of the exact value
        ref = ref_out[..., 1: 1 + c]
        assert ((o1[..., 1: 1 + c].double() - ref).abs() <= ref.abs() * 2 ** -8 + 1e-4).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("compiled", [True, False])
def test_output_transform_adds_what_dst_holds_before_the_relu(dtype, compiled, monkeypatch):
    """``accumulate``: relu(pixels + bias + dst's own values) + residual, the resnet layer's global outputs with the
    spectral path's sum already in place; nothing written beside the channel slice."""
    if compiled and native.library() is None:
        pytest.skip("no compiled kernels on this machine")
    gen = torch.Generator().manual_seed(5)
    b, tr, tw, c = 2, 2, 3, 40
    m, bias = torch.randn(36, b * tr * tw, c, generator=gen).to(dtype), torch.randn(c, generator=gen).to(dtype)
    prior, res = (torch.randn(b, tr, 4, tw, 4, c + 2, generator=gen).mul(20).to(dtype) for _ in range(2))
    monkeypatch.setenv("LAMA_NATIVE", "0")
    pixels = torch.empty(b, tr, 4, tw, 4, c, dtype=torch.float64)  # the transform alone, then the sums by hand
    winograd.output_tiles(m.double(), pixels, Workspace(torch.float64, "cpu"))
    inner = slice(1, 1 + c)
    expected = (pixels + bias.double() + prior[..., inner].double()).relu() + res[..., inner].double()
    monkeypatch.setenv("LAMA_NATIVE", "1" if compiled else "0")
    out = prior.clone()
    winograd.output_tiles(m, out[..., inner], Workspace(dtype, "cpu"), bias, relu=True, residual=res[..., inner],
                          accumulate=True)
    # float32: ~1e-5 of values up to ~150; bfloat16: the compiled pass rounds once (half a step of the result),
    # PyTorch's after each of its sums (a step of the largest term, each)
    terms = pixels.abs() + bias.double().abs() + prior[..., inner].double().abs() + res[..., inner].double().abs()
    tol = 1e-4 if dtype == torch.float32 else (expected.abs() if compiled else 4 * terms) * 2 ** -8 + 1e-4
    assert ((out[..., inner].double() - expected).abs() <= tol).all()
    assert torch.equal(out[..., 0], prior[..., 0]) and torch.equal(out[..., -1], prior[..., -1])


@needs_compiler
def test_built_once_then_loaded_from_the_cache(fresh, monkeypatch):
    assert native.library() is not None
    built = list((fresh / "native").glob("*.so"))
    assert len(built) == 1 and not list((fresh / "native").glob(".*tmp"))
    native.reset()
    calls = []
    real_run = native.subprocess.run
    monkeypatch.setattr(native.subprocess, "run", lambda args, **kw: calls.append(args) or real_run(args, **kw))
    assert native.library() is not None
    assert all("--version" in args for args in calls)  # asked the compiler's version, compiled nothing
    # another CPU (or the same model with other features) gets its own build
    native.reset()
    monkeypatch.setattr(native, "cpu_features", lambda: "fpu sse sse2")
    assert native.library() is not None
    assert len(list((fresh / "native").glob("*.so"))) == 2


def test_without_a_compiler_the_pytorch_transforms_are_used(fresh, monkeypatch, caplog):
    monkeypatch.setattr(native, "compiler", lambda: None)
    with caplog.at_level(logging.WARNING, logger="lama.native"):
        assert native.library() is None
    assert "no C compiler" in caplog.text
    x = torch.randn(1, 8, 12, 8)
    v = winograd.band_tiles(x, -1, 2, Workspace(torch.float32, "cpu"))[0].clone()
    monkeypatch.setenv("LAMA_NATIVE", "0")
    assert torch.equal(v, winograd.band_tiles(x, -1, 2, Workspace(torch.float32, "cpu"))[0])


def test_a_failing_compiler_falls_back(fresh, monkeypatch, tmp_path, caplog):
    fake = tmp_path / "cc"
    fake.write_text("#!/bin/sh\necho 'cc: error: broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with caplog.at_level(logging.WARNING, logger="lama.native"):
        assert native.library() is None
    assert "broken" in caplog.text


def test_turned_off_by_the_environment(fresh, monkeypatch):
    monkeypatch.setenv("LAMA_NATIVE", "0")
    assert native.library() is None and not (fresh / "native").exists()


@needs_compiler
def test_tensors_that_do_not_fit_are_refused():
    lib = native.library()
    x = torch.zeros(1, 8, 8, 8)
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x, torch.zeros(36, 3, 8), -1, 2, None)  # 4 tiles, not 3
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x[..., :4], torch.zeros(36, 4, 4), -1, 2, None)  # not contiguous
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x, torch.zeros(36, 4, 8), 8, 2, None)  # starts below the map
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x, torch.zeros(36, 4, 8), 3, 2, torch.zeros(1, 7, 8))  # halo of another width
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x, torch.zeros(36, 4, 8), -1, 2, None, torch.zeros(36, 4, 9))  # more channels than x
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x, torch.zeros(36, 4, 8), -1, 2, None, torch.zeros(36, 3, 4))  # other tiles
    with pytest.raises(ValueError, match="do not fit"):
        native.output_tiles(lib, torch.zeros(36, 4, 8), torch.zeros(1, 2, 4, 2, 4, 8), torch.zeros(7), False)
    with pytest.raises(ValueError, match="do not fit"):
        native.input_tiles(lib, x.double(), torch.zeros(36, 4, 8, dtype=torch.float64), -1, 2, None)  # no float64
    with pytest.raises(ValueError, match="do not fit"):
        strided = torch.zeros(1, 2, 4, 2, 4, 16)[..., ::2]  # channels not contiguous
        native.output_tiles(lib, torch.zeros(36, 4, 8), strided, None, False)


def test_the_sources_ship_with_the_package():
    import tomllib

    config = tomllib.loads((native.SOURCES[0].parents[1] / "pyproject.toml").read_text())
    shipped = set(config["tool"]["setuptools"]["package-data"]["lama"])
    assert {src.name for src in native.SOURCES + native.HEADERS} <= shipped


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("compiled", [True, False])
def test_relu_then_residual_in_one_pass(dtype, residual, bias, compiled, monkeypatch):
    """``relu(y + bias) + x`` on strided row views (a resnet block's global channels), compiled or in PyTorch."""
    from lama.fast import relu_add

    monkeypatch.setenv("LAMA_NATIVE", "1" if compiled else "0")
    gen = torch.Generator().manual_seed(1)
    y_full, x_full = (torch.randn(50, 96, generator=gen).to(dtype) for _ in range(2))
    y, x = y_full[:, 20:], x_full[:, 20:] if residual else None
    b = torch.randn(76, generator=gen).to(dtype) if bias else None
    ref = torch.relu(y.double() + (b.double() if bias else 0)) + (x.double() if residual else 0)
    untouched = y_full[:, :20].clone()
    relu_add(y, x, b)
    # bf16: one rounding of values up to ~4, or two of values up to ~8 with the bias
    tol = 1e-6 if dtype == torch.float32 else 0.04 if bias else 0.02
    assert (y.double() - ref).abs().max() <= tol and torch.equal(y_full[:, :20], untouched)


@pytest.mark.parametrize(("machine", "wide"), [("x86_64", True), ("AMD64", True), ("aarch64", False), ("arm64", False)])
def test_512_bit_vectors_asked_for_on_x86_only(machine, wide, monkeypatch):
    """gcc and clang keep to 256-bit vectors on AVX-512 CPUs unless asked; other architectures lack the option, and
    a build that fails there would lose the compiled transforms."""
    monkeypatch.setattr(native.platform, "machine", lambda: machine)
    assert ("-mprefer-vector-width=512" in native.flags()) == wide
    assert set(native.FLAGS) <= set(native.flags())


@needs_compiler
def test_build_id_names_the_library_or_torch(fresh, monkeypatch):
    assert native.build_id().startswith("native-")
    monkeypatch.setenv("LAMA_NATIVE", "0")
    assert native.build_id() == "torch"
