"""Named mask recipes of the official LaMa code, as data, and the generator each one builds.

Two purposes, kept apart so that nothing mixes them up:

* evaluation (:data:`DATA_GEN_PRESETS`): the test-set recipes of the official ``configs/data_gen/*.yaml``,
  each with its square crop and area filter; ``evaluation/splits.py`` prepares splits from these only.
* training (:data:`TRAIN_PRESETS`): the masks drawn on every training crop, without crop or filter.

:func:`make_mask_generator` builds either kind; :data:`MASK_PRESETS` lists them all with their ``purpose``.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..errors import LamaError
from .base import MaskGenerator, _check_rng
from .random import MixedMaskGenerator
from .segmentation import SegmentationMaskGenerator, Segmenter

__all__ = ["DATA_GEN_PRESETS", "MASK_PRESETS", "RANDOM_PRESETS", "SEGM_PRESETS", "TRAIN_PRESETS",
           "make_mask_generator", "propose_random_square_crop"]

# ---------------------------------------------------------------------------------------------
# Evaluation: configs/data_gen/*.yaml of the official repository, as data


def _random_preset(size: int, irregular: dict, box: dict | None) -> dict:
    kwargs: dict[str, Any] = {"irregular_proba": 1, "irregular_kwargs": dict(max_angle=4, **irregular)}
    if box is None:
        kwargs["box_proba"] = 0
    else:
        kwargs["box_proba"] = 0.3
        kwargs["box_kwargs"] = box
    kwargs.update(segm_proba=0, squares_proba=0, variants_n=5)
    return {
        "generator_kind": "random",
        "mask_generator_kwargs": kwargs,
        "max_masks_per_image": 1,
        "cropping": {"out_min_size": size, "handle_small_mode": "upscale", "out_square_crop": True,
                     "crop_min_overlap": 1},
        "max_tamper_area": 0.5,
    }


def _segm_preset(size: int) -> dict:
    return {
        "generator_kind": "segmentation",
        "mask_generator_kwargs": dict(
            confidence_threshold=0.5, max_object_area=0.5, min_mask_area=0.05, downsample_levels=6,
            num_variants_per_mask=3, rigidness_mode=1, max_foreground_coverage=1, max_foreground_intersection=1,
            max_mask_intersection=0.2, max_hidden_area=0.5, max_scale_change=0.25, horizontal_flip=True,
            max_vertical_shift=0.3, position_shuffle=True),
        "max_masks_per_image": 1,
        "cropping": {"out_min_size": size, "handle_small_mode": "upscale", "out_square_crop": True,
                     "crop_min_overlap": 1},
        "max_tamper_area": 0.5,
    }


#: The evaluation recipes of the official ``configs/data_gen/*.yaml`` (paper: narrow = thin, wide = thick).
DATA_GEN_PRESETS: dict[str, dict] = {
    "random_thin_256": _random_preset(
        256, dict(min_times=4, max_times=50, max_width=10, max_len=40), None),
    "random_medium_256": _random_preset(
        256, dict(min_times=4, max_times=5, max_width=50, max_len=100),
        dict(margin=0, bbox_min_size=10, bbox_max_size=50, max_times=5, min_times=1)),
    "random_thick_256": _random_preset(
        256, dict(min_times=1, max_times=5, max_width=100, max_len=200),
        dict(margin=10, bbox_min_size=30, bbox_max_size=150, max_times=3, min_times=1)),
    "random_thin_512": _random_preset(
        512, dict(min_times=4, max_times=70, max_width=20, max_len=100), None),
    "random_medium_512": _random_preset(
        512, dict(min_times=4, max_times=10, max_width=100, max_len=200),
        dict(margin=0, bbox_min_size=30, bbox_max_size=150, max_times=5, min_times=1)),
    "random_thick_512": _random_preset(
        512, dict(min_times=1, max_times=5, max_width=250, max_len=450),
        dict(margin=10, bbox_min_size=30, bbox_max_size=300, max_times=4, min_times=1)),
    "segm_256": _segm_preset(256),
    "segm_512": _segm_preset(512),
}
RANDOM_PRESETS = tuple(k for k, v in DATA_GEN_PRESETS.items() if v["generator_kind"] == "random")
SEGM_PRESETS = tuple(k for k, v in DATA_GEN_PRESETS.items() if v["generator_kind"] == "segmentation")

#: The training masks of the official big-lama and lama-fourier runs (``configs/training/big-lama.yaml`` and
#: ``lama-fourier.yaml`` use ``configs/training/data/abl-04-256-mh-dist.yaml``): one mask per 256x256 training
#: crop (``InpaintingTrainDataset`` calls the generator once per sample), strokes and boxes with equal weight
#: (both probas are 1, renormalised), no ramp, no segmentation masks.
TRAIN_PRESETS: dict[str, dict] = {
    "train_random": {
        "generator_kind": "random",
        "mask_generator_kwargs": dict(
            irregular_proba=1,
            irregular_kwargs=dict(max_angle=4, max_len=200, max_width=100, min_times=1, max_times=5),
            box_proba=1,
            box_kwargs=dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=4),
            segm_proba=0, squares_proba=0, variants_n=1),
        "out_size": 256,
    },
}

#: Every preset :func:`make_mask_generator` knows, tagged with its ``purpose`` ("evaluation" or "training").
MASK_PRESETS: dict[str, dict] = {
    **{k: {**v, "purpose": "evaluation"} for k, v in DATA_GEN_PRESETS.items()},
    **{k: {**v, "purpose": "training"} for k, v in TRAIN_PRESETS.items()},
}


def make_mask_generator(preset: str, segmenter: Segmenter | None = None) -> MaskGenerator:
    """The mask generator of a preset: a :class:`MixedMaskGenerator` for the random kinds (``random_*``,
    ``train_*``), otherwise a :class:`SegmentationMaskGenerator` (default segmenter: Mask R-CNN)."""
    if preset not in MASK_PRESETS:
        raise LamaError(f"unknown mask preset {preset!r}; choose one of {', '.join(MASK_PRESETS)}")
    cfg = copy.deepcopy(MASK_PRESETS[preset])
    if cfg["generator_kind"] == "random":
        return MixedMaskGenerator(**cfg["mask_generator_kwargs"])
    return SegmentationMaskGenerator(segmenter, **cfg["mask_generator_kwargs"])


# ---------------------------------------------------------------------------------------------
# Square crop of the dataset recipe


def propose_random_square_crop(mask: np.ndarray, rng: np.random.Generator,
                               min_overlap: float = 0.5) -> tuple[int, int, int, int]:
    """A random square crop (left, top, right, bottom) whose side is the image's short side, as the official.

    The crop reaches the mask's point at ``min_overlap`` of its extent along the long side (its last row or
    column for ``min_overlap=1``, the value of every evaluation preset); as in the official, the last possible
    start is never drawn, so a point on the image's far edge may be missed by one pixel. An empty mask leaves
    the crop free (the official raises and retries the whole image).
    """
    _check_rng(rng)
    height, width = mask.shape[:2]
    long_side, size = (width, height) if height < width else (height, width)
    hole = np.asarray(mask) > 0.5
    coords = np.flatnonzero(hole.any(axis=0) if height < width else hole.any(axis=1))
    if coords.size:
        lo, hi = int(coords[0]), int(coords[-1])
        anchor = lo + (hi - lo) * min_overlap
        first = max(0.0, min(long_side - size - 1, anchor - size))
        last = max(first + 1, min(long_side - size, anchor))
    else:
        first, last = 0.0, float(max(1, long_side - size))
    # the official passes these floats to numpy's randint, which truncates them
    start = int(rng.integers(int(first), int(last)))
    if height < width:
        return start, 0, start + size, height
    return 0, start, width, start + size


