"""Training and validation data: image lists, the official augmentation recipes, datasets and their collate.

Every training sample is a pure function of ``(seed, epoch, index)``: :meth:`TrainDataset.sample` derives
its augmentation and mask random streams from ``numpy.random.SeedSequence([seed, epoch, index])`` and
nothing else (not the worker, the process, the rank or the order in which samples are fetched), so a
resumed run and a run split over N processes see exactly the samples of a single uninterrupted run.
Validation samples (:class:`ValDataset`) are fixed: the same crop and mask for a file on every run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import LamaError
from ..io import IMAGE_EXTS, read_rgb
from ..masks import MASK_PRESETS, make_mask_generator

# albumentations 2 asks the network for a newer version at import; training machines are often offline
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
import albumentations as A  # noqa: E402

__all__ = ["TRANSFORM_VARIANTS", "TrainDataset", "ValDataset", "collate", "list_images", "make_transform",
           "resize_center_crop", "sample_seed_sequence"]

LOGGER = logging.getLogger(__name__)

#: The ``transform_variant`` names :func:`make_transform` knows (official ``get_transforms`` names).
TRANSFORM_VARIANTS = ("distortions", "default", "no_augs")


def list_images(root: str | os.PathLike) -> list[Path]:
    """Every image file (:data:`lama.io.IMAGE_EXTS`, any case) under ``root``, recursively, in a fixed order
    (sorted by the path relative to ``root``, so the order is the same on every machine)."""
    root = Path(root)
    if not root.is_dir():
        raise LamaError(f"image folder not found: {root}")
    files = [p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()]
    if not files:
        raise LamaError(f"no images found in {root} (looked recursively for {', '.join(sorted(IMAGE_EXTS))})")
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def make_transform(variant: str, out_size: int) -> A.Compose:
    """The official ``get_transforms(variant, out_size)`` in albumentations 2: uint8 HxWx3 in, float32
    out_size x out_size x 3 in [0, 1] out.

    * ``"distortions"`` (big-lama, lama-fourier: ``abl-04-256-mh-dist.yaml``): perspective, affine, pad,
      optical distortion, random crop, flip, CLAHE, brightness/contrast, hue/saturation/value.
    * ``"default"``: random scale +-20 %, pad, random crop, flip and the same colour jitter.
    * ``"no_augs"`` (the CelebA configs, whose images are already out_size): the official only converts to
      float; here a deterministic reflect-pad and centre crop make any other size out_size too (an identity
      on out_size x out_size images, as the official).

    Differences from the official (albumentations 0.5.2 + imgaug 0.4.0):

    * ``IAAPerspective2`` / ``IAAAffine2`` (imgaug) become ``A.Perspective`` / ``A.Affine``, which albumentations
      ported from imgaug with the same parametrisation; the values are the official ones (see the comments).
      The pixels differ slightly (interpolation details, random streams), not the distribution.
    * ``OpticalDistortion`` has no ``shift_limit`` in albumentations 2: the official also moved the distortion
      centre by up to +-5 % of the size; here it stays at the image centre (``distort_limit`` is the same 0.05).
    * albumentations 2 pads with zeros by default; ``PadIfNeeded`` and ``OpticalDistortion`` get the old
      default, ``cv2.BORDER_REFLECT_101``, explicitly.
    * the random numbers come from the per-sample generators :class:`TrainDataset` installs, not from
      imgaug's and albumentations' global state (which made the official runs unrepeatable).
    """
    if out_size < 1:
        raise LamaError(f"out_size must be positive, got {out_size}")
    pad = A.PadIfNeeded(min_height=out_size, min_width=out_size, border_mode=cv2.BORDER_REFLECT_101)
    crop = A.RandomCrop(height=out_size, width=out_size)
    colour = [
        A.HorizontalFlip(p=0.5),
        A.CLAHE(clip_limit=4.0, tile_grid_size=(8, 8), p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=30, val_shift_limit=5, p=0.5),
        A.ToFloat(max_value=255.0),
    ]
    if variant == "distortions":
        transforms = [
            # IAAPerspective2(scale=(0.0, 0.06)), p=0.5, mode="replicate": imgaug's PerspectiveTransform, which
            # A.Perspective reproduces (the std of each corner's shift drawn in scale, keep_size=True)
            A.Perspective(scale=(0.0, 0.06), keep_size=True, fit_output=False, interpolation=cv2.INTER_LINEAR,
                          border_mode=cv2.BORDER_REPLICATE, p=0.5),
            # IAAAffine2(scale=(0.7, 1.3), rotate=(-40, 40), shear=(-0.1, 0.1)), p=0.5, order=1, mode="reflect".
            # IAAAffine2 passes scale and shear to iaa.Affine as dicts {x: range, y: range}: x and y are drawn
            # independently (keep_ratio=False). imgaug's shear is in DEGREES, so the official shear is at most
            # 0.1 degree - practically none. A.Affine's shear is in degrees too, and we keep the official value
            # as is (reading it as a fraction, ~5.7 degrees, would be a different recipe). imgaug's mode
            # "reflect" (skimage naming) is cv2.BORDER_REFLECT_101, which imgaug used for its cv2 backend.
            A.Affine(scale={"x": (0.7, 1.3), "y": (0.7, 1.3)}, rotate=(-40, 40),
                     shear={"x": (-0.1, 0.1), "y": (-0.1, 0.1)}, keep_ratio=False, fit_output=False,
                     interpolation=cv2.INTER_LINEAR, border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            pad,
            # 0.5.2 defaults: distort_limit=0.05, interpolation linear, border reflect-101, p=0.5
            A.OpticalDistortion(distort_limit=0.05, interpolation=cv2.INTER_LINEAR,
                                border_mode=cv2.BORDER_REFLECT_101, p=0.5),
            crop,
            *colour,
        ]
    elif variant == "default":
        transforms = [A.RandomScale(scale_limit=0.2, interpolation=cv2.INTER_LINEAR, p=0.5), pad, crop, *colour]
    elif variant == "no_augs":
        transforms = [pad, A.CenterCrop(height=out_size, width=out_size), A.ToFloat(max_value=255.0)]
    else:
        raise LamaError(f"unknown transform variant {variant!r}; choose one of {', '.join(TRANSFORM_VARIANTS)}")
    return A.Compose(transforms, seed=0)  # seed only for construction; each sample installs its own streams


def sample_seed_sequence(seed: int, epoch: int, index: int) -> np.random.SeedSequence:
    """The root of every random draw of one training sample; nothing else feeds its randomness."""
    for name, v in (("seed", seed), ("epoch", epoch), ("index", index)):
        if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return np.random.SeedSequence([int(seed), int(epoch), int(index)])


def _random_mask_generator(preset: str):
    if preset not in MASK_PRESETS:
        raise LamaError(f"unknown mask preset {preset!r}; choose one of {', '.join(MASK_PRESETS)}")
    if MASK_PRESETS[preset]["generator_kind"] != "random":
        usable = ", ".join(k for k, v in MASK_PRESETS.items() if v["generator_kind"] == "random")
        raise LamaError(f"mask preset {preset!r} needs a segmentation model; the datasets take the random "
                        f"presets only ({usable})")
    return make_mask_generator(preset)


def draw_mask(generator, preset: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A size x size mask of ``preset``, drawn at the size the preset was made for (its strokes and boxes are in
    pixels: 256 for the training and *_256 presets) and resized with nearest, so that a smaller crop gets the
    same hole coverage rather than a mask that covers everything."""
    suffix = preset.rsplit("_", 1)[-1]
    native = int(MASK_PRESETS[preset].get("out_size") or (suffix if suffix.isdigit() else size))
    mask = generator(native, native, rng)
    if native != size:
        mask = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    return mask


def _read(path: Path) -> np.ndarray | None:
    try:
        return read_rgb(path)
    except (LamaError, OSError) as e:
        LOGGER.warning("skipping unreadable image %s: %s", path, e)
        return None


def _to_sample(img: np.ndarray, mask: np.ndarray, index: int) -> dict:
    image = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))
    mask_t = torch.from_numpy((np.asarray(mask) > 0.5).astype(np.float32)[None])
    return {"image": image, "mask": mask_t, "index": index}


class TrainDataset(Dataset):
    """The official ``InpaintingTrainDataset``: an augmented out_size crop of each file and one random mask.

    ``dataset[i]`` (for the epoch of :meth:`set_epoch`) and ``dataset.sample(i, epoch)`` give
    ``dict(image=float32 [3,H,W] in [0,1], mask=float32 [1,H,W] in {0,1} (1 = hole), index=i)``, or None
    when the file cannot be read (a warning names it; :func:`collate` drops and counts it).

    Determinism: a sample depends on ``(seed, epoch, index)`` only. Its SeedSequence is split in two: one
    child seeds the numpy Generator and the ``random.Random`` that every albumentations transform draws from
    (installed with ``Compose.set_random_state`` before each call), the other the mask generator. Note that
    DataLoader workers get a copy of the dataset when the iterator starts: call :meth:`set_epoch` before
    each ``iter(loader)`` and do not use ``persistent_workers=True`` (the workers would keep the old epoch).
    """

    def __init__(self, files: Sequence[str | os.PathLike], out_size: int = 256, transform: str = "distortions",
                 mask_preset: str = "train_random", seed: int = 0) -> None:
        self.files = [Path(f) for f in files]
        self.out_size = int(out_size)
        self.transform_variant = transform
        self.transform = make_transform(transform, self.out_size)
        self.mask_preset = mask_preset
        self.mask_generator = _random_mask_generator(mask_preset)
        sample_seed_sequence(seed, 0, 0)  # validates the seed
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        sample_seed_sequence(self.seed, epoch, 0)  # validates the epoch
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict | None:
        return self.sample(index, self.epoch)

    def sample(self, index: int, epoch: int) -> dict | None:
        """Sample ``index`` of ``epoch``: the same tensors whenever and wherever it is computed."""
        index = int(index)
        if not 0 <= index < len(self.files):
            raise IndexError(f"index {index} out of range for {len(self.files)} files")
        aug_ss, mask_ss = sample_seed_sequence(self.seed, epoch, index).spawn(2)
        img = _read(self.files[index])
        if img is None:
            return None
        py_seed = int.from_bytes(aug_ss.generate_state(2, np.uint32).tobytes(), "little")
        self.transform.set_random_state(np.random.default_rng(aug_ss), random.Random(py_seed))
        out = self.transform(image=img)["image"]
        mask = draw_mask(self.mask_generator, self.mask_preset, self.out_size, np.random.default_rng(mask_ss))
        return _to_sample(out, mask, index)


def _name_seed(name: str) -> int:
    """A seed from a file name that is the same on every machine and run (``hash()`` is salted per process)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (INTER_AREA) and cut the centred ``size`` x ``size`` square."""
    h, w = img.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(img[top:top + size, left:left + size])


class ValDataset(Dataset):
    """Fixed validation samples: each file resized (short side ``size``, INTER_AREA), centre-cropped to
    ``size`` x ``size``, with a mask of an evaluation preset drawn from a seed made of the file's name (and
    ``seed``), so every run on every machine scores the same pairs. Items as :class:`TrainDataset`'s; None
    for an unreadable file."""

    def __init__(self, files: Sequence[str | os.PathLike], size: int = 256,
                 mask_preset: str = "random_medium_256", seed: int = 0) -> None:
        if size < 1:
            raise LamaError(f"size must be positive, got {size}")
        self.files = [Path(f) for f in files]
        self.size = int(size)
        self.mask_preset = mask_preset
        self.mask_generator = _random_mask_generator(mask_preset)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict | None:
        index = int(index)
        path = self.files[index]
        img = _read(path)
        if img is None:
            return None
        img = resize_center_crop(img, self.size).astype(np.float32) / 255.0
        rng = np.random.default_rng([self.seed, _name_seed(path.name)])
        mask = draw_mask(self.mask_generator, self.mask_preset, self.size, rng)
        return _to_sample(img, mask, index)


def collate(samples: Sequence[dict | None]) -> tuple[dict | None, int]:
    """(batch, n_skipped): the None entries (unreadable files) dropped and counted, the rest stacked into
    ``image`` [B,3,H,W], ``mask`` [B,1,H,W] and ``index`` [B] (int64); batch is None when all were None."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if not kept:
        return None, skipped
    batch = {
        "image": torch.stack([s["image"] for s in kept]),
        "mask": torch.stack([s["mask"] for s in kept]),
        "index": torch.as_tensor([int(s["index"]) for s in kept], dtype=torch.int64),
    }
    return batch, skipped
