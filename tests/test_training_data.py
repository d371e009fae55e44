"""lama.training.data: image lists, augmentation variants, deterministic train samples, fixed val samples."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lama.errors import LamaError
from lama.training.data import (
    TRANSFORM_VARIANTS,
    TrainDataset,
    ValDataset,
    collate,
    list_images,
    make_transform,
    resize_center_crop,
)

SIZE = 64


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour image with some texture (flat images hide crop and flip differences)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(seed)
    base = np.stack([128 + 100 * np.sin(xx / (7 + c) + yy / (11 + 2 * c) + seed) for c in range(3)], axis=2)
    return np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture()
def folder(tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(_photo(100, 150, 0)).save(tmp_path / "a.png")
    Image.fromarray(_photo(90, 120, 1)).save(tmp_path / "sub" / "b.JPG", quality=95)
    Image.fromarray(_photo(80, 70, 2)).save(tmp_path / "sub" / "deeper" / "c.webp")
    Image.fromarray(_photo(60, 60, 3)[..., 0]).save(tmp_path / "d.bmp")  # grayscale
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def _same(a: dict, b: dict) -> bool:
    return torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) and a["index"] == b["index"]


def test_list_images_recursive_sorted_and_filtered(folder):
    files = list_images(folder)
    assert [p.relative_to(folder).as_posix() for p in files] == ["a.png", "d.bmp", "sub/b.JPG",
                                                                  "sub/deeper/c.webp"]


def test_list_images_errors_name_folder_and_extensions(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LamaError, match=r"no images found in .*empty.*\.jpg.*\.png"):
        list_images(tmp_path / "empty")
    with pytest.raises(LamaError, match="not found"):
        list_images(tmp_path / "missing")


@pytest.mark.parametrize("variant", TRANSFORM_VARIANTS)
def test_every_variant_gives_out_size_from_a_smaller_image(folder, variant):
    ds = TrainDataset(list_images(folder), out_size=128, transform=variant, seed=3)
    for i in range(len(ds)):  # all smaller than 128 on at least one side
        s = ds[i]
        assert s["image"].shape == (3, 128, 128) and s["image"].dtype == torch.float32
        assert s["mask"].shape == (1, 128, 128) and s["mask"].dtype == torch.float32
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0 and s["image"].std() > 0.01
        assert set(s["mask"].unique().tolist()) <= {0.0, 1.0} and s["mask"].mean() > 0
        assert s["index"] == i


def test_make_transform_rejects_unknown_variant():
    with pytest.raises(LamaError, match="unknown transform variant 'bogus'.*distortions"):
        make_transform("bogus", 64)


def test_no_augs_is_identity_on_out_size_images():
    img = _photo(SIZE, SIZE, 5)
    out = make_transform("no_augs", SIZE)(image=img)["image"]
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img.astype(np.float32) / 255.0)


def test_sample_is_a_pure_function_of_seed_epoch_index(folder):
    files = list_images(folder)
    ds = TrainDataset(files, out_size=SIZE, seed=7)
    ds.set_epoch(2)
    first = [ds[i] for i in range(len(ds))]
    # global random state must not matter
    np.random.seed(123)
    random.seed(456)
    torch.manual_seed(789)
    again = [ds[i] for i in reversed(range(len(ds)))][::-1]  # another order, same object
    other = TrainDataset(files, out_size=SIZE, seed=7)  # a fresh object, never at epoch 2 before
    other.sample(1, 0)  # some unrelated draws first
    other.set_epoch(2)
    fresh = [other[i] for i in (3, 1, 0, 2)]
    fresh = sorted(fresh, key=lambda s: s["index"])
    for a, b, c in zip(first, again, fresh, strict=True):
        assert _same(a, b) and _same(a, c)
    assert all(_same(ds.sample(i, 2), first[i]) for i in range(len(ds)))


def test_epoch_seed_and_index_change_the_sample(folder):
    files = list_images(folder)
    ds = TrainDataset(files, out_size=SIZE, seed=0)
    base = ds.sample(0, 0)
    assert not torch.equal(base["image"], ds.sample(0, 1)["image"])
    assert not torch.equal(base["mask"], ds.sample(0, 1)["mask"])
    assert not torch.equal(base["mask"], TrainDataset(files, out_size=SIZE, seed=1).sample(0, 0)["mask"])
    # two indices that point at the same file still get their own draws
    twice = TrainDataset([files[0], files[0]], out_size=SIZE, seed=0)
    assert not torch.equal(twice.sample(0, 0)["mask"], twice.sample(1, 0)["mask"])


def test_dataloader_workers_and_shuffling_do_not_change_samples(folder):
    files = list_images(folder)
    ds = TrainDataset(files, out_size=SIZE, seed=11)
    ds.set_epoch(1)
    expected = {i: ds.sample(i, 1) for i in range(len(ds))}
    loader = DataLoader(ds, batch_size=3, shuffle=True, num_workers=2, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch, skipped in loader:
        assert skipped == 0
        for k, idx in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["image"][k], expected[idx]["image"])
            assert torch.equal(batch["mask"][k], expected[idx]["mask"])
            seen += 1
    assert seen == len(ds)


def test_invalid_seed_and_epoch_are_refused(folder):
    files = list_images(folder)
    with pytest.raises(ValueError, match="seed"):
        TrainDataset(files, seed=-1)
    ds = TrainDataset(files, out_size=SIZE)
    with pytest.raises(ValueError, match="epoch"):
        ds.set_epoch(-2)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_segmentation_and_unknown_mask_presets_are_refused(folder):
    files = list_images(folder)
    with pytest.raises(LamaError, match="segmentation"):
        TrainDataset(files, mask_preset="segm_256")
    with pytest.raises(LamaError, match="unknown mask preset"):
        ValDataset(files, mask_preset="nope")


def test_unreadable_file_gives_none_and_collate_counts_it(folder, caplog):
    bad = folder / "x.jpg"
    bad.write_bytes(b"\x00garbage, not a jpeg" * 10)
    files = list_images(folder)
    assert bad in files
    ds = TrainDataset(files, out_size=SIZE)
    with caplog.at_level(logging.WARNING, logger="lama.training.data"):
        samples = [ds[i] for i in range(len(ds))]
    assert samples[files.index(bad)] is None
    assert "x.jpg" in caplog.text
    assert ValDataset(files, size=SIZE)[files.index(bad)] is None
    batch, skipped = collate(samples)
    assert skipped == 1
    assert batch["image"].shape == (len(files) - 1, 3, SIZE, SIZE)
    assert batch["mask"].shape == (len(files) - 1, 1, SIZE, SIZE)
    assert batch["index"].dtype == torch.int64
    assert sorted(batch["index"].tolist()) == [i for i, f in enumerate(files) if f != bad]
    assert collate([None, None]) == (None, 2)


def test_val_dataset_is_fixed_and_binary(folder, tmp_path_factory):
    files = list_images(folder)
    a, b = ValDataset(files, size=SIZE), ValDataset(files, size=SIZE)
    for i in range(len(files)):
        sa, sb = a[i], b[i]
        assert _same(sa, sb)
        assert sa["image"].shape == (3, SIZE, SIZE) and sa["mask"].shape == (1, SIZE, SIZE)
        assert set(sa["mask"].unique().tolist()) <= {0.0, 1.0} and sa["mask"].mean() > 0
    # the mask follows the file name, not the position in the list or the folder
    copy_dir = tmp_path_factory.mktemp("copy")
    (copy_dir / files[0].name).write_bytes(files[0].read_bytes())
    moved = ValDataset([files[2], copy_dir / files[0].name], size=SIZE)[1]
    assert torch.equal(moved["mask"], a[0]["mask"]) and torch.equal(moved["image"], a[0]["image"])
    assert not torch.equal(a[0]["mask"], a[1]["mask"])


def test_resize_center_crop():
    img = np.zeros((100, 300, 3), np.uint8)
    img[:, 140:160] = 255  # a centred stripe survives the crop
    out = resize_center_crop(img, 50)
    assert out.shape == (50, 50, 3)
    assert out[:, 22:28].min() > 200 and out[:, :15].max() == 0
    assert resize_center_crop(np.zeros((20, 30, 3), np.uint8), 40).shape == (40, 40, 3)
