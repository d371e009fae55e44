"""Random irregular strokes, boxes and their mix: the paper's "random" masks, which need only the image size.

The draw logic is that of the official ``saicinpainting/training/data/masks.py`` (advimman/lama) with an
explicit ``numpy.random.Generator`` instead of numpy's global state, so that a seed gives the same masks on
any machine. Masks are float32 HxW arrays with 1 = hole (the pixels to fill) and 0 = known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .base import MaskGenerator, _check_rng

__all__ = ["BoxMaskGenerator", "IrregularMaskGenerator", "MixedMaskGenerator", "make_random_irregular_mask",
           "make_random_rectangle_mask"]

# The official code mirrors the stroke angle with this truncated pi, not math.pi.
_OFFICIAL_TWO_PI = 2 * 3.1415926


def make_random_irregular_mask(height: int, width: int, rng: np.random.Generator, *, max_angle: int = 4,
                               max_len: int = 60, max_width: int = 20, min_times: int = 0,
                               max_times: int = 10) -> np.ndarray:
    """Polygonal chains of thick round-capped lines, drawn as the official ``make_random_irregular_mask``.

    Per mask ``times`` ~ U{min_times..max_times} chains; each starts at a uniform pixel and has 1-5 segments
    with angle ``0.01 + U{0..max_angle-1}`` (mirrored to ``2*pi - angle`` on even chains), length
    ``10 + U{0..max_len-1}`` and width ``5 + U{0..max_width-1}``; end points are clipped to [0, size].
    """
    _check_rng(rng)
    mask = np.zeros((height, width), np.float32)
    times = int(rng.integers(min_times, max_times + 1))
    for i in range(times):
        x = int(rng.integers(width))
        y = int(rng.integers(height))
        for _ in range(1 + int(rng.integers(5))):
            angle = 0.01 + int(rng.integers(max_angle))
            if i % 2 == 0:
                angle = _OFFICIAL_TWO_PI - angle
            length = 10 + int(rng.integers(max_len))
            brush_w = 5 + int(rng.integers(max_width))
            # truncation toward zero, then clipping to [0, size] (one past the last pixel), as the official
            end_x = min(max(int(x + length * math.sin(angle)), 0), width)
            end_y = min(max(int(y + length * math.cos(angle)), 0), height)
            cv2.line(mask, (x, y), (end_x, end_y), 1.0, brush_w)
            x, y = end_x, end_y
    return mask


def make_random_rectangle_mask(height: int, width: int, rng: np.random.Generator, *, margin: int = 10,
                               bbox_min_size: int = 30, bbox_max_size: int = 100, min_times: int = 0,
                               max_times: int = 3) -> np.ndarray:
    """Axis-aligned boxes as the official ``make_random_rectangle_mask``: sides ~ U[min, max) inside the margin."""
    _check_rng(rng)
    mask = np.zeros((height, width), np.float32)
    bbox_max_size = min(bbox_max_size, height - margin * 2, width - margin * 2)
    if bbox_max_size <= bbox_min_size:
        raise ValueError(f"a {height}x{width} canvas with margin {margin} has no room for boxes of at least "
                         f"{bbox_min_size} pixels")
    times = int(rng.integers(min_times, max_times + 1))
    for _ in range(times):
        box_w = int(rng.integers(bbox_min_size, bbox_max_size))
        box_h = int(rng.integers(bbox_min_size, bbox_max_size))
        x = int(rng.integers(margin, width - margin - box_w + 1))
        y = int(rng.integers(margin, height - margin - box_h + 1))
        mask[y:y + box_h, x:x + box_w] = 1
    return mask


@dataclass
class IrregularMaskGenerator(MaskGenerator):
    """The official ``RandomIrregularMaskGenerator`` without a training ramp.

    Its ramp coefficient is 1 outside training and in the official training configs (they set no ramp); the
    official formula then allows ``max_times + 1`` chains (``min_times + 1 + (max_times - min_times) * 1``),
    and we keep that so the statistics match.
    """

    max_angle: int = 4
    max_len: int = 60
    max_width: int = 20
    min_times: int = 0
    max_times: int = 10

    def __call__(self, height: int, width: int, rng: np.random.Generator,
                 image: np.ndarray | None = None) -> np.ndarray:
        return make_random_irregular_mask(height, width, rng, max_angle=self.max_angle, max_len=max(1, self.max_len),
                                          max_width=max(1, self.max_width), min_times=self.min_times,
                                          max_times=self.max_times + 1)


@dataclass
class BoxMaskGenerator(MaskGenerator):
    """The official ``RandomRectangleMaskGenerator`` without a training ramp.

    With the ramp at 1 the official upper bound on a box side becomes ``bbox_max_size + 1`` (exclusive),
    so sides reach ``bbox_max_size`` itself; we keep that.
    """

    margin: int = 10
    bbox_min_size: int = 30
    bbox_max_size: int = 100
    min_times: int = 0
    max_times: int = 3

    def __call__(self, height: int, width: int, rng: np.random.Generator,
                 image: np.ndarray | None = None) -> np.ndarray:
        return make_random_rectangle_mask(height, width, rng, margin=self.margin, bbox_min_size=self.bbox_min_size,
                                          bbox_max_size=self.bbox_max_size + 1, min_times=self.min_times,
                                          max_times=self.max_times)


class MixedMaskGenerator(MaskGenerator):
    """The official ``MixedMaskGenerator``: each mask comes from ONE kind, picked with the normalised weights.

    Kinds with weight 0 are left out before normalising, as the official. Segmentation and "squares" masks
    are not mixed in here (every official evaluation and training preset gives them weight 0); use
    :class:`SegmentationMaskGenerator`.
    """

    def __init__(self, irregular_proba: float = 1 / 3, irregular_kwargs: dict | None = None,
                 box_proba: float = 1 / 3, box_kwargs: dict | None = None, segm_proba: float = 0.0,
                 squares_proba: float = 0.0, variants_n: int = 2) -> None:
        if segm_proba > 0 or squares_proba > 0:
            raise ValueError("segm_proba and squares_proba are not supported in MixedMaskGenerator; "
                             "use SegmentationMaskGenerator for segmentation masks")
        self.gens: list[MaskGenerator] = []
        weights = []
        if irregular_proba > 0:
            self.gens.append(IrregularMaskGenerator(**(irregular_kwargs or {})))
            weights.append(irregular_proba)
        if box_proba > 0:
            self.gens.append(BoxMaskGenerator(**(box_kwargs or {})))
            weights.append(box_proba)
        if not self.gens:
            raise ValueError("MixedMaskGenerator needs irregular_proba or box_proba above 0")
        w = np.asarray(weights, np.float32)  # float32 as the official, then the cdf in float64
        self.probas = w / w.sum()
        self._cdf = np.cumsum(self.probas.astype(np.float64))
        self._cdf /= self._cdf[-1]
        self.variants_n = variants_n

    def __call__(self, height: int, width: int, rng: np.random.Generator,
                 image: np.ndarray | None = None) -> np.ndarray:
        # one uniform draw per mask, even with a single kind, as numpy's choice(p=...) in the official code
        kind = min(int(np.searchsorted(self._cdf, _check_rng(rng).random(), side="right")), len(self.gens) - 1)
        return self.gens[kind](height, width, rng)  # the image is not needed
