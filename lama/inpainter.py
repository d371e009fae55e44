"""Inference: image and mask in, filled image out, with the official pre- and post-processing.

The official ``predict.py`` pads the bottom/right edges to a multiple of 8 with symmetric padding,
runs the generator on ``cat(image * (1 - mask), mask)``, crops back and converts to 8 bits by
truncation (``clip(x * 255).astype(uint8)``); :class:`Inpainter` does the same, and pixels outside
the mask are copied from the input, so they come back bit-identical.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import LamaError

ImageLike = str | os.PathLike | Image.Image | np.ndarray
PAD_MODULO = 8
MIN_SIZE = 16  # the bottleneck must be at least 2x2 for the blocks' reflect padding
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# Reading images and masks


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


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow the mask by ``pixels`` in every direction (square structuring element)."""
    if isinstance(pixels, bool) or not isinstance(pixels, int | np.integer) or pixels < 0:
        raise LamaError(f"dilate must be a whole number of pixels >= 0, got {pixels!r}")
    if pixels == 0 or not mask.any():
        return mask
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.max_pool2d(t, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return t[0, 0].numpy() > 0


# ---------------------------------------------------------------------------------------------
# Tensors


def pad_to_modulo(x: torch.Tensor, modulo: int = PAD_MODULO, min_size: int = MIN_SIZE) -> torch.Tensor:
    """Symmetric padding of the bottom/right edges to a multiple of ``modulo`` (as ``np.pad(mode='symmetric')``)."""
    h, w = x.shape[-2:]
    th = max(min_size, -(-h // modulo) * modulo)
    tw = max(min_size, -(-w // modulo) * modulo)
    while x.shape[-2] < th:  # symmetric: the edge row is repeated, then the rows before it
        x = torch.cat([x, x.flip(-2)[..., : th - x.shape[-2], :]], dim=-2)
    while x.shape[-1] < tw:
        x = torch.cat([x, x.flip(-1)[..., :, : tw - x.shape[-1]]], dim=-1)
    return x


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"cpu" -> CPU; "auto" -> CUDA, else MPS, else CPU; anything else as torch reads it."""
    if device is None:
        return torch.device("cpu")
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise LamaError(f"unknown device {device!r}: {e}") from e
    if dev.type not in ("cpu", "cuda", "mps"):
        raise LamaError(f"device {device!r} is not supported; use cpu, cuda, mps or auto")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LamaError("device 'cuda' was asked for but CUDA is not available; use device='cpu' or 'auto'")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise LamaError("device 'mps' was asked for but MPS is not available; use device='cpu' or 'auto'")
    return dev


# ---------------------------------------------------------------------------------------------
# The inpainter


class Inpainter:
    """Runs a LaMa generator on images of any size; ``Inpainter.generator`` is the ``nn.Module``."""

    def __init__(self, generator: torch.nn.Module, device: str | torch.device | None = None,
                 dtype: torch.dtype | str | None = None, config: dict[str, Any] | None = None, source: str = "",
                 fast: bool = True):
        self.device = resolve_device(device)
        if isinstance(dtype, str):  # "bfloat16", "float16", "float32" from a CLI or config
            dtype = _DTYPES.get(dtype.removeprefix("torch."))
            if dtype is None:
                raise LamaError(f"dtype must be one of {', '.join(_DTYPES)}")
        self.dtype = dtype or torch.float32
        if self.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise LamaError(f"dtype must be float32, float16 or bfloat16, not {self.dtype}")
        if self.dtype == torch.float16 and self.device.type == "cpu":
            raise LamaError("float16 is for GPUs; on the CPU use dtype=torch.bfloat16 or float32")
        self.generator = generator.eval().to(self.device, self.dtype)
        self.config = config or {}
        self.source = source
        # The fast path (lama.fast) computes the same function; the generator stays the reference.
        self.fast = None
        if fast:
            from .fast import FastGenerator, supports

            if supports(generator):
                self.fast = FastGenerator(generator).to(self.device, self.dtype)

    def __repr__(self) -> str:
        return (f"Inpainter(source={self.source!r}, device={self.device}, dtype={self.dtype}, "
                f"fast={self.fast is not None})")

    @torch.inference_mode()
    def predict_raw(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The generator's output (before compositing), float32 [B,3,H,W] on the input's device."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise LamaError(f"images must be [B,3,H,W]; got {tuple(images.shape)}")
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0] \
                or masks.shape[-2:] != images.shape[-2:]:
            raise LamaError(f"masks must be [B,1,H,W] matching images {tuple(images.shape)}; got {tuple(masks.shape)}")
        h, w = images.shape[-2:]
        img = images.to(self.device, torch.float32)
        m = (masks.to(self.device, torch.float32) > 0.5).float()
        x = pad_to_modulo(torch.cat([img * (1 - m), m], dim=1)).to(self.dtype)
        del img, m  # large photos: nothing but the network's input stays alive during the forward pass
        net = self.fast if self.fast is not None else self.generator
        pred = net(x)[..., :h, :w].float()
        return pred.to(images.device)

    def predict_batch(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Composited result ``mask * pred + (1 - mask) * image`` for float images in [0, 1]."""
        pred = self.predict_raw(images, masks)
        m = (masks.to(pred.device) > 0.5).float()
        return m * pred + (1 - m) * images.float()

    def __call__(self, image: ImageLike, mask: ImageLike, dilate: int = 0, strategy: str = "crop") -> np.ndarray:
        """Fill ``mask`` in ``image``: HxWx3 uint8 (HxWx4 with the input's alpha kept).

        ``strategy`` (IOPaint's semantics) decides what the network sees of a large photo:
        "original" the whole image; "resize" the image shrunk to ``resize_limit`` on its longest side,
        the fill scaled back up; "crop" (default) one crop per connected mask region, grown by
        ``crop_margin``, when the longest side exceeds ``crop_trigger``. Only masked pixels change.
        """
        if strategy not in STRATEGIES:
            raise LamaError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        rgb, alpha = read_image(image)
        m = dilate_mask(read_mask(mask, rgb.shape[:2]), dilate)
        out = rgb.copy()
        if m.any():
            longest = max(m.shape)
            if strategy == "resize" and longest > self.resize_limit:
                out = self._fill_resized(rgb, m)
            elif strategy == "crop" and longest > self.crop_trigger:
                out = self._fill_crops(rgb, m)
            else:
                out = self._fill(rgb, m)
        return out if alpha is None else np.dstack([out, alpha])

    resize_limit = 1280
    crop_trigger = 800
    crop_margin = 128

    def _fill(self, rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        pred = self.predict_raw(to_tensor(rgb), torch.from_numpy(np.array(m))[None, None].float())
        return composite_uint8(rgb, m, pred[0])

    def _fill_resized(self, rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        import cv2

        h, w = m.shape
        scale = self.resize_limit / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        # any coverage of a small pixel makes it a hole, so thin strokes survive the shrink
        small_m = cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        filled = cv2.resize(self._fill(small, small_m), (w, h), interpolation=cv2.INTER_CUBIC)
        out = rgb.copy()
        out[m] = filled[m]
        return out

    def _fill_crops(self, rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        out = rgb.copy()
        for top, bottom, left, right in crop_boxes(m, self.crop_margin):
            crop_m = m[top:bottom, left:right]
            filled = self._fill(rgb[top:bottom, left:right], crop_m)
            region = out[top:bottom, left:right]
            region[crop_m] = filled[crop_m]
        return out


STRATEGIES = ("crop", "resize", "original")


def crop_boxes(mask: np.ndarray, margin: int) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) boxes around the connected mask regions, grown by ``margin``, shifted
    inward at the image borders, and merged where they overlap (one model run per box)."""
    import cv2

    h, w = mask.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, bw, bh, _area in stats[1:n]:
        boxes.append(_grow(int(y), int(y + bh), h, margin) + _grow(int(x), int(x + bw), w, margin))
    merged = True
    while merged:  # union of overlapping boxes until none overlap
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]:
                    boxes[i] = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _grow(start: int, stop: int, size: int, margin: int) -> tuple[int, int]:
    """Grow [start, stop) by ``margin`` on both sides; at a border, shift the window inward."""
    lo, hi = start - margin, stop + margin
    if lo < 0:
        hi, lo = hi - lo, 0
    if hi > size:
        lo, hi = lo - (hi - size), size
    return max(0, lo), min(size, hi)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> [1,3,H,W] float in [0,1]."""
    if not rgb.flags.writeable:  # arrays that view PIL's buffer; torch warns on read-only memory
        rgb = rgb.copy()
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0


def composite_uint8(rgb: np.ndarray, mask: np.ndarray, pred: torch.Tensor) -> np.ndarray:
    """Masked pixels from ``pred`` ([3,H,W] in [0,1], to 8 bits by truncation as the official
    ``predict.py``), every other pixel copied from ``rgb`` bit for bit."""
    pred8 = (pred.permute(1, 2, 0).clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    out = rgb.copy()
    out[mask] = pred8[mask]
    return out


def load_model(source: str | os.PathLike | None = None, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None, preset: str | None = None, fast: bool = True) -> Inpainter:
    """Load LaMa weights from any published format (see :func:`lama.checkpoint.load_generator`).

    ``source``: a big-lama.zip or its unpacked folder, a .ckpt, .safetensors, TorchScript .pt, a Hub
    reference ``owner/repo[/file]`` or a preset name; default ``$LAMA_MODEL``, else ``big-lama``.
    """
    from .checkpoint import load_generator

    loaded = load_generator(source, preset=preset)
    return Inpainter(loaded.generator, device=device, dtype=dtype, config=loaded.config, source=loaded.source,
                     fast=fast)


def save_image(arr: np.ndarray, path: str | os.PathLike, quality: int = 95) -> None:
    """Write atomically (temp file + rename); the format follows the extension (JPEG at ``quality``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise LamaError(f"unknown image format for {path}")
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    tmp = path.with_name(f".{path.name}.tmp")
    kwargs = {"quality": quality, "subsampling": 0} if fmt == "JPEG" else {}
    img.save(tmp, format=fmt, **kwargs)
    os.replace(tmp, path)
