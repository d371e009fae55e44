"""Multi-scale refinement (lama.refine): the official result on the official fixture, the pyramid against the
formula and OpenCV, the official quirks that matter, and the properties a user relies on (only the hole changes,
the same input gives the same output, no NaN, the input's size comes back)."""

import cv2
import numpy as np
import pytest
import torch
from conftest import DATA, OFFICIAL, SMALL_GENERATOR, randomize_bn

import lama
from lama import LamaError
from lama.generator import generator_from_config
from lama.inpainter import Inpainter
from lama.refine import RefineProgress, budget_size, loss_mask, n_scales, pyramid, refine

FIXTURE = DATA / "official_refine" / "expected.pt"


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(3)
    return randomize_bn(generator_from_config(SMALL_GENERATOR), seed=3).eval()


@pytest.fixture(scope="module")
def photo():
    rgb = cv2.cvtColor(cv2.imread(str(DATA.parent.parent / "demo" / "examples" / "cat.png")), cv2.COLOR_BGR2RGB)
    rgb = cv2.resize(rgb, (128, 96), interpolation=cv2.INTER_AREA)
    mask = np.zeros((96, 128), bool)
    cv2.ellipse(mask.view(np.uint8), (64, 48), (28, 22), 0, 0, 360, 1, -1)
    return rgb, mask


def _tensors(rgb, mask):
    return lama.to_tensor(rgb), torch.from_numpy(mask)[None, None].float()


def _plain(generator, image, mask):
    with torch.no_grad():
        pred = generator(torch.cat([image * (1 - mask), mask], 1))
    return mask * pred + (1 - mask) * image


def test_equals_the_official_refine_predict():
    """The fixture's refine_predict output (official code on the CPU, 3 scales, 15 iterations; see its README)."""
    e = torch.load(FIXTURE, weights_only=True)
    p = e["params"]
    gen = lama.load_model(OFFICIAL, fast=False).generator
    image, mask = e["image"].float() / 255, e["mask"].float()
    out = refine(gen, image, mask, n_iters=p["n_iters"], lr=p["lr"], min_side=p["min_side"],
                 max_scales=p["max_scales"], px_budget=p["px_budget"])
    hole = mask.bool().expand_as(out)
    diff = (out - e["refined"]).abs()
    assert diff.max() <= 3e-3 and diff[hole].mean() <= 5e-5, (diff.max(), diff[hole].mean())
    # the fixture tells refinement from plain inference: the tolerance above would not pass the plain output
    plain = (e["plain"] - e["refined"]).abs()
    assert plain.max() > 3 * 3e-3 and plain[hole].mean() > 10 * 5e-5


@pytest.mark.parametrize(("h", "w", "min_side", "max_scales", "expected"), [
    (1125, 1600, 512, 3, 2),  # log2(2.2) = 1.14 -> 1
    (2048, 3000, 512, 3, 3),  # log2(4) = 2
    (4096, 4096, 512, 3, 3),  # log2(8) = 3, capped
    (600, 800, 512, 3, 1),  # log2(1.17) = 0.23 -> 0
    (300, 400, 512, 3, 1),  # below min_side: no negative scales
    (192, 256, 48, 3, 3), (96, 160, 48, 2, 2),
])
def test_the_number_of_scales_follows_the_formula(h, w, min_side, max_scales, expected):
    assert n_scales(h, w, min_side, max_scales) == expected


def test_pyramid_levels_are_opencv_blur_and_half_size_and_masks_grow():
    rng = np.random.default_rng(0)
    img = rng.random((96, 130, 3)).astype(np.float32)
    mask = np.zeros((96, 130), np.float32)
    mask[40:47, 61:66] = 1
    t_img, t_mask = torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(mask)[None, None]
    images, masks = pyramid(t_img, t_mask, min_side=24, max_scales=3)
    assert [tuple(i.shape[-2:]) for i in images] == [(24, 32), (48, 65), (96, 130)]
    assert [tuple(m.shape[-2:]) for m in masks] == [(24, 32), (48, 65), (96, 130)]
    # OpenCV: 5x5 Gaussian, sigma 1, mirrored border (reflect-101), then bilinear at exactly half size
    ref = cv2.resize(cv2.GaussianBlur(img, (5, 5), 1, borderType=cv2.BORDER_REFLECT_101), (65, 48),
                     interpolation=cv2.INTER_LINEAR)
    assert np.abs(images[1][0].permute(1, 2, 0).numpy() - ref).max() < 1e-5
    # a lower mask is binary and covers every pixel whose source block holds a hole pixel
    lower = masks[1][0, 0].numpy()
    assert set(np.unique(lower)) == {0.0, 1.0}
    src = cv2.resize(mask, (65, 48), interpolation=cv2.INTER_AREA) > 0
    assert lower[src].all() and lower.sum() > src.sum()


def test_the_loss_mask_is_the_fully_hole_half_eroded_by_a_15px_ellipse():
    mask = torch.zeros(1, 1, 80, 80)
    mask[..., 10:60, 20:70] = 1  # half size: rows 5:30, cols 10:35; eroded by 7: rows 12:23, cols 17:28
    lm = loss_mask(mask, torch.from_numpy(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)).astype(np.float32)))
    assert lm.shape == (1, 1, 40, 40)
    rows, cols = torch.nonzero(lm[0, 0], as_tuple=True)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 22, 17, 27)
    # the image border does not erode: a hole touching it keeps its pixels there
    edge = torch.zeros(1, 1, 80, 80)
    edge[..., :40, :] = 1
    assert loss_mask(edge, torch.ones(15, 15))[0, 0, 0].all()


def test_one_iteration_is_plain_inference_at_every_scale(generator, photo):
    image, mask = _tensors(*photo)
    out = refine(generator, image, mask, n_iters=1, min_side=48, max_scales=2)  # 2 scales, no Adam step
    assert torch.allclose(out, _plain(generator, image, mask), atol=1e-6)


def test_the_loss_decreases_and_stays_finite(generator, photo):
    image, mask = _tensors(*photo)
    steps: list[RefineProgress] = []
    refine(generator, image, mask, n_iters=12, lr=0.01, min_side=48, max_scales=2, progress=steps.append)
    losses = [s.loss for s in steps if s.loss is not None]
    assert len(losses) == 11 and all(s.scale == 1 for s in steps if s.loss is not None)  # n_iters - 1 steps
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert [s.scale for s in steps if s.iteration == 0] == [0, 1]


def test_only_the_hole_changes_and_the_result_is_deterministic(generator, photo):
    image, mask = _tensors(*photo)
    a = refine(generator, image, mask, n_iters=3, min_side=48, max_scales=2)
    b = refine(generator, image, mask, n_iters=3, min_side=48, max_scales=2)
    assert torch.equal(a, b)
    known = ~mask.bool().expand_as(a)
    assert torch.equal(a[known], image[known])
    assert not torch.allclose(a, _plain(generator, image, mask), atol=1e-4)  # the steps changed the fill


def test_checkpointing_and_a_split_over_two_devices_give_the_same_result(generator, photo):
    image, mask = _tensors(*photo)
    kw = dict(n_iters=3, min_side=48, max_scales=2)
    ref = refine(generator, image, mask, checkpointing=False, **kw)
    assert torch.allclose(refine(generator, image, mask, **kw), ref, atol=1e-6)
    assert torch.allclose(refine(generator, image, mask, devices=["cpu", "cpu"], **kw), ref, atol=1e-6)


def test_a_thin_stroke_gives_no_nan(generator, photo):
    """An 8-px stroke leaves the shrunk loss mask empty: the official loss is NaN at every step; the known-pixel
    term still moves the fill."""
    rgb, _ = photo
    image = lama.to_tensor(rgb)
    mask = torch.zeros(1, 1, 96, 128)
    mask[..., 40:48, 10:120] = 1
    steps: list[RefineProgress] = []
    out = refine(generator, image, mask, n_iters=4, lr=0.01, min_side=48, max_scales=2, progress=steps.append)
    assert out.isfinite().all() and all(np.isfinite(s.loss) for s in steps if s.loss is not None)
    assert not torch.allclose(out, _plain(generator, image, mask), atol=1e-4)


def test_a_photo_above_the_pixel_budget_comes_back_at_its_own_size(generator, photo):
    image, mask = _tensors(*photo)
    assert budget_size(96, 128, 3000) == (47, 63)
    out = refine(generator, image, mask, n_iters=2, min_side=16, max_scales=2, px_budget=3000)
    assert out.shape == image.shape
    known = ~mask.bool().expand_as(out)
    assert torch.equal(out[known], image[known]) and out.isfinite().all()
    # the fill is the refinement at the reduced size (as the official code returns it), scaled back up
    small = torch.nn.functional.interpolate(image, size=(47, 63), mode="bilinear", align_corners=False)
    small_mask = (torch.nn.functional.interpolate(mask, size=(47, 63), mode="bilinear", align_corners=False)
                  > 1e-8).float()
    reduced = refine(generator, small, small_mask, n_iters=2, min_side=16, max_scales=2)
    up = torch.nn.functional.interpolate(reduced, size=(96, 128), mode="bilinear", align_corners=False).clamp(0, 1)
    assert torch.allclose(out, mask * up + (1 - mask) * image, atol=1e-6)


def test_bfloat16_refinement_is_close_to_float32(generator, photo):
    image, mask = _tensors(*photo)
    kw = dict(n_iters=3, min_side=48, max_scales=2)
    import copy

    out = refine(copy.deepcopy(generator).to(torch.bfloat16), image, mask, lr=0.05, **kw)
    ref = refine(generator, image, mask, lr=0.05, **kw)
    hole = mask.bool().expand_as(out)
    assert out.dtype == torch.float32 and (out - ref)[hole].abs().mean() < 0.02
    # the steps survive bfloat16: the result is nearer the float32 refinement than the plain fill
    plain = _plain(generator, image, mask)
    assert (out - ref)[hole].abs().mean() < (out - plain)[hole].abs().mean()


def test_several_devices_get_the_official_split_and_the_weights_come_back(generator, monkeypatch):
    """With two devices the front and the first half of the blocks go to the first, the rest and the tail to the
    second (the official split), in place; afterwards everything returns to the weights' device."""
    from lama.refine import _Split

    split = _Split(generator, ["cuda:0", "cuda:1"], checkpointing=True)
    n = generator.n_blocks
    blocks = [[m for m in part if type(m).__name__ == "FFCResnetBlock"] for part in split.rears]
    assert [len(b) for b in blocks] == [n // 2, n - n // 2]
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: moved.append((self, str(a[0]))) or self)
    split.place()
    where = {id(m): d for m, d in moved}
    assert where[id(split.front)] == "cuda:0"
    assert all(where[id(b)] == "cuda:0" for b in blocks[0]) and all(where[id(b)] == "cuda:1" for b in blocks[1])
    assert where[id(split.rears[1][-1])] == "cuda:1"  # the tail with the last blocks
    moved.clear()
    split.restore()
    assert {d for _, d in moved} == {"cpu"} and len(moved) == 1 + sum(len(p) for p in split.rears)


def test_bad_input_is_refused(generator, photo):
    image, mask = _tensors(*photo)
    with pytest.raises(LamaError, match="one image"):
        refine(generator, image.expand(2, -1, -1, -1), mask.expand(2, -1, -1, -1))
    with pytest.raises(LamaError, match="n_iters"):
        refine(generator, image, mask, n_iters=0)
    with pytest.raises(LamaError, match="FFCResNetGenerator"):
        refine(torch.nn.Conv2d(4, 3, 1).eval(), image, mask)
    with pytest.raises(LamaError, match="eval mode"):
        refine(generator.train(), image, mask)
    generator.eval()
    local_only = dict(SMALL_GENERATOR, resnet_conv_kwargs={"ratio_gin": 0, "ratio_gout": 0, "enable_lfu": False})
    with pytest.raises(LamaError, match="local and global"):
        refine(generator_from_config(local_only).eval(), image, mask, n_iters=2, min_side=48, max_scales=2)


def test_inpainter_strategies_refine_and_crop_plus_refine(generator, photo):
    model = Inpainter(generator)
    model.refine_n_iters, model.refine_min_side, model.refine_max_scales = 3, 48, 2
    rgb, mask = photo
    out = model(rgb, mask, strategy="refine")
    image, t_mask = _tensors(rgb, mask)
    ref = refine(generator, image, t_mask, n_iters=3, min_side=48, max_scales=2)
    expected = np.where(mask[..., None], (ref[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8), rgb)
    assert np.array_equal(out, expected)
    # a small hole in a large photo: the crop around it is refined, nothing else changes
    big = cv2.resize(rgb, (1024, 768), interpolation=cv2.INTER_CUBIC)
    hole = np.zeros((768, 1024), bool)
    hole[300:340, 500:560] = True
    model.crop_margin = 40
    out = model(big, hole, strategy="crop+refine")
    assert np.array_equal(out[~hole], big[~hole])
    crop = model(big[260:380, 460:600], hole[260:380, 460:600], strategy="refine")
    assert np.array_equal(out[260:380, 460:600], crop)
    # too small for a pyramid: the plain fill, as the other strategies
    tiny, tiny_mask = rgb[:9, :40], mask[:9, :40] | (np.arange(40) > 30)[None]
    assert np.array_equal(model(tiny, tiny_mask, strategy="refine"), model(tiny, tiny_mask, strategy="original"))


def test_crop_plus_refine_grows_small_crops_to_two_scales(generator):
    """A crop shorter than ~725 px would get a one-scale pyramid (no refinement at all, as in the official code):
    crop+refine grows each crop to the smallest side with two scales, within the photo."""
    from lama.inpainter import crop_boxes

    model = Inpainter(generator)
    assert model._refine_crop_side() == 725  # log2(724 / 512) = 0.4998 rounds to 0; log2(725 / 512) to 1
    assert n_scales(725, 725, 512, 3) == 2 and n_scales(724, 724, 512, 3) == 1
    hole = np.zeros((1125, 1600), bool)
    hole[450:650, 700:1000] = True
    assert crop_boxes(hole, 128) == [(322, 778, 572, 1128)]  # 456 x 556: one scale
    (top, bottom, left, right), = crop_boxes(hole, 128, min_size=725)
    assert (bottom - top, right - left) == (726, 726) and top <= 450 and bottom >= 650 and left <= 700
    edge = np.zeros((800, 1600), bool)
    edge[:40, :60] = True  # at the corner: shifted inward, never past the photo
    assert crop_boxes(edge, 128, min_size=725) == [(0, 726, 0, 726)]


# --- on a GPU (skipped on machines without CUDA; the session that has one runs them) ---------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_on_cuda_the_official_fixture_is_reproduced(dtype, monkeypatch):
    import copy

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 means float32 (cuDNN defaults to TF32)

    e = torch.load(FIXTURE, weights_only=True)
    p = e["params"]
    gen = copy.deepcopy(lama.load_model(OFFICIAL, fast=False).generator).to("cuda", dtype)
    image, mask = (e["image"].float() / 255).cuda(), e["mask"].float().cuda()
    out = refine(gen, image, mask, n_iters=p["n_iters"], lr=p["lr"], min_side=p["min_side"],
                 max_scales=p["max_scales"], px_budget=p["px_budget"])
    assert out.device.type == "cuda" and out.isfinite().all()
    diff = (out.cpu() - e["refined"]).abs()
    hole = e["mask"].bool().expand_as(diff)
    if dtype == torch.float32:
        assert diff.max() <= 3e-3 and diff[hole].mean() <= 5e-5, (diff.max(), diff[hole].mean())
    else:
        assert diff[hole].mean() <= 0.02, diff[hole].mean()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_split_over_two_gpus_equals_one_gpu(generator, photo):
    import copy

    gen = copy.deepcopy(generator).to("cuda:0")
    image, mask = (t.to("cuda:0") for t in _tensors(*photo))
    kw = dict(n_iters=3, min_side=48, max_scales=2)
    one = refine(gen, image, mask, **kw)
    two = refine(gen, image, mask, devices=["cuda:0", "cuda:1"], **kw)
    assert torch.allclose(one, two, atol=1e-5)
    assert {p.device for p in gen.parameters()} == {torch.device("cuda:0")}  # moved back
