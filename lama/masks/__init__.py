"""Mask generators of the LaMa paper (irregular strokes, boxes, their mix, segmentation shapes) and its presets.

Every generator follows the draw logic of the official code (advimman/lama) but takes an explicit
``numpy.random.Generator``, so that the same seed gives the same masks on any machine, and every kind is
called the same way: ``gen(height, width, rng, image=None)`` for one mask, ``gen.get_masks(...)`` for the
per-image variants; only segmentation masks use (and require) ``image``. Masks are float32 HxW arrays with
1 = hole (the pixels to fill) and 0 = known.

* :mod:`.random`: strokes, boxes and their mix (size only);
* :mod:`.segmentation`: object shapes moved within the photo;
* :mod:`.presets`: the official evaluation and training recipes, :func:`make_mask_generator`, the square crop.
"""

from .base import MaskGenerator
from .presets import (
    DATA_GEN_PRESETS,
    MASK_PRESETS,
    RANDOM_PRESETS,
    SEGM_PRESETS,
    TRAIN_PRESETS,
    make_mask_generator,
    propose_random_square_crop,
)
from .random import (
    BoxMaskGenerator,
    IrregularMaskGenerator,
    MixedMaskGenerator,
    make_random_irregular_mask,
    make_random_rectangle_mask,
)
from .segmentation import Instance, MaskRCNNSegmenter, SegmentationMaskGenerator, Segmenter

__all__ = [
    "DATA_GEN_PRESETS", "MASK_PRESETS", "RANDOM_PRESETS", "SEGM_PRESETS", "TRAIN_PRESETS", "BoxMaskGenerator",
    "Instance", "IrregularMaskGenerator", "MaskGenerator", "MaskRCNNSegmenter", "MixedMaskGenerator",
    "SegmentationMaskGenerator", "Segmenter", "make_mask_generator", "make_random_irregular_mask",
    "make_random_rectangle_mask", "propose_random_square_crop",
]
