"""Export of a LaMa generator for other runtimes: ONNX, TorchScript and OpenVINO IR (``python -m lama export``, or
``lama.export(source, out, format=...)``: the module is callable as :func:`export`).

Every exported file computes the same function (:class:`InpaintingGraph`):

- inputs ``image`` ``[B, 3, H, W]`` float32 in [0, 1] and ``mask`` ``[B, 1, H, W]`` (a hole where ``mask > 0.5``; 0/1
  integers work too);
- output ``inpainted`` ``[B, 3, H, W]``: the generator's fill in the holes, the image elsewhere; or, exported with
  ``raw=True``, ``prediction``, the generator's output everywhere.

H and W may be any size from 16 (not only the exported one): the graph pads the bottom and right edges
symmetrically to a multiple of 8, as :class:`lama.Inpainter` does, and crops the result back.

- **ONNX** (``torch.export``-based exporter, needs ``onnx`` and ``onnxscript``): batch, height and width are
  dynamic. ``fft="matmul"`` (default) writes each Fourier unit's FFTs as real DFT matrix products built from
  the runtime shape inside the graph (:mod:`lama.dft`; the angle index ``k t`` is reduced modulo ``n`` in
  integers, so runtimes that compute in bfloat16 or float16 keep the angles exact), which every runtime runs
  on its matrix units; ``fft="dft-op"`` writes ONNX ``DFT`` ops (opset 20), which few runtimes accelerate.
  ``pipeline=True`` writes the whole job instead (:class:`PipelineGraph`: uint8 photo and mask in, uint8 out).
- **TorchScript**: IOPaint's ``big-lama.pt`` interface, ``model(image, mask) -> inpainted``, traced with the
  generator under ``model.generator`` (the layout :mod:`lama.checkpoint` reads back); the padding and cropping
  are scripted, so the file runs at any size.
- **OpenVINO IR** (``.xml`` + ``.bin``, needs ``openvino``): converted from the matmul ONNX export.

Each file carries metadata: the generator config, the project version, the source's SHA-256 and the interface.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import sys
import tempfile
import types
import warnings
from collections.abc import Iterator
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import dft
from .errors import LamaError
from .ffc import FourierUnit
from .generator import FFCResNetGenerator
from .io import atomic_write

FORMATS = ("onnx", "torchscript", "openvino")
FFTS = ("matmul", "dft-op")
DTYPES = ("float32", "float16")  # of the exported network (ONNX); the interface is float32 or uint8 either way
INPUT_NAMES = ("image", "mask")
OUTPUT_NAMES = {False: "inpainted", True: "prediction"}  # by ``raw``
MIN_SIDE = 16  # the bottleneck must be at least 2x2 for the blocks' reflect padding
#: The ``torch.export`` exporter writes opset 18 natively and converts to newer ones; DFT ops need 20.
MIN_OPSET, DEFAULT_OPSET = 18, 20
META_KEY = "lama"  # ONNX metadata_props / TorchScript extra file / OpenVINO rt_info key of the metadata JSON


# ---------------------------------------------------------------------------------------------
# The exported function


@torch.jit.script_if_tracing
def _pad_to_8(x: torch.Tensor) -> torch.Tensor:
    """Symmetric padding of the bottom/right edges to a multiple of 8 (scripted under tracing, so that the
    amounts follow the input's size instead of being frozen)."""
    h, w = x.shape[-2], x.shape[-1]
    x = torch.cat([x, x.flip(-2)[:, :, : (-h) % 8, :]], dim=-2)
    return torch.cat([x, x.flip(-1)[:, :, :, : (-w) % 8]], dim=-1)


@torch.jit.script_if_tracing
def _crop_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return x[:, :, : like.shape[-2], : like.shape[-1]]


class InpaintingGraph(nn.Module):
    """``(image, mask) -> inpainted`` (or ``prediction`` with ``raw=True``) around a generator, as exported; the
    interface is float32 whatever the generator's dtype."""

    def __init__(self, generator: nn.Module, raw: bool = False):
        super().__init__()
        self.model = nn.Module()  # state dict keys model.generator.*: IOPaint's big-lama.pt layout
        self.model.generator = generator
        self.raw = raw

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = (mask > 0.5).to(image.dtype)
        x = _pad_to_8(torch.cat([image * (1 - m), m], dim=1))
        dtype = next(self.model.generator.parameters()).dtype
        pred = _crop_like(self.model.generator(x.to(dtype)).to(image.dtype), image)
        return pred if self.raw else m * pred + (1 - m) * image


def float16_generator(generator: nn.Module) -> nn.Module:
    """A float16 copy of ``generator`` whose Fourier units stay float32 (FFTs, their 1x1 conv and BatchNorm): a
    float16 spectrum overflows (the zero frequency sums a whole map), which is how naive float16 conversions of
    LaMa return black images. For GPU runtimes; the interface stays float32."""
    half = copy.deepcopy(generator).half()
    for unit in half.modules():
        if isinstance(unit, FourierUnit):
            unit.float()
    return half


class PipelineGraph(nn.Module):
    """The whole job in one graph, as MI-GAN ships its ONNX: ``image`` uint8 ``[H, W, 3]`` (RGB) and ``mask`` uint8
    ``[H, W]`` (a hole where it is above 127, or above 0 for a 0/1 mask, as :func:`lama.io.read_mask` reads
    it) -> ``inpainted`` uint8 ``[H, W, 3]``: the fill truncated to 8 bits as the official ``predict.py`` does,
    every other pixel the input's own."""

    def __init__(self, generator: nn.Module):
        super().__init__()
        self.model = nn.Module()
        self.model.generator = generator

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        threshold = torch.where(mask.max() <= 1, 0, 127)
        hole = mask > threshold  # [H, W]
        img = image.permute(2, 0, 1)[None].to(torch.float32) / 255
        m = hole[None, None].to(torch.float32)
        x = _pad_to_8(torch.cat([img * (1 - m), m], dim=1))
        dtype = next(self.model.generator.parameters()).dtype
        pred = _crop_like(self.model.generator(x.to(dtype)).to(torch.float32), img)
        filled = torch.floor(pred[0].permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8)
        return torch.where(hole[..., None], filled, image)


def _matmul_fourier_forward(self: FourierUnit, x: torch.Tensor) -> torch.Tensor:
    """``FourierUnit.forward`` with ``lama.dft``'s matrix-product FFTs, in the unit's own dtype (float32 in a
    :func:`float16_generator`); same channel interleave."""
    b, _, h, w = x.shape
    dtype = x.dtype
    re, im = dft.rfft2(x.to(self.conv_layer.weight.dtype))  # [b, c, h, w//2+1] each
    spec = torch.stack((re, im), dim=2).reshape(b, -1, h, w // 2 + 1)  # channels: c0.re, c0.im, c1.re, ...
    spec = self.relu(self.bn(self.conv_layer(spec)))
    spec = spec.reshape(b, -1, 2, h, w // 2 + 1)
    return dft.irfft2(spec[:, :, 0], spec[:, :, 1], (h, w)).to(dtype)


@contextlib.contextmanager
def fourier_units_as_matmuls(generator: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every ``FourierUnit`` of ``generator`` computes its FFTs as matrix products.

    The original forwards come back on exit, also when the block raises.
    """
    units = [m for m in generator.modules() if isinstance(m, FourierUnit)]
    for unit in units:
        if unit.fft_norm != "ortho":
            raise LamaError(f"a FourierUnit uses fft_norm={unit.fft_norm!r}; the matrix-product FFTs "
                            "implement only 'ortho' (LaMa's setting)")
    try:
        for unit in units:
            unit.forward = types.MethodType(_matmul_fourier_forward, unit)
        yield generator
    finally:
        for unit in units:
            unit.__dict__.pop("forward", None)  # the class's forward shows through again


# ---------------------------------------------------------------------------------------------
# Checks and metadata


def check_generator(generator: object) -> None:
    """``LamaError`` unless ``generator`` is an eval-mode float32 CPU ``FFCResNetGenerator``."""
    if not isinstance(generator, FFCResNetGenerator):
        raise LamaError("expected a LaMa generator (lama.generator.FFCResNetGenerator), got "
                        f"{type(generator).__name__}")
    if generator.training:
        raise LamaError("the generator is in training mode; call generator.eval() before exporting it")
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in generator.parameters()):
        raise LamaError("export needs a float32 generator on the CPU; call generator.float().cpu() first")


def _require(package: str, what: str) -> Any:
    try:
        return __import__(package)
    except ImportError as e:
        raise LamaError(f"{what} needs the {package!r} package: pip install -r requirements-bench.txt") from e


def project_version() -> str:
    try:
        return importlib_metadata.version("lama-inpainting")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def file_sha256(path: str | os.PathLike) -> str | None:
    """SHA-256 of a weight file (of every file, in name order, for a folder); None for what is not on disk."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def export_metadata(config: dict[str, Any] | None = None, source: str = "", raw: bool = False, fft: str = "matmul",
                    pipeline: bool = False) -> dict[str, Any]:
    """What an exported file records about itself (JSON under the key ``lama``)."""
    if pipeline:
        inputs, output = ["image uint8 [H, W, 3]", "mask uint8 [H, W]"], "inpainted uint8 [H, W, 3]"
    else:
        inputs = [f"{n} float32 [B, {c}, H, W]" for n, c in zip(INPUT_NAMES, (3, 1), strict=True)]
        output = OUTPUT_NAMES[raw]
    return {"format": "lama-export/1", "lama_version": project_version(), "config": config or {},
            "source": source, "source_sha256": file_sha256(source) if source else None,
            "inputs": inputs, "output": output, "fft": fft, "pad_modulo": 8, "min_side": MIN_SIDE}


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """OS errors while writing ``path`` (a folder in the way, a full disk) as a clear ``LamaError``."""
    try:
        yield
    except OSError as e:
        raise LamaError(f"cannot write {path}: {e}") from e


def _check_out(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise LamaError(f"cannot write {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise LamaError(f"cannot write {path}: the folder {parent} is not writable")


# ---------------------------------------------------------------------------------------------
# Formats


def _example(batch: int = 2, height: int = 61, width: int = 83) -> tuple[torch.Tensor, torch.Tensor]:
    """An example input whose sizes are not multiples of 8 (so the padding is traced) nor 0 or 1, which the
    exporter would specialise."""
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, height, width, generator=gen)
    mask = (torch.rand(batch, 1, height, width, generator=gen) > 0.7).float()
    return image, mask


def export_onnx(generator: FFCResNetGenerator, path: str | os.PathLike, fft: str = "matmul", raw: bool = False,
                opset: int | None = None, metadata: dict[str, Any] | None = None, pipeline: bool = False,
                dtype: str = "float32") -> Path:
    """Write ``generator`` as an ONNX model with dynamic batch, height and width; returns the path.

    ``fft="matmul"``: the FFTs become DFT matrix products built in the graph from the runtime shape;
    ``fft="dft-op"``: ONNX ``DFT`` ops. ``opset`` defaults to 20. ``pipeline``: uint8 photo and mask in, uint8
    photo out (:class:`PipelineGraph`). ``dtype="float16"``: the network in float16 with float32 Fourier units
    (:func:`float16_generator`; for GPU runtimes), the interface unchanged. Written atomically (temp file + rename).
    """
    check_generator(generator)
    if dtype not in DTYPES:
        raise LamaError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float16" and fft != "matmul":
        raise LamaError("the float16 export keeps its Fourier units in float32 with matrix-product FFTs (fft='matmul')")
    if pipeline and raw:
        raise LamaError("a pipeline export returns the composited photo; raw=True is for the float interface")
    if fft not in FFTS:
        raise LamaError(f"fft must be one of {', '.join(FFTS)}, got {fft!r}")
    opset = DEFAULT_OPSET if opset is None else opset
    if type(opset) is not int or opset < MIN_OPSET or (fft == "dft-op" and opset < DEFAULT_OPSET):
        raise LamaError(f"opset must be an integer >= {MIN_OPSET} ({DEFAULT_OPSET} for DFT ops), got {opset!r}")
    path = Path(path)
    _check_out(path)
    onnx = _require("onnx", "ONNX export")
    _require("onnxscript", "ONNX export")
    batch = torch.export.Dim("batch", min=1, max=1024)
    height = torch.export.Dim("height", min=MIN_SIDE, max=1 << 15)
    width = torch.export.Dim("width", min=MIN_SIDE, max=1 << 15)
    if dtype == "float16":
        generator = float16_generator(generator)
    if pipeline:
        graph: nn.Module = PipelineGraph(generator).eval()
        image, mask = _example(1)
        example = ((image[0].permute(1, 2, 0) * 255).to(torch.uint8), (mask[0, 0] * 255).to(torch.uint8))
        dynamic = {"image": {0: height, 1: width}, "mask": {0: height, 1: width}}
    else:
        graph, example = InpaintingGraph(generator, raw).eval(), _example()
        dims = {0: batch, 2: height, 3: width}
        dynamic = {"image": dims, "mask": dims}
    patch = fourier_units_as_matmuls(generator) if fft == "matmul" else contextlib.nullcontext()
    try:
        with patch, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's progress notes and deprecations
            program = torch.onnx.export(graph, example, dynamo=True, opset_version=opset,
                                        input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAMES[raw]],
                                        dynamic_shapes=dynamic, verbose=False, optimize=True)
    except LamaError:
        raise
    except Exception as e:  # the exporter's own errors name torch internals; say what failed
        raise LamaError(f"torch.onnx.export could not export the generator with fft={fft!r}, opset {opset}: "
                        f"{type(e).__name__}: {e}") from e
    written = program.model.opset_imports.get("", None)
    if written != opset:  # the version converter gives up with a log message, not an exception
        raise LamaError(f"the exporter could not convert the graph to opset {opset} (it wrote {written}); "
                        f"try opset={DEFAULT_OPSET}")
    proto = program.model_proto
    # The exporter annotates the inverse DFT's output with the example's frequency count, which ONNX Runtime
    # trusts and then fails at every other size; the shapes are inferred at load time anyway.
    del proto.graph.value_info[:]
    metadata = metadata or export_metadata(raw=raw, fft=fft, pipeline=pipeline)
    onnx.helper.set_model_props(proto, {META_KEY: json.dumps(metadata)})
    with _writing(path), atomic_write(path) as f:  # one file with the weights (210 MB; protobuf's limit is 2 GB)
        f.write(proto.SerializeToString())
    return path


def export_torchscript(generator: FFCResNetGenerator, path: str | os.PathLike, raw: bool = False,
                       metadata: dict[str, Any] | None = None) -> Path:
    """Write IOPaint's ``big-lama.pt`` interface (``model(image, mask)``), correct at any size."""
    check_generator(generator)
    path = Path(path)
    _check_out(path)
    graph = InpaintingGraph(generator, raw).eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # jit.trace is deprecated in torch 2.14 but is what IOPaint loads
            traced = torch.jit.trace(graph, _example(1), check_trace=False)
    except Exception as e:
        raise LamaError(f"torch.jit.trace could not trace the generator: {type(e).__name__}: {e}") from e
    with _writing(path), atomic_write(path) as f:
        meta = metadata or export_metadata(raw=raw, fft="torch.fft")
        torch.jit.save(traced, f, _extra_files={f"{META_KEY}.json": json.dumps(meta)})
    return path


def export_openvino(generator: FFCResNetGenerator, path: str | os.PathLike, raw: bool = False,
                    metadata: dict[str, Any] | None = None, compress_to_fp16: bool = False) -> Path:
    """Write OpenVINO IR (``path`` ``.xml`` and its ``.bin``) converted from the matmul ONNX export."""
    check_generator(generator)
    path = Path(path)
    if path.suffix != ".xml":
        raise LamaError(f"an OpenVINO IR path ends in .xml (its weights go beside it in .bin), got {path}")
    _check_out(path)
    ov = _require("openvino", "OpenVINO export")
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        onnx_path = export_onnx(generator, Path(tmp) / "model.onnx", "matmul", raw, metadata=metadata)
        try:
            model = ov.convert_model(str(onnx_path))
            model.set_rt_info(json.dumps(metadata or export_metadata(raw=raw)), [META_KEY])
            staged = Path(tmp) / path.name
            ov.save_model(model, str(staged), compress_to_fp16=compress_to_fp16)
        except Exception as e:
            raise LamaError(f"OpenVINO could not convert the ONNX export: {type(e).__name__}: {e}") from e
        with _writing(path):
            os.replace(staged.with_suffix(".bin"), path.with_suffix(".bin"))  # weights first: the .xml names them
            os.replace(staged, path)
    return path


def export(source: str | os.PathLike | nn.Module | None, out: str | os.PathLike, format: str = "onnx",
           fft: str = "matmul", raw: bool = False, opset: int | None = None, preset: str | None = None,
           pipeline: bool = False, dtype: str = "float32") -> Path:
    """Export LaMa weights (any format :func:`lama.load_model` reads, or a generator module) to ``out``.

    ``format``: ``onnx``, ``torchscript`` or ``openvino`` (``out`` then ends in ``.xml``). ``fft``, ``pipeline``,
    ``opset`` and ``dtype`` are ONNX options. See the module's docstring for the interface of the exported files.
    """
    if format not in FORMATS:
        raise LamaError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if fft not in FFTS:
        raise LamaError(f"fft must be one of {', '.join(FFTS)}, got {fft!r}")
    if format != "onnx" and (fft != "matmul" or pipeline or opset is not None or dtype != "float32"):
        raise LamaError(f"fft, pipeline, opset and dtype are ONNX options; {format} export takes none of them")
    if isinstance(source, nn.Module):
        generator, config, origin = source, None, ""
    else:
        from .checkpoint import load_generator

        loaded = load_generator(source, preset=preset)
        generator, config, origin = loaded.generator, loaded.config, loaded.source
    meta = export_metadata(config, origin, raw, {"onnx": fft, "openvino": "matmul"}.get(format, "torch.fft"), pipeline)
    if format == "onnx":
        meta["dtype"] = dtype
        return export_onnx(generator, out, fft, raw, opset, meta, pipeline, dtype)
    if format == "torchscript":
        return export_torchscript(generator, out, raw, meta)
    return export_openvino(generator, out, raw, meta)


class _CallableModule(types.ModuleType):
    """``lama.export(...)`` calls :func:`export`; the module's other names stay reachable as attributes."""

    def __call__(self, *args: Any, **kwargs: Any) -> Path:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
