"""Files in and out, one way for the whole project: reading images and masks, writing atomically.

Everything a user can get wrong here (a missing file, a corrupt image, a mask of the wrong size)
raises :class:`~lama.errors.LamaError` with a message that says what to do.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import LamaError

ImageLike = str | os.PathLike | Image.Image | np.ndarray
#: The image files the command line, the evaluation splits and the scorer look for.
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file beside ``path``; on success flush, fsync and rename it over ``path``, on failure
    remove it. A crash or a concurrent reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 (not mkstemp's 0o600): the file gets the permissions the umask gives any new file
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"newline": "", "encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _open(src: str | os.PathLike, what: str) -> Image.Image:
    try:
        img = Image.open(src)
        img.load()
    except FileNotFoundError as e:
        raise LamaError(f"{what} file not found: {src}") from e
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise LamaError(f"cannot read {what} {src}: not an image or a corrupt file ({e})") from e
    return ImageOps.exif_transpose(img)


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """8-bit HxW, HxWx3 or HxWx4 array from any PIL mode (16-bit and float scaled down)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if img.mode == "F":
        return _array_to_uint8(np.asarray(img, dtype=np.float32))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "PA"):
        img = img.convert("RGBA")
    elif img.mode not in ("L", "RGB", "RGBA", "1"):
        img = img.convert("RGB")
    if img.mode == "1":
        img = img.convert("L")
    return np.asarray(img)


def _array_to_uint8(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise LamaError("image array contains NaN or infinity")
        scale = 1.0 if a.size and a.max() > 1.0 else 255.0  # floats in [0, 1], or already 0..255
        return np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        return np.clip(a, 0, 255).astype(np.uint8)
    raise LamaError(f"unsupported image array dtype {a.dtype}")


def read_image(src: ImageLike) -> tuple[np.ndarray, np.ndarray | None]:
    """(HxWx3 uint8 RGB, HxW uint8 alpha or None) from a path, PIL image or numpy array."""
    if isinstance(src, str | os.PathLike):
        src = _open(src, "image")
    if isinstance(src, Image.Image):
        try:
            a = _pil_to_array(src)
        except (OSError, ValueError, TypeError) as e:  # truncated data, modes PIL cannot convert
            raise LamaError(f"cannot read image: {e}") from e
    elif isinstance(src, np.ndarray):
        a = _array_to_uint8(src)
    else:
        raise LamaError(f"image must be a path, PIL image or numpy array, not {type(src).__name__}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise LamaError(f"image must be HxW, HxWx3 or HxWx4; got shape {tuple(a.shape)}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise LamaError(f"image is empty (shape {tuple(a.shape)})")
    alpha = a[..., 3].copy() if a.shape[2] == 4 else None
    return np.ascontiguousarray(a[..., :3]), alpha


def read_rgb(src: ImageLike) -> np.ndarray:
    """HxWx3 uint8 RGB (any alpha dropped)."""
    return read_image(src)[0]


def read_mask(src: ImageLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """HxW bool mask (True = fill) from bool, 0/1, 0/255, float [0,1] data or an RGBA image's alpha.

    Values above half the range mean "fill". ``size`` = (H, W) of the image it must match.
    """
    if isinstance(src, str | os.PathLike):
        src = _open(src, "mask")
    if isinstance(src, Image.Image):
        try:
            if src.mode in ("RGBA", "LA", "PA") or (src.mode == "P" and "transparency" in src.info):
                src = np.asarray(src.convert("RGBA"))  # alpha is the mask, unless it is uniform (below)
            elif src.mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
                src = np.asarray(src)  # raw values: 0/1 and 0/255 masks are both common
            else:
                src = np.asarray(src.convert("RGB"))
        except (OSError, ValueError, TypeError) as e:
            raise LamaError(f"cannot read mask: {e}") from e
    if isinstance(src, np.ndarray):
        a = src
        if a.size == 0:
            raise LamaError(f"mask is empty (shape {tuple(a.shape)})")
        if a.ndim == 3 and a.shape[2] == 4:
            # The alpha is the mask (a painted layer); an opaque RGBA file carries it in its colours.
            a = a[..., 3] if a[..., 3].min() != a[..., 3].max() else a[..., :3].max(axis=2)
        elif a.ndim == 3 and a.shape[2] in (1, 3):
            a = a.max(axis=2)
        if a.ndim != 2:
            raise LamaError(f"mask must be HxW (or an HxWx4 image whose alpha is the mask); got {tuple(src.shape)}")
        if a.dtype == bool:
            m = a
        elif np.issubdtype(a.dtype, np.floating):
            m = a > (0.5 if a.size == 0 or a.max() <= 1.0 else 127.5)
        elif a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.max() > 255):
            m = a > (0 if a.max() <= 1 else 32767)
        elif np.issubdtype(a.dtype, np.integer):
            m = a > (0 if a.max() <= 1 else 127)
        else:
            raise LamaError(f"unsupported mask dtype {a.dtype}")
    else:
        raise LamaError(f"mask must be a path, PIL image or numpy array, not {type(src).__name__}")
    if size is not None and tuple(m.shape) != tuple(size):
        raise LamaError(f"mask size {m.shape[1]}x{m.shape[0]} does not match the image size "
                        f"{size[1]}x{size[0]} (width x height); resize the mask to the image")
    return np.ascontiguousarray(m)


def to_tensor(rgb: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 (or several of one size, or BxHxWx3) -> [B,3,H,W] float in [0,1] (B = 1 for one image)."""
    if isinstance(rgb, list):
        rgb = np.stack(rgb)
    if not rgb.flags.writeable:  # arrays that view PIL's buffer; torch warns on read-only memory
        rgb = rgb.copy()
    batch = np.ascontiguousarray(rgb if rgb.ndim == 4 else rgb[None])
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 255.0


def save_image(arr: np.ndarray, path: str | os.PathLike, quality: int = 95) -> None:
    """Write atomically (temp file + rename); the format follows the extension (JPEG at ``quality``)."""
    path = Path(path)
    img = Image.fromarray(arr)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise LamaError(f"unknown image format for {path}")
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    kwargs = {"quality": quality, "subsampling": 0} if fmt == "JPEG" else {}
    with atomic_write(path) as f:
        img.save(f, format=fmt, **kwargs)
