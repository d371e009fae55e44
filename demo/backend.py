"""The model behind the demo: LaMa loaded once at start-up, or OpenCV's Telea when no weights exist."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger("lama.demo")


@dataclass
class Settings:
    """Demo settings; each can be set by environment variable or command-line flag (see app.py)."""

    model: str | None = None  # any lama.load_model source; None: $LAMA_MODEL, else the big-lama preset
    device: str = "auto"
    dtype: str = os.environ.get("LAMA_DEMO_DTYPE", "auto")  # auto: bf16 on CPUs with native bf16, fp16 on CUDA
    max_megapixels: float = float(os.environ.get("LAMA_DEMO_MAX_MEGAPIXELS", "16"))
    min_side: int = 16  # the generator needs a 2x2 bottleneck; smaller photos are refused with a message
    editor_max_side: int = int(os.environ.get("LAMA_DEMO_EDITOR_MAX_SIDE", "1024"))
    concurrency: int = 1  # one inference at a time: each uses all CPU cores (or the one GPU)


class Cancelled(Exception):
    """A refinement stopped by :meth:`Backend.cancel`."""


class Backend:
    """Loads the model once; ``inpaint`` is called from Gradio's worker threads."""

    def __init__(self, settings: Settings, inpainter: Any = None):
        """Loads the model the settings name, or serves ``inpainter`` (an :class:`lama.Inpainter`) as it is."""
        self.settings = settings
        self.notice = ""
        self.name = "OpenCV Telea (classical fallback)"
        self.inpainter = None
        self._lock = threading.Lock()
        self._jobs: dict[str, threading.Event] = {}  # session -> its job's cancel flag (waiting or running)
        if inpainter is None:
            self._load()
        else:
            self.inpainter, self.name = inpainter, f"LaMa ({inpainter.source or 'in memory'})"

    def _load(self) -> None:
        import lama

        source = self.settings.model or lama.default_source()
        try:
            t = time.perf_counter()
            self.inpainter = lama.load_model(source, device=self.settings.device, dtype=self.settings.dtype)
            self.name = f"LaMa ({self.inpainter.source})"
            fast = self.inpainter.fast.extra_repr() if self.inpainter.fast is not None else "reference path"
            log.info("loaded %s in %.1f s on %s in %s (dtype=%s), fast path %s", self.name, time.perf_counter() - t,
                     self.inpainter.device, str(self.inpainter.dtype).removeprefix("torch."), self.settings.dtype, fast)
        except lama.LamaError as e:
            self.notice = (
                f"**LaMa weights were not found**, so this demo fills holes with OpenCV's classical Telea method "
                f"instead (much blurrier).\n\nLooked for `{source}`: {str(e).splitlines()[0]}\n\n"
                "To use LaMa: start the app with `--model PATH` or `LAMA_MODEL=PATH` (a big-lama.zip, its unpacked "
                "folder, a .ckpt, .safetensors or TorchScript .pt), or run it once with internet access so that "
                "the `big-lama` preset downloads into the Hugging Face cache."
            )
            log.warning("LaMa weights not found (%s); using the Telea fallback", source)

    def warm_up(self) -> float:
        """One small inference before the first user arrives (allocations, kernels); returns seconds."""
        t = time.perf_counter()
        rgb = np.full((64, 64, 3), 128, np.uint8)
        mask = np.zeros((64, 64), bool)
        mask[16:48, 16:48] = True
        self.inpaint(rgb, mask, strategy="original")
        return time.perf_counter() - t

    def inpaint(self, rgb: np.ndarray, mask: np.ndarray, strategy: str = "crop",
                progress: Callable[[Any], None] | None = None, session: str = "") -> np.ndarray:
        """HxWx3 uint8 and HxW bool -> HxWx3 uint8; pixels outside the mask are returned unchanged.

        The refine strategies report each scale and step to ``progress`` and stop at the next step after
        :meth:`cancel` for the same ``session`` (raising :class:`Cancelled`); the lock is then free again.
        """
        if self.inpainter is None:
            from lama import inpaint_classical

            return inpaint_classical(rgb, mask, "telea")
        cancelled = threading.Event()
        if session:
            self._jobs[session] = cancelled
        started = time.perf_counter()

        def step(p: Any) -> None:
            if cancelled.is_set():
                raise Cancelled(f"cancelled after {time.perf_counter() - started:.0f} s")
            if progress is not None:
                progress(p)

        try:
            with self._lock:  # torch already uses every core; parallel requests would only thrash
                if cancelled.is_set():  # while it waited for the model
                    raise Cancelled("cancelled before it started")
                return self.inpainter(rgb, mask, strategy=strategy, progress=step)
        finally:
            if self._jobs.get(session) is cancelled:
                del self._jobs[session]

    def cancel(self, session: str) -> bool:
        """Stop ``session``'s inpainting, waiting or running (a refinement at its next step); True if there was
        one. Each job has its own flag: a cancel never reaches another session's job."""
        job = self._jobs.get(session) if session else None
        if job is None:
            return False
        job.set()
        log.info("inpainting cancelled by its session")
        return True
