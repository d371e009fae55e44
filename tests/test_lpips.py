"""LPIPS: the published example distances with offline-provisioned weights; exactly the ``lpips`` package."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import hub_dir
from PIL import Image

from lama.metrics.lpips_metric import LPIPSDistance as LPIPS

EXAMPLES = Path(__file__).parent / "data" / "lpips_examples"


@pytest.fixture(scope="module", autouse=True)
def _offline(offline_metric_hub):
    """Every test here runs against the empty offline caches of conftest.offline_metric_hub."""


def load(name: str) -> torch.Tensor:
    with Image.open(EXAMPLES / f"{name}.png") as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)[None]


@pytest.fixture(scope="module")
def examples() -> dict[str, torch.Tensor]:
    return {name: load(name) for name in ("ex_ref", "ex_p0", "ex_p1")}


def package_lpips(net: str):
    import lpips

    from lama.metrics.weights import provision_metric_weights

    trunk = {"vgg": "vgg16", "alex": "alexnet"}[net]
    path = provision_metric_weights([trunk])[trunk]  # the same files, read by the package's own loader
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), hub_dir(path.parent.parent):
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net=net, version="0.1").eval()


def test_alex_reproduces_published_example_distances(examples):
    metric = LPIPS(net="alex")
    with torch.no_grad():
        d0 = metric(examples["ex_ref"], examples["ex_p0"]).item()
        d1 = metric(examples["ex_ref"], examples["ex_p1"]).item()
    assert round(d0, 3) == 0.722
    assert round(d1, 3) == 0.138


@pytest.mark.parametrize("net", ["vgg", "alex"])
def test_equals_lpips_package_exactly(net, examples):
    ours, theirs = LPIPS(net=net), package_lpips(net)
    ref = torch.cat([examples["ex_ref"]] * 2)
    other = torch.cat([examples["ex_p0"], examples["ex_p1"]])
    with torch.no_grad():
        got = ours(ref, other)
        expected = theirs(ref * 2 - 1, other * 2 - 1).flatten()  # the package's own [-1,1] convention
    assert got.shape == (2,)
    assert torch.equal(got, expected)


def test_default_is_vgg_and_identical_images_score_zero(examples):
    metric = LPIPS()
    assert metric.net_name == "vgg"
    assert type(metric.model.net).__name__ == "vgg16"
    with torch.no_grad():
        assert metric(examples["ex_ref"], examples["ex_ref"]).item() == 0


def test_bad_input_is_refused(examples):
    metric = LPIPS(net="alex")
    with pytest.raises(ValueError, match="net"):
        LPIPS(net="squeeze")
    with pytest.raises(ValueError, match="differ"):
        metric(examples["ex_ref"], examples["ex_ref"][..., :32, :32])
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        metric(examples["ex_ref"][0], examples["ex_ref"][0])
    metric.train()
    assert not metric.model.training
