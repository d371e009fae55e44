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
"""


def _returned_mb(opt_out: bool) -> tuple[str, float]:
    env = dict(os.environ)
    env.pop("LAMA_KEEP_FREED_MEMORY", None)
    if opt_out:
        env["LAMA_KEEP_FREED_MEMORY"] = "0"
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    flag, returned = out.stdout.split()
    return flag, float(returned)


def test_freed_blocks_stay_in_the_process():
    flag, returned = _returned_mb(opt_out=False)
    assert flag == "True"
    assert returned < 2, f"{returned:.1f} MB went back to the OS: the next tensor would fault them in again"


def test_opt_out_leaves_glibc_as_it_was():
    flag, returned = _returned_mb(opt_out=True)
    assert flag == "False"
    assert returned > 12, "glibc's default unmaps a freed 16 MB block; the probe should see it"
