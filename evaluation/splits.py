"""Evaluation splits: the official ``bin/gen_mask_dataset.py`` recipe, seeded, resumable, parallel.

For each source photo: resize so that the short side is the preset's size (bicubic), draw the
preset's mask variants, take a random square crop around each, drop masks covering more than
``max_tamper_area``, keep up to ``max_masks_per_image``, and write ``NAME_crop000.png`` with
``NAME_crop000_mask000.png``. The official tool draws from the global RNG; here every image gets its
own generator seeded from (seed, relative path), so a split is the same on any machine, in any
order, with any number of processes, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lama import IMAGE_EXTS, atomic_write

from .errors import EvaluationError

MAX_ATTEMPTS = 10  # the official tool retries an image this many times before giving up

#: Real photos that ship inside installed packages: the offline sample split (licences in README).
SAMPLE_PHOTOS = {
    "skimage": ["data/astronaut.png", "data/chelsea.png", "data/coffee.png", "data/rocket.jpg",
                "data/motorcycle_left.png", "data/motorcycle_right.png", "data/camera.png"],
    "matplotlib": ["mpl-data/sample_data/grace_hopper.jpg"],
}

#: Where the paper's test sets come from, for users with their own copies.
DATASETS = {
    "places": "Places365-Standard `val_large` (36,500 images); the paper evaluates on a 30,000-image sample "
              "(`python -m evaluation sample-places`), masks at 512 (narrow = random_thin_512, wide = "
              "random_thick_512, medium = random_medium_512) and segm.",
    "celebahq": "CelebA-HQ 256x256 (30,000 images, renamed 0.jpg ... 29999.jpg as the official "
                "fetch_data/celebahq_dataset_prepare.sh does); the paper evaluates on 2,000 validation "
                "images (`python -m evaluation sample-celebahq`), masks at 256.",
}


class SplitError(EvaluationError):
    """A problem with the user's folders or files for a split."""


def image_seed(seed: int, relpath: str) -> np.random.Generator:
    """A generator that depends only on the split seed and the image's relative path."""
    digest = hashlib.sha256(relpath.replace(os.sep, "/").encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise SplitError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _save_png(img: Image.Image, path: Path) -> None:
    with atomic_write(path) as f:
        img.save(f, format="PNG")


def resize_short_side(image: Image.Image, size: int, small_mode: str = "drop") -> Image.Image | None:
    """The official scaling: short side to ``size`` (bicubic, rounded); smaller images dropped or upscaled."""
    if min(image.size) < size and small_mode == "drop":
        return None
    factor = size / min(image.size)
    out = tuple(int(v) for v in (np.array(image.size) * factor).round())
    return image.resize(out, resample=Image.BICUBIC)


@dataclass
class PrepareJob:
    src: Path
    relpath: str
    out_dir: Path
    preset: str
    seed: int


def _outputs(job: PrepareJob) -> Path:
    return job.out_dir / Path(job.relpath).with_suffix("")


def _done(job: PrepareJob) -> bool:
    base = _outputs(job)
    return any(base.parent.glob(f"{base.name}_crop000_mask000.png")) and \
        (base.parent / f"{base.name}_crop000.png").exists()


def prepare_one(job: PrepareJob, mask_factory: Callable | None = None) -> str:
    """Make the masked crops of one photo; returns "done", "skipped", "small" or an error message."""
    from lama.masks import DATA_GEN_PRESETS, make_mask_generator, propose_random_square_crop

    if _done(job):
        return "skipped"
    cfg = DATA_GEN_PRESETS[job.preset]
    crop_cfg = cfg["cropping"]
    try:
        with Image.open(job.src) as im:
            image = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"{job.src}: cannot read ({e})"
    image = resize_short_side(image, crop_cfg["out_min_size"], crop_cfg.get("handle_small_mode", "drop"))
    if image is None:
        return "small"
    rng = image_seed(job.seed, job.relpath)
    gen = mask_factory() if mask_factory else make_mask_generator(job.preset)
    max_area = cfg.get("max_tamper_area", 1.0)
    w, h = image.size
    for _ in range(MAX_ATTEMPTS):
        pairs = []
        masks = gen.get_masks(h, w, rng, image=np.asarray(image))  # random kinds ignore the photo
        for mask in masks:
            crop_img = image
            if crop_cfg.get("out_square_crop", True):
                left, top, right, bottom = propose_random_square_crop(
                    mask, rng, min_overlap=crop_cfg.get("crop_min_overlap", 0.5))
                mask = mask[top:bottom, left:right]
                crop_img = image.crop((left, top, right, bottom))
            if mask.mean() > max_area:  # the official filter (it keeps empty masks too)
                continue
            pairs.append((crop_img, mask))
        if not pairs:
            continue
        keep = rng.choice(len(pairs), size=min(len(pairs), cfg.get("max_masks_per_image", 1)), replace=False)
        base = _outputs(job)
        base.parent.mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(keep):
            crop_img, mask = pairs[idx]
            name = f"{base.name}_crop{i:03d}"
            # the mask first: a crop counts as done only once both files exist
            _save_png(Image.fromarray(np.clip(mask * 255, 0, 255).astype(np.uint8), mode="L"),
                      base.parent / f"{name}_mask{i:03d}.png")
            _save_png(crop_img, base.parent / f"{name}.png")
        return "done"
    return f"{job.src}: no mask passed the filters in {MAX_ATTEMPTS} attempts"


def _run(job: PrepareJob) -> str:
    return prepare_one(job)


def prepare_split(preset: str, images: Path, out: Path, seed: int = 0, jobs: int = 1,
                  progress: bool = True) -> dict[str, int | list[str]]:
    """Run the recipe over every image under ``images``; returns counts and the errors."""
    from tqdm import tqdm

    from lama.masks import DATA_GEN_PRESETS, TRAIN_PRESETS

    if preset not in DATA_GEN_PRESETS:  # training presets have no crop/filter recipe: evaluation splits only
        kind = "training-only (not evaluation)" if preset in TRAIN_PRESETS else "unknown"
        raise SplitError(f"{kind} preset {preset!r}; known: {', '.join(sorted(DATA_GEN_PRESETS))}")
    files = list_images(images)
    if not files:
        raise SplitError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) under {images}")
    out.mkdir(parents=True, exist_ok=True)
    todo = [PrepareJob(p, str(p.relative_to(images)), out, preset, seed) for p in files]
    counts: dict[str, int | list[str]] = {"done": 0, "skipped": 0, "small": 0, "errors": []}

    def record(results: Iterable[str]) -> None:
        for r in tqdm(results, total=len(todo), desc=f"prepare {preset}", unit="img", disable=not progress):
            if r in ("done", "skipped", "small"):
                counts[r] += 1
            else:
                counts["errors"].append(r)

    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            record(pool.map(_run, todo, chunksize=4))
    else:
        record(map(_run, todo))
    return counts


def copy_sample_photos(out: Path) -> list[Path]:
    """Copy the real photos that ship inside installed packages into ``out`` (the offline sample)."""
    import importlib.util

    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for pkg, rels in SAMPLE_PHOTOS.items():
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            continue
        root = Path(next(iter(spec.submodule_search_locations)))
        for rel in rels:
            src = root / rel
            if src.is_file():
                dst = out / f"{pkg}_{src.name}"
                if not dst.exists():
                    shutil.copyfile(src, dst)
                copied.append(dst)
    if not copied:
        raise SplitError("no sample photos found: install scikit-image or matplotlib (requirements-eval.txt)")
    return copied


def sample_files(files: list[str], n: int, seed: int) -> list[str]:
    """The official samplers shuffle a file list and keep the first ``n``; here sorted first, then seeded."""
    files = sorted(files)
    random.Random(seed).shuffle(files)
    return files[:n]


def sample_places(val_dir: Path, out: Path, seed: int = 0, n: int = 30_000) -> list[Path]:
    """The paper's Places evaluation images: ``n`` of ``val_large`` (fetch_data/eval_sampler.py's rule)."""
    names = [p.name for p in list_images(val_dir)]
    if len(names) < n:
        raise SplitError(f"{val_dir} has {len(names)} images; Places365 val_large has 36,500 and the paper "
                         f"samples {n}")
    return _copy_selected(val_dir, sample_files(names, n, seed), out)


def sample_celebahq(images_dir: Path, out: Path, seed: int = 0, n: int = 2_000) -> list[Path]:
    """The paper's CelebA-HQ validation images: ``n`` of the 28,000 not in the official visual-test list."""
    visual = set((Path(__file__).parent / "data" / "celebahq_visual_test.flist").read_text().split())
    names = sorted(p.name for p in list_images(images_dir))
    pool = [x for x in names if x not in visual]
    if len(pool) < n:
        raise SplitError(f"{images_dir} has {len(names)} images ({len(pool)} outside the visual-test list); "
                         "expected CelebA-HQ 256 renamed 0.jpg ... 29999.jpg")
    return _copy_selected(images_dir, sample_files(pool, n, seed), out)


def _copy_selected(src_dir: Path, names: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for name in names:
        dst = out / name
        if not dst.exists():
            shutil.copyfile(src_dir / name, dst)
        result.append(dst)
    return result
