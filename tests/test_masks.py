"""Mask generators: coverage against the official generators, seeding, the square crop, segmentation masks."""

import copy
import hashlib
import json
import urllib.error

import cv2
import numpy as np
import pytest
from conftest import DATA

from lama import LamaError
from lama import masks as M
from lama.masks import random as masks_random
from lama.masks.segmentation import _countless, _resize_nearest

REFERENCE = json.loads((DATA / "mask_reference" / "coverage.json").read_text())
N_DRAWS = 2000


def _canvas(preset):
    return M.DATA_GEN_PRESETS[preset]["cropping"]["out_min_size"]


# ---------------------------------------------------------------------------------------------
# Presets


def test_presets_are_the_official_yaml_values():
    assert M.RANDOM_PRESETS == ("random_thin_256", "random_medium_256", "random_thick_256",
                                "random_thin_512", "random_medium_512", "random_thick_512")
    # (min/max times, max_width, max_angle, max_len) and boxes (margin, min, max, min/max times), from the YAMLs
    table = {
        "random_thin_256": ((4, 50, 10, 4, 40), None),
        "random_medium_256": ((4, 5, 50, 4, 100), (0, 10, 50, 1, 5)),
        "random_thick_256": ((1, 5, 100, 4, 200), (10, 30, 150, 1, 3)),
        "random_thin_512": ((4, 70, 20, 4, 100), None),
        "random_medium_512": ((4, 10, 100, 4, 200), (0, 30, 150, 1, 5)),
        "random_thick_512": ((1, 5, 250, 4, 450), (10, 30, 300, 1, 4)),
    }
    for name, (irr, box) in table.items():
        cfg = M.DATA_GEN_PRESETS[name]
        kw = cfg["mask_generator_kwargs"]
        ik = kw["irregular_kwargs"]
        assert (ik["min_times"], ik["max_times"], ik["max_width"], ik["max_angle"], ik["max_len"]) == irr
        assert kw["irregular_proba"] == 1 and kw["variants_n"] == 5
        if box is None:
            assert kw["box_proba"] == 0
        else:
            bk = kw["box_kwargs"]
            assert kw["box_proba"] == 0.3
            assert (bk["margin"], bk["bbox_min_size"], bk["bbox_max_size"], bk["min_times"], bk["max_times"]) == box
        assert cfg["cropping"] == {"out_min_size": int(name[-3:]), "handle_small_mode": "upscale",
                                   "out_square_crop": True, "crop_min_overlap": 1}
        assert cfg["max_masks_per_image"] == 1 and cfg["max_tamper_area"] == 0.5
    for name in ("segm_256", "segm_512"):
        kw = M.DATA_GEN_PRESETS[name]["mask_generator_kwargs"]
        assert (kw["min_mask_area"], kw["num_variants_per_mask"], kw["max_mask_intersection"],
                kw["max_hidden_area"], kw["max_vertical_shift"]) == (0.05, 3, 0.2, 0.5, 0.3)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(LamaError, match="random_thick_512"):
        M.make_mask_generator("random_huge")


# ---------------------------------------------------------------------------------------------
# Training preset: configs/training/data/abl-04-256-mh-dist.yaml (big-lama, lama-fourier)


def test_training_preset_is_the_official_yaml_and_kept_apart_from_evaluation():
    kw = M.TRAIN_PRESETS["train_random"]["mask_generator_kwargs"]
    assert kw["irregular_kwargs"] == dict(max_angle=4, max_len=200, max_width=100, min_times=1, max_times=5)
    assert kw["box_kwargs"] == dict(margin=10, bbox_min_size=30, bbox_max_size=150, min_times=1, max_times=4)
    assert (kw["irregular_proba"], kw["box_proba"], kw["segm_proba"], kw["squares_proba"]) == (1, 1, 0, 0)
    assert M.TRAIN_PRESETS["train_random"]["out_size"] == 256
    # listed apart: evaluation recipes stay the official data_gen set, every name is tagged with its purpose
    assert "train_random" not in M.DATA_GEN_PRESETS and "train_random" not in M.RANDOM_PRESETS
    assert {k: v["purpose"] for k, v in M.MASK_PRESETS.items()} == {
        **{k: "evaluation" for k in M.DATA_GEN_PRESETS}, "train_random": "training"}
    gen = M.make_mask_generator("train_random")
    assert isinstance(gen, M.MixedMaskGenerator) and gen.variants_n == 1  # one mask per training crop
    assert gen.probas.tolist() == [0.5, 0.5]  # both probas 1, renormalised: strokes and boxes alike
    irregular, box = gen.gens
    assert (irregular.max_len, irregular.max_width, irregular.min_times, irregular.max_times) == (200, 100, 1, 5)
    assert (box.margin, box.bbox_min_size, box.bbox_max_size, box.min_times, box.max_times) == (10, 30, 150, 1, 4)


def test_training_masks_are_never_empty_half_boxes_and_of_plausible_coverage():
    gen = M.make_mask_generator("train_random")
    calls = [0, 0]

    def counting(i, inner):
        def draw(*args, **kwargs):
            calls[i] += 1
            return inner(*args, **kwargs)
        return draw

    gen.gens = [counting(i, g) for i, g in enumerate(gen.gens)]
    rng = np.random.default_rng(0)
    cov = np.array([gen(256, 256, rng).mean() for _ in range(N_DRAWS)])
    assert cov.min() > 0 and cov.max() < 1  # min_times 1 for both kinds: every mask has a hole
    assert 0.45 < calls[1] / N_DRAWS < 0.55  # the box share
    # measured on 2000 draws: mean 0.346, median 0.317, q05 0.076, q95 0.722, 22.6 % above half
    assert 0.31 < cov.mean() < 0.38 and 0.28 < np.median(cov) < 0.36
    assert 0.04 < np.quantile(cov, 0.05) < 0.11 and 0.66 < np.quantile(cov, 0.95) < 0.78
    assert 0.18 < (cov > 0.5).mean() < 0.27


def test_training_preset_is_seeded():
    gen = M.make_mask_generator("train_random")
    a = [m for _ in range(8) for m in gen.get_masks(256, 256, np.random.default_rng(0))]
    rng = np.random.default_rng(0)
    b = [m for _ in range(8) for m in gen.get_masks(256, 256, rng)]
    assert len(gen.get_masks(256, 256, np.random.default_rng(0))) == 1
    assert all(x.tobytes() == a[0].tobytes() for x in a)  # a fresh seed 0 each time: the same mask
    assert len({m.tobytes() for m in b}) == 8  # one generator: independent draws
    assert hashlib.sha256(b"".join(m.tobytes() for m in b)).hexdigest()[:16] == "53d0dcdf6368c0cd"


# ---------------------------------------------------------------------------------------------
# Coverage statistics of the official generators (tests/data/mask_reference, before crop and filter)


@pytest.mark.parametrize("preset", M.RANDOM_PRESETS)
def test_coverage_matches_official_generator(preset):
    gen = M.make_mask_generator(preset)
    size = _canvas(preset)
    rng = np.random.default_rng(0)
    cov = np.array([gen(size, size, rng).mean() for _ in range(N_DRAWS)])
    ours = {"mean": cov.mean(), "median": np.median(cov), "q05": np.quantile(cov, 0.05),
            "q25": np.quantile(cov, 0.25), "q75": np.quantile(cov, 0.75), "q95": np.quantile(cov, 0.95),
            "frac_over_half": (cov > 0.5).mean()}
    ref = REFERENCE[preset]
    for key, value in ours.items():
        tol = 0.015 if key in ("mean", "median") else 0.03
        assert abs(value - ref[key]) <= tol, f"{preset} {key}: ours {value:.4f}, official {ref[key]:.4f}"


# ---------------------------------------------------------------------------------------------
# Seeding and output format


@pytest.mark.parametrize("preset", M.RANDOM_PRESETS)
def test_same_seed_same_bytes_and_format(preset):
    gen = M.make_mask_generator(preset)
    h, w = _canvas(preset), _canvas(preset) * 3 // 2
    a = gen.get_masks(h, w, np.random.default_rng(7))
    b = gen.get_masks(h, w, np.random.default_rng(7))
    c = gen.get_masks(h, w, np.random.default_rng(8))
    assert len(a) == 5
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b, strict=True))
    assert any(x.tobytes() != y.tobytes() for x, y in zip(a, c, strict=True))
    assert len({m.tobytes() for m in a}) == 5  # the variants are independent draws
    for m in a:
        assert m.dtype == np.float32 and m.shape == (h, w)
        assert set(np.unique(m)) <= {0.0, 1.0} and m.any()


def test_golden_bytes():
    """The bytes for seed 0 are fixed: a change of numpy's streams or of cv2's rasteriser shows up here."""
    digests = {}
    for preset in M.RANDOM_PRESETS:
        masks = M.make_mask_generator(preset).get_masks(_canvas(preset), _canvas(preset), np.random.default_rng(0))
        digests[preset] = hashlib.sha256(b"".join(m.tobytes() for m in masks)).hexdigest()[:16]
    assert digests == GOLDEN


GOLDEN = {
    "random_thin_256": "f65f44a162ff014a",
    "random_medium_256": "2e554649b173c1a6",
    "random_thick_256": "27dcf8b183d0a9eb",
    "random_thin_512": "0915506eb83ae1f4",
    "random_medium_512": "c72c0a3d5e1aed00",
    "random_thick_512": "6012f91043c348a2",
}


def test_global_random_state_is_refused():
    gen = M.make_mask_generator("random_thin_256")
    for bad in (None, np.random.RandomState(0), 0):
        with pytest.raises(TypeError, match="Generator"):
            gen(64, 64, bad)
    with pytest.raises(TypeError):
        M.propose_random_square_crop(np.ones((4, 8)), np.random.RandomState(0))


# ---------------------------------------------------------------------------------------------
# Draw logic of strokes and boxes


def test_first_stroke_goes_left_because_its_angle_is_mirrored():
    """The official mirrors the angle of even-numbered strokes (2*pi - angle): the first one moves to smaller x."""
    h = w = 400
    went_left = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        probe = copy.deepcopy(rng)
        probe.integers(1, 2)  # the stroke count, drawn first
        x0, y0 = int(probe.integers(w)), int(probe.integers(h))
        m = M.make_random_irregular_mask(h, w, rng, max_angle=2, max_len=100, max_width=1, min_times=1, max_times=1)
        ys, xs = np.nonzero(m)
        assert xs.max() <= x0 + 3 and ys.min() >= y0 - 3  # brush 5: 2-3 pixels around the path
        went_left += bool(xs.min() < x0 - 20)
    assert went_left >= 5  # angle 2*pi - 1.01 moves left; 2*pi - 0.01 is almost straight down


def test_box_sizes_margin_and_inclusive_max():
    """Box sides span [bbox_min_size, bbox_max_size] inclusive (the official ramp adds 1), inside the margin."""
    gen = M.BoxMaskGenerator(margin=10, bbox_min_size=30, bbox_max_size=60, min_times=1, max_times=1)
    rng = np.random.default_rng(0)
    sides = []
    for _ in range(600):
        m = gen(128, 160, rng)
        ys, xs = np.nonzero(m)
        assert ys.min() >= 10 and xs.min() >= 10 and ys.max() < 118 and xs.max() < 150
        bh, bw = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert m.sum() == bh * bw  # one filled rectangle
        sides += [bh, bw]
    assert min(sides) == 30 and max(sides) == 60


def test_stroke_count_reaches_max_times_plus_one(monkeypatch):
    """As the official generator (ramp at 1) the stroke count runs up to max_times + 1, inclusive."""
    seen = {}

    def spy(height, width, rng, **kw):
        seen.update(kw)
        return np.zeros((height, width), np.float32)

    monkeypatch.setattr(masks_random, "make_random_irregular_mask", spy)  # where the generators look it up
    M.make_mask_generator("random_thin_256")(64, 64, np.random.default_rng(0))
    assert seen == {"max_angle": 4, "max_len": 40, "max_width": 10, "min_times": 4, "max_times": 51}
    monkeypatch.undo()
    # max_times is inclusive: 0..0 strokes draws nothing, 1..1 draws something
    assert not M.make_random_irregular_mask(64, 64, np.random.default_rng(0), min_times=0, max_times=0).any()
    assert M.make_random_irregular_mask(64, 64, np.random.default_rng(0), min_times=1, max_times=1).any()


def test_mixed_uses_one_kind_per_mask():
    gen = M.make_mask_generator("random_medium_256")
    rng = np.random.default_rng(1)
    is_box = []
    for _ in range(1000):
        m = gen(256, 256, rng)
        # boxes (sides >= 10) survive an opening with a 9x9 square; round-capped strokes never do
        is_box.append(bool(np.array_equal(cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((9, 9), np.uint8)), m)))
    share = np.mean(is_box)
    assert 0.18 < share < 0.29  # 0.3 / 1.3 = 0.23 of the masks are boxes


# ---------------------------------------------------------------------------------------------
# Square crop


@pytest.mark.parametrize("shape", [(256, 384), (384, 256), (256, 256), (300, 301)])
@pytest.mark.parametrize("min_overlap", [1.0, 0.5, 0.0])
def test_square_crop_is_square_inside_and_overlaps(shape, min_overlap):
    h, w = shape
    gen = M.make_mask_generator("random_thick_256")
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(100):
        mask = gen(h, w, rng)
        left, top, right, bottom = M.propose_random_square_crop(mask, rng, min_overlap=min_overlap)
        assert right - left == bottom - top == min(h, w)
        assert 0 <= left and 0 <= top and right <= w and bottom <= h
        assert mask[top:bottom, left:right].any()
        # the crop reaches the mask's point at min_overlap of its extent along the long side (the official
        # range stops one short of the last start, so the far edge may miss it by one pixel)
        hole = mask > 0.5
        coords = np.flatnonzero(hole.any(axis=0) if h < w else hole.any(axis=1))
        anchor = int(coords[0] + (coords[-1] - coords[0]) * min_overlap)
        lo, hi = (left, right) if h < w else (top, bottom)
        assert lo <= anchor <= hi
        starts.add(lo)
    if abs(h - w) > 50:
        assert len(starts) > 5  # it is random


def test_square_crop_of_an_empty_mask_is_still_valid():
    rng = np.random.default_rng(0)
    for _ in range(50):
        left, top, right, bottom = M.propose_random_square_crop(np.zeros((100, 180)), rng)
        assert (top, bottom) == (0, 100) and right - left == 100 and 0 <= left and right <= 180


def test_square_crop_is_seeded():
    mask = M.make_mask_generator("random_thin_256")(256, 512, np.random.default_rng(0))
    a = [M.propose_random_square_crop(mask, np.random.default_rng(s), 0.5) for s in range(10)]
    b = [M.propose_random_square_crop(mask, np.random.default_rng(s), 0.5) for s in range(10)]
    assert a == b and len(set(a)) > 1


# ---------------------------------------------------------------------------------------------
# Segmentation masks, with a deterministic fake segmenter


def _l_shape(h, w, top, left, size):
    m = np.zeros((h, w), bool)
    m[top:top + size, left:left + size // 3] = True          # the stem
    m[top + size - size // 3:top + size, left:left + size] = True  # the foot, to the right: not mirror-symmetric
    return m


class FakeSegmenter:
    """Fixed instances: an L shape (things), a small square (thing), and a big band (thing, too big to move)."""

    def __init__(self, h=256, w=256, extra=()):
        self.h, self.w = h, w
        band = np.zeros((h, w), bool)
        band[h * 31 // 64:, :] = True  # 51.6 % of the image: at least max_object_area
        square = np.zeros((h, w), bool)
        square[20:100, 150:230] = True  # 9.8 %
        self.instances = [(_l_shape(h, w, 10, 10, 110), "L", 0.9), (square, "square", 0.8),  # L: 10.5 %
                          (band, "band", 0.7), *extra]
        self.calls = 0

    def __call__(self, image):
        assert image.shape == (self.h, self.w, 3) and image.dtype == np.uint8
        self.calls += 1
        return self.instances


def _image(h=256, w=256):
    return np.zeros((h, w, 3), np.uint8)


def _tight(m):
    ys, xs = np.nonzero(m)
    return m[ys.min():ys.max() + 1, xs.min():xs.max() + 1], (ys.min(), ys.max(), xs.min(), xs.max())


def test_segm_masks_are_moved_object_shapes():
    seg = FakeSegmenter()
    gen = M.SegmentationMaskGenerator(seg, max_scale_change=0.0, horizontal_flip=False)
    shapes = {name: _tight(m)[0] for m, name, _ in seg.instances[:2]}
    seen = set()
    for seed in range(10):
        masks = gen.get_masks(256, 256, np.random.default_rng(seed), image=_image())
        assert masks and len(masks) <= 2 * 3  # two movable objects, up to 3 placements each
        for m in masks:
            assert m.dtype == np.float32 and m.shape == (256, 256) and set(np.unique(m)) <= {0.0, 1.0}
            assert m.mean() > 0.05  # min_mask_area
            crop, (y0, y1, x0, x1) = _tight(m > 0)
            inside = y0 > 0 and x0 > 0 and y1 < 255 and x1 < 255
            matches = [n for n, s in shapes.items() if s.shape == crop.shape and np.array_equal(s, crop)]
            if inside:
                assert matches, "a mask fully inside the image must be a translated copy of an object"
                seen.update(matches)
                src = next(mm for mm, nn, _ in seg.instances if nn == matches[0])
                # moved away from the object: at most max_mask_intersection of it overlaps (coarse-grid slack)
                assert (src & (m > 0)).sum() / src.sum() <= 0.2 + 0.05
            assert (m > 0).sum() <= max(s.sum() for s in shapes.values())  # never the big band
            # a part pushed off the image counts as overlap: at least 1 - max_mask_intersection stays visible
            assert (m > 0).sum() >= 0.75 * min(s.sum() for s in shapes.values())
    assert seen == {"L", "square"}


def test_segm_flip_and_scale():
    seg = FakeSegmenter()
    gen = M.SegmentationMaskGenerator(seg, max_scale_change=0.0, horizontal_flip=True)
    l_shape = _tight(seg.instances[0][0])[0]
    kinds = set()
    for seed in range(15):
        for m in gen.get_masks(256, 256, np.random.default_rng(seed), image=_image()):
            crop, (y0, y1, x0, x1) = _tight(m > 0)
            if crop.shape == l_shape.shape and y0 > 0 and x0 > 0 and y1 < 255 and x1 < 255:
                if np.array_equal(crop, l_shape):
                    kinds.add("same")
                elif np.array_equal(crop, l_shape[:, ::-1]):
                    kinds.add("mirrored")
    assert kinds == {"same", "mirrored"}
    # with scaling the area stays within (1 +- max_scale_change)^2 of the object's, up to pixel rounding
    gen = M.SegmentationMaskGenerator(seg, max_scale_change=0.25)
    areas = {"L": seg.instances[0][0].sum(), "square": seg.instances[1][0].sum()}
    for seed in range(10):
        for m in gen.get_masks(256, 256, np.random.default_rng(seed), image=_image()):
            a = (m > 0).sum()
            assert any(0.74 ** 2 * s * 0.5 <= a <= 1.26 ** 2 * s for s in areas.values())


def test_segm_is_seeded_and_lazy_about_the_segmenter():
    seg = FakeSegmenter()
    gen = M.make_mask_generator("segm_256", segmenter=seg)
    assert isinstance(gen, M.SegmentationMaskGenerator) and seg.calls == 0
    with pytest.raises(LamaError, match="image="):  # it needs the photo (was: needs_image), and says so early
        gen.get_masks(256, 256, np.random.default_rng(5))
    assert seg.calls == 0
    assert gen.max_mask_intersection == 0.2 and gen.num_variants_per_mask == 3
    a = gen.get_masks(256, 256, np.random.default_rng(5), image=_image())
    b = gen.get_masks(256, 256, np.random.default_rng(5), image=_image())
    assert [m.tobytes() for m in a] == [m.tobytes() for m in b]
    runs = {tuple(m.tobytes() for m in gen.get_masks(256, 256, np.random.default_rng(s), image=_image()))
            for s in range(6)}
    assert len(runs) > 1
    one = gen(256, 256, np.random.default_rng(0), image=_image())
    assert one is not None and one.shape == (256, 256)


def test_segm_filters_scores_labels_small_and_hidden_objects():
    h = w = 256
    tiny = np.zeros((h, w), bool)
    tiny[100:110, 130:140] = True  # 0.15 %: its moved copies are below min_mask_area
    seg = FakeSegmenter(extra=[(tiny, "tiny", 0.9)])
    gen = M.SegmentationMaskGenerator(seg)
    labels, things = gen.label_map(_image())
    assert len(things) == 4 and labels.max() == 4
    for m in gen.get_masks(256, 256, np.random.default_rng(0), image=_image()):
        assert (m > 0).sum() > 0.05 * h * w
    # low scores are ignored
    seg_low = FakeSegmenter()
    seg_low.instances = [(mm, n, 0.3) for mm, n, _ in seg_low.instances]
    assert M.SegmentationMaskGenerator(seg_low).get_masks(256, 256, np.random.default_rng(0), image=_image()) == []
    # labels outside thing_labels are never moved
    only_square = M.SegmentationMaskGenerator(FakeSegmenter(), thing_labels={"square", "band"},
                                              max_scale_change=0.0, horizontal_flip=False)
    moved = only_square.get_masks(256, 256, np.random.default_rng(0), image=_image())
    assert moved
    for m in moved:
        crop, (y0, y1, x0, x1) = _tight(m > 0)
        assert crop.all() and crop.shape[0] <= 80 and crop.shape[1] <= 80  # the square (maybe cut by a border)
    # an instance more than half hidden by a better one is dropped (detectron2's panoptic merge)
    seg2 = FakeSegmenter()
    copy_of_l = seg2.instances[0][0].copy()
    seg2.instances = [seg2.instances[0], (copy_of_l, "L2", 0.85)]
    labels, things = M.SegmentationMaskGenerator(seg2).label_map(_image())
    assert things == [1] and set(np.unique(labels)) == {0, 1}


def test_segm_rigid_mode_keeps_masks_off_other_objects():
    seg = FakeSegmenter()
    seg.instances = seg.instances[:2]
    gen = M.SegmentationMaskGenerator(seg, max_foreground_intersection=0.0, max_scale_change=0.0)
    others = [mm for mm, _, _ in seg.instances]
    for seed in range(5):
        for m in gen.get_masks(256, 256, np.random.default_rng(seed), image=_image()):
            for o in others:
                assert (o & (m > 0)).sum() <= 0.1 * (m > 0).sum()  # coarse grid: a few border pixels at most


def test_segm_non_square_and_bad_sizes():
    seg = FakeSegmenter(256, 384)
    seg.instances = [(_l_shape(256, 384, 30, 40, 130), "L", 0.9)]
    masks = M.SegmentationMaskGenerator(seg).get_masks(256, 384, np.random.default_rng(0), image=_image(256, 384))
    assert masks and all(m.shape == (256, 384) for m in masks)
    small = FakeSegmenter(32, 32)
    small.instances = []
    with pytest.raises(ValueError, match="width"):
        M.SegmentationMaskGenerator(small).get_masks(32, 32, np.random.default_rng(0), image=_image(32, 32))


def test_countless_picks_the_repeated_label():
    labels = np.array([[1, 1, 2, 3, 4, 5],
                       [2, 4, 3, 5, 4, 6],
                       [6, 7, 0, 0, 1, 2],
                       [8, 7, 9, 9, 3, 4]])
    # per 2x2 block (a b / c d): a if a == b or a == c, else b if b == c, else d
    assert _countless(labels).tolist() == [[1, 3, 4], [7, 0, 4]]


def test_nearest_resize_matches_skimage_except_exact_ties():
    skt = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        h, w = int(rng.integers(3, 90)), int(rng.integers(3, 90))
        f = rng.uniform(0.75, 1.25)
        a = rng.random((h, w)) > 0.5
        ref = skt.rescale(a, f, order=0, anti_aliasing=False)
        oh, ow = ref.shape
        if any((2 * i + 1) * h % (2 * oh) == 0 for i in range(oh)) or \
                any((2 * i + 1) * w % (2 * ow) == 0 for i in range(ow)):
            continue  # a pixel centre falls exactly between two source pixels: versions of skimage differ
        assert np.array_equal(_resize_nearest(a, oh, ow), ref)
        checked += 1
    assert checked > 50


def test_default_segmenter_is_lazy_and_fails_clearly_offline(monkeypatch):
    import torch

    gen = M.SegmentationMaskGenerator()  # nothing is built or downloaded here
    assert isinstance(gen.segmenter, M.MaskRCNNSegmenter) and gen.segmenter._model is None

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(LamaError, match="Mask R-CNN"):
        gen.get_masks(64, 64, np.random.default_rng(0), image=_image(64, 64))


# ---------------------------------------------------------------------------------------------
# One protocol for every kind: gen(height, width, rng, image=None), get_masks(height, width, rng, image=None)


@pytest.mark.parametrize("preset", [*M.RANDOM_PRESETS, *M.TRAIN_PRESETS])
def test_random_kinds_ignore_the_image(preset):
    gen = M.make_mask_generator(preset)
    assert isinstance(gen, M.MaskGenerator)
    h, w = 200, 300
    photo = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    with_image = gen.get_masks(h, w, np.random.default_rng(4), image=photo)
    without = gen.get_masks(h, w, np.random.default_rng(4))
    assert [m.tobytes() for m in with_image] == [m.tobytes() for m in without]
    assert gen(h, w, np.random.default_rng(4), image=photo).tobytes() == \
        gen(h, w, np.random.default_rng(4)).tobytes()


def test_segmentation_requires_a_matching_image():
    gen = M.make_mask_generator("segm_256", segmenter=FakeSegmenter())
    assert isinstance(gen, M.MaskGenerator)
    rng = np.random.default_rng(0)
    for call in (gen, gen.get_masks):
        with pytest.raises(LamaError, match="image="):
            call(256, 256, rng)
        with pytest.raises(LamaError, match="256x384"):
            call(256, 256, rng, image=_image(256, 384))
    with pytest.raises(ValueError, match="HxWx3"):
        gen.get_masks(256, 256, rng, image=np.zeros((256, 256), np.uint8))


def test_evaluation_splits_refuse_the_training_preset(tmp_path):
    from evaluation.splits import SplitError, prepare_split

    with pytest.raises(SplitError, match="training-only .*'train_random'"):
        prepare_split("train_random", tmp_path, tmp_path / "out", progress=False)
    with pytest.raises(SplitError, match="unknown preset 'random_huge'"):
        prepare_split("random_huge", tmp_path, tmp_path / "out", progress=False)
