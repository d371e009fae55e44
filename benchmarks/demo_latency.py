"""Warm latency of a 512x512 photo through the running demo versus ``Inpainter`` called directly.

Starts app.py with Big LaMa-sized random weights, then alternates: one request through the demo's
``/inpaint`` endpoint (gradio_client: upload, queue, inference, download), one direct call of the
same model in this process. Medians of the alternating runs; table and JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default="bench-results/demo_latency.json")
    args = ap.parse_args()
    import numpy as np
    import torch
    from gradio_client import Client, handle_file
    from PIL import Image

    import lama
    from demo.testing import running_app
    from lama.generator import build_preset
    from lama.testing import config_text, randomize_bn, write_folder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = write_folder(tmp / "big-lama", randomize_bn(build_preset("big-lama")), config_text(64, 18))
        photo = np.asarray(Image.open(ROOT / "demo" / "examples" / "astronaut.png").convert("RGB").resize(
            (args.size, args.size)))
        mask = np.zeros((args.size, args.size), np.uint8)
        mask[args.size // 4: args.size // 2, args.size // 3: 2 * args.size // 3] = 255
        Image.fromarray(photo).save(tmp / "p.png")
        Image.fromarray(mask).save(tmp / "m.png")
        direct_model = lama.load_model(model)
        ui, direct = [], []
        with running_app(model, tmp / "app.log") as (url, _proc):
            client = Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp / "dl"))

            def via_ui():
                return client.predict(handle_file(str(tmp / "p.png")), handle_file(str(tmp / "m.png")), 0, "crop",
                                      api_name="/inpaint")

            via_ui()  # warm: the app warmed up at start; this warms the client and the HTTP path
            direct_model(photo, mask > 0)
            for _ in range(args.runs):
                t = time.perf_counter()
                via_ui()
                ui.append(time.perf_counter() - t)
                t = time.perf_counter()
                direct_model(photo, mask > 0)
                direct.append(time.perf_counter() - t)
    res = {"size": args.size, "runs": args.runs, "ui_median_s": statistics.median(ui),
           "direct_median_s": statistics.median(direct), "ui_runs": ui, "direct_runs": direct}
    res["ratio"] = res["ui_median_s"] / res["direct_median_s"]
    print(f"{'path':30} {'median s':>9}  runs")
    print(f"{'demo /inpaint (gradio_client)':30} {res['ui_median_s']:9.2f}  {[round(x, 2) for x in ui]}")
    print(f"{'Inpainter called directly':30} {res['direct_median_s']:9.2f}  {[round(x, 2) for x in direct]}")
    print(f"ratio {res['ratio']:.3f}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
