"""Load: 16 concurrent gradio_client clients x 3 requests against the running app."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import psutil
import pytest
from PIL import Image

from demo.testing import running_app
from lama.testing import small_model

CLIENTS, REQUESTS = 16, 3


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    with running_app(small_model(tmp / "model"), tmp / "app.log") as (url, proc):
        yield url, proc, tmp / "app.log"


def test_the_demo_runs_in_the_dtype_auto_chose_and_says_so(app):
    from lama.inpainter import native_bf16_cpu

    expected = "bfloat16" if native_bf16_cpu() else "float32"
    assert f"on cpu in {expected} (dtype=auto), fast path kernel=" in app[2].read_text()


def test_48_concurrent_requests_all_succeed_with_bounded_memory(app, tmp_path):
    from gradio_client import Client, handle_file

    url, proc, _ = app
    rng = np.random.default_rng(0)
    photo, mask = tmp_path / "p.png", tmp_path / "m.png"
    Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(photo)
    m = np.zeros((96, 128), np.uint8)
    m[30:60, 40:90] = 255
    Image.fromarray(m).save(mask)

    server = psutil.Process(proc.pid)
    peak = [server.memory_info().rss]
    start_rss = peak[0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], server.memory_info().rss)
            time.sleep(0.05)

    def one_client(i):
        # each client its own download folder: clients in one process would race on the same file name
        client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / f"client{i}"))
        results = []
        for _ in range(REQUESTS):
            out = client.predict(handle_file(str(photo)), handle_file(str(mask)), 0, "crop", api_name="/inpaint")
            results.append(np.asarray(Image.open(out).convert("RGB")))
        return results

    sampler = threading.Thread(target=sample)
    sampler.start()
    t = time.perf_counter()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            outputs = [r for rs in pool.map(one_client, range(CLIENTS)) for r in rs]
    finally:
        stop.set()
        sampler.join()
    seconds = time.perf_counter() - t
    src = np.asarray(Image.open(photo).convert("RGB"))
    assert len(outputs) == CLIENTS * REQUESTS
    for out in outputs:  # every response is a real result
        assert out.shape == src.shape and np.array_equal(out[m == 0], src[m == 0])
    print(f"\nload: {len(outputs)} requests in {seconds:.1f} s; server RSS {start_rss / 2**20:.0f} MB at start, "
          f"peak {peak[0] / 2**20:.0f} MB")
    assert peak[0] < start_rss + 1.5 * 2**30  # bounded: no per-request model copies
    client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp_path / "after"))
    after = client.predict(handle_file(str(photo)), handle_file(str(mask)), 0, "crop", api_name="/inpaint")
    assert np.asarray(Image.open(after)).shape == src.shape  # still answering


def test_the_api_takes_the_refine_strategies_and_refuses_unknown_ones(app, tmp_path):
    from gradio_client import Client, handle_file

    rng = np.random.default_rng(1)
    photo, mask = tmp_path / "p.png", tmp_path / "m.png"
    src = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    Image.fromarray(src).save(photo)
    m = np.zeros((96, 128), np.uint8)
    m[30:60, 40:90] = 255
    Image.fromarray(m).save(mask)
    client = Client(app[0], verbose=False, analytics_enabled=False, download_files=str(tmp_path / "dl"))
    for strategy in ("refine", "crop+refine"):
        out = np.asarray(Image.open(client.predict(handle_file(str(photo)), handle_file(str(mask)), 0, strategy,
                                                   api_name="/inpaint")).convert("RGB"))
        assert out.shape == src.shape and np.array_equal(out[m == 0], src[m == 0])
    with pytest.raises(Exception, match="strategy must be one of"):
        client.predict(handle_file(str(photo)), handle_file(str(mask)), 0, "sharpen", api_name="/inpaint")
