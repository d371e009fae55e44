"""What this machine is (CPU model and features) and where per-machine results are cached.

``LAMA_CACHE_DIR`` moves the cache (default ``~/.cache/lama``).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

ENV_CACHE = "LAMA_CACHE_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or os.path.join(os.path.expanduser("~"), ".cache", "lama"))


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_features() -> str:
    """The CPU's feature flags where the OS lists them (two machines with one model name can differ, e.g. VMs
    that hide AVX-512), else the architecture."""
    return _cpuinfo_field("flags") or _cpuinfo_field("Features") or platform.machine()
