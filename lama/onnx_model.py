"""An exported ``.onnx`` file (:mod:`lama.export`) run by ONNX Runtime behind the generator's interface, so that
``lama.load_model("model.onnx")`` gives an :class:`~lama.Inpainter` like any other weights (strategies, CLI and
demo included). onnxruntime is an optional dependency (``pip install onnxruntime``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import LamaError
from .export import INPUT_NAMES, META_KEY, OUTPUT_NAMES


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as e:
        raise LamaError("running an .onnx model needs ONNX Runtime: pip install onnxruntime") from e
    return onnxruntime


class OnnxGenerator(nn.Module):
    """``[B, 4, H, W]`` (masked image and mask) -> ``[B, 3, H, W]``, computed by an exported ONNX graph.

    A composited export returns the image outside the holes, where a generator returns its own prediction;
    :class:`~lama.Inpainter` composites the result, so what it returns is the same.
    """

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu", threads: int | None = None):
        super().__init__()
        ort = _onnxruntime()
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as e:  # not ONNX, truncated, an op this runtime lacks
            raise LamaError(f"ONNX Runtime cannot load {self.path}: {type(e).__name__}: {e}") from e
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        if set(inputs) == set(INPUT_NAMES) and all(i.type == "tensor(uint8)" for i in inputs.values()):
            raise LamaError(f"{self.path} is a pipeline export (uint8 photo and mask in, uint8 photo out): run it "
                            "with ONNX Runtime directly; lama.load_model takes the float32 exports")
        if set(inputs) != set(INPUT_NAMES) or len(outputs) != 1 or outputs[0] not in OUTPUT_NAMES.values() \
                or any(i.type != "tensor(float)" for i in inputs.values()):
            raise LamaError(f"{self.path} is not a LaMa export of lama.export: it takes "
                            f"{[(n, i.type) for n, i in inputs.items()]} and returns {outputs}, not float32 "
                            f"{list(INPUT_NAMES)} -> {sorted(OUTPUT_NAMES.values())}")
        self.output = outputs[0]
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY, "{}")
        try:
            self.metadata: dict[str, Any] = json.loads(meta)
        except ValueError:
            self.metadata = {}

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 4:
            raise LamaError(f"expected a [B, 4, H, W] input, got {tuple(x.shape)}")
        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        out = self.session.run([self.output], {"image": a[:, :3], "mask": a[:, 3:]})[0]
        return torch.from_numpy(out).to(x.device, x.dtype)


def load_onnx(path: str | os.PathLike, device: str | torch.device | None = None,
              dtype: torch.dtype | str | None = None) -> Any:
    """An :class:`~lama.Inpainter` running ``path`` with ONNX Runtime (float32; ``dtype="auto"`` means the file's
    own precision, as the demo asks)."""
    from .inpainter import Inpainter, resolve_device

    if dtype not in (None, "auto", "float32", torch.float32):
        raise LamaError(f"an .onnx export runs in the precision it was exported in (float32), not {dtype}")
    if not Path(path).is_file():
        raise LamaError(f"{path} does not exist")
    dev = resolve_device(device)
    if dev.type == "mps":
        raise LamaError("an .onnx export runs on the CPU or CUDA (ONNX Runtime), not on MPS")
    gen = OnnxGenerator(path, dev)
    return Inpainter(gen, device="cpu", dtype=torch.float32, config=gen.metadata.get("config") or {},
                     source=str(path), fast=False)
