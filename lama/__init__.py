"""LaMa inpainting: Fast Fourier Convolution generator, safe loading of published weights, inference.

    import lama
    inpaint = lama.load_model("big-lama")        # or a folder, .zip, .ckpt, .safetensors, .pt
    result = inpaint("photo.jpg", "mask.png")     # HxWx3 uint8
"""

from .errors import LamaError
from .generator import PRESETS, FFCResNetGenerator, build_preset
from .inpainter import Inpainter, load_model

__all__ = ["PRESETS", "FFCResNetGenerator", "Inpainter", "LamaError", "build_preset", "load_model"]
__version__ = "0.1.0"
