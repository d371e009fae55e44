"""Keep freed memory in the process for reuse, instead of handing it back to the OS after every layer.

glibc's malloc serves large requests with fresh ``mmap`` pages and returns them on ``free`` (and trims the heap's
free top), so every large tensor of a forward pass — band buffers, convolution outputs, padded copies — is new
memory whose first touch costs a page fault per 4 KB page. In a VM that is expensive: on a 2-core Firecracker
guest it was a sixth of a 512x512 bfloat16 pass. :func:`keep_freed_memory` raises glibc's mmap threshold to
:data:`MMAP_THRESHOLD` and its trim threshold to :data:`TRIM_THRESHOLD` (``mallopt``), so that freed blocks
below the mmap threshold stay in the heap and the next layer reuses them already mapped. Blocks above it (the
whole maps of 2048x2048 inputs) are still mapped and returned as before, which keeps the peak memory where it
was; the cost is that the process keeps up to its high-water heap after a pass instead of shrinking.
Where a pass's maps are that large, the memory kept from its first layers would add to the peak of its
middle ones, so the fast path hands it back there (:func:`release_freed_memory`).

It is process-wide and done once, the first time the fast path runs on the CPU; ``LAMA_KEEP_FREED_MEMORY=0`` leaves
malloc alone. Other allocators (musl, macOS, Windows, an ``LD_PRELOAD``-ed jemalloc) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV = "LAMA_KEEP_FREED_MEMORY"
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
# Above this, blocks are mapped and unmapped as before: at 2048x2048 a 256 MB threshold kept whole freed maps in
# the heap and raised the peak RSS by 170-225 MB. 32 MB raised the bf16 peak by 35-50 MB, which the hand-back
# (release_freed_memory) more than takes back.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_state: dict[str, object] = {}


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process (see the module's docstring). True when they are set, now or
    before; False where the opt-out is set, the C library is not glibc, or ``mallopt`` refused."""
    if "done" in _state:
        return _state["done"]
    ok = False
    if os.environ.get(ENV, "1") != "0" and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = _state["libc"] = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            ok = False
    _state["done"] = ok
    return ok


def release_freed_memory(nbytes: int) -> None:
    """Hand the heap's free memory back to the OS (``malloc_trim``) when the tensors to come are at least
    :data:`MMAP_THRESHOLD` bytes (``nbytes``): they are mapped apart from the heap, so what it keeps would
    only add to the peak. Called after the fast path's head and after its blocks, it took a 2048x2048 bfloat16
    pass's peak RSS from 1494 to 1375 MB for 3% of the time; at 512x512 the same calls cost 7%, hence the size
    rule."""
    if nbytes >= MMAP_THRESHOLD and _state.get("done"):
        _state["libc"].malloc_trim(0)
