"""ONNX export (lama.export) and the benchmark's runtime peers (lama.bench_peers), on a small generator."""

import numpy as np
import pytest
import torch
from conftest import SMALL_GENERATOR, randomize_bn

from lama.errors import LamaError
from lama.export import export_onnx, fourier_units_as_matmuls
from lama.ffc import FourierUnit
from lama.generator import generator_from_config


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(5)
    return randomize_bn(generator_from_config({**SMALL_GENERATOR, "n_blocks": 1}), seed=5).eval()


def _torch_output(generator, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return generator(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(("h", "w"), [(64, 64), (40, 96)])
def test_matmul_fourier_units_equal_the_ffts(small, h, w):
    x = torch.rand(1, 4, h, w)
    with torch.no_grad():
        ref = small(x)
        with fourier_units_as_matmuls(small):
            out = small(x)
        again = small(x)
    assert (out - ref).abs().max() < 1e-5
    assert torch.equal(again, ref)  # the FFT forwards are back


def test_fourier_units_are_restored_after_an_error(small):
    with pytest.raises(RuntimeError), fourier_units_as_matmuls(small):
        raise RuntimeError("boom")
    assert all("forward" not in m.__dict__ for m in small.modules() if isinstance(m, FourierUnit))


@pytest.mark.parametrize("fft", ["matmul", "dft"])
def test_onnx_export_runs_in_onnxruntime(small, fft, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")  # the torch.export-based exporter
    path = export_onnx(small, tmp_path / "g.onnx", 64, 64, fft=fft)
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert ("DFT" in ops) == (fft == "dft")
    assert [o.version for o in model.opset_import if o.domain == ""] == [20]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, out.name, out.shape) == ("image_and_mask", [1, 4, 64, 64], "inpainted", [1, 3, 64, 64])
    x = np.random.default_rng(0).random((1, 4, 64, 64), dtype=np.float32)
    got = session.run(None, {"image_and_mask": x})[0]
    assert np.abs(got - _torch_output(small, x)).max() < 1e-4
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"generator": torch.nn.Conv2d(4, 3, 1)}, "FFCResNetGenerator"),
    ({"height": 60}, "multiple of 8"),
    ({"width": 0}, "multiple of 8"),
    ({"fft": "fast"}, "fft must be"),
    ({"opset": 17}, "opset"),
])
def test_bad_export_input_raises(small, kwargs, message, tmp_path):
    args = {"generator": small, "path": tmp_path / "g.onnx", "height": 64, "width": 64, **kwargs}
    with pytest.raises(LamaError, match=message):
        export_onnx(**args)
    assert not (tmp_path / "g.onnx").exists()


def test_training_mode_generator_is_refused(tmp_path):
    with pytest.raises(LamaError, match="eval"):
        export_onnx(generator_from_config(SMALL_GENERATOR), tmp_path / "g.onnx", 64, 64)


def test_peer_runners_match_torch(small, tmp_path):
    pytest.importorskip("openvino")  # a benchmark dependency (requirements-bench.txt), absent in CI
    from lama.bench_peers import PEER_NAMES, peer_runners

    runners, skipped = peer_runners(small, 64, 64, threads=1, workdir=tmp_path)
    assert set(runners) | set(skipped) == set(PEER_NAMES)
    assert not set(runners) & set(skipped)
    assert "openvino f32 (matmul-DFT onnx)" in runners, skipped
    x = np.random.default_rng(1).random((1, 4, 64, 64), dtype=np.float32)
    ref = _torch_output(small, x)
    for name, run in runners.items():
        out = run(x)
        assert out.shape == (1, 3, 64, 64) and out.dtype == np.float32, name
        assert np.abs(out - ref).max() < (0.05 if "bf16" in name else 1e-4), name


def test_a_missing_runtime_is_skipped_with_the_reason(small, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import lama.bench_peers as bp

    real = bp._import
    monkeypatch.setattr(bp, "_import", lambda name: (None, "no openvino here") if name == "openvino" else real(name))
    runners, skipped = bp.peer_runners(small, 64, 64, threads=1, workdir=tmp_path)
    assert set(runners) == {bp.ORT_MATMUL, bp.ORT_DFT}
    assert skipped == dict.fromkeys((*bp.OV_TORCH, *bp.OV_ONNX), "no openvino here")
    x = np.random.default_rng(2).random((1, 4, 64, 64), dtype=np.float32)
    assert np.abs(runners[bp.ORT_MATMUL](x) - _torch_output(small, x)).max() < 1e-4
