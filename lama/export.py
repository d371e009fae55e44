"""ONNX export of the LaMa generator, with its FFTs as matrix products or as ONNX ``DFT`` ops.

Few runtimes accelerate ONNX's ``DFT`` op, and the legacy TorchScript exporter cannot write it at
all; :func:`fourier_units_as_matmuls` swaps every :class:`~lama.ffc.FourierUnit` onto the dense-DFT
matrix products of :mod:`lama.dft` (plain ``MatMul`` nodes), which any runtime runs on its matrix
units. The graph is written by the ``torch.export``-based exporter (``dynamo=True``), the one that
translates ``rfftn``/``irfftn`` into ``DFT`` ops (it needs the ``onnx`` and ``onnxscript`` packages).
"""

from __future__ import annotations

import contextlib
import os
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch

from . import dft
from .errors import LamaError
from .ffc import FourierUnit
from .generator import FFCResNetGenerator
from .io import atomic_write

#: Input and output names of the exported graph.
INPUT_NAME, OUTPUT_NAME = "image_and_mask", "inpainted"
#: The ``torch.export`` exporter writes opset 18 natively and converts to newer ones.
MIN_OPSET = 18
DEFAULT_OPSET = 20


def _matmul_fourier_forward(self: FourierUnit, x: torch.Tensor) -> torch.Tensor:
    """``FourierUnit.forward`` with ``lama.dft``'s matrix-product FFTs; same channel interleave."""
    b, _, h, w = x.shape
    re, im = dft.rfft2(x)  # [b, c, h, w//2+1] each
    spec = torch.stack((re, im), dim=2).reshape(b, -1, h, w // 2 + 1)  # channels: c0.re, c0.im, c1.re, ...
    spec = self.relu(self.bn(self.conv_layer(spec)))
    spec = spec.reshape(b, -1, 2, h, w // 2 + 1)
    return dft.irfft2(spec[:, :, 0], spec[:, :, 1], (h, w))


@contextlib.contextmanager
def fourier_units_as_matmuls(generator: torch.nn.Module) -> Iterator[torch.nn.Module]:
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


def check_generator_input(generator: object, height: int, width: int) -> None:
    """``LamaError`` unless ``generator`` is an eval-mode float32 CPU ``FFCResNetGenerator`` and
    ``height`` x ``width`` a valid input size (positive multiples of 8)."""
    if not isinstance(generator, FFCResNetGenerator):
        raise LamaError(f"expected a lama.generator.FFCResNetGenerator, got {type(generator).__name__}")
    if generator.training:
        raise LamaError("the generator is in training mode; call generator.eval() before exporting it")
    params = list(generator.parameters())
    if any(p.dtype != torch.float32 or p.device.type != "cpu" for p in params):
        raise LamaError("export needs a float32 generator on the CPU; call generator.float().cpu() first")
    for name, v in (("height", height), ("width", width)):
        if type(v) is not int or v <= 0 or v % 8:
            raise LamaError(f"{name} must be a positive multiple of 8 (the generator downsamples 3 times), "
                            f"got {v!r}")


def export_onnx(generator: FFCResNetGenerator, path: str | os.PathLike, height: int, width: int,
                fft: Literal["matmul", "dft"] = "matmul", opset: int | None = None) -> Path:
    """Write ``generator`` as an ONNX model with a static ``[1, 4, height, width]`` float32 input
    ``image_and_mask`` and its raw output ``inpainted`` ``[1, 3, height, width]``; returns the path.

    ``fft="matmul"``: the FFTs become dense-DFT ``MatMul`` nodes; ``fft="dft"``: ONNX ``DFT`` ops.
    ``opset`` defaults to 20. The file is written atomically (temp file + rename).
    """
    check_generator_input(generator, height, width)
    if fft not in ("matmul", "dft"):
        raise LamaError(f"fft must be 'matmul' or 'dft', got {fft!r}")
    opset = DEFAULT_OPSET if opset is None else opset
    if type(opset) is not int or opset < MIN_OPSET:
        raise LamaError(f"opset must be an integer >= {MIN_OPSET} (what the torch.export-based exporter "
                        f"writes), got {opset!r}")
    for package in ("onnx", "onnxscript"):
        try:
            __import__(package)
        except ImportError as e:
            raise LamaError(f"ONNX export needs the {package!r} package: pip install -r requirements-bench.txt"
                            ) from e
    path = Path(path)
    example = torch.zeros(1, 4, height, width)
    patch = fourier_units_as_matmuls(generator) if fft == "matmul" else contextlib.nullcontext()
    try:
        with patch, torch.no_grad(), warnings.catch_warnings():
            # lama.dft caches its matrices per map size as NumPy arrays, which tracing cannot turn into fake tensors
            warnings.filterwarnings("ignore", message=r".*functools\.lru_cache", category=UserWarning)
            program = torch.onnx.export(generator, (example,), dynamo=True, opset_version=opset,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        verbose=False, optimize=True)
    except LamaError:
        raise
    except Exception as e:  # the exporter's own errors name torch internals; say what failed
        raise LamaError(f"torch.onnx.export could not export the generator with fft={fft!r}, "
                        f"opset {opset}: {type(e).__name__}: {e}") from e
    written = program.model.opset_imports.get("", None)
    if written != opset:  # the version converter gives up with a log message, not an exception
        raise LamaError(f"the exporter could not convert the graph to opset {opset} (it wrote {written}); "
                        f"try opset={DEFAULT_OPSET}")
    with atomic_write(path) as f:  # one file, weights inside (Big LaMa's 210 MB is far below protobuf's 2 GB)
        f.write(program.model_proto.SerializeToString())
    return path
