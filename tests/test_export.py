"""Export (lama.export: ONNX, TorchScript, OpenVINO IR), ONNX files behind the Inpainter API (lama.onnx_model)
and the benchmark's runtime peers (lama.bench_peers), on a small generator."""

import copy
import hashlib
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import SMALL_GENERATOR, randomize_bn
from torch import nn

import lama
from lama.__main__ import main as cli_main
from lama.checkpoint import LoadedGenerator, load_generator, save_safetensors
from lama.errors import LamaError
from lama.export import (
    InpaintingGraph,
    export,
    export_onnx,
    export_openvino,
    export_torchscript,
    float16_generator,
    fourier_units_as_matmuls,
)
from lama.ffc import FourierUnit
from lama.generator import generator_from_config
from lama.inpainter import Inpainter


def _small():
    torch.manual_seed(5)
    return randomize_bn(generator_from_config({**SMALL_GENERATOR, "n_blocks": 1}), seed=5).eval()


@pytest.fixture(scope="module")
def small():
    return _small()


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


# Sizes the exports never saw: square, not square, not a multiple of 8 (padded inside the graph), batch 2
SIZES = [(1, 64, 64), (1, 72, 120), (1, 200, 136), (2, 50, 77)]


def _inputs(b, h, w, seed=0):
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(b, 3, h, w, generator=gen)
    mask = torch.zeros(b, 1, h, w)
    mask[..., h // 4: h // 2, w // 5: w // 2] = 1  # a hole, plus a stroke
    mask[..., 3 * h // 4, :] = 1
    return image, mask


def _eager(small, image, mask, raw=False):
    with torch.no_grad():
        return InpaintingGraph(small, raw)(image, mask)


@pytest.fixture(scope="module")
def onnx_files(small, tmp_path_factory):
    pytest.importorskip("onnxscript")  # the torch.export-based exporter
    folder = tmp_path_factory.mktemp("onnx")
    return {(fft, raw): export_onnx(small, folder / f"{fft}-{raw}.onnx", fft=fft, raw=raw)
            for fft, raw in (("matmul", False), ("dft-op", False), ("matmul", True))}


def test_the_exported_function_is_the_inpainters(small):
    """InpaintingGraph (what every export computes) pads, runs and composites as Inpainter does."""
    inpainter = Inpainter(small, fast=False)
    for b, h, w in SIZES:
        image, mask = _inputs(b, h, w)
        want = inpainter.predict_batch(image, mask)
        assert (_eager(small, image, mask) - want).abs().max() < 1e-6
        raw = _eager(small, image, mask, raw=True)
        assert (raw - inpainter.predict_raw(image, mask)).abs().max() < 1e-6


@pytest.mark.parametrize(("fft", "raw"), [("matmul", False), ("dft-op", False), ("matmul", True)])
def test_onnx_export_matches_eager_at_sizes_it_never_saw(small, onnx_files, fft, raw):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    path = onnx_files[fft, raw]
    model = onnx.load(path)
    assert ("DFT" in {n.op_type for n in model.graph.node}) == (fft == "dft-op")
    assert [o.version for o in model.opset_import if o.domain == ""] == [20]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, (out,) = session.get_inputs(), session.get_outputs()
    assert [(i.name, i.type) for i in inputs] == [("image", "tensor(float)"), ("mask", "tensor(float)")]
    assert out.name == ("prediction" if raw else "inpainted")
    assert all(isinstance(d, str) for i in inputs for d in (i.shape[0], i.shape[2], i.shape[3]))  # dynamic
    for b, h, w in SIZES:
        image, mask = _inputs(b, h, w)
        got = session.run(None, {"image": image.numpy(), "mask": mask.numpy()})[0]
        assert got.shape == (b, 3, h, w)
        assert np.abs(got - _eager(small, image, mask, raw).numpy()).max() <= 1e-4, (b, h, w)
    meta = json.loads({p.key: p.value for p in model.metadata_props}["lama"])
    assert meta["output"] == out.name and meta["fft"] == fft
    assert meta["inputs"] == ["image float32 [B, 3, H, W]", "mask float32 [B, 1, H, W]"]


def test_an_onnx_file_loads_behind_the_inpainter_api(small, onnx_files):
    pytest.importorskip("onnxruntime")
    photo = (np.random.default_rng(1).random((90, 130, 3)) * 255).astype(np.uint8)
    hole = np.zeros((90, 130), bool)
    hole[20:60, 30:90] = True
    model = lama.load_model(onnx_files["matmul", False])
    assert model.fast is None and "onnx" in model.source
    got = model(photo, hole)
    want = Inpainter(small, fast=False)(photo, hole)
    assert np.array_equal(got[~hole], photo[~hole])  # only masked pixels change
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # 8-bit truncation of values ~1e-6 apart
    with pytest.raises(LamaError, match="float32"):
        lama.load_model(onnx_files["matmul", False], dtype="bfloat16")
    # the demo loads with dtype="auto": for an export that is the file's own precision
    assert np.array_equal(lama.load_model(onnx_files["matmul", False], dtype="auto")(photo, hole), got)


def test_pipeline_onnx_takes_and_returns_uint8_photos(small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = export_onnx(small, tmp_path / "pipeline.onnx", pipeline=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, len(i.shape)) for i in session.get_inputs()] == [
        ("image", "tensor(uint8)", 3), ("mask", "tensor(uint8)", 2)]
    rng = np.random.default_rng(3)
    for h, w in ((90, 130), (64, 64), (37, 50)):
        photo = (rng.random((h, w, 3)) * 255).astype(np.uint8)
        hole = np.zeros((h, w), bool)
        hole[h // 4: h // 2, w // 3: 2 * w // 3] = True
        got = session.run(None, {"image": photo, "mask": hole.astype(np.uint8) * 255})[0]
        assert got.dtype == np.uint8 and got.shape == (h, w, 3)
        assert np.array_equal(got[~hole], photo[~hole])  # bit-identical outside the hole
        want = Inpainter(small, fast=False)(photo, hole)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        assert np.array_equal(session.run(None, {"image": photo, "mask": hole.astype(np.uint8)})[0], got)  # 0/1
    with pytest.raises(LamaError, match="pipeline export"):
        lama.load_model(path)


def test_float16_fourier_units_do_not_overflow():
    """The zero frequency sums a whole map: from a 256x256 map of values near 300 it reaches ~77,000, past
    float16's 65,504. A float16 unit returns inf/NaN; float16_generator's units compute in float32."""
    unit = next(m for m in _small().modules() if isinstance(m, FourierUnit))
    x = (300 + torch.rand(1, unit.conv_layer.in_channels // 2, 256, 256)).half()
    with torch.no_grad(), fourier_units_as_matmuls(unit):
        ref = unit.float()(x.float())
        naive = copy.deepcopy(unit).half()(x)
        kept = next(m for m in float16_generator(nn.Sequential(unit)).modules() if isinstance(m, FourierUnit))(x)
    assert not torch.isfinite(naive).all()
    assert kept.dtype == torch.float16 and torch.isfinite(kept).all()
    assert (kept.float() - ref).abs().max() <= 1e-3 * ref.abs().max()  # float16 rounding of the output


def test_float16_onnx_matches_float32(small, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    path = export_onnx(small, tmp_path / "fp16.onnx", dtype="float16")
    model = onnx.shape_inference.infer_shapes(onnx.load(path))
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)}
    weights = {t.data_type for t in model.graph.initializer if len(t.dims) == 4}
    assert weights == {onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT}  # float32: the Fourier units' convs
    assert {types.get(n.output[0]) for n in model.graph.node if n.op_type == "Cos"} == {onnx.TensorProto.FLOAT}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float)"] * 2  # the interface stays float32
    for b, h, w in SIZES[:3]:
        image, mask = _inputs(b, h, w)
        mask[..., h // 8: 7 * h // 8, w // 8: 7 * w // 8] = 1  # a large hole
        got = session.run(None, {"image": image.numpy(), "mask": mask.numpy()})[0]
        ref = _eager(small, image, mask).numpy()
        assert np.isfinite(got).all() and 10 * np.log10(1 / np.mean((got - ref) ** 2)) >= 40


def test_torchscript_export_runs_at_any_size_and_loads_back(small, tmp_path):
    path = export_torchscript(small, tmp_path / "big-lama.pt", metadata={"fft": "torch.fft"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 calls torch.jit.load deprecated; IOPaint uses it
        module = torch.jit.load(str(path))
    for b, h, w in SIZES:
        image, mask = _inputs(b, h, w)
        with torch.no_grad():
            got = module(image, mask.long())  # IOPaint passes its 0/1 mask as integers
        assert got.shape == (b, 3, h, w)
        assert (got - _eager(small, image, mask)).abs().max() <= 1e-4, (b, h, w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the project's loader reads the tensors, never the code: no deprecation
        loaded = load_generator(path)
    state = small.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in loaded.generator.state_dict().items())
    files = {"lama.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), _extra_files=files)
    assert json.loads(files["lama.json"]) == {"fft": "torch.fft"}


def test_openvino_export_matches_eager(small, tmp_path):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("onnxscript")
    path = export_openvino(small, tmp_path / "lama.xml", metadata={"fft": "matmul"})
    assert path.with_suffix(".bin").is_file() and not list(tmp_path.glob("tmp*"))
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for b, h, w in SIZES[:3]:
        image, mask = _inputs(b, h, w)
        got = compiled({"image": image.numpy(), "mask": mask.numpy()})[0]
        assert np.abs(got - _eager(small, image, mask).numpy()).max() <= 1e-4, (b, h, w)


def test_lama_export_is_callable(small, tmp_path):
    path = lama.export(small, tmp_path / "g.pt", format="torchscript")
    assert path == tmp_path / "g.pt" and path.stat().st_size > 0
    assert lama.export.export_onnx is export_onnx  # and still the module


def test_export_cli_writes_each_format_with_metadata(small, tmp_path):
    pytest.importorskip("onnxscript")
    weights = tmp_path / "small.safetensors"
    save_safetensors(LoadedGenerator(small, {**SMALL_GENERATOR, "n_blocks": 1}, "test"), weights)
    assert cli_main(["export", str(weights), str(tmp_path / "m.onnx")]) == 0
    assert cli_main(["export", str(weights), str(tmp_path / "m.pt")]) == 0
    onnx = pytest.importorskip("onnx")
    meta = json.loads({p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}["lama"])
    assert meta["config"]["n_blocks"] == 1 and meta["lama_version"]
    assert meta["source_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    files = {"lama.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(tmp_path / "m.pt"), _extra_files=files)
    assert json.loads(files["lama.json"])["source_sha256"] == meta["source_sha256"]


@pytest.mark.parametrize(("call", "message"), [
    (lambda p: export(torch.nn.Conv2d(4, 3, 1), p / "g.onnx"), "LaMa generator"),
    (lambda p: export(None, p / "g.onnx", format="tflite"), "format must be"),
    (lambda p: export(None, p / "g.onnx", fft="fast"), "fft must be"),
    (lambda p: export_onnx(generator_from_config(SMALL_GENERATOR), p / "g.onnx"), "eval"),
    (lambda p: export_onnx(_small(), p / "g.onnx", opset=17), "opset"),
    (lambda p: export_onnx(_small(), p / "missing" / "g.onnx"), "does not exist"),
    (lambda p: export_openvino(_small(), p / "g.onnx"), "ends in .xml"),
    (lambda p: export_onnx(_small(), p / "g.onnx", dtype="bfloat16"), "dtype must be"),
    (lambda p: export_onnx(_small(), p / "g.onnx", dtype="float16", fft="dft-op"), "float32 with matrix"),
    (lambda p: export(_small(), p / "g.pt", format="torchscript", dtype="float16"), "ONNX options"),
])
def test_bad_export_input_raises(call, message, tmp_path):
    with pytest.raises(LamaError, match=message):
        call(tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


def test_an_unwritable_output_is_a_clear_error(small, tmp_path):
    (tmp_path / "taken.pt").mkdir()  # a folder where the file should go
    with pytest.raises(LamaError, match="cannot write"):
        export_torchscript(small, tmp_path / "taken.pt")
    with pytest.raises(LamaError, match="not writable|cannot write|does not exist"):
        export_torchscript(small, "/proc/lama-export.pt")
    assert not list(tmp_path.glob(".*tmp"))


def test_without_onnxruntime_loading_an_onnx_file_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kwargs)

    (tmp_path / "m.onnx").write_bytes(b"")
    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(LamaError, match="pip install onnxruntime"):
        lama.load_model(tmp_path / "m.onnx")


def test_a_foreign_onnx_file_is_refused(tmp_path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph), tmp_path / "other.onnx")
    with pytest.raises(LamaError, match="not a LaMa export"):
        lama.load_model(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(LamaError, match="cannot load"):
        lama.load_model(tmp_path / "junk.onnx")
    with pytest.raises(LamaError, match="does not exist"):
        lama.load_model(tmp_path / "absent.onnx")


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
