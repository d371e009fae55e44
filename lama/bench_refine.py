"""``make bench-refine``: time and peak memory of the strategies with and without multi-scale refinement.

Big LaMa-sized random weights, scikit-image's astronaut photo resized to a 1.8 MP photo (1600x1125) with one
200x300 hole and a 3 MP photo (2000x1500) with three holes. Each (photo, strategy, dtype) runs once in its own
process, so that its peak RSS (the process total: weights, photo, activations) is its own; refinement reports
its time per scale. A benchmark, not a test: prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PHOTOS = {"1.8mp": (1125, 1600), "3mp": (1500, 2000)}
STRATEGIES = ("original", "crop", "refine", "crop+refine")
DTYPES = ("float32", "bfloat16")  # on CUDA: float32 float16 bfloat16


def _photo(name: str) -> tuple[np.ndarray, np.ndarray]:
    from .bench import bench_photo

    h, w = PHOTOS[name]
    rgb = bench_photo(h, w)
    mask = np.zeros((h, w), bool)
    if name == "1.8mp":
        mask[450:650, 700:1000] = True  # 200 x 300
    else:
        for top, left, hh, ww in ((300, 300, 180, 240), (800, 1200, 240, 200), (1150, 500, 150, 300)):
            mask[top: top + hh, left: left + ww] = True
    return rgb, mask


def child(weights: str, photo: str, strategy: str, dtype: str, n_iters: int, out: str, device: str = "cpu") -> None:
    from .inpainter import load_model

    model = load_model(weights, dtype=dtype, device=device)
    model.refine_n_iters = n_iters
    rgb, mask = _photo(photo)
    marks: list[tuple[int, int, float]] = []

    def progress(p):
        marks.append((p.scale, p.iteration, time.perf_counter()))

    t = time.perf_counter()
    result = model(rgb, mask, strategy=strategy, progress=progress)
    seconds = time.perf_counter() - t
    scales: dict[int, float] = {}  # seconds per pyramid level, from one progress mark to the next
    ends = [m[2] for m in marks[1:]] + [t + seconds] * bool(marks)
    for (s, _, t0), t1 in zip(marks, ends, strict=True):
        scales[s] = scales.get(s, 0.0) + t1 - t0
    Path(out).write_text(json.dumps({
        "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "outside_identical": bool(np.array_equal(result[~mask], rgb[~mask])), "scale_seconds": scales,
        "steps": sum(1 for _, i, _ in marks if i > 0),
        "peak_gpu_allocated_mb": torch.cuda.max_memory_allocated() / 2**20 if model.device.type == "cuda" else None}))


def _run_child(args: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run([sys.executable, "-m", "lama.bench_refine", *args, "--child-out", out], check=True)
        return json.loads(Path(out).read_text())
    finally:
        os.unlink(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lama.bench_refine", description=__doc__.splitlines()[0])
    ap.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=list(PHOTOS))
    ap.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (a GPU check: --device cuda --dtypes float32 "
                                                     "float16 bfloat16; peak allocated GPU memory is reported)")
    ap.add_argument("--n-iters", type=int, default=15, help="refinement iterations per scale (official: 15)")
    ap.add_argument("--out", default="bench-results/refine.json")
    ap.add_argument("--child", nargs=4, metavar=("WEIGHTS", "PHOTO", "STRATEGY", "DTYPE"), help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child, args.n_iters, args.child_out, args.device)
        return 0

    from .bench import _model_dir
    from .machine import cpu_model

    res = {"cpu": cpu_model(), "machine": platform.machine(), "threads": torch.get_num_threads(), "device": args.device,
           "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
           "torch": torch.__version__, "n_iters": args.n_iters, "rows": []}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(_model_dir(Path(tmp)))
        for photo in args.photos:
            for dtype in args.dtypes:
                for strategy in args.strategies:
                    r = _run_child(["--n-iters", str(args.n_iters), "--device", args.device, "--child", weights, photo,
                                    strategy, dtype])
                    res["rows"].append({"photo": photo, "strategy": strategy, "dtype": dtype, **r})
                    Path(args.out).write_text(json.dumps(res, indent=1))  # after each row: an hour's run
                    gpu = f"  GPU peak {r['peak_gpu_allocated_mb']:.0f} MB" if r["peak_gpu_allocated_mb"] else ""
                    print(f"  {photo:6} {dtype:9} {strategy:12} {r['seconds']:8.1f} s  "
                          f"{r['peak_rss_mb']:7.0f} MB  steps {r['steps']:3}  outside identical "
                          f"{r['outside_identical']}{gpu}", flush=True)
    print(f"CPU: {res['cpu']}, {res['threads']} threads; JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
