"""The paper's "segm" masks: shapes of detected objects moved to another place of the same photo.

Follows the official ``saicinpainting/evaluation/masks/mask.py`` (advimman/lama) with an explicit
``numpy.random.Generator``; unlike the random kinds these masks require the photo (``image=``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..errors import LamaError
from .base import MaskGenerator, _check_rng

__all__ = ["Instance", "MaskRCNNSegmenter", "SegmentationMaskGenerator", "Segmenter"]

Instance = tuple  # (binary HxW mask, label) or (binary HxW mask, label, score)
Segmenter = Callable[[np.ndarray], Sequence[Instance]]


def _check_image(image: np.ndarray | None, height: int, width: int) -> np.ndarray:
    """The photo the masks are drawn from, as an HxWx3 array; it must be there and match the asked size."""
    if image is None:
        raise LamaError("segmentation masks are drawn from the photo's objects: pass image=<HxWx3 uint8 RGB array>")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {image.shape}")
    if image.shape[:2] != (height, width):
        raise LamaError(f"the image is {image.shape[0]}x{image.shape[1]} but {height}x{width} masks were asked for")
    return image


def _resize_nearest(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resize with pixel-centre alignment (skimage ``order=0``), in exact integer arithmetic
    so that it is the same on every machine; a centre exactly between two pixels takes the later one, where
    skimage's result depends on its version and floating-point noise."""
    in_h, in_w = a.shape
    rows = ((2 * np.arange(out_h) + 1) * in_h) // (2 * out_h)
    cols = ((2 * np.arange(out_w) + 1) * in_w) // (2 * out_w)
    return a[rows[:, None], cols[None, :]]


def _countless(labels: np.ndarray) -> np.ndarray:
    """Halve a label map: per 2x2 block, a label found twice among the first three pixels, else the fourth.

    This is the "zero-corrected COUNTLESS" downsampling the official code uses for its coarse search grid.
    """
    a, b, c, d = labels[0::2, 0::2], labels[0::2, 1::2], labels[1::2, 0::2], labels[1::2, 1::2]
    return np.where((a == b) | (a == c), a, np.where(b == c, b, d))


def _limits(indicator: np.ndarray) -> tuple[int, int]:
    """First index and one past the last index of True (0 and len when there is none, as the official)."""
    return int(indicator.argmax()), int(len(indicator) - indicator[::-1].argmax())


@dataclass(frozen=True)
class _ObjectMask:
    """An object's tight mask placed at (up, left) on a canvas; it may stick out until cropped."""

    height: int
    width: int
    up: int
    down: int
    left: int
    right: int
    mask: np.ndarray

    @classmethod
    def from_full(cls, full: np.ndarray) -> _ObjectMask:
        (up, down), (left, right) = _limits(full.any(axis=1)), _limits(full.any(axis=0))
        return cls(full.shape[0], full.shape[1], up, down, left, right, full[up:down, left:right].copy())

    def area(self) -> int:
        return int(self.mask.sum())

    def rescaled(self, factor: float) -> _ObjectMask:
        """Nearest-neighbour scaling about the box centre (the official skimage ``rescale(order=0)``)."""
        h, w = self.mask.shape
        scaled = _resize_nearest(self.mask, max(int(np.round(factor * h)), 1), max(int(np.round(factor * w)), 1))
        (up, down), (left, right) = _limits(scaled.any(axis=1)), _limits(scaled.any(axis=0))
        scaled = scaled[up:down, left:right]
        yc, xc = self.up + (self.down - self.up) / 2, self.left + (self.right - self.left) / 2
        new_up, new_left = int(round(yc - scaled.shape[0] / 2)), int(round(xc - scaled.shape[1] / 2))
        return replace(self, up=new_up, down=new_up + scaled.shape[0], left=new_left,
                       right=new_left + scaled.shape[1], mask=scaled)

    def flipped(self) -> _ObjectMask:
        return replace(self, mask=self.mask[:, ::-1])

    def shifted(self, vertical: int = 0, horizontal: int = 0) -> _ObjectMask:
        return replace(self, up=self.up + vertical, down=self.down + vertical, left=self.left + horizontal,
                       right=self.right + horizontal)

    def cropped(self, vertical: bool = True, horizontal: bool = True) -> _ObjectMask:
        """The part inside the canvas; an object wholly outside becomes empty."""
        m, up, down, left, right = self.mask, self.up, self.down, self.left, self.right
        empty = replace(self, up=0, down=0, left=0, right=0, mask=np.zeros((0, 0), bool))
        if vertical:
            if up >= self.height or down <= 0:
                return empty
            m = m[max(-up, 0):m.shape[0] - max(down - self.height, 0)]
            up, down = max(up, 0), min(down, self.height)
        if horizontal:
            if left >= self.width or right <= 0:
                return empty
            m = m[:, max(-left, 0):m.shape[1] - max(right - self.width, 0)]
            left, right = max(left, 0), min(right, self.width)
        return replace(self, up=up, down=down, left=left, right=right, mask=m)

    def full(self) -> np.ndarray:
        c = self.cropped()
        out = np.zeros((self.height, self.width), bool)
        out[c.up:c.down, c.left:c.right] = c.mask
        return out

    def overlap(self, full: np.ndarray) -> int:
        """Pixels shared with a canvas-sized mask (self must be cropped to the canvas)."""
        return int((full[self.up:self.down, self.left:self.right] & self.mask).sum())


class SegmentationMaskGenerator(MaskGenerator):
    """The paper's "segm" masks: shapes of detected objects moved elsewhere in the same photo.

    Called as every generator, ``gen(height, width, rng, image=photo)``, but the HxWx3 uint8 RGB photo is
    required here (a missing one, or one of another size, is a :class:`LamaError`).

    The official ``SegmentationMask`` algorithm: objects of a "thing" class covering less than
    ``max_object_area`` of the image are candidates; on a coarse grid (label map resized to powers of two and
    halved by COUNTLESS until it is ``2**downsample_levels`` wide) each candidate gets up to
    ``num_variants_per_mask`` placements (random scale within ``max_scale_change``, optional mirror, vertical
    shift within ``max_vertical_shift``, then the first horizontal shift in random order that hides at most
    ``max_hidden_area`` of the shape and overlaps the original object and earlier placements by at most
    ``max_mask_intersection``); each placement is then applied to the full-resolution shape, and masks
    covering at most ``min_mask_area`` of the image are dropped. There is no dilation, as in the official code.
    Defaults are those of the official ``configs/data_gen/segm_{256,512}.yaml``.

    ``segmenter(image)`` returns instances as ``(mask, label)`` or ``(mask, label, score)``, best first; they
    are merged into one label map like detectron2's panoptic combination (an instance more than half hidden
    by better ones is dropped, otherwise it keeps its unclaimed pixels); instances with a score below
    ``confidence_threshold`` are ignored. Differences from the official: it ran detectron2's Panoptic FPN
    (R101, COCO) and fed it RGB where the model expects BGR; the default here is torchvision's Mask R-CNN
    (COCO, the same 80 thing classes) on correct RGB, which labels no "stuff", so the background is one
    label (0) in the coarse grid. ``thing_labels`` (None = every instance is a thing) marks the labels that
    may be moved; other instances only occupy pixels, as "stuff" does.
    """

    def __init__(self, segmenter: Segmenter | None = None, *, confidence_threshold: float = 0.5,
                 rigidness_mode: int = 1, max_object_area: float = 0.5, min_mask_area: float = 0.05,
                 downsample_levels: int = 6, num_variants_per_mask: int = 3, max_mask_intersection: float = 0.2,
                 max_foreground_coverage: float = 1.0, max_foreground_intersection: float = 1.0,
                 max_hidden_area: float = 0.5, max_scale_change: float = 0.25, horizontal_flip: bool = True,
                 max_vertical_shift: float = 0.3, position_shuffle: bool = True,
                 thing_labels: Collection | None = None, overlap_threshold: float = 0.5) -> None:
        if rigidness_mode not in (0, 1):
            raise ValueError("rigidness_mode must be 0 (soft: only the object itself) or 1 (rigid: every object)")
        self.segmenter = segmenter if segmenter is not None else MaskRCNNSegmenter(confidence_threshold)
        self.confidence_threshold = confidence_threshold
        self.rigidness_mode = rigidness_mode
        self.max_object_area, self.min_mask_area = max_object_area, min_mask_area
        self.downsample_levels, self.num_variants_per_mask = downsample_levels, num_variants_per_mask
        self.max_mask_intersection = max_mask_intersection
        self.max_foreground_coverage, self.max_foreground_intersection = (max_foreground_coverage,
                                                                          max_foreground_intersection)
        self.max_hidden_area, self.max_scale_change = max_hidden_area, max_scale_change
        self.horizontal_flip, self.max_vertical_shift = horizontal_flip, max_vertical_shift
        self.position_shuffle = position_shuffle
        self.thing_labels = None if thing_labels is None else set(thing_labels)
        self.overlap_threshold = overlap_threshold

    # -- label map --------------------------------------------------------------------------

    def label_map(self, image: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Instances merged into one int32 map (0 = none) and the ids that are things, in order."""
        h, w = image.shape[:2]
        things, stuff = [], []
        for inst in self.segmenter(image):
            m, label = np.asarray(inst[0]).astype(bool), inst[1]
            if m.shape != (h, w):
                raise ValueError(f"segmenter returned a {m.shape} mask for a {h}x{w} image")
            if len(inst) > 2 and float(inst[2]) < self.confidence_threshold:
                continue
            (things if self.thing_labels is None or label in self.thing_labels else stuff).append(m)
        labels = np.zeros((h, w), np.int32)
        thing_ids: list[int] = []
        next_id = 1
        for m in things:
            area = int(m.sum())
            if area == 0:
                continue
            taken = int((m & (labels > 0)).sum())
            if taken / area > self.overlap_threshold:
                continue
            labels[m & (labels == 0)] = next_id
            thing_ids.append(next_id)
            next_id += 1
        for m in stuff:  # stuff fills only what the things left
            free = m & (labels == 0)
            if free.any():
                labels[free] = next_id
                next_id += 1
        return labels, thing_ids

    def _coarse(self, labels: np.ndarray) -> np.ndarray:
        h, w = labels.shape
        th = h if h & (h - 1) == 0 else 1 << h.bit_length()
        tw = w if w & (w - 1) == 0 else 1 << w.bit_length()
        iterations = tw.bit_length() - 1 - self.downsample_levels
        if iterations < 0:
            raise ValueError(f"image width {w} is below 2**downsample_levels = {2 ** self.downsample_levels}")
        if th.bit_length() - 1 < iterations:
            raise ValueError(f"image height {h} is too small for the coarse grid of a {w}-wide image")
        coarse = _resize_nearest(labels, th, tw)
        for _ in range(iterations):
            coarse = _countless(coarse)
        return coarse

    # -- placement search on the coarse grid ------------------------------------------------------

    def _masks_ok(self, cand: _ObjectMask, total: int, previous: list[np.ndarray]) -> bool:
        for prev in previous:
            inter = cand.overlap(prev)
            if inter / prev.sum() > self.max_mask_intersection:
                return False
            # the part pushed off the canvas counts as overlap, as in the official formula
            if 1 - (cand.area() - inter) / total > self.max_mask_intersection:
                return False
        return True

    def _foreground_ok(self, cand: _ObjectMask, foreground: list[np.ndarray]) -> bool:
        area = cand.area()
        for obj in foreground:
            inter = cand.overlap(obj)
            if inter / obj.sum() > self.max_foreground_coverage:
                return False
            if area > 0 and inter / area > self.max_foreground_intersection:
                return False
        return True

    def _placements(self, obj: np.ndarray, foreground: list[np.ndarray], rng: np.random.Generator) -> list[dict]:
        orig = _ObjectMask.from_full(obj)
        H, W = orig.height, orig.width
        chosen: list[np.ndarray] = []
        params: list[dict] = []
        min_scale = 0.0  # raised to 1 once a shrink has made the shape vanish
        for _ in range(self.num_variants_per_mask):
            scale = rng.uniform(1 - self.max_scale_change, 1 + self.max_scale_change)
            flip = bool(rng.integers(2)) if self.horizontal_flip else False
            v_shift = rng.uniform(-self.max_vertical_shift, self.max_vertical_shift)
            # grow no more than what keeps the scaled shape inside the canvas around its centre
            scale = max(min(scale, 2 * min(orig.up, H - orig.down) / H + 1.0,
                            2 * min(orig.left, W - orig.right) / W + 1.0), min_scale)
            aug = orig.rescaled(scale)
            if flip:
                aug = aug.flipped()
            total = aug.area()
            if total == 0:
                min_scale = 1.0
                continue
            rows = aug.mask.sum(axis=1) / total
            hide_up = int(np.searchsorted(rows.cumsum(), self.max_hidden_area))
            hide_down = int(np.searchsorted(rows[::-1].cumsum(), self.max_hidden_area))
            v_shift = float(np.clip(v_shift, -(aug.up + hide_up) / H, (H - aug.down + hide_down) / H))
            aug = aug.shifted(vertical=int(round(H * v_shift))).cropped(vertical=True, horizontal=False)

            hidden_left = self.max_hidden_area - (1 - aug.area() / total)
            cols = aug.mask.sum(axis=0) / total
            hide_left = int(np.searchsorted(cols.cumsum(), hidden_left))
            hide_right = int(np.searchsorted(cols[::-1].cumsum(), hidden_left))
            shifts = np.arange(-hide_left, W - (aug.right - aug.left) + hide_right + 1) - aug.left
            if self.position_shuffle:
                rng.shuffle(shifts)
            found = False
            for h_shift in shifts:
                cand = aug.shifted(horizontal=int(h_shift)).cropped()
                if self._masks_ok(cand, total, [obj, *chosen]) and self._foreground_ok(cand, foreground):
                    chosen.append(cand.full())
                    params.append({"scaling_factor": float(scale), "horizontal_flip": flip,
                                   "vertical_shift": v_shift, "horizontal_shift": int(h_shift) / W})
                    found = True
                    break
            if not found:
                break
        return params

    # -- public -------------------------------------------------------------------------------

    def get_masks(self, height: int, width: int, rng: np.random.Generator,
                  image: np.ndarray | None = None) -> list[np.ndarray]:
        """All segmentation masks for one HxWx3 uint8 RGB photo (required): float32 HxW arrays in {0, 1}."""
        _check_rng(rng)
        image = _check_image(image, height, width)
        labels, thing_ids = self.label_map(image)
        h, w = labels.shape
        candidates = [i for i in thing_ids if (labels == i).sum() / (h * w) < self.max_object_area]
        coarse = self._coarse(labels)
        scene = [coarse == i for i in thing_ids if (coarse == i).any()]
        out: list[np.ndarray] = []
        for obj_id in candidates:
            obj = coarse == obj_id
            if not obj.any():
                continue
            foreground = [obj] if self.rigidness_mode == 0 else scene
            full = _ObjectMask.from_full(labels == obj_id)
            for p in self._placements(obj, foreground, rng):
                aug = full.rescaled(p["scaling_factor"])
                if p["horizontal_flip"]:
                    aug = aug.flipped()
                aug = aug.shifted(int(round(h * p["vertical_shift"])), int(round(w * p["horizontal_shift"])))
                mask = aug.full().astype(np.float32)
                if mask.mean() <= self.min_mask_area:
                    continue
                out.append(mask)
        return out

    def __call__(self, height: int, width: int, rng: np.random.Generator,
                 image: np.ndarray | None = None) -> np.ndarray | None:
        """One of the masks at random, as the official ``RandomSegmentationMaskGenerator`` (None if there is none)."""
        masks = [m for m in self.get_masks(height, width, rng, image) if 0 < m.mean() < 1]
        return masks[int(rng.integers(len(masks)))] if masks else None


class MaskRCNNSegmenter:
    """torchvision's Mask R-CNN (ResNet-50 FPN, COCO weights) as the default instance segmenter.

    Built on first use, so that importing or configuring never downloads; the weights go to the torch hub cache.
    Returns ``(mask, category name, score)`` for detections scoring at least ``confidence_threshold``, best first.
    """

    def __init__(self, confidence_threshold: float = 0.5, device: str | None = None,
                 mask_threshold: float = 0.5) -> None:
        self.confidence_threshold, self.mask_threshold = confidence_threshold, mask_threshold
        self.device = device
        self._model = None
        self._categories: list[str] = []

    def _build(self) -> None:
        import torch
        from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn

        weights = MaskRCNN_ResNet50_FPN_Weights.COCO_V1
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                      num_classes=len(weights.meta["categories"]))
        try:
            state = torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True)
        except Exception as e:  # offline, proxy, corrupt download: one clear message
            raise LamaError(
                f"could not get the Mask R-CNN COCO weights ({weights.url}) for segmentation masks: {e}. "
                f"Connect to the internet once (they are cached in {torch.hub.get_dir()}/checkpoints), or pass "
                "your own segmenter to SegmentationMaskGenerator.") from e
        model.load_state_dict(state)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._model = model.eval().to(device)
        self.device = device
        self._categories = list(weights.meta["categories"])

    def __call__(self, image: np.ndarray) -> list[tuple[np.ndarray, str, float]]:
        import torch

        if self._model is None:
            self._build()
        from lama.io import to_tensor

        x = to_tensor(image)[0].to(self.device)
        with torch.inference_mode():
            pred = self._model([x])[0]
        out = []
        for m, label, score in zip(pred["masks"], pred["labels"], pred["scores"], strict=True):
            if float(score) < self.confidence_threshold:
                continue
            out.append(((m[0] > self.mask_threshold).cpu().numpy(), self._categories[int(label)], float(score)))
        return out
