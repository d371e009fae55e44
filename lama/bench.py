"""``python -m lama bench``: straightforward vs fast inference paths, one machine, one run.

Big LaMa-sized random weights (BatchNorm statistics randomised too), a real photo (scikit-image's
astronaut, or any ``--photo``) resized to each size, and a seeded ``random_thick_512`` mask. For each
size, in one process and alternating: the reference path (fp32); the fast path's default in fp32 and
bf16 (the 3x3 kernel :mod:`lama.kernel_choice` picks on this machine); the same with every other kernel
forced, which shows whether the choice was right; and, at ``--peer-sizes``, other runtimes on the same
network input (:mod:`lama.bench_peers`: OpenVINO, ONNX Runtime). Medians, ratios, max |Δ| and PSNR
against the fp32 reference output, achieved GFLOP/s, and the machine's floor (the GFLOP count at the
speed of a 512-channel 3x3 convolution, fp32 and bf16); peak RSS of the default variants, each in its
own process. Then a 4000x3000 photo with one 300x300 hole under each strategy. Prints a table and
writes JSON. A benchmark, not a test: shared machines are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

VARIANTS = {"reference fp32": (False, "float32"), "fast fp32": (True, "float32"), "fast bf16": (True, "bfloat16")}
SHORT = {"float32": "fp32", "bfloat16": "bf16"}


@contextlib.contextmanager
def _forced_kernel(kernel: str | None):
    """Load with ``LAMA_FAST_KERNEL=kernel`` (None: the chooser's default)."""
    from .kernel_choice import ENV_KERNEL

    old = os.environ.get(ENV_KERNEL)
    if kernel is not None:
        os.environ[ENV_KERNEL] = kernel
    try:
        yield
    finally:
        os.environ.pop(ENV_KERNEL, None)
        if old is not None:
            os.environ[ENV_KERNEL] = old


def conv_rate(dtype: torch.dtype, repeats: int = 3) -> float:
    """GFLOP/s of a 512-channel 3x3 convolution on a 64x64 channels-last map (best of ``repeats``): the
    speed of the machine's best convolution kernel, for the floor column."""
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 512, 64, 64, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3, generator=gen).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        F.conv2d(x, w, padding=1)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            F.conv2d(x, w, padding=1)
            best = min(best, time.perf_counter() - t)
    return 2 * 512 * 512 * 9 * 64 * 64 / best / 1e9


def _model_dir(tmp: Path) -> Path:
    from .generator import build_preset

    torch.manual_seed(0)
    g = build_preset("big-lama")
    gen = torch.Generator().manual_seed(0)
    for m in g.modules():  # trained-looking BatchNorm statistics, so that folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
    from safetensors.torch import save_file

    from .generator import preset_config

    path = tmp / "big-lama-random.safetensors"
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(path),
              metadata={"lama_config": json.dumps(preset_config("big-lama"))})
    return path


def bench_photo(h: int, w: int, photo: str | None = None) -> np.ndarray:
    """``photo`` (default: scikit-image's astronaut) resized to HxWx3 uint8; a smooth synthetic image without it."""
    from PIL import Image

    if photo is None:
        import importlib.util

        spec = importlib.util.find_spec("skimage")
        photo = str(Path(next(iter(spec.submodule_search_locations))) / "data" / "astronaut.png") if spec else None
    if photo and Path(photo).exists():
        return np.asarray(Image.open(photo).convert("RGB").resize((w, h), Image.BICUBIC))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    return (np.stack([yy, xx, (yy + xx) / 2], -1) * 255).astype(np.uint8)


def _inputs(size: int, photo: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    from .io import to_tensor
    from .masks import make_mask_generator

    rgb = bench_photo(size, size, photo)
    mask = make_mask_generator("random_thick_512")(size, size, np.random.default_rng(0)) > 0
    img = to_tensor(rgb)
    return img, torch.from_numpy(mask)[None, None].float()


def _gflop(model, img, mask) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from .inpainter import pad_to_modulo

    x = pad_to_modulo(torch.cat([img * (1 - mask), mask], 1))
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        model.generator(x)
    return fc.get_total_flops() / 1e9


def child_time(weights: str, size: int, repeats: int, out: str, photo: str | None, peers: bool) -> None:
    """Alternate the variants (and peers) on one size; write medians and accuracy. Every variant runs with the
    fast path's malloc setting (:mod:`lama.heap`), which is process-wide once set: the same allocator for all."""
    from .heap import keep_freed_memory
    from .inpainter import load_model, pad_to_modulo
    from .kernel_choice import KERNELS

    keep_freed_memory()

    models = {"reference fp32": load_model(weights, fast=False)}
    for dtype, short in SHORT.items():
        default = models[f"fast {short}"] = load_model(weights, dtype=dtype)
        for k in KERNELS:
            if k != default.fast.kernel:
                with _forced_kernel(k):
                    models[f"fast {short} {k}"] = load_model(weights, dtype=dtype)
    img, mask = _inputs(size, photo)
    runs = {n: (lambda m=m: m.predict_raw(img, mask)) for n, m in models.items()}
    notes, skipped = {}, {}
    if peers:
        from .bench_peers import peer_runners

        x = pad_to_modulo(torch.cat([img * (1 - mask), mask], 1)).numpy()
        with tempfile.TemporaryDirectory() as work:
            built = peer_runners(models["reference fp32"].generator, x.shape[2], x.shape[3],
                                 torch.get_num_threads(), work)
        skipped = built.skipped
        for name, runner in built.runners.items():
            runs[name] = lambda r=runner: torch.from_numpy(r(x))[..., :size, :size]
            notes[name] = runner.note
    times: dict[str, list[float]] = {n: [] for n in runs}
    outs = {n: run().float() for n, run in runs.items()}  # warm-up
    conv_rates: dict[str, list[float]] = {short: [] for short in SHORT.values()}
    for _ in range(repeats):
        for n, run in runs.items():
            t = time.perf_counter()
            run()
            times[n].append(time.perf_counter() - t)
        for dtype, short in SHORT.items():  # the floor moves with the machine's load: measured between rounds
            conv_rates[short].append(conv_rate(getattr(torch, dtype)))
    ref = outs["reference fp32"]
    gflop = _gflop(models["reference fp32"], img, mask)
    rates = {short: statistics.median(r) for short, r in conv_rates.items()}
    res = {"size": size, "gflop": gflop, "conv_gflops": rates,
           "floor_s": {k: gflop / r for k, r in rates.items()}, "variants": {}, "peers_skipped": skipped}
    for n in runs:
        d = (outs[n] - ref).abs()
        mse = float((outs[n] - ref).pow(2).mean())
        m = models.get(n)
        kernel = (m.fast.kernel if m.fast is not None else "-") if m is not None else "peer"
        res["variants"][n] = {"median_s": statistics.median(times[n]), "runs": times[n], "kernel": kernel,
                              "max_abs_diff": float(d.max()), "note": notes.get(n, ""),
                              "psnr_db": float("inf") if mse == 0 else 10 * math.log10(1 / mse)}
    Path(out).write_text(json.dumps(res))


def child_memory(weights: str, size: int, variant: str, out: str, photo: str | None) -> None:
    from .heap import keep_freed_memory
    from .inpainter import load_model

    keep_freed_memory()  # as in child_time

    fast, dtype = VARIANTS[variant]
    m = load_model(weights, fast=fast, dtype=dtype)
    img, mask = _inputs(size, photo)
    m.predict_raw(img, mask)
    Path(out).write_text(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def child_strategies(weights: str, out: str) -> None:
    from .inpainter import load_model

    m = load_model(weights)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    mask = np.zeros((3000, 4000), bool)
    mask[1200:1500, 2000:2300] = True
    res = {}
    small = rgb[:512, :512].copy()
    small_mask = np.zeros((512, 512), bool)
    small_mask[100:400, 100:400] = True
    m(small, small_mask)  # warm-up
    for strategy in ("crop", "resize", "original"):
        t = time.perf_counter()
        result = m(rgb, mask, strategy=strategy)
        res[strategy] = {"seconds": time.perf_counter() - t,
                         "outside_identical": bool(np.array_equal(result[~mask], rgb[~mask]))}
    # the crop target is relative to a 512x512 photo: both timed here, alternating, medians of 3
    times = {"crop": [], "512": []}
    for _ in range(3):
        for name, args in (("512", (small, small_mask)), ("crop", (rgb, mask))):
            t = time.perf_counter()
            m(*args)
            times[name].append(time.perf_counter() - t)
    res["crop"]["seconds"] = statistics.median(times["crop"])
    res["crop"]["photo_512_seconds"] = statistics.median(times["512"])
    res["crop"]["vs_512"] = res["crop"]["seconds"] / res["crop"]["photo_512_seconds"]
    Path(out).write_text(json.dumps(res))


def _run_child(args: list[str]) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    subprocess.run([sys.executable, "-m", "lama.bench", *args, "--child-out", out], check=True)
    data = json.loads(Path(out).read_text())
    os.unlink(out)
    return data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lama bench", description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs per size (1 above 1024)")
    ap.add_argument("--photo", default=None)
    ap.add_argument("--no-memory", action="store_true", help="skip the per-variant peak RSS processes")
    ap.add_argument("--peer-sizes", type=int, nargs="*", default=[512, 1024],
                    help="sizes at which OpenVINO / ONNX Runtime run too (each needs ONNX exports: ~1 min)")
    ap.add_argument("--peers", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-strategies", action="store_true")
    ap.add_argument("--out", default="bench-results/inference.json")
    ap.add_argument("--child", choices=["time", "memory", "strategies"], help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    ap.add_argument("--weights", help=argparse.SUPPRESS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "time":
        child_time(args.weights, args.sizes[0], args.repeats, args.child_out, args.photo, args.peers)
        return 0
    if args.child == "memory":
        child_memory(args.weights, args.sizes[0], args.variant, args.child_out, args.photo)
        return 0
    if args.child == "strategies":
        child_strategies(args.weights, args.child_out)
        return 0

    photo = ["--photo", args.photo] if args.photo else []
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(_model_dir(Path(tmp)))
        rows = []
        for size in args.sizes:
            reps = args.repeats if size <= 1024 else 1
            peers = ["--peers"] if size in args.peer_sizes else []
            r = _run_child(["--child", "time", "--weights", weights, "--sizes", str(size), "--repeats", str(reps),
                            *photo, *peers])
            if not args.no_memory:
                for v in VARIANTS:
                    r["variants"][v].update(_run_child(["--child", "memory", "--weights", weights, "--sizes",
                                                        str(size), "--variant", v, *photo]))
            rows.append(r)
            _print_size(r)
        strategies = None if args.no_strategies else _run_child(["--child", "strategies", "--weights", weights])
    if strategies:
        print("\n4000x3000 photo, one 300x300 hole (fast fp32):")
        for k, v in strategies.items():
            print(f"  {k:9} {v['seconds']:7.2f} s   outside the hole bit-identical: {v['outside_identical']}")
        c = strategies["crop"]
        print(f"  crop = {c['vs_512']:.2f}x a 512x512 photo ({c['photo_512_seconds']:.2f} s; same process, "
              "alternating)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"sizes": rows, "strategies": strategies, "threads": torch.get_num_threads()},
                              indent=2))
    print(f"\nwrote {out}")
    return 0


def _print_size(r: dict) -> None:
    ref = r["variants"]["reference fp32"]["median_s"]
    floor = r["floor_s"]
    print(f"\n{r['size']}x{r['size']}: {r['gflop']:.0f} GFLOP; floor (at a 512-channel 3x3 conv's "
          f"{r['conv_gflops']['fp32']:.0f} / {r['conv_gflops']['bf16']:.0f} GFLOP/s): fp32 {floor['fp32']:.2f} s, "
          f"bf16 {floor['bf16']:.2f} s")
    print(f"  {'variant':32} {'kernel':>8} {'median s':>9} {'vs ref':>7} {'GFLOP/s':>8} {'max|Δ|':>9} "
          f"{'PSNR dB':>8} {'peak RSS MB':>12}")
    for n, v in r["variants"].items():
        rss = f"{v['peak_rss_mb']:12.0f}" if "peak_rss_mb" in v else f"{'-':>12}"
        psnr = "inf" if math.isinf(v["psnr_db"]) else f"{v['psnr_db']:.1f}"
        print(f"  {n:32} {v.get('kernel', '-'):>8} {v['median_s']:9.2f} {ref / v['median_s']:6.2f}x "
              f"{r['gflop'] / v['median_s']:8.0f} {v['max_abs_diff']:9.1e} {psnr:>8} {rss}")
    for n, why in r.get("peers_skipped", {}).items():
        print(f"  skipped {n}: {why[:160]}")


if __name__ == "__main__":
    sys.exit(main())
