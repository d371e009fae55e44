"""``python -m lama predict`` on files and folders: layouts, resume, bad files."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import DATA, SMALL_GENERATOR, randomize_bn
from PIL import Image

from lama.__main__ import main
from lama.generator import generator_from_config
from lama.testing import config_text, write_folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(2)
    gen = randomize_bn(generator_from_config(SMALL_GENERATOR), seed=2)
    return write_folder(tmp_path_factory.mktemp("m") / "model", gen,
                        config_text(SMALL_GENERATOR["ngf"], SMALL_GENERATOR["n_blocks"]))


def _photo():
    return Image.open(DATA / "tiny.png").convert("RGB")


def _mask(value=255):
    m = np.zeros((64, 64), np.uint8)
    m[10:30, 20:40] = value
    return Image.fromarray(m)


def test_official_layout_folder_with_resume_and_a_bad_file(tmp_path, model_dir, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    _photo().save(inp / "a.png")
    _mask().save(inp / "a_mask000.png")
    _mask().transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(inp / "a_mask001.png")
    _photo().save(inp / "b.jpg", quality=95)
    _mask().save(inp / "b_mask.png")
    (inp / "c.png").write_bytes(b"broken")
    _mask().save(inp / "c_mask.png")
    args = ["predict", "--model", str(model_dir), "--input", str(inp), "--output", str(out), "--quiet"]
    assert main(args) == 1  # c.png is broken: reported, the batch goes on, non-zero exit
    err = capsys.readouterr().err
    assert "c.png" in err
    assert sorted(p.name for p in out.iterdir()) == ["a_mask000.png", "a_mask001.png", "b_mask.jpg"]
    with Image.open(out / "b_mask.jpg") as im:
        assert im.format == "JPEG"
    a0 = np.asarray(Image.open(out / "a_mask000.png"))
    keep = np.asarray(_mask()) == 0
    assert np.array_equal(a0[keep], np.asarray(_photo())[keep])
    assert not np.array_equal(a0[~keep], np.asarray(_photo())[~keep])
    before = (out / "a_mask000.png").stat().st_mtime_ns
    (inp / "c.png").unlink()
    (inp / "c_mask.png").unlink()
    assert main(args) == 0  # resumes: nothing left to do, nothing rewritten
    assert (out / "a_mask000.png").stat().st_mtime_ns == before


def test_mask_folder_matched_by_stem_and_missing_masks_are_reported(tmp_path, model_dir, capsys):
    inp, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    inp.mkdir()
    masks.mkdir()
    _photo().save(inp / "x.png")
    _mask().save(masks / "x.png")
    _photo().save(inp / "y.png")
    assert main(["predict", "--model", str(model_dir), "--input", str(inp), "--mask", str(masks),
                 "--output", str(out), "--quiet"]) == 1
    assert [p.name for p in out.iterdir()] == ["x.png"]
    assert "y.png" in capsys.readouterr().err


def test_single_file_via_the_module_entry_point(tmp_path, model_dir):
    _photo().save(tmp_path / "p.png")
    _mask().save(tmp_path / "m.png")
    r = subprocess.run([sys.executable, "-m", "lama", "predict", "--model", str(model_dir), "--input",
                        str(tmp_path / "p.png"), "--mask", str(tmp_path / "m.png"), "--output",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert np.asarray(Image.open(tmp_path / "o" / "p.png")).shape == (64, 64, 3)


def test_a_mask_pil_cannot_read_does_not_stop_the_batch(tmp_path, model_dir, capsys):
    inp, masks, out = tmp_path / "in", tmp_path / "masks", tmp_path / "out"
    inp.mkdir()
    masks.mkdir()
    for name in ("a", "b", "c"):
        _photo().save(inp / f"{name}.png")
        _mask().save(masks / f"{name}.png")
    (masks / "b.png").write_bytes((masks / "b.png").read_bytes()[:60])  # truncated
    assert main(["predict", "--model", str(model_dir), "--input", str(inp), "--mask", str(masks),
                 "--output", str(out), "--quiet"]) == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]
    assert "b.png" in capsys.readouterr().err


def test_missing_input_is_one_clear_error(tmp_path, capsys):
    assert main(["predict", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_strategy_refine_with_refine_settings(tmp_path, model_dir, capsys):
    """--strategy refine runs the multi-scale refinement with the --refine-* settings: the result equals the
    library's, and differs from the plain fill; a bad setting is one clear error."""
    from lama.inpainter import load_model

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    _photo().save(inp / "a.png")
    _mask().save(inp / "a_mask.png")
    args = ["predict", "--model", str(model_dir), "--input", str(inp / "a.png"), "--strategy", "refine",
            "--refine-n-iters", "4", "--refine-lr", "0.01", "--refine-min-side", "32", "--refine-max-scales", "2",
            "--quiet"]
    assert main([*args, "--output", str(out)]) == 0
    model = load_model(model_dir)
    model.refine_n_iters, model.refine_lr, model.refine_min_side, model.refine_max_scales = 4, 0.01, 32, 2
    expected = model(inp / "a.png", inp / "a_mask.png", strategy="refine")
    assert np.array_equal(np.asarray(Image.open(out / "a_mask.png")), expected)  # named after the mask
    assert not np.array_equal(expected, model(inp / "a.png", inp / "a_mask.png", strategy="original"))
    assert main([*args[:-1], "--refine-lr", "-1", "--output", str(tmp_path / "o2")]) == 2
    assert "--refine-lr must be > 0" in capsys.readouterr().err
