"""Results as a tidy CSV and Markdown tables beside the paper's Table 1, and comparison plots.

Tidy rows: dataset, mask_set, method, bin, metric, value, n_images. ``results.csv`` accumulates
runs; a new score of the same (dataset, mask_set, method) replaces the old rows.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

FIELDS = ("dataset", "mask_set", "method", "bin", "metric", "value", "n_images")
PAPER_TABLE1 = Path(__file__).parent / "data" / "table1.csv"


def write_results(path: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into the CSV at ``path`` (atomically), replacing rows of the same run."""
    keys = {(r["dataset"], r["mask_set"], r["method"]) for r in rows}
    old = [r for r in read_results(path) if (r["dataset"], r["mask_set"], r["method"]) not in keys] \
        if path.exists() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in old + rows:
            w.writerow({k: r[k] for k in FIELDS})
    os.replace(tmp, path)


def read_results(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["value"] = float(r["value"])
        r["n_images"] = int(r["n_images"])
    return rows


def read_paper() -> list[dict]:
    with open(PAPER_TABLE1, newline="") as f:
        return list(csv.DictReader(f))


def _fmt(v: float, digits: int) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def markdown_table(rows: list[dict]) -> str:
    """Totals per method (rows) and dataset/mask set (columns): FID, LPIPS, SSIM, PSNR and n."""
    totals = [r for r in rows if r["bin"] == "total"]
    sets = sorted({(r["dataset"], r["mask_set"]) for r in totals})
    methods = sorted({r["method"] for r in totals})
    val = {(r["dataset"], r["mask_set"], r["method"], r["metric"]): r for r in totals}
    metrics = [("fid", 2), ("lpips", 3), ("ssim", 3), ("psnr", 2)]
    head = ["method"] + [f"{d} {m} {name.upper()}" for d, m in sets for name, _ in metrics] + ["n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for meth in methods:
        cells = [meth]
        n = "–"
        for d, m in sets:
            for name, digits in metrics:
                r = val.get((d, m, meth, name))
                cells.append(_fmt(r["value"], digits) if r else "–")
                n = str(r["n_images"]) if r else n
            missing = val.get((d, m, meth, "n_missing"))
            if missing and missing["value"]:  # scored with --allow-missing: say what was left out
                n += f" ({missing['value']:.0f} missing)"
        lines.append("| " + " | ".join(cells + [n]) + " |")
    return "\n".join(lines)


def beside_paper(rows: list[dict]) -> str:
    """Our FID/LPIPS next to Table 1's for each dataset and mask set we scored (paper mask-set names)."""
    paper = read_paper()
    ours = [r for r in rows if r["bin"] == "total" and r["metric"] in ("fid", "lpips")]
    our_sets = sorted({(r["dataset"], r["mask_set"]) for r in ours})
    lines = ["| dataset | masks | method | params (M) | FID | LPIPS | source |", "|---|---|---|---|---|---|---|"]
    for d, m in our_sets:
        paper_set = _paper_mask_set(m)
        for p in paper:
            if p["dataset"].lower() == _paper_dataset(d).lower() and p["mask_set"] == paper_set:
                lines.append(f"| {p['dataset']} | {p['mask_set']} | {p['method']} | {p['params_m']} | {p['fid']} | "
                             f"{p['lpips']} | paper |")
        for meth in sorted({r["method"] for r in ours if (r["dataset"], r["mask_set"]) == (d, m)}):
            fid = next((r for r in ours if (r["dataset"], r["mask_set"], r["method"], r["metric"]) ==
                        (d, m, meth, "fid")), None)
            lp = next((r for r in ours if (r["dataset"], r["mask_set"], r["method"], r["metric"]) ==
                       (d, m, meth, "lpips")), None)
            n = fid["n_images"] if fid else (lp["n_images"] if lp else 0)
            lines.append(f"| {d} | {m} | {meth} | | {_fmt(fid['value'] if fid else None, 2)} | "
                         f"{_fmt(lp['value'] if lp else None, 3)} | ours, {n} images |")
    return "\n".join(lines)


def paper_table() -> str:
    """Table 1 of the paper as stored in ``data/table1.csv``."""
    lines = ["| method | params (M) | dataset | resolution | masks | FID | LPIPS |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {p['method']} | {p['params_m']} | {p['dataset']} | {p['resolution']} | {p['mask_set']} | "
              f"{p['fid']} | {p['lpips']} |" for p in read_paper()]
    return "\n".join(lines)


def _paper_mask_set(mask_set: str) -> str:
    """Our preset names to the paper's: random_thin_* = narrow, random_thick_* = wide."""
    for key, name in (("thin", "narrow"), ("thick", "wide"), ("medium", "medium"), ("segm", "segm")):
        if key in mask_set:
            return name
    return mask_set


def _paper_dataset(dataset: str) -> str:
    return {"places": "Places", "celebahq": "CelebA-HQ", "celeba-hq": "CelebA-HQ"}.get(dataset.lower(), dataset)


def write_report(results: Path, out: Path, grid: dict | None = None) -> list[Path]:
    """``report.md`` with both tables, and the plots (PNG and SVG) under ``out``."""
    rows = read_results(results)
    out.mkdir(parents=True, exist_ok=True)
    written = plot_metrics(rows, out)
    if grid:
        written += plot_grid(out=out, **grid)
    md = ["# Evaluation report", "", "## Our scores (totals)", "", markdown_table(rows), "",
          "## Beside the paper (Table 1; narrow = random_thin, wide = random_thick)", "", beside_paper(rows), "",
          "## The paper's Table 1", "", paper_table(), "",
          "Metrics as the LaMa evaluator computes them: FID on pytorch-fid's Inception with plain bilinear "
          "resizing to 299; LPIPS with the VGG trunk and v0.1 linear layers; SSIM with zero padding. "
          "FID on a few images is dominated by sampling error; compare only numbers computed on the same "
          "number of images.", ""]
    md += [f"![{p.stem}]({p.name})" for p in written if p.suffix == ".png"]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n")
    return [path] + written


def plot_metrics(rows: list[dict], out: Path) -> list[Path]:
    """Bar charts of FID and LPIPS per method and mask set; each metric against mask-area bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .score import bin_names

    written = []
    totals = [r for r in rows if r["bin"] == "total"]
    sets = sorted({(r["dataset"], r["mask_set"]) for r in totals})
    methods = sorted({r["method"] for r in totals})
    for metric in ("fid", "lpips"):
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(sets), 3.6))
        width = 0.8 / max(1, len(methods))
        for j, meth in enumerate(methods):
            ys = [next((r["value"] for r in totals if (r["dataset"], r["mask_set"], r["method"], r["metric"]) ==
                        (d, m, meth, metric)), float("nan")) for d, m in sets]
            ax.bar([i + j * width for i in range(len(sets))], ys, width, label=meth)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sets))], [f"{d}\n{m}" for d, m in sets])
        ax.set_ylabel(metric.upper() + " (lower is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written += _save_fig(fig, out / f"{metric}_by_method")
    order = bin_names()
    for metric in ("fid", "lpips", "ssim", "psnr"):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for d, m in sets:
            for meth in methods:
                pts = sorted((order.index(r["bin"]), r["value"]) for r in rows
                              if r["bin"] in order and (r["dataset"], r["mask_set"], r["method"], r["metric"]) ==
                              (d, m, meth, metric))
                if pts:
                    ax.plot([order[i] for i, _ in pts], [v for _, v in pts], marker="o", label=f"{meth} ({m})")
        ax.set_xlabel("mask area")
        ax.set_ylabel(metric.upper())
        ax.tick_params(axis="x", rotation=45)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written += _save_fig(fig, out / f"{metric}_by_mask_area")
    return written


def plot_grid(split: Path, predictions: dict[str, Path], out: Path, n: int = 4) -> list[Path]:
    """Qualitative grid: input with the mask shown, each method's output, the ground truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .predict import list_samples, read_mask, read_rgb

    samples = list_samples(split)[:n]
    cols = 2 + len(predictions)
    fig, axes = plt.subplots(len(samples), cols, figsize=(2.2 * cols, 2.2 * len(samples)), squeeze=False)
    for i, s in enumerate(samples):
        rgb, mask = read_rgb(s.image), read_mask(s.mask)
        shown = rgb.copy()
        shown[mask] = (0.4 * shown[mask] + 0.6 * np.array([255, 255, 255])).astype(np.uint8)
        panels = [("input + mask", shown)]
        for name, folder in predictions.items():
            p = folder / f"{s.name}.png"
            panels.append((name, read_rgb(p) if p.exists() else np.zeros_like(rgb)))
        panels.append(("ground truth", rgb))
        for j, (title, img) in enumerate(panels):
            axes[i, j].imshow(img)
            axes[i, j].set_axis_off()
            if i == 0:
                axes[i, j].set_title(title, fontsize=8)
    fig.tight_layout()
    return _save_fig(fig, out / "qualitative_grid")


def _save_fig(fig, stem: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    paths = []
    for ext in (".png", ".svg"):
        p = stem.with_suffix(ext)
        fig.savefig(p, dpi=110)
        paths.append(p)
    plt.close(fig)
    return paths
