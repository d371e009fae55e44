"""Keep freed memory in the process for reuse, instead of handing it back to the OS after every layer.

glibc's malloc serves large requests with fresh ``mmap`` pages and returns them on ``free`` (and trims the heap's
free top), so every large tensor of a forward pass — band buffers, convolution outputs, padded copies — is new
memory whose first touch costs a page fault per 4 KB page. In a VM that is expensive: on a 2-core Firecracker
guest it was a sixth of a 512x512 bfloat16 pass. :func:`keep_freed_memory` raises glibc's mmap threshold to
:data:`MMAP_THRESHOLD` and its trim threshold to :data:`TRIM_THRESHOLD` (``mallopt``), so that freed blocks
below the mmap threshold stay in the heap and the next layer reuses them already mapped. Blocks above it (the
whole maps of 2048x2048 inputs) are still mapped and returned as before, which keeps the peak memory where it
was; the cost is that the process keeps up to its high-water heap after a pass instead of shrinking.

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
# Above this, blocks are mapped and unmapped as before: at 2048x2048 a larger threshold kept whole freed maps in
# the heap and raised the peak RSS by 170-225 MB; at 32 MB the peak stayed within noise of glibc's default.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30

_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process (see the module's docstring). True when they are set, now or
    before; False where the opt-out is set, the C library is not glibc, or ``mallopt`` refused."""
    if "done" in _state:
        return _state["done"]
    ok = False
    if os.environ.get(ENV, "1") != "0" and platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):
            ok = False
    _state["done"] = ok
    return ok
