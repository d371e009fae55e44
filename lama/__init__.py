"""LaMa inpainting: Fast Fourier Convolution generator, safe loading of published weights, inference.

    import lama
    inpaint = lama.Inpainter.from_pretrained("big-lama")  # or a folder, .zip, .ckpt, .safetensors, .pt
    result = inpaint("photo.jpg", "mask.png")              # HxWx3 uint8

``lama.export(source, "lama.onnx")`` writes ONNX, TorchScript or OpenVINO IR (:mod:`lama.export`).

Submodules with their own public API: ``lama.masks`` (mask generators and presets), ``lama.metrics`` (FID,
LPIPS, SSIM, PSNR as torchmetrics objects; imported on use), ``lama.dist`` (torchrun helpers).
"""

from . import export  # a callable module: lama.export(...) is lama.export.export(...)
from .checkpoint import default_source
from .classical import CLASSICAL, inpaint_classical
from .errors import LamaError, MetricWeightsError
from .generator import PRESETS, FFCResNetGenerator, build_preset
from .inpainter import Inpainter, dilate_mask, load_model
from .io import IMAGE_EXTS, atomic_write, read_image, read_mask, read_rgb, save_image, to_tensor

__all__ = ["CLASSICAL", "IMAGE_EXTS", "PRESETS", "FFCResNetGenerator", "Inpainter", "LamaError", "MetricWeightsError",
           "atomic_write", "build_preset", "default_source", "dilate_mask", "export", "inpaint_classical", "load_model",
           "read_image", "read_mask", "read_rgb", "save_image", "to_tensor"]
__version__ = "0.1.0"
