"""Shared fixtures: small random-weight generators and the official reference checkpoint."""

import contextlib
import os
import subprocess
import urllib.error
from pathlib import Path

import pytest
import torch

from lama.testing import SMALL_GENERATOR, randomize_bn  # noqa: F401 (the tests' shared fixtures)

# The fast path's kernel is measured per machine (lama.kernel_choice); the tests fix it so that their results do
# not depend on a timing (subprocesses inherit it). tests/test_kernel_choice.py tests the measuring itself.
os.environ.setdefault("LAMA_FAST_KERNEL", "winograd")

DATA = Path(__file__).parent / "data"
OFFICIAL = DATA / "official_reference"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)




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


GLOO_TEARDOWN_ABORT = "terminate called without an active exception"


def run_job(cmd: list[str], env: dict, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a (torchrun) command; run it once more only if a process died in gloo's C++ teardown (seen once, on a
    heavily overloaded machine, never reproduced). Any other failure, and a wrong result, fail the test."""
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0 and GLOO_TEARDOWN_ABORT in r.stderr:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return r


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
