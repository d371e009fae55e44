"""Inference: image and mask in, filled image out, with the official pre- and post-processing.

The official ``predict.py`` pads the bottom/right edges to a multiple of 8 with symmetric padding,
runs the generator on ``cat(image * (1 - mask), mask)``, crops back and converts to 8 bits by
truncation (``clip(x * 255).astype(uint8)``); :class:`Inpainter` does the same, and pixels outside
the mask are copied from the input, so they come back bit-identical.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LamaError
from .io import ImageLike, read_image, read_mask, save_image, to_tensor  # noqa: F401 (public here too)

PAD_MODULO = 8
MIN_SIZE = 16  # the bottleneck must be at least 2x2 for the blocks' reflect padding
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------
# Masks


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


def native_bf16_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True where the CPU computes bf16 natively (Intel AMX or AVX512-BF16, read from Linux's ``cpuinfo``): there
    bf16 inference is faster than fp32; elsewhere it is emulated and slower."""
    try:
        with open(cpuinfo) as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def auto_dtype(device: torch.device) -> torch.dtype:
    """``dtype="auto"``: float16 on CUDA, bfloat16 on a CPU with native bf16, else float32."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and native_bf16_cpu():
        return torch.bfloat16
    return torch.float32


class Inpainter:
    """Runs a LaMa generator on images of any size; ``Inpainter.generator`` is the ``nn.Module``."""

    def __init__(self, generator: torch.nn.Module, device: str | torch.device | None = None,
                 dtype: torch.dtype | str | None = None, config: dict[str, Any] | None = None, source: str = "",
                 fast: bool = True):
        self.device = resolve_device(device)
        if dtype == "auto":
            dtype = auto_dtype(self.device)
        elif isinstance(dtype, str):  # "bfloat16", "float16", "float32" from a CLI or config
            dtype = _DTYPES.get(dtype.removeprefix("torch."))
            if dtype is None:
                raise LamaError(f"dtype must be one of {', '.join(_DTYPES)} or auto")
        self.dtype = dtype or torch.float32
        if self.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise LamaError(f"dtype must be float32, float16 or bfloat16, not {self.dtype}")
        if self.dtype == torch.float16 and self.device.type == "cpu":
            raise LamaError("float16 is for GPUs; on the CPU use dtype=torch.bfloat16 or float32")
        self.config = config or {}
        self.source = source
        # The fast path (lama.fast) computes the same function; the generator stays the reference. It is
        # built before the generator changes dtype, so BatchNorm is folded at the weights' own precision.
        self.fast = None
        generator = generator.eval()
        if fast:
            from .fast import FastGenerator, supports

            if supports(generator):
                from .kernel_choice import choose_kernel

                kernel = choose_kernel(generator, self.dtype, self.device)
                self.fast = FastGenerator(generator, kernel=kernel, dtype=self.dtype).to(self.device)
        self.generator = generator.to(self.device, self.dtype)

    def __repr__(self) -> str:
        return (f"Inpainter(source={self.source!r}, device={self.device}, dtype={self.dtype}, "
                f"fast={self.fast.extra_repr().removeprefix('kernel=') if self.fast is not None else 'off'})")

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
        x = pad_to_modulo(torch.cat([img * (1 - m), m], dim=1))
        del img, m  # large photos: nothing but the network's input stays alive during the forward pass
        if self.fast is None:
            x = x.to(self.dtype)
            pred = self.generator(x)
        else:
            # channels-last, as the fast path runs (not copied again beside this one: 32 MB at a 2048x2048 bf16
            # input, where the head is the peak), and handed over with no reference kept: freed after the head
            inputs = [x.to(self.dtype, memory_format=torch.channels_last)]
            del x
            pred = self.fast.run(inputs)
        return pred[..., :h, :w].float().to(images.device)

    @classmethod
    def from_pretrained(cls, source: str | os.PathLike | None = None, **kwargs: Any) -> Inpainter:
        """The diffusers-style name of :func:`load_model` (same arguments)."""
        return load_model(source, **kwargs)

    def predict_batch(self, images: torch.Tensor | Sequence[torch.Tensor], masks: torch.Tensor | Sequence[torch.Tensor],
                      batch_size: int | None = None, uint8: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """Composited result ``mask * pred + (1 - mask) * image`` for float images in [0, 1].

        ``images`` [B,3,H,W] and ``masks`` [B,1,H,W] give a [B,3,H,W] tensor; lists of [3,H,W] and [1,H,W]
        tensors of any sizes give a list, in order (grouped by size to run). ``batch_size``: images per network
        run (default: all of a size at once). ``uint8``: the official 8-bit result, masked pixels truncated as
        the official ``predict.py`` does and every other pixel the input's own 8-bit value.
        """
        if isinstance(images, torch.Tensor):
            return self._composite(images, masks, batch_size, uint8)
        if len(images) != len(masks):
            raise LamaError(f"got {len(images)} images but {len(masks)} masks")
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
            if image.ndim != 3 or mask.ndim != 3:
                raise LamaError(f"list items must be [3,H,W] images and [1,H,W] masks; item {i} is "
                                f"{tuple(image.shape)} and {tuple(mask.shape)}")
            by_size.setdefault(tuple(image.shape), []).append(i)
        out: list[torch.Tensor] = [torch.empty(0)] * len(images)
        for idx in by_size.values():
            done = self._composite(torch.stack([images[i] for i in idx]), torch.stack([masks[i] for i in idx]),
                                   batch_size, uint8)
            for i, result in zip(idx, done, strict=True):
                out[i] = result
        return out

    def _composite(self, images: torch.Tensor, masks: torch.Tensor, batch_size: int | None,
                   uint8: bool) -> torch.Tensor:
        step = max(1, batch_size or len(images))
        parts = []
        for i in range(0, len(images), step):
            image = images[i: i + step]
            pred = self.predict_raw(image, masks[i: i + step])
            m = masks[i: i + step].to(pred.device) > 0.5
            image = image.to(pred.device).float()
            if uint8:  # truncation, as the official predict.py; inputs are k/255, which round back to k exactly
                parts.append(torch.where(m, (pred.clamp(0, 1) * 255).to(torch.uint8),
                                         (image * 255).round().to(torch.uint8)))
            else:
                m = m.float()
                parts.append(m * pred + (1 - m) * image)
        return torch.cat(parts) if parts else images.new_empty((0, 3, *images.shape[-2:]))

    def __call__(self, image: ImageLike, mask: ImageLike, dilate: int = 0, strategy: str = "crop",
                 progress: Callable[[Any], None] | None = None) -> np.ndarray:
        """Fill ``mask`` in ``image``: HxWx3 uint8 (HxWx4 with the input's alpha kept).

        ``strategy`` (IOPaint's semantics) decides what the network sees of a large photo:
        "original" the whole image; "resize" the image shrunk to ``resize_limit`` on its longest side,
        the fill scaled back up; "crop" (default) one crop per connected mask region, grown by
        ``crop_margin``, when the longest side exceeds ``crop_trigger``. "refine" is "original" with the
        multi-scale refinement (:mod:`lama.refine`, the ``refine_*`` settings; slower, sharper on large photos),
        "crop+refine" refines each crop, grown to at least two pyramid scales (about 725 px a side).
        ``progress`` gets the refinement's :class:`lama.refine.RefineProgress`
        steps; an exception raised there cancels it. Only masked pixels change.
        """
        if strategy not in STRATEGIES:
            raise LamaError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        rgb, alpha = read_image(image)
        m = dilate_mask(read_mask(mask, rgb.shape[:2]), dilate)
        out = rgb.copy()
        fill = self._fill
        if strategy.endswith("refine"):
            fill = functools.partial(self._fill_refined, progress=progress)
        if m.any():
            longest = max(m.shape)
            if strategy == "resize" and longest > self.resize_limit:
                out = self._fill_resized(rgb, m)
            elif strategy == "crop" and longest > self.crop_trigger:
                out = self._fill_crops(rgb, m)
            elif strategy == "crop+refine" and longest > self.crop_trigger:
                out = self._fill_crops(rgb, m, fill, min_size=self._refine_crop_side())
            else:
                out = fill(rgb, m)
        return out if alpha is None else np.dstack([out, alpha])

    resize_limit = 1280
    crop_trigger = 800
    crop_margin = 128
    # the official refinement's defaults (configs/prediction/default.yaml); refine_devices: None for the
    # generator's own device, or several (e.g. ["cuda:0", "cuda:1"]) to split its residual blocks between them
    refine_n_iters = 15
    refine_lr = 0.002
    refine_min_side = 512
    refine_max_scales = 3
    refine_px_budget = 1_800_000
    refine_devices: Sequence[str] | None = None

    def _fill(self, rgb: np.ndarray, m: np.ndarray) -> np.ndarray:
        out = self.predict_batch(to_tensor(rgb), torch.from_numpy(np.array(m))[None, None].float(), uint8=True)
        return out[0].permute(1, 2, 0).cpu().numpy()

    def _refine_crop_side(self) -> int:
        """The smallest square side whose pyramid has two scales: a crop below it would be refined at one scale,
        i.e. not at all (about 725 px for the official min_side of 512)."""
        from .refine import n_scales

        side = int(self.refine_min_side * 1.4)
        while n_scales(side, side, self.refine_min_side, max(2, self.refine_max_scales)) < 2:
            side += 1
        return side

    def _fill_refined(self, rgb: np.ndarray, m: np.ndarray, progress: Callable[[Any], None] | None = None
                      ) -> np.ndarray:
        from .refine import MODULO, refine

        if min(m.shape) < 2 * MODULO:  # too small for a pyramid: plain inference pads it
            return self._fill(rgb, m)
        image = to_tensor(rgb).to(self.device)
        hole = torch.from_numpy(np.array(m))[None, None].to(self.device)
        out = refine(self.generator, image, hole.float(), n_iters=self.refine_n_iters, lr=self.refine_lr,
                     min_side=self.refine_min_side, max_scales=self.refine_max_scales,
                     px_budget=self.refine_px_budget, devices=self.refine_devices, progress=progress)
        # truncation inside the hole, as _composite; every other pixel is the input's own
        filled = (out[0].clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return np.where(m[..., None], filled, rgb)

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

    def _fill_crops(self, rgb: np.ndarray, m: np.ndarray,
                    fill: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                    min_size: int = 0) -> np.ndarray:
        out = rgb.copy()
        for top, bottom, left, right in crop_boxes(m, self.crop_margin, min_size):
            crop_m = m[top:bottom, left:right]
            filled = (fill or self._fill)(rgb[top:bottom, left:right], crop_m)
            region = out[top:bottom, left:right]
            region[crop_m] = filled[crop_m]
        return out


STRATEGIES = ("crop", "resize", "original", "refine", "crop+refine")


def crop_boxes(mask: np.ndarray, margin: int, min_size: int = 0) -> list[tuple[int, int, int, int]]:
    """(top, bottom, left, right) boxes around the connected mask regions, grown by ``margin`` (and further to
    ``min_size`` a side where the image allows), shifted inward at the image borders, and merged where they
    overlap (one model run per box)."""
    import cv2

    h, w = mask.shape
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for x, y, bw, bh, _area in stats[1:n]:
        rows, cols = (_grow(int(a), int(a + d), size, margin) for a, d, size in ((y, bh, h), (x, bw, w)))
        rows, cols = (_grow(*span, size, max(0, -(-(min_size - span[1] + span[0]) // 2)))
                      for span, size in ((rows, h), (cols, w)))
        boxes.append(rows + cols)
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


def load_model(source: str | os.PathLike | None = None, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None, preset: str | None = None, fast: bool = True) -> Inpainter:
    """Load LaMa weights from any published format (see :func:`lama.checkpoint.load_generator`).

    ``source``: a big-lama.zip or its unpacked folder, a .ckpt, .safetensors, TorchScript .pt, a Hub
    reference ``owner/repo[/file]`` or a preset name; default ``$LAMA_MODEL``, else ``big-lama``. An ``.onnx``
    file written by :mod:`lama.export` runs with ONNX Runtime (float32; :mod:`lama.onnx_model`).
    """
    from .checkpoint import load_generator

    if source is not None and os.fspath(source).lower().endswith(".onnx"):
        from .onnx_model import load_onnx

        return load_onnx(source, device=device, dtype=dtype)

    loaded = load_generator(source, preset=preset)
    return Inpainter(loaded.generator, device=device, dtype=dtype, config=loaded.config, source=loaded.source,
                     fast=fast)
