"""The demo's callbacks without a browser: masks from the editor, scaling, uploads, bad input."""

import numpy as np
import pytest
import torch
from conftest import DATA, SMALL_GENERATOR, randomize_bn
from PIL import Image

from demo import callbacks as cb
from demo.backend import Backend, Settings
from lama.generator import generator_from_config
from lama.inpainter import Inpainter


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)  # no weights lookup: a small random generator stands in for LaMa
    return Backend(Settings(max_megapixels=1.0), Inpainter(randomize_bn(generator_from_config(SMALL_GENERATOR))))


@pytest.fixture
def photo_path(tmp_path):
    p = tmp_path / "photo.png"
    Image.open(DATA / "lpips_examples" / "ex_ref.png").convert("RGB").resize((120, 80)).save(p)
    return p


def _editor_value(display: np.ndarray, painted: np.ndarray) -> dict:
    """What gr.ImageMask(type='numpy', layers=False) sends: background, one RGBA layer, composite."""
    h, w = display.shape[:2]
    layer = np.zeros((h, w, 4), np.uint8)
    layer[painted] = (255, 51, 102, 255)
    bg = np.dstack([display, np.full((h, w), 255, np.uint8)])
    return {"background": bg, "layers": [layer], "composite": bg}


def test_mask_comes_from_the_painted_layers_alpha():
    display = np.zeros((10, 12, 3), np.uint8)
    painted = np.zeros((10, 12), bool)
    painted[2:5, 3:9] = True
    assert np.array_equal(cb.mask_from_editor(_editor_value(display, painted)), painted)
    assert cb.mask_from_editor(None) is None
    assert cb.mask_from_editor({"background": None, "layers": [], "composite": None}) is None


def test_the_mask_is_scaled_to_the_original_with_nearest_neighbour(backend, tmp_path):
    big = tmp_path / "big.png"
    rgb = np.random.default_rng(0).integers(0, 256, (600, 900, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(big)
    backend.settings.editor_max_side = 300
    photo = cb.load_photo(big, backend.settings)
    assert photo.rgb.shape == (600, 900, 3) and photo.display.shape == (200, 300, 3)
    painted = np.zeros((200, 300), bool)
    painted[50:100, 100:150] = True
    r = cb.inpaint(backend, photo, _editor_value(photo.display, painted), None, 0, "original")
    expected = np.zeros((600, 900), bool)
    expected[150:300, 300:450] = True  # exactly 3x, no blur at the edges
    assert np.array_equal(r.mask, expected)
    assert r.image.shape == rgb.shape
    assert np.array_equal(r.image[~expected], rgb[~expected]) and (r.image[expected] != rgb[expected]).any()
    backend.settings.editor_max_side = 1024


def test_uploaded_mask_replaces_the_painting_and_is_scaled_when_only_the_size_differs(backend, photo_path, tmp_path):
    photo = cb.load_photo(photo_path, backend.settings)
    half = np.zeros((40, 60), np.uint8)
    half[10:20, 10:30] = 255
    Image.fromarray(half).save(tmp_path / "m.png")
    r = cb.inpaint(backend, photo, None, str(tmp_path / "m.png"), 0, "crop")
    assert r.mask.shape == (80, 120) and r.mask[20:40, 20:60].all() and r.mask.sum() == 20 * 40
    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "square.png")
    with pytest.raises(cb.UserInputError, match="50x50 pixels but the photo is 120x80"):
        cb.inpaint(backend, photo, None, str(tmp_path / "square.png"), 0, "crop")


def test_dilation_grows_the_painted_mask(backend, photo_path):
    photo = cb.load_photo(photo_path, backend.settings)
    painted = np.zeros((80, 120), bool)
    painted[40, 60] = True
    r = cb.inpaint(backend, photo, _editor_value(photo.display, painted), None, 3, "crop")
    assert r.mask.sum() == 49 and r.mask[37:44, 57:64].all()


def test_empty_mask_returns_the_photo_with_a_hint(backend, photo_path):
    photo = cb.load_photo(photo_path, backend.settings)
    r = cb.inpaint(backend, photo, _editor_value(photo.display, np.zeros((80, 120), bool)), None, 8, "crop")
    assert np.array_equal(r.image, photo.rgb) and "empty" in r.message


def test_bad_uploads_are_clear_errors(backend, tmp_path):
    (tmp_path / "notes.png").write_bytes(b"this is not an image")
    with pytest.raises(cb.UserInputError, match="could not be read as an image"):
        cb.load_photo(tmp_path / "notes.png", backend.settings)
    Image.new("RGB", (64, 64)).save(tmp_path / "x.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "x.png").read_bytes()[:50])
    with pytest.raises(cb.UserInputError, match="could not be read"):
        cb.load_photo(tmp_path / "cut.png", backend.settings)
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    with pytest.raises(cb.UserInputError, match="1x1 pixels"):
        cb.load_photo(tmp_path / "dot.png", backend.settings)
    Image.new("RGB", (1500, 1000)).save(tmp_path / "huge.png")  # 1.5 MP over the fixture's 1 MP limit
    with pytest.raises(cb.UserInputError, match="over this demo's limit of 1 MP"):
        cb.load_photo(tmp_path / "huge.png", backend.settings)
    with pytest.raises(cb.UserInputError, match="Upload a photo"):
        cb.load_photo(None, backend.settings)


def test_animated_gif_uses_the_first_frame_with_a_note(backend, tmp_path):
    frames = [Image.new("RGB", (40, 30), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    photo = cb.load_photo(tmp_path / "a.gif", backend.settings)
    assert photo.rgb.shape == (30, 40, 3) and tuple(photo.rgb[0, 0]) == (255, 0, 0)
    assert "animated" in photo.note


def test_telea_fallback_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    b = Backend(Settings(model=str(tmp_path / "no-such-weights"), device="cpu"))
    assert b.inpainter is None and "not found" in b.notice and "no-such-weights" in b.notice
    assert "--model" in b.notice and "LAMA_MODEL" in b.notice
    rgb = np.full((32, 32, 3), 100, np.uint8)
    rgb[:, 16:] = 200
    mask = np.zeros((32, 32), bool)
    mask[10:20, 10:20] = True
    out = b.inpaint(rgb, mask)
    assert np.array_equal(out[~mask], rgb[~mask]) and 90 <= out[mask].min() and out[mask].max() <= 210
    assert b.warm_up() >= 0


def test_result_file_is_a_full_resolution_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    path = cb.save_result(rgb, tmp_path)
    assert path.endswith(".png") and np.array_equal(np.asarray(Image.open(path)), rgb)


def test_refinement_reports_each_step_and_a_cancel_frees_the_model_for_the_next_request(backend, photo_path):
    """The demo's refine choice: progress per scale and step; Cancel stops at the next step, only for the session
    that asked, and the next request runs."""
    import threading

    p = cb.load_photo(photo_path, backend.settings)
    mask = np.zeros(p.rgb.shape[:2], bool)
    mask[20:60, 30:90] = True
    inp = backend.inpainter
    inp.refine_n_iters, inp.refine_min_side, inp.refine_max_scales = 3, 40, 2
    seen = []
    r = backend.inpaint(p.rgb, mask, "crop+refine", progress=lambda s: seen.append(cb.refine_status(s)), session="a")
    assert np.array_equal(r[~mask], p.rgb[~mask])
    assert [round(f, 3) for f, _ in seen] == [0.0, 0.5, round(0.5 + 1 / 6, 3), round(0.5 + 2 / 6, 3)]
    assert "Refining scale 2 of 2: step 2 of 2" in seen[-1][1]

    inp.refine_n_iters = 50
    steps, errors = [], []

    def progress(s):
        steps.append(s)
        if len(steps) == 2:  # during the refinement: another session's cancel is ignored, its own is not
            assert not backend.cancel("b")
            assert backend.cancel("a")

    def run():
        try:
            backend.inpaint(p.rgb, mask, "refine", progress=progress, session="a")
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=120)
    assert not t.is_alive() and len(steps) == 2
    assert type(errors[0]).__name__ == "Cancelled"
    assert not backend.cancel("a") and not backend.cancel("")  # nothing running now; no session, no cancel
    inp.refine_n_iters = 2
    out = backend.inpaint(p.rgb, mask, "refine", session="b")  # the model serves the next request
    assert out.shape == p.rgb.shape

    # a job waiting for the model is cancelled before it starts, and does not run afterwards
    ran = []
    backend._lock.acquire()
    try:
        t = threading.Thread(target=lambda: errors.append(_catch(lambda: backend.inpaint(
            p.rgb, mask, "refine", progress=ran.append, session="c"))))
        t.start()
        for _ in range(200):
            if backend.cancel("c"):
                break
            t.join(timeout=0.01)
    finally:
        backend._lock.release()
    t.join(timeout=60)
    assert str(errors[-1]) == "cancelled before it started" and not ran


def _catch(fn):
    try:
        fn()
    except Exception as e:
        return e
    return None
