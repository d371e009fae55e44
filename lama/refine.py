"""Multi-scale feature refinement (Kulshreshtha et al., "Feature Refinement to Improve High Resolution Image
Inpainting", 2022; the official ``saicinpainting/evaluation/refinement.py``), on any device, in bounded memory.

The photo becomes an image pyramid (each level a 5x5 Gaussian blur, sigma 1, and a half-size bilinear
resize). The lowest level is plain inference. At each higher level the generator is split before its first
residual block: the front's outputs for that level's image (the local and global features) become the
parameters of a fresh Adam, and the rear is run ``n_iters`` times to minimise the L1 distance to the known
pixels plus the L1 distance, inside the hole, between the downscaled prediction and the level below's result.

What follows the official code, and what does not:

- kept: ``n_iters`` forward passes make ``n_iters - 1`` Adam steps (the last prediction is not followed by a
  step, so ``n_iters=1`` is plain inference at every level); the pyramid's lower masks grow (blurred, any value
  above 1e-8 is hole) while the loss mask shrinks (pixels fully inside the hole after a half-size resize, then
  eroded with a 15x15 ellipse); each level pads bottom/right to a multiple of 8 with *reflect* padding (plain
  inference pads symmetric) and the known-pixel loss counts the padding;
- changed: where the shrunk loss mask (or the known region) is empty the official loss is a mean of nothing,
  NaN; here that term is zero (the gradient is the same: an empty term contributes none); a photo above
  ``px_budget`` pixels is refined at the reduced size as in the official code, but the result comes back at
  the input's size, only the fill scaled up; the residual blocks and the upsampling tail are recomputed in the
  backward pass (activation checkpointing), so memory holds one block's activations, not all of them.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import LamaError
from .ffc import FFCResnetBlock

EPS = 1e-8  # the official threshold for "any hole" / "fully hole" in the resized masks
MODULO = 8


@dataclass(frozen=True)
class RefineProgress:
    """Where a refinement is: ``scale`` of ``n_scales`` (0 = the lowest), ``iteration`` of ``n_iters``, and the
    last loss (None before the first)."""

    scale: int
    n_scales: int
    iteration: int
    n_iters: int
    loss: float | None


# ---------------------------------------------------------------------------------------------
# The pyramid


def _gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """5x5 Gaussian blur, sigma 1, reflect border, per channel (separable)."""
    t = torch.arange(5, dtype=torch.float64) - 2
    k = torch.exp(-t**2 / 2)
    k = (k / k.sum()).to(x.dtype).to(x.device)
    c = x.shape[1]
    x = F.pad(x, (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def _half(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=(x.shape[-2] // 2, x.shape[-1] // 2), mode="bilinear", align_corners=False)


def pyr_down(image: torch.Tensor) -> torch.Tensor:
    """One pyramid level down: blur, then half size (floor)."""
    return _half(_gaussian_blur(image))


def pyr_down_mask(mask: torch.Tensor) -> torch.Tensor:
    """A mask one level down: blurred and halved, then any value >= 1e-8 is hole, so the hole grows."""
    return (pyr_down(mask) >= EPS).to(mask.dtype)


def n_scales(h: int, w: int, min_side: int, max_scales: int) -> int:
    """``min(1 + round(max(0, log2(min(h, w) / min_side))), max_scales)`` (round half to even, as numpy)."""
    return min(1 + int(round(max(0.0, math.log2(min(h, w) / min_side)))), max_scales)


def budget_size(h: int, w: int, px_budget: int) -> tuple[int, int]:
    """The size a photo is refined at: scaled down by ``sqrt(px_budget / (h w))`` (truncated) when above the
    budget, else its own."""
    if h * w <= px_budget:
        return h, w
    ratio = math.sqrt(px_budget / float(h * w))
    return int(h * ratio), int(w * ratio)


def pyramid(image: torch.Tensor, mask: torch.Tensor, min_side: int, max_scales: int
            ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Images and masks from the lowest scale to ``image``'s own."""
    images, masks = [image], [mask]
    for _ in range(n_scales(*image.shape[-2:], min_side, max_scales) - 1):
        images.append(pyr_down(images[-1]))
        masks.append(pyr_down_mask(masks[-1]))
    return images[::-1], masks[::-1]


def _ellipse(size: int = 15) -> torch.Tensor:
    import cv2

    return torch.from_numpy(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)).astype("float32"))


def loss_mask(mask: torch.Tensor, ellipse: torch.Tensor) -> torch.Tensor:
    """Where the downscaled prediction is compared with the level below: pixels still fully hole after a
    half-size resize (no blur), eroded by ``ellipse`` (pixels outside the image do not erode)."""
    half = (_half(mask) >= 1 - EPS).to(mask.dtype)
    k = ellipse.to(half)
    outside = F.conv2d(1 - half, k[None, None], padding=k.shape[-1] // 2)  # known pixels under the ellipse
    return (outside < 0.5).to(mask.dtype)


def _pad(x: torch.Tensor, modulo: int = MODULO) -> torch.Tensor:
    """Bottom/right reflect padding to a multiple of ``modulo``, as the official refiner pads."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % modulo, 0, -h % modulo), mode="reflect")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc (musl has none)
    except (OSError, AttributeError, TypeError):
        return None


def _trim_heap() -> None:
    """Give the heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere nothing). A forward pass
    with checkpointing and its backward pass free many mid-sized blocks in different orders; glibc keeps them, and
    the next pass grows the heap anyway: at 1.8 MP the peak RSS went 6.4 GB without this, 4.2 GB with it."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _masked_l1(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """Mean |a - b| over ``where``; zero (with its zero gradient) where ``where`` is empty."""
    n = where.sum()
    return ((a - b).abs() * where).sum() / n.clamp_min(1)


# ---------------------------------------------------------------------------------------------
# The split generator


class _Split:
    """``generator.model`` cut before its first residual block: the front (stem and downsampling) and the rear
    (residual blocks, upsampling, output), the rear's blocks spread over ``devices`` (the official split: the same
    number of blocks per device, the remainder and the tail on the last)."""

    def __init__(self, generator: nn.Module, devices: Sequence[str | torch.device] | None, checkpointing: bool):
        layers = list(getattr(generator, "model", ()))
        first = next((i for i, m in enumerate(layers) if isinstance(m, FFCResnetBlock)), None)
        weights = next(generator.parameters(), None) if first is not None else None
        if weights is None:
            raise LamaError("refinement needs LaMa's FFCResNetGenerator (a .model with FFC resnet blocks); "
                            "an ONNX or other exported model cannot be refined")
        self.home = weights.device
        self.devices = [torch.device(d) for d in devices] if devices else [self.home]
        n_blocks = sum(isinstance(m, FFCResnetBlock) for m in layers)
        per = max(1, n_blocks // len(self.devices))
        self.front = nn.Sequential(*layers[:first])
        bounds = [first + per * i for i in range(len(self.devices))] + [len(layers)]
        self.rears = [layers[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        self.checkpointing = checkpointing
        self.dtype = weights.dtype

    def place(self) -> None:
        """The front on the first device, each part of the rear on its own (in place, as the official code)."""
        self.front.to(self.devices[0])
        for device, layers in zip(self.devices, self.rears, strict=True):
            for m in layers:
                m.to(device)

    def restore(self) -> None:
        """Everything back where the weights were, for the plain inference that shares them."""
        self.front.to(self.home)
        for layers in self.rears:
            for m in layers:
                m.to(self.home)

    def rear(self, z: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The rear's prediction (float32) from the features ``z``; with checkpointing the blocks and each
        upsampling level of the tail are recomputed in the backward pass instead of keeping their activations."""
        x: tuple[torch.Tensor, torch.Tensor] | torch.Tensor = tuple(t.to(self.dtype) for t in z)
        for device, layers in zip(self.devices, self.rears, strict=True):
            x = tuple(t.to(device) for t in x) if isinstance(x, tuple) else x.to(device)
            blocks = [m for m in layers if isinstance(m, FFCResnetBlock)]
            x = self._run(functools.partial(_chain, blocks, self._run), x)
            for segment in _segments(layers[len(blocks):]):
                x = self._run(segment, x)
        return x.float()

    def _run(self, module: Callable, x):  # noqa: ANN001 (a tensor or the (local, global) pair)
        """``module(x)``, recomputed in the backward pass when checkpointing. The residual blocks run as one
        such unit made of one per block (nested): while the tail's gradients are computed only the blocks' first
        input is kept, then each block's input while the blocks' are (a 1.8 MP step peaked at 4.2 GB instead of 5.0)."""
        if self.checkpointing and torch.is_grad_enabled():
            return checkpoint(lambda *t: module(t), *x, use_reentrant=False) if isinstance(x, tuple) \
                else checkpoint(module, x, use_reentrant=False)
        return module(x)


def _chain(blocks: list[nn.Module], run: Callable, x):  # noqa: ANN001
    for block in blocks:
        x = run(block, x)
    return x


def _segments(layers: list[nn.Module]) -> list[nn.Module]:
    """The tail's units recomputed in the backward pass: cut after each ReLU (one upsampling level each), so
    that only one level's activations are kept at a time (the full-resolution ones are the largest: 64 channels
    of the whole photo)."""
    out: list[nn.Module] = []
    current: list[nn.Module] = []
    for m in layers:
        current.append(m)
        if isinstance(m, nn.ReLU):
            out.append(nn.Sequential(*current))
            current = []
    if current:
        out.append(nn.Sequential(*current))
    return out


# ---------------------------------------------------------------------------------------------
# Refinement


def refine(generator: nn.Module, image: torch.Tensor, mask: torch.Tensor, *, n_iters: int = 15, lr: float = 0.002,
           min_side: int = 512, max_scales: int = 3, px_budget: int = 1_800_000,
           devices: Sequence[str | torch.device] | None = None, checkpointing: bool = True,
           progress: Callable[[RefineProgress], None] | None = None) -> torch.Tensor:
    """Refined inpainting of one photo: ``image`` [1,3,H,W] in [0,1], ``mask`` [1,1,H,W] (hole where > 0.5).

    Returns ``mask * refined + (1 - mask) * image`` [1,3,H,W] float32 on ``image``'s device: pixels outside the
    hole are the input's own. The generator (LaMa's ``FFCResNetGenerator``, in eval mode, any dtype) runs on
    ``devices`` (default: where its weights are; several: its residual blocks are split between them, as the
    official code splits them over GPUs; its parts are moved there for the call and back afterwards).
    ``progress`` is called before each scale and after each iteration; an exception raised there stops the
    refinement (a cancel). Masks are binary here (hole where > 0.5), as everywhere in this package; the official
    code counts any value above 0 as hole.
    """
    if image.ndim != 4 or image.shape[:2] != (1, 3) or mask.shape != (1, 1, *image.shape[-2:]):
        raise LamaError(f"refinement takes one image [1,3,H,W] and its mask [1,1,H,W]; got {tuple(image.shape)} "
                        f"and {tuple(mask.shape)}")
    if type(n_iters) is not int or n_iters < 1 or not lr > 0 or min_side < 1 or max_scales < 1 or px_budget < 1:
        raise LamaError("refinement needs n_iters >= 1, lr > 0, min_side >= 1, max_scales >= 1, px_budget >= 1")
    if generator.training:
        raise LamaError("refinement needs the generator in eval mode (BatchNorm statistics fixed)")
    h, w = image.shape[-2:]
    if min(h, w) < 2 * MODULO:
        raise LamaError(f"the photo is too small to refine ({h}x{w}); use plain inference")
    split = _Split(generator, devices, checkpointing)
    last = split.devices[-1]
    out_device = image.device
    image, hole = image.float().to(last), (mask.to(last) > 0.5).float()
    if len(split.devices) > 1 or split.devices[0] != split.home:
        split.place()
        try:
            return _refine(split, image, hole, n_iters, lr, min_side, max_scales, px_budget, progress).to(out_device)
        finally:
            split.restore()
    return _refine(split, image, hole, n_iters, lr, min_side, max_scales, px_budget, progress).to(out_device)


def _refine(split: _Split, image: torch.Tensor, hole: torch.Tensor, n_iters: int, lr: float, min_side: int,
            max_scales: int, px_budget: int, progress: Callable[[RefineProgress], None] | None) -> torch.Tensor:
    h, w = image.shape[-2:]
    last = split.devices[-1]
    small = budget_size(h, w, px_budget)
    img, m = image, hole
    if small != (h, w):
        img = F.interpolate(image, size=small, mode="bilinear", align_corners=False)
        m = (F.interpolate(hole, size=small, mode="bilinear", align_corners=False) > EPS).float()
    images, masks = pyramid(img, m, min_side, max_scales)
    ellipse = _ellipse().to(last)

    result = None
    for s, (img, m) in enumerate(zip(images, masks, strict=True)):
        if progress is not None:
            progress(RefineProgress(s, len(images), 0, n_iters, None))
        result = _refine_scale(split, img, m, result, n_iters if s else 1, lr, ellipse, s, len(images), progress)
    if small != (h, w):  # only the fill is scaled up; the photo keeps its own pixels and size
        result = F.interpolate(result, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    return hole * result + (1 - hole) * image


def _refine_scale(split: _Split, image: torch.Tensor, mask: torch.Tensor, lower: torch.Tensor | None, n_iters: int,
                  lr: float, ellipse: torch.Tensor, scale: int, n_scales_: int,
                  progress: Callable[[RefineProgress], None] | None) -> torch.Tensor:
    """One level: composited result at ``image``'s size. ``lower``: the level below's result (None: plain)."""
    oh, ow = image.shape[-2:]
    image, mask = _pad(image), (_pad(mask) >= EPS).float()
    first = split.devices[0]
    with torch.no_grad():
        x = torch.cat([image * (1 - mask), mask], dim=1).to(first, split.dtype)
        z = split.front(x)
        if not (isinstance(z, tuple) and all(isinstance(t, torch.Tensor) for t in z)):
            raise LamaError("refinement needs a generator whose residual blocks have local and global channels")
        z = [t.detach().float().requires_grad_(True) for t in z]
    if lower is not None and n_iters > 1:
        known = (mask < EPS).expand_as(image).float()
        hole_loss = loss_mask(mask[..., :oh, :ow], ellipse).expand(-1, 3, -1, -1)
        optimizer = torch.optim.Adam(z, lr=lr)
        # float16: the loss is a mean over every pixel; scaled by the pixel count, each pixel's gradient is of
        # order one instead of 1e-7, below float16's range (a step that overflows anyway is skipped)
        loss_scale = float(image[0, 0].numel()) if split.dtype == torch.float16 else 1.0
        for i in range(n_iters - 1):  # the last of the n_iters predictions is not followed by a step
            optimizer.zero_grad(set_to_none=True)
            _trim_heap()
            pred = split.rear(tuple(z))
            _trim_heap()
            loss = _masked_l1(pred, image, known) + _masked_l1(pyr_down(pred[..., :oh, :ow]), lower, hole_loss)
            (loss * loss_scale).backward()
            value = float(loss.detach())
            del pred, loss  # the graph keeps the recomputed segments' inputs alive (a GB at 1.8 MP)
            if loss_scale != 1:
                for t in z:
                    t.grad.div_(loss_scale)
            if all(t.grad.isfinite().all() for t in z):  # an overflowed float16 step is skipped
                optimizer.step()
            if progress is not None:
                progress(RefineProgress(scale, n_scales_, i + 1, n_iters, value))
    _trim_heap()
    with torch.no_grad():
        pred = split.rear(tuple(z))
    return (mask * pred + (1 - mask) * image)[..., :oh, :ow]
