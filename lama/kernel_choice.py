"""Which 3x3 kernel the fast path uses on this machine: measured once, then remembered.

The fast path has two kernels for the FFC blocks' 3x3 convolutions: Winograd F(4x4, 3x3) (:mod:`lama.winograd`)
and the direct convolution of oneDNN. Which one is faster depends on the CPU, the dtype and the code (on an AMX Xeon
the direct bf16 convolutions were once 1.5x faster than bf16 Winograd, and 1.3x slower after the transforms were
compiled). So on the CPU the choice is measured once per machine, on one resnet block, and cached on disk per CPU
(model and instruction sets), torch version, dtype, thread count, network shape and transform build. GPUs use the
direct convolutions (cuDNN's own algorithms).

``LAMA_FAST_KERNEL=winograd|direct`` forces a kernel (``auto``, the default, measures); ``LAMA_CACHE_DIR`` moves the
cache (default ``~/.cache/lama``); ``LAMA_NATIVE=0`` turns off the compiled Winograd transforms (:mod:`lama.native`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import torch

from . import heap, native
from .errors import LamaError
from .fast import KERNELS as FAST_KERNELS
from .fast import FastBlock
from .ffc import FFCResnetBlock
from .io import atomic_write
from .machine import cache_dir, cpu_features, cpu_model
from .winograd import Workspace

KERNELS = tuple(FAST_KERNELS)
ENV_KERNEL = "LAMA_FAST_KERNEL"
MEASURE_MAP = 64  # the resnet blocks' maps for a 512x512 photo: a few hundred ms to measure both kernels
# Rounds that alternate the kernels, the best time of each kept: a kernel timed in a busy moment is timed again
# later. Measured one kernel after the other, a first load once cached "direct" for bf16 on an AMX Xeon, where
# the Winograd block was 20% faster in each of three later measurements and the whole pass 25% faster.
ROUNDS = 3
log = logging.getLogger(__name__)


def cache_file() -> Path:
    return cache_dir() / "fast_kernels.json"


def machine_key(gen: torch.nn.Module, dtype: torch.dtype) -> str:
    """What the choice depends on: the CPU, torch, the dtype, the threads, the network's shape and which Winograd
    transforms run (:func:`lama.native.build_id`: the compiled ones of this source and flags, or PyTorch's).

    The CPU is its model name and a hash of its feature flags and of oneDNN's instruction-set limit: VMs give CPUs
    with and without AMX one generic name ("Intel(R) Xeon(R) Processor")."""
    blocks = sum(1 for _ in gen.modules() if type(_).__name__ == "FFCResnetBlock")
    width = max(p.shape[0] for p in gen.parameters() if p.dim() == 4)
    isa = hashlib.sha256(f"{cpu_features()}\n{os.environ.get('ONEDNN_MAX_CPU_ISA', '')}".encode()).hexdigest()[:8]
    return (f"{cpu_model()} (isa {isa}) | torch {torch.__version__} | {str(dtype).removeprefix('torch.')} | "
            f"{torch.get_num_threads()} threads | {blocks} blocks x {width} channels | "
            f"{native.build_id()} transforms")


def _read_cache(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # missing or corrupt: measured again and rewritten
    return {k: v for k, v in data.items() if v in KERNELS} if isinstance(data, dict) else {}


def _seconds(gen: torch.nn.Module, kernel: str, dtype: torch.dtype, repeats: int = 3,
             blocks: dict[str, FastBlock] | None = None) -> float:
    """Best time of the generator's first resnet block, rebuilt with ``kernel``, on a ``MEASURE_MAP`` map: the
    kernels differ only there, and one block costs a few MB where a whole second fast generator cost ~300 MB
    at load time. ``blocks``: the blocks built so far, per kernel, reused by the later rounds."""
    ref = next(m for m in gen.modules() if isinstance(m, FFCResnetBlock))
    blocks = {} if blocks is None else blocks
    if kernel not in blocks:
        blocks[kernel] = FastBlock(ref, kernel).to(dtype)
    block = blocks[kernel]
    c = ref.conv1.ffc.convl2l.in_channels + ref.conv1.ffc.convg2l.in_channels  # local + global
    x0 = torch.rand(1, MEASURE_MAP, MEASURE_MAP, c, generator=torch.Generator().manual_seed(0)).to(dtype)
    ws = Workspace(dtype, "cpu")
    heap.keep_freed_memory()  # as the fast path will run
    best = float("inf")
    with torch.inference_mode():
        for i in range(repeats + 1):  # the first is a warm-up: allocations, oneDNN primitive creation
            x, spare = x0.clone(), [torch.empty_like(x0) if FAST_KERNELS[kernel].in_place else None]
            start = time.perf_counter()
            block(x, spare, ws)
            if i:
                best = min(best, time.perf_counter() - start)
    return best


def choose_kernel(gen: torch.nn.Module, dtype: torch.dtype, device: torch.device | str = "cpu") -> str:
    """``"winograd"`` or ``"direct"`` for ``gen`` in ``dtype`` on ``device`` (see the module docstring)."""
    forced = os.environ.get(ENV_KERNEL, "auto")
    if forced not in (*KERNELS, "auto"):
        raise LamaError(f"{ENV_KERNEL}={forced!r}: use winograd, direct or auto")
    if forced != "auto":
        return forced
    if torch.device(device).type != "cpu":
        return "direct"
    path, key = cache_file(), machine_key(gen, dtype)
    cache = _read_cache(path)
    if key in cache:
        return cache[key]
    times, blocks = dict.fromkeys(KERNELS, float("inf")), {}
    for _ in range(ROUNDS):
        for k in KERNELS:
            times[k] = min(times[k], _seconds(gen, k, dtype, blocks=blocks))
    choice = min(times, key=times.get)
    log.info("fast path kernel for %s: %s (%s)", key, choice,
             ", ".join(f"{k} {t * 1000:.0f} ms" for k, t in times.items()))
    cache = _read_cache(path)  # another process may have written meanwhile
    cache[key] = choice
    try:
        with atomic_write(path, "w") as f:
            json.dump(cache, f, indent=1, sort_keys=True)
    except OSError as e:  # a read-only home still gets the measured choice, just not remembered
        log.warning("could not write %s: %s", path, e)
    return choice
