"""Other CPU runtimes running the same generator, as peers for ``python -m lama bench``.

:func:`peer_runners` converts one float32 generator at one input size for OpenVINO (straight from
the torch module, and from the matrix-product-DFT ONNX export) and for ONNX Runtime (matrix-product
and ``DFT``-op exports, :mod:`lama.export` with ``raw=True``). Each runner maps a float32 ``[1, 4, H, W]``
array (masked image and mask, the generator's input) to the raw generator output ``[1, 3, H, W]``.
These packages are benchmark dependencies (requirements-bench.txt): a peer whose package is missing,
or that fails to convert, compile or run, is skipped with the reason.
"""

from __future__ import annotations

import collections
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from .errors import LamaError
from .export import OUTPUT_NAMES, check_generator, export_onnx


@dataclass
class PeerRunner:
    """A callable ``[1, 4, H, W]`` float32 array -> ``[1, 3, H, W]`` float32 array; ``note`` says
    what the runtime reports about how it runs (e.g. the precision OpenVINO actually chose)."""

    fn: Callable[[np.ndarray], np.ndarray]
    note: str = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)


class Peers(NamedTuple):
    runners: dict[str, PeerRunner]
    skipped: dict[str, str]  # peer name -> why it is not in ``runners``


OV_TORCH = ("openvino f32 (torch)", "openvino bf16 (torch)")
OV_ONNX = ("openvino f32 (matmul-DFT onnx)", "openvino bf16 (matmul-DFT onnx)")
ORT_MATMUL, ORT_DFT = "onnxruntime (matmul-DFT onnx)", "onnxruntime (DFT-op onnx)"
#: Every peer name :func:`peer_runners` can return, in table order.
PEER_NAMES = (*OV_TORCH, *OV_ONNX, ORT_MATMUL, ORT_DFT)


def _import(name: str) -> tuple[Any, str]:
    """The module, or None and why not."""
    try:
        return importlib.import_module(name), ""
    except ImportError as e:
        return None, f"{name} is not installed (pip install -r requirements-bench.txt): {e}"


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()


def _openvino_note(compiled: Any) -> str:
    """The precision OpenVINO reports, and the precisions its executable graph's compute nodes run in."""
    skip = {"Const", "Input", "Output", "Parameter", "Result", "Reorder"}
    per_precision: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if kind not in skip and "runtimePrecision" in info:
            per_precision[info["runtimePrecision"].astype(str)][kind] += 1
    nodes = "; ".join(f"{p}: " + ", ".join(f"{k} x{n}" for k, n in c.most_common())
                      for p, c in sorted(per_precision.items()))
    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return f"INFERENCE_PRECISION_HINT={precision}; nodes {nodes}"


def _static(model: Any, height: int, width: int) -> Any:
    """The dynamic-size export at one size, so that OpenVINO folds the DFT matrices into constants."""
    model.reshape({model.inputs[0]: [1, 3, height, width], model.inputs[1]: [1, 1, height, width]})
    return model


def _check_runner(fn: Callable[[np.ndarray], np.ndarray], shape: tuple[int, ...]) -> None:
    """One call on zeros (also the warm-up): a runner that cannot run is skipped, not timed."""
    out = fn(np.zeros(shape, np.float32))
    want = (1, 3, *shape[2:])
    if out.shape != want or out.dtype != np.float32:
        raise RuntimeError(f"output is {out.dtype} {out.shape}, expected float32 {want}")


def peer_runners(generator: torch.nn.Module, height: int, width: int, threads: int,
                 workdir: str | Path) -> Peers:
    """Peer runners for ``generator`` (an eval-mode float32 ``FFCResNetGenerator``) at ``height`` x
    ``width``, each using ``threads`` threads and one stream; exported models go to ``workdir``.

    Returns ``Peers(runners, skipped)``; names are those of :data:`PEER_NAMES`. Every runner has run
    once on zeros (a warm-up), so building takes a few model runs.
    """
    check_generator(generator)
    if any(type(v) is not int or v < 16 or v % 8 for v in (height, width)):
        raise LamaError(f"height and width must be multiples of 8 from 16, got {height!r} x {width!r}")
    if type(threads) is not int or threads < 1:
        raise LamaError(f"threads must be a positive integer, got {threads!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shape = (1, 4, height, width)
    runners: dict[str, PeerRunner] = {}
    skipped: dict[str, str] = {}

    def add(name: str, build: Callable[[], PeerRunner]) -> None:
        try:
            runner = build()
            _check_runner(runner, shape)
        except Exception as e:  # a peer that cannot be built is reported, never fatal
            skipped[name] = _error(e)
        else:
            runners[name] = runner

    onnx_files: dict[str, Path | str] = {}  # fft -> exported file, or why the export failed
    for fft in ("matmul", "dft-op"):
        try:  # dynamic-size files; OpenVINO gets the static shape at compile time
            onnx_files[fft] = export_onnx(generator, workdir / f"generator_{fft}.onnx", fft=fft, raw=True)
        except Exception as e:
            onnx_files[fft] = f"ONNX export (fft={fft!r}) failed: {_error(e)}"

    ov, why = _import("openvino")
    if ov is None:
        skipped.update(dict.fromkeys((*OV_TORCH, *OV_ONNX), why))
    else:
        core = ov.Core()  # note: without a hint, OpenVINO picks bf16 on CPUs that have it
        bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")

        def ov_runner(model: Any, precision: str) -> PeerRunner:
            compiled = core.compile_model(model, "CPU", {
                "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": threads,
                "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY"})
            request = compiled.create_infer_request()

            def run(x: np.ndarray) -> np.ndarray:
                x = np.ascontiguousarray(x, np.float32)
                request.infer({0: x} if len(compiled.inputs) == 1 else {0: x[:, :3], 1: x[:, 3:]})
                return request.get_output_tensor(0).data.copy()

            return PeerRunner(run, _openvino_note(compiled))

        sources: dict[tuple[str, ...], Callable[[], Any]] = {
            # a static input shape: otherwise the traced graph keeps its shape arithmetic (ShapeOf, Gather...)
            OV_TORCH: lambda: ov.convert_model(generator, example_input=torch.zeros(shape), input=[shape]),
            OV_ONNX: lambda: _static(core.read_model(onnx_files["matmul"]), height, width),
        }
        for names, load in sources.items():
            if names == OV_ONNX and isinstance(onnx_files["matmul"], str):
                skipped.update(dict.fromkeys(names, onnx_files["matmul"]))
                continue
            try:
                with torch.no_grad(), warnings.catch_warnings():
                    # OpenVINO's torch frontend traces with torch.jit.trace, which torch now calls deprecated
                    warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace", category=FutureWarning)
                    model = load()
            except Exception as e:
                skipped.update(dict.fromkeys(names, f"OpenVINO could not convert the model: {_error(e)}"))
                continue
            f32_name, bf16_name = names
            add(f32_name, lambda model=model: ov_runner(model, "f32"))
            if bf16:
                add(bf16_name, lambda model=model: ov_runner(model, "bf16"))
            else:
                skipped[bf16_name] = "this CPU has no bfloat16 support (OpenVINO OPTIMIZATION_CAPABILITIES lacks BF16)"

    ort, why = _import("onnxruntime")
    for name, fft in ((ORT_MATMUL, "matmul"), (ORT_DFT, "dft-op")):
        if ort is None:
            skipped[name] = why
        elif isinstance(onnx_files[fft], str):
            skipped[name] = onnx_files[fft]
        else:
            def ort_runner(path: Path = onnx_files[fft]) -> PeerRunner:
                options = ort.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

                def run(x: np.ndarray) -> np.ndarray:
                    x = np.ascontiguousarray(x, np.float32)
                    return session.run([OUTPUT_NAMES[True]], {"image": x[:, :3], "mask": x[:, 3:]})[0]

                return PeerRunner(run, f"onnxruntime {ort.__version__}, {', '.join(session.get_providers())}")

            add(name, ort_runner)
    return Peers(runners, skipped)
