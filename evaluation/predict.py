"""Predictions on a split: any ``lama.load_model`` source or a classical baseline, batched, resumable.

A split is a folder in the official layout (``x_crop000.png`` + ``x_crop000_mask000.png``); each
prediction is written under the mask's relative path with ``.png`` (the official evaluator's
``inpainted_suffix``), so that ``score`` pairs them the way ``bin/evaluate_predicts.py`` does.
Methods from elsewhere are scored straight from a folder of their outputs in the same layout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lama import CLASSICAL, Inpainter, atomic_write, inpaint_classical, read_mask, read_rgb, to_tensor
from lama.dist import shard

from .errors import EvaluationError

#: Classical baselines, by name (``lama.classical``).
BASELINES = CLASSICAL


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
        if method not in BASELINES:
            raise EvaluationError(f"unknown method {method!r}; classical baselines: {', '.join(BASELINES)}")
        for s in todo:
            _save(inpaint_classical(read_rgb(s.image), read_mask(s.mask), method), out / f"{s.name}.png")
            counts["written"] += 1
            bar.update()
        bar.close()
        return counts

    import torch

    inpainter = Inpainter.from_pretrained(model, device=device)
    # a few batches' worth at a time: predict_batch groups them by size (a split's crops share one size)
    for i in range(0, len(todo), batch_size * 8):
        group = todo[i: i + batch_size * 8]
        images = [to_tensor(read_rgb(s.image))[0] for s in group]
        masks = [torch.from_numpy(read_mask(s.mask))[None].float() for s in group]
        for s, result in zip(group, inpainter.predict_batch(images, masks, batch_size=batch_size, uint8=True),
                             strict=True):
            _save(result.permute(1, 2, 0).numpy(), out / f"{s.name}.png")
            counts["written"] += 1
        bar.update(len(group))
    bar.close()
    return counts
