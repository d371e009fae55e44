"""The LaMa-protocol metrics used the torchmetrics way: update in several calls or one, in one process or two."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import run_job
from test_fid import real_photos

from lama.metrics import FID, LPIPS, PSNR, SSIM

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def _offline(offline_metric_hub):
    """Every test here runs against the empty offline caches of conftest.offline_metric_hub."""


@pytest.fixture(scope="module")
def pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """Eight real photos at 96x96 and a damaged copy of each (a blurred band), as predictions."""
    target = torch.cat([F.interpolate(p, size=(96, 96), mode="bilinear", align_corners=False)
                        for p in real_photos()[:8]]).clamp(0, 1)
    assert len(target) == 8
    pred = target.clone()
    pred[:, :, 30:60] = F.avg_pool2d(target, 9, stride=1, padding=4)[:, :, 30:60]
    return pred, target


# Batched and unbatched float32 convolutions may add up in another order: relative differences of a few 1e-7 per
# image value (float32 epsilon 1.2e-7). The bounds below leave a wide margin over that and are far below any
# real difference (a changed image moves these metrics by > 1e-3).
REL = {"lpips": 1e-5, "ssim": 1e-6, "psnr": 1e-6, "fid": 1e-4}


def _metrics() -> dict:
    return {"fid": FID(), "lpips": LPIPS(), "ssim": SSIM(), "psnr": PSNR()}


def test_several_updates_equal_one_update_with_all_images(pairs):
    pred, target = pairs
    once, chunked = _metrics(), _metrics()
    for name in once:
        once[name].update(pred, target)
        for i in range(0, 8, 3):  # 3 + 3 + 2
            chunked[name].update(pred[i: i + 3], target[i: i + 3])
        a, b = once[name].compute().item(), chunked[name].compute().item()
        assert b == pytest.approx(a, rel=REL[name]), name
    for name in ("lpips", "ssim", "psnr"):
        per_image = chunked[name].per_image()
        assert per_image.shape == (8,) and per_image.dtype == torch.float64
        assert torch.allclose(per_image, once[name].per_image(), rtol=REL[name], atol=0)
    assert once["fid"].compute() > 1 and 0 < once["lpips"].compute() < 1 and 0 < once["ssim"].compute() < 1


def test_reset_forgets_and_bad_input_is_refused(pairs):
    pred, target = pairs
    m = SSIM()
    m.update(pred, target)
    m.reset()
    m.update(pred[:2], target[:2])
    assert m.per_image().shape == (2,)
    with pytest.raises(ValueError, match="same shape"):
        m.update(pred[:2], target[:3])


def test_torchrun_two_processes_sync_to_the_one_process_values(pairs, tmp_path):
    """The same batches of 2 in one process, or shared out over two: compute() after the sync sees all 8 images.
    Both runs are processes with one thread, so each image's values are computed identically; only the order of
    the gathered images differs, which changes float64 sums by ~1e-16 relative."""
    pred, target = pairs
    torch.save({"pred": pred, "target": target}, tmp_path / "images.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    script = [str(HERE / "metric_sync.py"), str(tmp_path / "images.pt")]
    runs = {"one": [sys.executable], "two": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                             "--nproc_per_node", "2"]}
    values = {}
    for name, cmd in runs.items():
        r = run_job(cmd + script + [str(tmp_path / f"{name}.json")], env)
        assert r.returncode == 0, r.stderr[-6000:]
        values[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert values["one"]["n_lpips"] == values["two"]["n_lpips"] == 8
    for k in ("fid", "lpips", "ssim", "psnr"):
        assert values["two"][k] == pytest.approx(values["one"][k], rel=1e-9), k
