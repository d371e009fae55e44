"""Training step time and peak memory of a LaMa config (``make bench-train``): a table and a JSON file.

One step = the official generator step and discriminator step (forward and backward of G and D, the generator run
twice, R1, clipping, both Adam updates) on a random batch. Each variant (batch size x precision x ResNetPL on/off)
runs in a fresh process, so that its peak RSS is its own; the variants alternate over ``--rounds`` rounds so that a
noisy machine slows them alike, and the table gives the median step over all rounds. ResNetPL uses random weights
in the published layout (the step time does not depend on the values).
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..machine import cpu_model


def child(config: str, size: int, batch: int, precision: str, resnet_pl: bool, steps: int, tmp: str) -> dict:
    from PIL import Image

    from ..testing import write_resnet_pl_weights
    from .config import load_training_config
    from .trainer import Trainer

    data = Path(tmp) / "data"
    data.mkdir(exist_ok=True)
    Image.new("RGB", (size, size)).save(data / "x.png")
    th = Path(tmp) / "torch_home"
    if resnet_pl and not (th / "ade20k").exists():
        write_resnet_pl_weights(th)
    cfg = load_training_config(config, [f"data.train.indir={data}", f"data.batch_size={batch}",
                                        f"trainer.precision={precision}",
                                        f"losses.resnet_pl.weight={30 if resnet_pl else 0}",
                                        f"losses.resnet_pl.weights_path={th}"])
    t = Trainer(cfg, Path(tmp) / "run", progress_bar=False)
    g = torch.Generator().manual_seed(0)
    img = torch.rand(batch, 3, size, size, generator=g)
    mask = (torch.rand(batch, 1, size, size, generator=g) > 0.7).float()
    t.train_step(img, mask)  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        t.train_step(img, mask)
        times.append(time.perf_counter() - start)
    return {"times": times, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lama.training.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="big-lama")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--precisions", nargs="+", default=["32", "bf16"])
    ap.add_argument("--steps", type=int, default=2, help="timed steps per process, after one warm-up step")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default="bench-results/training.json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        batch, precision, pl, tmp, out = args.child.split(",")
        res = child(args.config, args.size, int(batch), precision, pl == "1", args.steps, tmp)
        Path(out).write_text(json.dumps(res))
        return 0

    variants = list(itertools.product(args.batches, args.precisions, (False, True)))
    results: dict[tuple, dict] = {v: {"times": [], "peak_rss_mb": 0.0} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for v in variants:
                out = Path(tmp) / "child.json"
                spec = f"{v[0]},{v[1]},{int(v[2])},{tmp},{out}"
                subprocess.run([sys.executable, "-m", "lama.training.bench", "--config", args.config, "--size",
                                str(args.size), "--steps", str(args.steps), "--child", spec], check=True)
                r = json.loads(out.read_text())
                results[v]["times"] += r["times"]
                results[v]["peak_rss_mb"] = max(results[v]["peak_rss_mb"], r["peak_rss_mb"])
    cpu = cpu_model()
    print(f"\n{args.config}, {args.size}x{args.size}, one training step (G and D), {cpu}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'batch':>5} {'precision':>9} {'ResNetPL':>8} {'median s/step':>14} {'images/s':>9} {'vs fp32':>8} "
          f"{'peak RSS MB':>12}")
    rows = []
    for v in variants:
        med = statistics.median(results[v]["times"])
        base = statistics.median(results[(v[0], args.precisions[0], v[2])]["times"])
        rows.append({"batch": v[0], "precision": v[1], "resnet_pl": v[2], "median_s": med,
                     "times": results[v]["times"], "peak_rss_mb": results[v]["peak_rss_mb"]})
        print(f"{v[0]:5d} {v[1]:>9} {'on' if v[2] else 'off':>8} {med:14.2f} {v[0] / med:9.2f} {base / med:7.2f}x "
              f"{results[v]['peak_rss_mb']:12.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": args.config, "size": args.size, "cpu": cpu,
                               "threads": torch.get_num_threads(), "torch": torch.__version__, "rows": rows},
                              indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
