"""lama.heap: freed blocks stay mapped in the process (no page faults on reuse), and the opt-out leaves malloc alone.

Each case runs in its own interpreter: the setting is process-wide and cannot be undone.
"""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the setting is glibc's")

# malloc 16 MB, touch every page, free it: how many MB of resident memory does the free give back?
PROBE = """
import ctypes, ctypes.util, mmap, sys
from lama.heap import keep_freed_memory
print(keep_freed_memory())
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * mmap.PAGESIZE / 2**20
n = 16 << 20
p = libc.malloc(n)
ctypes.memset(p, 1, n)
before = rss_mb()
libc.free(p)
print(before - rss_mb())
from lama.heap import MMAP_THRESHOLD, release_freed_memory
kept = rss_mb()
release_freed_memory(MMAP_THRESHOLD - 1)  # small maps to come: the heap keeps its memory
small = kept - rss_mb()
release_freed_memory(MMAP_THRESHOLD)  # large ones: handed back
print(small, kept - rss_mb())
"""


def _returned_mb(opt_out: bool) -> tuple[str, float, float, float]:
    env = dict(os.environ)
    env.pop("LAMA_KEEP_FREED_MEMORY", None)
    if opt_out:
        env["LAMA_KEEP_FREED_MEMORY"] = "0"
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    flag, *mb = out.stdout.split()
    return flag, *map(float, mb)


def test_freed_blocks_stay_in_the_process_until_large_maps_come():
    flag, returned, small, large = _returned_mb(opt_out=False)
    assert flag == "True"
    assert returned < 2, f"{returned:.1f} MB went back to the OS: the next tensor would fault them in again"
    assert small < 2 and large > 12


def test_opt_out_leaves_glibc_as_it_was():
    flag, returned, _, _ = _returned_mb(opt_out=True)
    assert flag == "False"
    assert returned > 12, "glibc's default unmaps a freed 16 MB block; the probe should see it"


def test_the_fast_path_sets_it_on_the_cpu(monkeypatch):
    import torch
    from conftest import SMALL_GENERATOR, randomize_bn

    from lama import heap
    from lama.fast import FastGenerator
    from lama.generator import generator_from_config

    calls = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: calls.append(1))
    gen = randomize_bn(generator_from_config(SMALL_GENERATOR)).eval()
    FastGenerator(gen)(torch.rand(1, 4, 32, 32))
    assert calls
