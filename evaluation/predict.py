"""Predictions on a split: any ``lama.load_model`` source or a classical baseline, batched, resumable.

A split is a folder in the official layout (``x_crop000.png`` + ``x_crop000_mask000.png``); each
prediction is written under the mask's relative path with ``.png`` (the official evaluator's
``inpainted_suffix``), so that ``score`` pairs them the way ``bin/evaluate_predicts.py`` does.
Methods from elsewhere are scored straight from a folder of their outputs in the same layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lama.dist import shard
from lama.io import atomic_write, read_mask, read_rgb

from .errors import EvaluationError

#: Classical baselines, by name. Radius 3 is OpenCV's documented example value (and IOPaint's).
BASELINES = ("telea", "ns", "biharmonic")


@dataclass(frozen=True)
class Sample:
    """One evaluation pair: the image, its mask, and the name predictions are stored under."""

    image: Path
    mask: Path
    name: str  # the mask's path relative to the split, without extension


def list_samples(split: Path) -> list[Sample]:
    """Every ``*_mask*.png`` of a split with the image it belongs to (``x_mask000`` -> ``x``)."""
    if not split.is_dir():
        raise EvaluationError(f"split folder {split} does not exist")
    samples = []
    for mask in sorted(split.rglob("*_mask*.png")):
        image = mask.with_name(mask.name.rsplit("_mask", 1)[0] + ".png")
        if not image.exists():
            raise EvaluationError(f"{mask} has no image {image.name} beside it")
        samples.append(Sample(image, mask, str(mask.relative_to(split).with_suffix("")).replace(os.sep, "/")))
    if not samples:
        raise EvaluationError(f"no masks (*_mask*.png) in {split}; make a split with `python -m evaluation prepare`")
    return samples


def classical(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """One of the classical baselines as ``f(rgb uint8, mask bool) -> rgb uint8``."""
    if method in ("telea", "ns"):
        import cv2

        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS

        def run(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return cv2.inpaint(rgb, mask.astype(np.uint8) * 255, 3, flag)

        return run
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic

        def run(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
            if not mask.any():
                return rgb.copy()
            out = inpaint_biharmonic(rgb.astype(np.float64) / 255.0, mask, channel_axis=-1)
            filled = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return np.where(mask[..., None], filled, rgb)

        return run
    raise EvaluationError(f"unknown method {method!r}; classical baselines: {', '.join(BASELINES)}")


def _save(rgb: np.ndarray, path: Path) -> None:
    with atomic_write(path) as f:
        Image.fromarray(rgb).save(f, format="PNG")


def predict_split(split: Path, out: Path, method: str | None = None, model: str | None = None,
                  batch_size: int = 4, device: str | None = None, rank: int = 0, world: int = 1,
                  progress: bool = True) -> dict[str, int]:
    """Write a prediction for every sample not done yet; returns counts (written, skipped)."""
    from tqdm import tqdm

    if (method is None) == (model is None):
        raise EvaluationError("give exactly one of --model SOURCE (a LaMa model) or --method NAME (a baseline)")
    samples = shard(list_samples(split), rank, world)
    todo = [s for s in samples if not (out / f"{s.name}.png").exists()]
    counts = {"written": 0, "skipped": len(samples) - len(todo)}
    bar = tqdm(total=len(todo), desc=f"predict {model or method}", unit="img", disable=not progress)
    if method is not None:
        run = classical(method)
        for s in todo:
            _save(run(read_rgb(s.image), read_mask(s.mask)), out / f"{s.name}.png")
            counts["written"] += 1
            bar.update()
        bar.close()
        return counts

    import torch

    import lama
    from lama.inpainter import composite_uint8

    inpainter = lama.load_model(model, device=device)
    i = 0
    while i < len(todo):
        # a batch holds consecutive samples of one size (the crops of a split share the preset's size)
        first = read_rgb(todo[i].image)
        batch = [(todo[i], first, read_mask(todo[i].mask))]
        i += 1
        while i < len(todo) and len(batch) < batch_size:
            rgb = read_rgb(todo[i].image)
            if rgb.shape != first.shape:
                break
            batch.append((todo[i], rgb, read_mask(todo[i].mask)))
            i += 1
        images = torch.from_numpy(np.stack([b[1] for b in batch])).permute(0, 3, 1, 2).float() / 255.0
        masks = torch.from_numpy(np.stack([b[2] for b in batch]))[:, None].float()
        pred = inpainter.predict_raw(images, masks)
        for (s, rgb, m), p in zip(batch, pred, strict=True):
            _save(composite_uint8(rgb, m, p), out / f"{s.name}.png")
            counts["written"] += 1
        bar.update(len(batch))
    bar.close()
    return counts
