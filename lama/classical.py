"""Classical inpainting: the baselines of the evaluation and the demo's fallback when no LaMa weights exist.

Telea and Navier-Stokes are OpenCV's, with radius 3 (OpenCV's documented example value, and IOPaint's);
biharmonic is scikit-image's (an evaluation extra). Only masked pixels change.
"""

from __future__ import annotations

import numpy as np

from .errors import LamaError

CLASSICAL = ("telea", "ns", "biharmonic")


def inpaint_classical(rgb: np.ndarray, mask: np.ndarray, method: str = "telea") -> np.ndarray:
    """HxWx3 uint8 and HxW bool (True = fill) -> HxWx3 uint8, filled by ``method`` (see :data:`CLASSICAL`)."""
    if method not in CLASSICAL:
        raise LamaError(f"unknown classical method {method!r}; choose from {', '.join(CLASSICAL)}")
    rgb = np.ascontiguousarray(rgb)
    if not mask.any():
        return rgb.copy()
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        out = inpaint_biharmonic(rgb.astype(np.float64) / 255.0, mask, channel_axis=-1)
        filled = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        import cv2

        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        filled = cv2.inpaint(rgb, mask.astype(np.uint8) * 255, 3, flag)
    return np.where(mask[..., None], filled, rgb)
