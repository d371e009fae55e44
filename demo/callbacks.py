"""What the demo's buttons do, as plain functions of numpy arrays and file paths (tested without a browser).

Every user mistake becomes a ``UserInputError`` with a message for the person; the UI shows it with
``gr.Error``/``gr.Warning`` and the server carries on.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lama import atomic_write

from .backend import Backend, Settings


class UserInputError(Exception):
    """Bad input from the person using the demo; the message says what to do."""


@dataclass
class Photo:
    """The original upload at full resolution, and the smaller copy shown in the editor."""

    rgb: np.ndarray  # HxWx3 uint8, EXIF orientation applied
    display: np.ndarray  # at most editor_max_side on its longest side
    note: str = ""  # something the person should know (e.g. "first frame of an animation used")


def load_photo(path: str | os.PathLike | None, settings: Settings) -> Photo:
    """Read an upload; refuse what cannot be inpainted with a message that says why."""
    if not path:
        raise UserInputError("Upload a photo first.")
    note = ""
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                note = "This is an animated image; only its first frame is used."
            w, h = im.size
            _check_size(w, h, settings)
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            rgb = np.asarray(im.convert("RGB"))
    except UserInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise UserInputError(f"This file could not be read as an image ({type(e).__name__}). "
                             "Upload a PNG, JPEG or WebP photo.") from e
    return Photo(rgb=rgb, display=display_copy(rgb, settings.editor_max_side), note=note)


def _check_size(w: int, h: int, settings: Settings) -> None:
    if min(w, h) < settings.min_side:
        raise UserInputError(f"The photo is {w}x{h} pixels; upload one at least {settings.min_side} pixels on "
                             "each side.")
    if w * h > settings.max_megapixels * 1e6:
        raise UserInputError(f"The photo is {w}x{h} pixels ({w * h / 1e6:.1f} MP), over this demo's limit of "
                             f"{settings.max_megapixels:g} MP. Downscale it, or start the app with a higher "
                             "--max-megapixels.")


def display_copy(rgb: np.ndarray, max_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    s = max_side / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS))


def mask_from_editor(value: dict | None) -> np.ndarray | None:
    """The painted mask at the editor's resolution: the alpha of the painted layer(s); None if none."""
    if not value:
        return None
    layers = [np.asarray(layer) for layer in (value.get("layers") or []) if layer is not None]
    masks = [layer[..., 3] > 0 for layer in layers if layer.ndim == 3 and layer.shape[2] == 4]
    if not masks:
        return None
    out = masks[0].copy()
    for m in masks[1:]:
        if m.shape == out.shape:
            out |= m
    return out


def scale_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour scaling of a boolean mask to the original photo's size."""
    if mask.shape == (height, width):
        return mask
    rows = (np.arange(height) * mask.shape[0] // height).clip(0, mask.shape[0] - 1)
    cols = (np.arange(width) * mask.shape[1] // width).clip(0, mask.shape[1] - 1)
    return mask[rows[:, None], cols[None, :]]


def load_mask_file(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """An uploaded mask (white or opaque = fill). A different size with the same shape is scaled;
    a different shape is refused."""
    from lama import LamaError, read_mask

    try:
        with Image.open(path) as im:
            im.load()
            m = read_mask(im)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, LamaError) as e:
        raise UserInputError(f"The mask file could not be read as an image ({e}).") from e
    mh, mw = m.shape
    if (mh, mw) != (height, width):
        if abs(mw / mh - width / height) > 0.01:
            raise UserInputError(f"The mask is {mw}x{mh} pixels but the photo is {width}x{height}: upload a mask "
                                 "of the photo's size (or at least its shape).")
        m = scale_mask(m, height, width)
    return m


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    from lama import dilate_mask

    return dilate_mask(mask, int(pixels))


RESULT_MAX_AGE_S = 3600


def save_result(rgb: np.ndarray, folder: str | os.PathLike | None = None) -> str:
    """An image as a uniquely named PNG (written atomically), for downloads and outputs.

    Files, not arrays, go back to Gradio: it writes arrays into its cache under a content hash
    without a temp file, so two identical results at once can be served half-written. Files older
    than an hour are removed on the way.
    """
    folder = Path(folder or tempfile.gettempdir()) / "lama-demo"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in folder.glob("inpainted-*.png"):
        try:
            if now - old.stat().st_mtime > RESULT_MAX_AGE_S:
                old.unlink()
        except OSError:
            pass
    final = folder / f"inpainted-{secrets.token_hex(8)}.png"
    with atomic_write(final) as f:
        Image.fromarray(rgb).save(f, format="PNG", compress_level=1)  # fast; still lossless
    return str(final)


@dataclass
class Result:
    image: np.ndarray  # HxWx3 uint8, the original's size
    mask: np.ndarray
    message: str = ""  # a hint for the person (empty mask, scaled mask ...)


def inpaint(backend: Backend, photo: Photo, editor_value: dict | None, mask_path: str | None, dilate_px: int,
            strategy: str, progress: Callable[[Any], None] | None = None, session: str = "") -> Result:
    """The run button: mask from the uploaded file if any, else from the painting; fill; return."""
    h, w = photo.rgb.shape[:2]
    if mask_path:
        mask = load_mask_file(mask_path, h, w)
    else:
        painted = mask_from_editor(editor_value)
        mask = scale_mask(painted, h, w) if painted is not None else np.zeros((h, w), bool)
    mask = dilate(mask, dilate_px)
    if not mask.any():
        return Result(photo.rgb, mask, "The mask is empty, so the photo is unchanged: paint over what should "
                                       "disappear (or upload a mask) and run again.")
    return Result(backend.inpaint(photo.rgb, mask, strategy=strategy, progress=progress, session=session), mask)


def refine_status(p: Any) -> tuple[float, str]:
    """A refinement step (:class:`lama.refine.RefineProgress`) as a progress fraction and a line for the person."""
    done = (p.scale + p.iteration / max(1, p.n_iters)) / max(1, p.n_scales)
    if p.scale == 0:
        return done, f"Scale 1 of {p.n_scales}: plain inpainting at low resolution…"
    return done, f"Refining scale {p.scale + 1} of {p.n_scales}: step {p.iteration} of {p.n_iters - 1}…"
