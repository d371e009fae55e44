"""Results as a tidy CSV and Markdown tables beside the paper's Table 1, and comparison plots.

Results are a tidy pandas DataFrame, one row per dataset x mask_set x method x bin x metric, with the columns
dataset, mask_set, method, bin, metric, value, n_images. ``results.csv`` accumulates runs; a new score of the
same (dataset, mask_set, method) replaces the old rows. The tables and plots are pivots of that frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lama import atomic_write

FIELDS = ("dataset", "mask_set", "method", "bin", "metric", "value", "n_images")
RUN = ["dataset", "mask_set", "method"]  # one ``score`` run
KEY = RUN + ["bin", "metric"]  # one number
METRICS = (("fid", 2), ("lpips", 3), ("ssim", 3), ("psnr", 2))  # the totals table: metric, decimals
PAPER_TABLE1 = Path(__file__).parent / "data" / "table1.csv"


def tidy(rows: Iterable[dict] | pd.DataFrame) -> pd.DataFrame:
    """The tidy frame of ``rows`` (dicts or a frame): exactly ``FIELDS`` in order, float values, int counts."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=list(FIELDS))
    return df.loc[:, list(FIELDS)].astype({"value": float, "n_images": int}).reset_index(drop=True)


def write_results(path: Path, rows: list[dict]) -> None:
    """Merge ``rows`` into the CSV at ``path`` (atomically), replacing rows of the same run."""
    new = tidy(rows)
    merged = replace_runs(read_results(path), new) if path.exists() else new
    with atomic_write(path, "w") as f:
        # what csv.DictWriter wrote: Python's repr of each float (nan as "nan"), CRLF line ends
        merged.to_csv(f, index=False, lineterminator="\r\n", na_rep="nan", float_format=lambda v: repr(float(v)))


def read_results(path: Path) -> pd.DataFrame:
    """The tidy frame of a ``results.csv``; every field read as text, numbers parsed as Python parses them."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    return tidy(df.assign(value=df["value"].map(float), n_images=df["n_images"].map(int)))


def combine_results(paths: Iterable[Path]) -> pd.DataFrame:
    """Several results files as one frame, in order; a run (dataset, mask_set, method) in a later file replaces
    the whole run in earlier ones, as a re-score does in ``write_results``."""
    out = None
    for p in paths:
        new = read_results(Path(p))
        out = new if out is None else replace_runs(out, new)
    return out.drop_duplicates(subset=KEY, keep="last", ignore_index=True)


def replace_runs(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``old`` without the runs (dataset, mask_set, method) that ``new`` has, then ``new``."""
    replaced = pd.MultiIndex.from_frame(old[RUN]).isin(pd.MultiIndex.from_frame(new[RUN]))
    kept = old[~replaced]
    return pd.concat([kept, new], ignore_index=True) if len(kept) else new.reset_index(drop=True)


def read_paper() -> pd.DataFrame:
    """Table 1 as stored, every field as text (``0.090`` stays ``0.090``)."""
    return pd.read_csv(PAPER_TABLE1, dtype=str, keep_default_na=False)


def _fmt(v: float, digits: int) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _totals(results: pd.DataFrame | list[dict]) -> pd.DataFrame:
    df = tidy(results)
    return df[df["bin"] == "total"].drop_duplicates(subset=KEY, keep="last")


def _sets(df: pd.DataFrame, cols: tuple[str, ...] = ("dataset", "mask_set")) -> list[tuple[str, ...]]:
    """The distinct (dataset, mask_set) (or ``cols``) of ``df``, sorted as Python sorts tuples."""
    return sorted(set(df[list(cols)].itertuples(index=False, name=None)))


def markdown_table(results: pd.DataFrame) -> str:
    """Totals per method (rows) and dataset/mask set (columns): FID, LPIPS, SSIM, PSNR and n."""
    totals = _totals(results)
    sets, methods = _sets(totals), sorted(set(totals["method"]))
    head = ["method"] + [f"{d} {m} {name.upper()}" for d, m in sets for name, _ in METRICS] + ["n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    if not methods:
        return "\n".join(lines)
    cols = pd.MultiIndex.from_tuples([(d, m, name) for d, m in sets for name, _ in METRICS + (("n_missing", 0),)])
    wide = totals.pivot(index="method", columns=["dataset", "mask_set", "metric"], values=["value", "n_images"])
    value = wide["value"].reindex(index=methods, columns=cols)
    count = wide["n_images"].reindex(index=methods, columns=cols)  # NaN where there is no such row
    digits = dict(METRICS)
    shown = value.drop(columns="n_missing", level=2).apply(lambda c: c.map(lambda v: _fmt(v, digits[c.name[2]])))
    for meth in methods:
        cells = [meth, *shown.loc[meth], _n_cell(value.loc[meth], count.loc[meth], sets)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _n_cell(value: pd.Series, count: pd.Series, sets: list[tuple[str, str]]) -> str:
    """n of the last set that has one of the table's metrics, and the missing count of each set from that one
    on that was scored with --allow-missing (its ``n_missing`` row)."""
    n = "–"
    for d, m in sets:
        counts = count[[(d, m, name) for name, _ in METRICS]].dropna()
        if len(counts):
            n = str(int(counts.iloc[-1]))
        missing = value[(d, m, "n_missing")]
        if not math.isnan(count[(d, m, "n_missing")]) and missing:  # say what was left out
            n += f" ({missing:.0f} missing)"
    return n


def beside_paper(results: pd.DataFrame) -> str:
    """Our FID/LPIPS next to Table 1's for each dataset and mask set we scored (paper mask-set names)."""
    paper = read_paper()
    totals = _totals(results)
    ours = totals[totals["metric"].isin(["fid", "lpips"])]
    lines = ["| dataset | masks | method | params (M) | FID | LPIPS | source |", "|---|---|---|---|---|---|---|"]
    if not len(ours):
        return "\n".join(lines)
    runs = _sets(ours, tuple(RUN))
    wide = ours.pivot(index=RUN, columns="metric", values=["value", "n_images"])
    value = wide["value"].reindex(index=pd.MultiIndex.from_tuples(runs, names=RUN), columns=["fid", "lpips"])
    count = wide["n_images"].reindex(index=value.index, columns=["fid", "lpips"])
    for d, m in _sets(ours):
        match = paper[(paper["dataset"].str.lower() == _paper_dataset(d).lower()) &
                      (paper["mask_set"] == _paper_mask_set(m))]
        lines += [f"| {p.dataset} | {p.mask_set} | {p.method} | {p.params_m} | {p.fid} | {p.lpips} | paper |"
                  for p in match.itertuples()]
        for meth in sorted(meth for dd, mm, meth in runs if (dd, mm) == (d, m)):
            n = count.loc[(d, m, meth)].dropna()
            lines.append(f"| {d} | {m} | {meth} | | {_fmt(value.at[(d, m, meth), 'fid'], 2)} | "
                         f"{_fmt(value.at[(d, m, meth), 'lpips'], 3)} | ours, {int(n.iloc[0])} images |")
    return "\n".join(lines)


def paper_table() -> str:
    """Table 1 of the paper as stored in ``data/table1.csv``."""
    cols = ["method", "params_m", "dataset", "resolution", "mask_set", "fid", "lpips"]
    lines = ["| method | params (M) | dataset | resolution | masks | FID | LPIPS |", "|---|---|---|---|---|---|---|"]
    lines += ["| " + row + " |" for row in read_paper()[cols].agg(" | ".join, axis=1)]
    return "\n".join(lines)


def _paper_mask_set(mask_set: str) -> str:
    """Our preset names to the paper's: random_thin_* = narrow, random_thick_* = wide."""
    for key, name in (("thin", "narrow"), ("thick", "wide"), ("medium", "medium"), ("segm", "segm")):
        if key in mask_set:
            return name
    return mask_set


def _paper_dataset(dataset: str) -> str:
    return {"places": "Places", "celebahq": "CelebA-HQ", "celeba-hq": "CelebA-HQ"}.get(dataset.lower(), dataset)


def write_report(results: Path | Iterable[Path], out: Path, grid: dict | None = None) -> list[Path]:
    """``report.md`` with both tables, and the plots (PNG and SVG) under ``out``, of one results file or of
    several combined (``combine_results``: the later file wins)."""
    rows = combine_results([results] if isinstance(results, (str, Path)) else results)
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


def plot_metrics(results: pd.DataFrame, out: Path) -> list[Path]:
    """Bar charts of FID and LPIPS per method and mask set; each metric against mask-area bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .score import bin_names

    written = []
    df = tidy(results).drop_duplicates(subset=KEY, keep="last")
    totals = df[df["bin"] == "total"]
    sets, methods = _sets(totals), sorted(set(totals["method"]))
    for metric in ("fid", "lpips"):
        bars = totals[totals["metric"] == metric].pivot(index=["dataset", "mask_set"], columns="method",
                                                        values="value")
        bars = bars.reindex(index=pd.MultiIndex.from_tuples(sets, names=["dataset", "mask_set"]), columns=methods)
        fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(sets), 3.6))
        width = 0.8 / max(1, len(methods))
        for j, meth in enumerate(methods):
            ax.bar([i + j * width for i in range(len(sets))], bars[meth].tolist(), width, label=meth)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(sets))], [f"{d}\n{m}" for d, m in sets])
        ax.set_ylabel(metric.upper() + " (lower is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written += _save_fig(fig, out / f"{metric}_by_method")
    order = bin_names()
    binned = df[df["bin"].isin(order)]
    wide = binned.pivot(index=KEY[:3] + ["metric"], columns="bin", values=["value", "n_images"])
    for metric in ("fid", "lpips", "ssim", "psnr"):
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for d, m in sets:
            for meth in methods:
                key = (d, m, meth, metric)
                if key not in wide.index:
                    continue
                present = wide["n_images"].loc[key].dropna().index  # a bin with a row, even if its value is NaN
                bins = [b for b in order if b in present]
                ax.plot(bins, wide["value"].loc[key, bins].tolist(), marker="o", label=f"{meth} ({m})")
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

    from lama import read_mask, read_rgb

    from .predict import list_samples

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
