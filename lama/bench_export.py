"""``python -m lama.bench_export`` (``make bench-export``): every export format of Big LaMa-sized random weights.

For each format (:mod:`lama.export`: ONNX with matrix-product FFTs, ONNX with ``DFT`` ops, TorchScript, OpenVINO
IR): the export time, the file size, and the largest difference from the eager float32 graph at 512x512 and at
1000x664 (a size no export saw, not square), on a photo with a ``random_thick_512`` mask; then OpenVINO in
bfloat16 (where the CPU has it) on the ONNX export, PSNR against eager float32 at 512 and 1024. Prints a table and
writes JSON. Needs the benchmark dependencies (``requirements-bench.txt``).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .bench import _inputs, _model_dir
from .checkpoint import load_generator
from .export import InpaintingGraph, export
from .machine import cpu_model

FORMATS = {"onnx (matmul FFTs)": ("onnx", "matmul", "model.onnx"), "onnx (DFT ops)": ("onnx", "dft-op", "dft.onnx"),
           "torchscript": ("torchscript", "matmul", "big-lama.pt"), "openvino IR": ("openvino", "matmul", "lama.xml")}
SIZES = [(512, 512), (664, 1000)]
BF16_SIZES = [512, 1024]


def _photo(h: int, w: int, photo: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    img, mask = _inputs(max(h, w), photo)
    return img[..., :h, :w].contiguous(), mask[..., :h, :w].contiguous()


def _runner(fmt: str, path: Path, threads: int, precision: str = "f32"):
    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda img, mask: session.run(None, {"image": img.numpy(), "mask": mask.numpy()})[0]
    if fmt == "torchscript":
        module = torch.jit.load(str(path))

        def run(img, mask):
            with torch.no_grad():
                return module(img, mask).numpy()

        return run
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                          "INFERENCE_NUM_THREADS": threads})
    return lambda img, mask: compiled({"image": img.numpy(), "mask": mask.numpy()})[0]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lama.bench_export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--photo", default=None)
    ap.add_argument("--out", default="docs/export-benchmark.json")
    args = ap.parse_args(argv)
    threads = torch.get_num_threads()
    res: dict = {"cpu": cpu_model(), "threads": threads, "torch": torch.__version__, "formats": {}, "bf16": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = _model_dir(tmp)
        generator = load_generator(weights).generator
        graph = InpaintingGraph(generator).eval()
        inputs = {s: _photo(*s, args.photo) for s in SIZES}
        with torch.no_grad():
            eager = {s: graph(*inputs[s]).numpy() for s in SIZES}
        for name, (fmt, fft, filename) in FORMATS.items():
            path = tmp / filename
            t = time.perf_counter()
            export(weights, path, format=fmt, **({"fft": fft} if fmt == "onnx" else {}))
            seconds = time.perf_counter() - t
            size = sum(p.stat().st_size for p in (path, path.with_suffix(".bin")) if p.exists())
            row = res["formats"][name] = {"export_s": seconds, "size_mb": size / 2**20, "max_abs_diff": {}}
            run = _runner(fmt, path, threads)
            for s in SIZES:
                got = run(*inputs[s])
                row["max_abs_diff"][f"{s[0]}x{s[1]}"] = float(np.abs(got - eager[s]).max())
            del run
        import openvino as ov

        if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            run = _runner("openvino", tmp / "lama.xml", threads, "bf16")
            for size in BF16_SIZES:
                img, mask = _photo(size, size, args.photo)
                with torch.no_grad():
                    ref = graph(img, mask).numpy()
                got = run(img, mask)
                res["bf16"][f"{size}x{size}"] = {"psnr_db": _psnr(got, ref),
                                                  "max_abs_diff": float(np.abs(got - ref).max())}
    print(f"{res['cpu']}, {threads} threads, torch {torch.__version__}")
    cols = [f"{h}x{w}" for h, w in SIZES]
    print(f"  {'format':22s} {'export s':>9s} {'size MB':>8s} " + " ".join(f"{'max|Δ| ' + c:>16s}" for c in cols))
    for name, row in res["formats"].items():
        print(f"  {name:22s} {row['export_s']:9.1f} {row['size_mb']:8.1f} "
              + " ".join(f"{row['max_abs_diff'][c]:16.1e}" for c in cols))
    for size, row in res["bf16"].items():
        print(f"  OpenVINO bf16 (ONNX export) at {size}: PSNR {row['psnr_db']:.1f} dB vs eager fp32, "
              f"max |Δ| {row['max_abs_diff']:.1e}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
