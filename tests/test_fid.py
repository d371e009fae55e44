"""FID: the Fréchet distance against scipy and pytorch-fid; Inception features against the reference networks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from conftest import hub_dir
from PIL import Image

from lama.metrics import weights as mw
from lama.metrics.fid import (
    InceptionFeatures,
    fid_from_features,
    frechet_distance,
    resize_bilinear_tf1,
)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module", autouse=True)
def _offline(offline_metric_hub):
    """Every test here runs against the empty offline caches of conftest.offline_metric_hub."""


def real_photos() -> list[torch.Tensor]:
    """Real photos nobody in this project made: the LPIPS examples and photos shipped with installed packages."""
    paths = [DATA / "tiny.png", *sorted((DATA / "lpips_examples").glob("*.png"))]
    for package, names in [("skimage", ["data/astronaut.png", "data/chelsea.png", "data/coffee.png",
                                        "data/rocket.jpg"]),
                           ("matplotlib", ["mpl-data/sample_data/grace_hopper.jpg"])]:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            root = Path(next(iter(spec.submodule_search_locations)))
            paths += [root / n for n in names if (root / n).is_file()]
    images = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255
        images.append(torch.from_numpy(arr).permute(2, 0, 1)[None])
    return images


@pytest.fixture(scope="module")
def features():
    return InceptionFeatures()


# --- Fréchet distance ------------------------------------------------------------------------------------------


def realistic_features(n: int, d: int, shift: float, seed: int) -> np.ndarray:
    """Non-negative, correlated, low-rank-plus-noise features like Inception pool3 activations."""
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(123).standard_normal((256, d)) / 16
    return np.maximum(rng.standard_normal((n, 256)) @ mixing + shift, 0) + 0.01 * rng.random((n, d))


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")
def test_frechet_distance_matches_pytorch_fid_at_2048():
    from pytorch_fid.fid_score import calculate_frechet_distance

    real, fake = realistic_features(3000, 2048, 0.1, 1), realistic_features(3000, 2048, 0.15, 2)
    ours = fid_from_features(real, fake)
    theirs = calculate_frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0),
                                        np.cov(fake, rowvar=False))
    assert ours > 1  # a non-trivial distance
    assert abs(ours - theirs) <= 1e-6 * abs(theirs)


def test_frechet_distance_matches_scipy_sqrtm():
    real, fake = realistic_features(2000, 1024, 0.1, 3), realistic_features(2000, 1024, 0.2, 4)
    mu1, s1, mu2, s2 = real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    expected = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert abs(ours - expected) <= 1e-6 * abs(expected)


def test_frechet_distance_closed_form_with_singular_covariances():
    # Covariances sharing eigenvectors: tr sqrtm(s1 s2) = sum sqrt(a_i b_i), whatever their rank.
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    a, b = rng.random(300) * 3, rng.random(300)
    a[:120] = 0  # rank 180
    b[100:150] = 0
    mu1, mu2 = rng.standard_normal(300), rng.standard_normal(300)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance(mu1, (q * a) @ q.T, mu2, (q * b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_even_when_rank_deficient():
    feats = realistic_features(500, 2048, 0.1, 5)  # fewer samples than dimensions
    assert abs(fid_from_features(feats, feats)) < 1e-8 * np.trace(np.cov(feats, rowvar=False))
    small = torch.from_numpy(feats[:50, :64])  # torch input, and the order of samples does not matter
    assert abs(fid_from_features(small, small.flip(0))) < 1e-10


def test_fid_needs_two_samples():
    with pytest.raises(ValueError, match="N >= 2"):
        fid_from_features(np.zeros((1, 8)), np.zeros((5, 8)))


# --- Inception features ----------------------------------------------------------------------------------------


def test_features_equal_fid_helper_torchscript_on_real_photos(features):
    photos = real_photos()
    assert len(photos) >= 4
    script = mw.load_fid_helper(mw.source_file("inception"))
    with torch.no_grad():
        ours = torch.cat([features(img) for img in photos])  # each at its own size
        ref = script(torch.cat([F.interpolate(img, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
                                for img in photos]))
    assert ours.shape == (len(photos), 2048) and ours.dtype == torch.float32
    assert (ref.abs().amax(dim=1) > 0.5).all()  # real, non-trivial activations
    assert (ours - ref).abs().max().item() <= 1e-4


def test_lama_protocol_equals_pytorch_fid_own_input_path(features):
    # pytorch-fid's InceptionV3(resize_input=True, normalize_input=True) is the code LaMa's evaluator copied.
    from pytorch_fid.inception import InceptionV3

    from lama.metrics.weights import provision_metric_weights

    with hub_dir(provision_metric_weights(["inception"])["inception"].parent.parent):
        reference = InceptionV3([3]).eval()
    img = torch.cat([F.interpolate(p, size=(200, 330), mode="bilinear") for p in real_photos()[:3]])
    with torch.no_grad():
        expected = reference(img)[0].flatten(1)
        assert torch.equal(features(img), expected)


def test_resize_alternatives_are_named_and_differ(features):
    with pytest.raises(ValueError, match="resize"):
        InceptionFeatures(resize="antialias")
    photos = real_photos()
    img = F.interpolate(photos[min(4, len(photos) - 1)], size=(512, 512), mode="bilinear")
    out = {}
    try:
        with torch.no_grad():
            for mode in ("lama", "torchmetrics", "tf1"):
                features.resize = mode
                out[mode] = features(img)
    finally:
        features.resize = "lama"
    assert (out["lama"] - out["torchmetrics"]).abs().max() > 1e-3
    assert (out["lama"] - out["tf1"]).abs().max() > 1e-3


def test_torchmetrics_and_tf1_scale_uint8_as_x_minus_128_over_128(features):
    k = torch.randint(0, 256, (1, 3, 299, 299), generator=torch.Generator().manual_seed(0))
    try:
        for mode in ("torchmetrics", "tf1"):
            features.resize = mode
            assert torch.allclose(features.preprocess(k.float() / 255), (k.float() - 128) / 128, atol=1e-6)
    finally:
        features.resize = "lama"
    assert torch.allclose(features.preprocess(k.float() / 255), k.float() / 127.5 - 1, atol=1e-6)


def test_tf1_resize_samples_top_left_aligned_grid():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # Downscale by 2: TF1 samples source rows/cols 0 and 2 (no half-pixel offset).
    assert torch.equal(resize_bilinear_tf1(x, (2, 2)), torch.tensor([[[[0.0, 2.0], [8.0, 10.0]]]]))
    # Upscale 2 -> 4: source positions 0, 0.5, 1, 1.5, the last clamped to the edge.
    row = torch.tensor([[[[1.0, 3.0]]]])
    assert torch.equal(resize_bilinear_tf1(row, (1, 4)), torch.tensor([[[[1.0, 2.0, 3.0, 3.0]]]]))


def test_bad_input_is_refused(features):
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        features(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        features(torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8))


def test_stays_in_eval_mode(features):
    features.train()
    assert not features.training and not features.net.training
    assert not any(p.requires_grad for p in features.parameters())
