"""Metric throughput on this machine: FID Inception features and LPIPS-vgg at 512x512, and the Fréchet distance.

Images/s of ``InceptionFeatures`` (LaMa protocol: resize to 299) and ``LPIPS(net='vgg')`` on random 512x512
batches, then the seconds for one 2048-d Fréchet distance by the eigendecomposition route and by
``scipy.linalg.sqrtm``. Prints a table and writes JSON (``--out``). Not a test: timings on shared machines are
noisy, so the load average at start is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def images_per_second(fn, batch, repeats: int) -> list[float]:
    """Run ``fn(*batch)`` once to warm up, then ``repeats`` timed times; images/s of each run."""
    import torch

    with torch.no_grad():
        fn(*batch)
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(*batch)
            rates.append(batch[0].shape[0] / (time.perf_counter() - t))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-sqrtm", action="store_true", help="skip the ~11 s scipy.linalg.sqrtm timing")
    ap.add_argument("--out", default="bench-results/metric_throughput.json")
    args = ap.parse_args()
    import numpy as np
    import scipy.linalg
    import torch

    from lama.metrics.fid import InceptionFeatures, frechet_distance
    from lama.metrics.lpips_metric import LPIPSDistance as LPIPS

    load_at_start = os.getloadavg()
    g = torch.Generator().manual_seed(0)
    a = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    b = torch.rand(args.batch, 3, args.size, args.size, generator=g)
    rows = []
    for name, metric, batch in [("FID Inception features (resize=lama)", InceptionFeatures(), (a,)),
                                ("LPIPS vgg (v0.1)", LPIPS(net="vgg"), (a, b))]:
        rates = images_per_second(metric, batch, args.repeats)
        rows.append({"metric": name, "input": f"{args.batch}x3x{args.size}x{args.size}",
                     "images_per_s_median": round(statistics.median(rates), 2),
                     "images_per_s_runs": [round(r, 2) for r in rates]})

    rng = np.random.default_rng(0)
    feats = [np.maximum(rng.standard_normal((3000, 2048)) @ rng.standard_normal((2048, 2048)) / 45, 0)
             for _ in range(2)]
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in feats]
    t = time.perf_counter()
    fid = frechet_distance(*stats[0], *stats[1])
    frechet = {"eigh_s": round(time.perf_counter() - t, 2), "fid": fid}
    if not args.skip_sqrtm:
        t = time.perf_counter()
        covmean = scipy.linalg.sqrtm(stats[0][1] @ stats[1][1])
        frechet["scipy_sqrtm_s"] = round(time.perf_counter() - t, 2)
        mu = stats[0][0] - stats[1][0]
        ref = mu @ mu + np.trace(stats[0][1]) + np.trace(stats[1][1]) - 2 * np.trace(covmean).real
        frechet["relative_difference"] = abs(fid - ref) / abs(ref)

    print(f"{'metric':40} {'input':>16} {'images/s':>9}  runs")
    for r in rows:
        print(f"{r['metric']:40} {r['input']:>16} {r['images_per_s_median']:9.2f}  {r['images_per_s_runs']}")
    print(f"\nFréchet distance, 2048-d: eigendecomposition {frechet['eigh_s']} s"
          + (f", scipy.linalg.sqrtm {frechet['scipy_sqrtm_s']} s (relative difference "
             f"{frechet['relative_difference']:.1e})" if "scipy_sqrtm_s" in frechet else ""))
    print(f"load average at start: {load_at_start[0]:.2f} on {os.cpu_count()} CPUs, torch threads "
          f"{torch.get_num_threads()}")
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"throughput": rows, "frechet_2048": frechet,
                               "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                                           "load_average_at_start": load_at_start[0],
                                           "processor": platform.processor() or platform.machine(),
                                           "torch": torch.__version__}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
