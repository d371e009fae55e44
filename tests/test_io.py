"""The shared infrastructure: atomic writes, the image-extension set, the one-process behaviour of lama.dist."""

import os
import stat

import numpy as np
import pytest
from PIL import Image

from lama import dist
from lama.io import IMAGE_EXTS, atomic_write, read_mask, read_rgb, save_image


def test_atomic_write_replaces_the_file_only_when_the_writer_succeeds(tmp_path):
    path = tmp_path / "sub" / "results.csv"
    with atomic_write(path, "w") as f:
        f.write("a,b\n1,2\n")
    assert path.read_text() == "a,b\n1,2\n"
    with pytest.raises(RuntimeError), atomic_write(path, "w") as f:
        f.write("half a fi")
        raise RuntimeError("disk full")
    assert path.read_text() == "a,b\n1,2\n"  # the old content, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.csv"]  # no temp file left behind


def test_atomic_write_gives_the_permissions_of_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "x.bin") as f:
            f.write(b"\x00")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o644  # not mkstemp's 0o600


def test_saved_images_read_back_bit_identical(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    save_image(rgb, tmp_path / "a.png")
    assert np.array_equal(read_rgb(tmp_path / "a.png"), rgb)
    mask = np.zeros((9, 13), np.uint8)
    mask[2:5, 3:7] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert np.array_equal(read_mask(tmp_path / "m.png"), mask > 127)


def test_one_image_extension_set():
    assert {".png", ".jpg", ".jpeg", ".webp"} <= IMAGE_EXTS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTS)


def test_dist_helpers_are_single_process_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert dist.init_from_env() == (0, 1) and dist.rank_world() == (0, 1)
    assert dist.gather_objects({"a": 1}) == [{"a": 1}]
    items = list(range(7))
    shares = [dist.shard(items, r, 3) for r in range(3)]
    assert sorted(sum(shares, [])) == items and shares[1] == [1, 4]  # every item once, round robin
    dist.barrier()
    dist.shutdown()
