"""Run the whole evaluation pipeline on the offline sample split and time each stage.

sample -> prepare (random_thin_256, random_thick_256) -> predict (a random-weight big-lama-structure
LaMa and the three classical baselines) -> score -> report. Prints a table of stage times and
writes JSON plus the report (Markdown, PNG/SVG plots) under ``--out``. Numbers from random LaMa
weights say nothing about LaMa's quality; they show the pipeline and its cost.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench-results/sample_evaluation")
    ap.add_argument("--presets", nargs="+", default=["random_thin_256", "random_thick_256"])
    args = ap.parse_args()
    import torch

    from evaluation.__main__ import main as ev
    from lama.generator import build_preset
    from lama.testing import config_text, randomize_bn, write_folder

    out = ROOT / args.out
    times: list[tuple[str, float]] = []

    def run(label: str, argv: list[str]) -> None:
        t = time.perf_counter()
        if ev(argv + ["--quiet"]) != 0:
            raise SystemExit(f"stage failed: {label}")
        times.append((label, time.perf_counter() - t))

    torch.manual_seed(0)
    model = out / "model-random-big-lama"
    if not model.exists():
        write_folder(model, randomize_bn(build_preset("big-lama")), config_text(64, 18))
    run("sample photos", ["sample", "--out", str(out / "photos")])
    methods = {"lama-random-weights": ["--model", str(model)], "telea": ["--method", "telea"],
               "ns": ["--method", "ns"], "biharmonic": ["--method", "biharmonic"]}
    for preset in args.presets:
        split = out / preset
        run(f"prepare {preset}", ["prepare", "--preset", preset, "--images", str(out / "photos"), "--out",
                                  str(split), "--seed", "0"])
        for name, how in methods.items():
            run(f"predict {name} {preset}", ["predict", *how, "--split", str(split), "--out",
                                             str(out / "pred" / preset / name)])
        for name in methods:
            run(f"score {name} {preset}", ["score", "--split", str(split), "--predictions",
                                           str(out / "pred" / preset / name), "--method", name, "--dataset", "sample",
                                           "--mask-set", preset, "--out", str(out / "results")])
    last = args.presets[-1]
    run("report", ["report", "--results", str(out / "results" / "results.csv"), "--out", str(out / "report"),
                   "--split", str(out / last), "--predictions",
                   *[f"{n}={out / 'pred' / last / n}" for n in methods]])
    print(f"{'stage':45} {'seconds':>8}")
    for label, s in times:
        print(f"{label:45} {s:8.1f}")
    (out / "timings.json").write_text(json.dumps(dict(times), indent=2))
    print(f"\nreport: {out / 'report' / 'report.md'}")


if __name__ == "__main__":
    main()
