"""Load time of each weight format for Big LaMa-sized random weights, and peak RSS of a CPU inference.

Writes every format from one random big-lama generator (the builders the tests use), loads each
with ``lama.load_model`` in a fresh process, and reports the median wall time, the output check
against the source generator, and the process's peak RSS; then one 1024x1024 inference.
Prints a table and writes JSON (``--out``). Not a test: timings on shared machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import torch
import lama
t = time.perf_counter()
m = lama.load_model(sys.argv[1])
load_s = time.perf_counter() - t
ref = torch.load(sys.argv[2], weights_only=True)
out = m.predict_raw(ref["image"], ref["mask"])
size = int(sys.argv[3])
infer_s = None
if size:
    img, mask = torch.rand(1, 3, size, size), torch.zeros(1, 1, size, size)
    mask[..., size // 4: size // 2, size // 4: size // 2] = 1
    t = time.perf_counter()
    m.predict_batch(img, mask)
    infer_s = time.perf_counter() - t
print(json.dumps({"load_s": load_s, "max_abs_diff": (out - ref["pred"]).abs().max().item(),
                  "infer_s": infer_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--infer-size", type=int, default=1024)
    ap.add_argument("--out", default="bench-results/load_formats.json")
    args = ap.parse_args()
    import torch

    from lama.generator import generator_from_config, preset_config
    from lama.testing import (
        config_text,
        randomize_bn,
        write_folder,
        write_release_zip,
        write_safetensors,
        write_torchscript,
    )

    torch.manual_seed(0)
    gen = randomize_bn(generator_from_config(preset_config("big-lama"))).eval()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image, mask = torch.rand(1, 3, 64, 64), (torch.rand(1, 1, 64, 64) > 0.5).float()
        with torch.no_grad():
            pred = gen(torch.cat([image * (1 - mask), mask], 1))
        torch.save({"image": image, "mask": mask, "pred": pred}, tmp / "probe.pt")
        folder = write_folder(tmp / "big-lama", gen, config_text(64, 18))
        sources = {
            "folder (config.yaml + models/best.ckpt)": folder,
            "big-lama.zip": write_release_zip(tmp / "big-lama.zip", folder),
            ".safetensors": write_safetensors(tmp / "big-lama.safetensors", gen, preset_config("big-lama")),
            "TorchScript .pt": write_torchscript(tmp / "big-lama.pt", gen),
        }
        for name, path in sources.items():
            runs = []
            for _ in range(args.repeats):
                r = subprocess.run([sys.executable, "-c", CHILD, str(path), str(tmp / "probe.pt"), "0"],
                                   capture_output=True, text=True, check=True, cwd=ROOT)
                runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            size_mb = sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20 \
                if Path(path).is_dir() else Path(path).stat().st_size / 2**20
            results.append({"format": name, "file_mb": round(size_mb, 1),
                            "load_s_median": round(statistics.median(r["load_s"] for r in runs), 3),
                            "max_abs_diff": max(r["max_abs_diff"] for r in runs),
                            "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs))})
        infer = None
        if args.infer_size:
            r = subprocess.run([sys.executable, "-c", CHILD, str(sources[".safetensors"]), str(tmp / "probe.pt"),
                                str(args.infer_size)], capture_output=True, text=True, check=True, cwd=ROOT)
            d = json.loads(r.stdout.strip().splitlines()[-1])
            infer = {"size": args.infer_size, "seconds": round(d["infer_s"], 2), "peak_rss_mb": round(d["peak_rss_mb"])}

    print(f"{'format':42} {'file MB':>8} {'load s':>8} {'max|Δ|':>8} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['format']:42} {r['file_mb']:8.1f} {r['load_s_median']:8.3f} {r['max_abs_diff']:8.1g} "
              f"{r['peak_rss_mb']:12d}")
    if infer:
        print(f"\nbig-lama fp32 CPU inference at {infer['size']}x{infer['size']}: {infer['seconds']} s, "
              f"peak RSS {infer['peak_rss_mb']} MB (process total, weights included)")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"formats": results, "inference": infer}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
