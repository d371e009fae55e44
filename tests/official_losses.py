"""The official loss fixture (tests/data/official_losses): its inputs, expected values and closed-form weights.

The discriminator and ResNetPL-encoder weights of the fixture are a closed formula of each state_dict entry's
index (see the fixture README in shared/data/official_losses): an integer hash, exact in numpy uint64, so the
float32 tensors come out bit for bit and are checked against the sha256 that the official run recorded.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

FIXTURE = Path(__file__).parent / "data" / "official_losses"
_M32 = np.uint64(0xFFFFFFFF)


def expected() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURE / "expected.pt", weights_only=True)


def _hash_u01(i: int, n: int, variant: int = 0) -> np.ndarray:
    k = np.arange(n, dtype=np.uint64)
    h = (k + np.uint64(i + 1) * np.uint64(0x9E3779B9) + np.uint64(variant) * np.uint64(0x85EBCA6B)) & _M32
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x7FEB352D)) & _M32
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x846CA68B)) & _M32
    h ^= h >> np.uint64(16)
    return h.astype(np.float64) / 4294967296.0


def formula_state(template: dict[str, torch.Tensor], conv_gain: float, variant: int = 0) -> dict[str, torch.Tensor]:
    """The fixture's weights for a state_dict with ``template``'s keys, order and shapes."""
    out = {}
    for i, (name, t) in enumerate(template.items()):
        if name.endswith("num_batches_tracked"):
            out[name] = torch.zeros_like(t)
            continue
        shape = tuple(t.shape)
        u = _hash_u01(i, int(np.prod(shape)) if shape else 1, variant)
        s = 2.0 * u - 1.0
        if name.endswith("running_var"):
            v = 1.0 + 0.2 * u
        elif name.endswith("running_mean"):
            v = 0.05 * s
        elif len(shape) == 4:
            v = np.sqrt(conv_gain / (shape[1] * shape[2] * shape[3])) * s
        elif name.endswith("weight"):
            v = 1.0 + 0.1 * s
        else:
            v = 0.05 * s
        out[name] = torch.from_numpy(v.astype(np.float32).reshape(shape))
    return out


def recorded_sha256(keys_file: str) -> str:
    text = (FIXTURE / keys_file).read_text()
    return re.search(r"sha256[^:]*: ([0-9a-f]{64})", text).group(1)


def state_sha256(sd: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, t in sd.items():
        if not name.endswith("num_batches_tracked"):
            h.update(t.detach().contiguous().numpy().astype("<f4").tobytes())
    return h.hexdigest()


def recorded_keys(keys_file: str) -> list[tuple[str, tuple[int, ...]]]:
    """(key, shape) in state_dict order, as the official model listed them."""
    out = []
    for line in (FIXTURE / keys_file).read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split("  ")
        out.append((parts[1], tuple(int(x) for x in re.findall(r"\d+", parts[2]))))
    return out


def tolerance(exp: dict[str, torch.Tensor], key: str) -> float:
    """The README's rule: max(1e-5, 10 * f32_vs_f64) times the largest expected magnitude."""
    rel = exp.get(f"f32_vs_f64/{key}")
    rel = 0.0 if rel is None else float(rel)
    return max(1e-5, 10 * rel) * float(exp[key].abs().max())
