"""SSIM as the LaMa evaluator computes it (zero padding), and PSNR."""

import math

import numpy as np
import pytest
import torch
from conftest import DATA
from PIL import Image

from lama.metrics.ssim import psnr, ssim, ssim_lama, ssim_map_lama


def _photo_pair():
    load = [np.asarray(Image.open(DATA / "lpips_examples" / n).convert("RGB"), dtype=np.float64) / 255
            for n in ("ex_ref.png", "ex_p1.png")]
    return [torch.from_numpy(x).permute(2, 0, 1)[None] for x in load]


def test_interior_of_the_ssim_map_equals_scikit_image():
    from skimage.metrics import structural_similarity

    x, y = _photo_pair()
    _, ref = structural_similarity(x[0].permute(1, 2, 0).numpy(), y[0].permute(1, 2, 0).numpy(), channel_axis=2,
                                   data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   full=True)
    ours = ssim_map_lama(x, y)[0].permute(1, 2, 0).numpy()
    assert np.allclose(ours[5:-5, 5:-5], ref[5:-5, 5:-5], atol=1e-9)  # the interior never sees the padding
    assert ssim_lama(x, y).item() == pytest.approx(ours.mean(), abs=1e-12)


def test_zero_padding_at_the_corner_matches_the_closed_form():
    """Constant images a and b: at a pixel where a fraction s of the window lies inside the image,
    zero padding gives mu = a*s, var = a^2*s*(1-s), cov = a*b*s*(1-s)."""
    a, b = 0.3, 0.7
    x = torch.full((1, 1, 40, 40), a, dtype=torch.float64)
    y = torch.full((1, 1, 40, 40), b, dtype=torch.float64)
    g = [math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)]
    c1, c2 = 0.01**2, 0.03**2

    def closed_form(s):
        return ((2 * a * b * s * s + c1) * (2 * a * b * s * (1 - s) + c2)) / (
            ((a * a + b * b) * s * s + c1) * ((a * a + b * b) * s * (1 - s) + c2))

    m = ssim_map_lama(x, y)[0, 0]
    assert m[0, 0].item() == pytest.approx(closed_form((sum(g[5:]) / sum(g)) ** 2), rel=1e-10)
    assert m[20, 20].item() == pytest.approx(closed_form(1.0), rel=1e-10)


def test_ssim_of_an_image_with_itself_is_one_and_torchmetrics_differs_on_the_same_pair():
    x, y = (t.float() for t in _photo_pair())
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-6)
    ours, theirs = ssim(x, y).item(), ssim(x, y, variant="torchmetrics").item()
    assert abs(ours - theirs) > 1e-4  # border handling differs: a named alternative, never silent
    with pytest.raises(ValueError, match="unknown SSIM variant"):
        ssim(x, y, variant="other")


def test_psnr_known_values():
    x = torch.zeros(2, 3, 8, 8)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    y[1] += 0.01  # MSE 1e-4 -> 40 dB
    assert torch.allclose(psnr(y, x), torch.tensor([20.0, 40.0]), atol=1e-4)
    assert torch.allclose(psnr(x, x), torch.tensor([100.0, 100.0]))
