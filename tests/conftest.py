"""Shared fixtures: small random-weight generators and the official reference checkpoint."""

import contextlib
import urllib.error
from pathlib import Path

import pytest
import torch

DATA = Path(__file__).parent / "data"
OFFICIAL = DATA / "official_reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def randomize_bn(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every BatchNorm non-trivial statistics, so that eval-mode numerics are exercised."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return module


SMALL_GENERATOR = {
    "kind": "ffc_resnet", "input_nc": 4, "output_nc": 3, "ngf": 8, "n_downsampling": 3, "n_blocks": 2,
    "add_out_act": "sigmoid",
    "init_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "downsample_conv_kwargs": {"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False},
    "resnet_conv_kwargs": {"ratio_gin": 0.75, "ratio_gout": 0.75, "enable_lfu": False},
}


@contextlib.contextmanager
def hub_dir(path: Path):
    """Point the torch hub cache at ``path`` (tests only: the stock loaders of pytorch-fid and lpips, reading the
    same files through the hub cache, are the independent reference for the metrics' direct loading)."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(path))
    try:
        yield
    finally:
        torch.hub.set_dir(old)


def _no_download(*args, **kwargs):
    raise urllib.error.URLError("downloads are disabled in the metric tests")


@pytest.fixture(scope="module")
def offline_metric_hub(tmp_path_factory):
    """An empty per-session torch hub cache and no downloads, as on a fresh offline machine."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path_factory.getbasetemp() / "metric_torch_hub"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.hub, "download_url_to_file", _no_download)
        mp.setenv("LAMA_METRIC_WEIGHTS_DIR", str(tmp_path_factory.getbasetemp() / "metric_converted"))
        yield
    torch.hub.set_dir(old)
