"""Scores of a folder of predictions against a split, as the official LaMa evaluator computes them.

Per image: SSIM (zero-padded, the official), PSNR, LPIPS (VGG, v0.1) and the FID Inception features
of the prediction and the ground truth. Totals and the official mask-area bins (0-10 %, ... 90-100 %:
``np.linspace(0, 1, 11)``, FID recomputed inside each bin, NaN for bins with fewer than 2 images), and
the summary scores ``lpips_fid100_f1`` / ``ssim_fid100_f1`` of ``saicinpainting/evaluation/evaluator.py``.

Work is done in fixed chunks of samples cached on disk, so an interrupted run resumes, and under
``torchrun`` each process scores every N-th chunk; the chunks meet through ``torch.distributed``. Each
image's cached values are keyed by what they depend on (``sample_key``): a regenerated prediction, a
re-made split or other metric options re-score exactly the images concerned.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lama import IMAGE_EXTS, atomic_write, read_mask, read_rgb, to_tensor
from lama.dist import gather_objects

from .predict import EvaluationError, Sample, list_samples

N_BINS = 10
CHUNK = 64
PAIRWISE = ("ssim", "psnr", "lpips")


def bin_names(n_bins: int = N_BINS) -> list[str]:
    """The official interval names: "0-10%", "10-20%", ... ("0.0-2.5%" style for finer bins)."""
    edges = np.linspace(0, 1, n_bins + 1)
    digits = max(0, math.ceil(math.log10(n_bins)) - 1)
    return [f"{100 * edges[i]:.{digits}f}-{100 * edges[i + 1]:.{digits}f}%" for i in range(n_bins)]


def area_bins(areas: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Bin index of each mask area; an area of exactly 1 goes to the last bin (as the official)."""
    idx = np.searchsorted(np.linspace(0, 1, n_bins + 1), areas, side="right") - 1
    return np.clip(idx, 0, n_bins - 1)


def lpips_fid100_f1(lpips: float, fid: float, fid_scale: float = 100) -> float:
    """The official summary: F1 of (1 - LPIPS) and the relative FID, (scale - FID) / scale."""
    neg_lpips = 1 - lpips
    fid_rel = max(0.0, fid_scale - fid) / fid_scale
    return 2 * neg_lpips * fid_rel / (neg_lpips + fid_rel + 1e-3)


def ssim_fid100_f1(ssim: float, fid: float, fid_scale: float = 100) -> float:
    fid_rel = max(0.0, fid_scale - fid) / fid_scale
    return 2 * ssim * fid_rel / (ssim + fid_rel + 1e-3)


@dataclass
class ScoreOptions:
    fid_resize: str = "lama"
    ssim_variant: str = "lama"
    lpips_net: str = "vgg"
    batch_size: int = 8
    device: str = "cpu"


class Scorer:
    """The ``lama.metrics`` objects, loaded once (real weights only: see ``lama.metrics.weights``); their per-image
    values, which the cache keeps and the mask-area bins need."""

    def __init__(self, opts: ScoreOptions):
        from lama.metrics import FID, LPIPS, PSNR, SSIM

        self.opts = opts
        self.fid = FID(resize=opts.fid_resize).to(opts.device).eval()
        self.lpips = LPIPS(net=opts.lpips_net).to(opts.device).eval()
        self.ssim, self.psnr = SSIM(variant=opts.ssim_variant), PSNR()

    @torch.inference_mode()
    def batch(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        dev = self.opts.device
        pred, target = pred.to(dev), target.to(dev)
        return {
            "ssim": self.ssim.values_of(pred, target).double().cpu().numpy(),
            "psnr": self.psnr.values_of(pred, target).double().cpu().numpy(),
            "lpips": self.lpips.values_of(pred, target).reshape(-1).double().cpu().numpy(),
            "feat_pred": self.fid.features(pred).cpu().numpy(),
            "feat_real": self.fid.features(target).cpu().numpy(),
        }


#: Where a prediction is looked for, PNG (what `predict` writes) first.
PRED_EXTS = (".png", *sorted(IMAGE_EXTS - {".png"}))


def find_predictions(samples: list[Sample], pred_dir: Path, allow_missing: bool = False) -> list[Path | None]:
    """The prediction file of each sample (``None`` where missing). Missing ones are an error naming the
    expected files, unless ``allow_missing``; a folder with none at all is always an error."""
    if not pred_dir.is_dir():
        raise EvaluationError(f"predictions folder {pred_dir} does not exist; run `python -m evaluation predict` "
                              "first, or point --predictions at a folder of outputs named like the masks")
    found: list[Path | None] = []
    for s in samples:
        found.append(next((p for p in (pred_dir / f"{s.name}{e}" for e in PRED_EXTS) if p.is_file()), None))
    missing = [s.name for s, p in zip(samples, found, strict=True) if p is None]
    if missing and (not allow_missing or len(missing) == len(samples)):
        shown = ", ".join(f"{m}.png" for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        hint = "" if len(missing) == len(samples) else "; or pass --allow-missing to score the rest"
        raise EvaluationError(f"{len(missing)} of {len(samples)} predictions are missing in {pred_dir} (expected "
                              f"{shown}: one image per mask, named like the mask); run `python -m evaluation "
                              f"predict` for them{hint}")
    return found


def score_chunk(scorer: Scorer, samples: list[Sample], preds: list[Path]) -> dict[str, np.ndarray]:
    """Per-image values of one chunk of samples."""
    parts: list[dict[str, np.ndarray]] = []
    areas = []
    bs = scorer.opts.batch_size
    for i in range(0, len(samples), bs):
        targets, images = [], []
        for s, p in zip(samples[i: i + bs], preds[i: i + bs], strict=True):
            rgb, pred = read_rgb(s.image), read_rgb(p)
            if pred.shape != rgb.shape:
                raise EvaluationError(f"prediction for {s.name} is {pred.shape[1]}x{pred.shape[0]}, the image "
                                      f"{rgb.shape[1]}x{rgb.shape[0]}")
            targets.append(rgb)
            images.append(pred)
            areas.append(read_mask(s.mask).mean())
        if len({t.shape for t in targets}) == 1:
            parts.append(scorer.batch(to_tensor(images), to_tensor(targets)))
        else:  # mixed sizes: one at a time
            for p, t in zip(images, targets, strict=True):
                parts.append(scorer.batch(to_tensor(p), to_tensor(t)))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["area"] = np.asarray(areas, dtype=np.float64)
    out["names"] = np.asarray([s.name for s in samples])
    return out


#: Bumped whenever what is cached, or how it is computed, changes: older cache files are then ignored.
CACHE_VERSION = 2


def _stat(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def sample_key(s: Sample, pred: Path, opts: ScoreOptions) -> str:
    """What one image's values depend on: the cache format, the metric options, and the name, size and
    modification time of its ground truth, mask and prediction. Any change re-scores that image."""
    parts = [f"v{CACHE_VERSION}", opts.fid_resize, opts.ssim_variant, opts.lpips_net, s.name,
             _stat(s.image), _stat(s.mask), pred.name, _stat(pred)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _score_cached(get_scorer: Callable[[], Scorer], opts: ScoreOptions, samples: list[Sample], preds: list[Path],
                  path: Path, counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Values of one chunk: rows whose key matches the cache file are read, the others scored; the file is
    rewritten (atomically) when anything was scored."""
    keys = [sample_key(s, p, opts) for s, p in zip(samples, preds, strict=True)]
    cached: dict[str, int] = {}
    old: dict[str, np.ndarray] = {}
    if path.exists():
        try:
            with np.load(path) as z:
                old = {k: z[k] for k in z.files}
            cached = {k: i for i, k in enumerate(old["keys"].tolist())}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # a damaged file is scored again
            old, cached = {}, {}
    todo = [i for i, k in enumerate(keys) if k not in cached]
    new: dict[str, np.ndarray] = {}
    if todo:
        new = score_chunk(get_scorer(), [samples[i] for i in todo], [preds[i] for i in todo])
    pos = {i: j for j, i in enumerate(todo)}
    fields = [k for k in (new or old) if k != "keys"]
    data = {f: np.stack([new[f][pos[i]] if i in pos else old[f][cached[k]] for i, k in enumerate(keys)])
            for f in fields}
    data["keys"] = np.asarray(keys)
    counts["scored"] += len(todo)
    counts["cached"] += len(keys) - len(todo)
    if todo:
        with atomic_write(path) as f:
            np.savez(f, **data)
    return data


def cache_dir(out: Path, dataset: str, mask_set: str, method: str, opts: ScoreOptions) -> Path:
    """Where ``score --out OUT`` keeps the per-image values of one run (one folder per labels and options)."""
    return out / "cache" / f"{dataset}__{mask_set}__{method}__{opts.fid_resize}_{opts.ssim_variant}_{opts.lpips_net}"


def collect(split: Path, pred_dir: Path, cache: Path, opts: ScoreOptions, rank: int = 0, world: int = 1,
            progress: bool = True, allow_missing: bool = False,
            chunk_size: int = CHUNK) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per-image values of the whole split, computed chunk by chunk, gathered across ranks.

    Returns the values (samples without a prediction left out, under ``allow_missing``) and the counts
    ``scored`` / ``cached`` / ``missing`` over all ranks. Every rank checks the whole folder first, so a
    missing prediction stops all of them before anything is scored or written.
    """
    from tqdm import tqdm

    samples = list_samples(split)
    preds = find_predictions(samples, pred_dir, allow_missing)
    pairs = list(zip(samples, preds, strict=True))
    # chunks over the whole split, so that a chunk's cache file means the same samples whatever is missing
    chunks = [[(s, p) for s, p in pairs[i: i + chunk_size] if p is not None]
              for i in range(0, len(pairs), chunk_size)]
    scorer: Scorer | None = None

    def get_scorer() -> Scorer:  # the networks load only when something needs scoring
        nonlocal scorer
        scorer = scorer or Scorer(opts)
        return scorer

    counts = {"scored": 0, "cached": 0, "missing": preds.count(None)}
    local: dict[int, dict[str, np.ndarray] | None] = {}
    for ci in tqdm(range(rank, len(chunks), world), desc="score", unit="chunk", disable=not progress):
        group = chunks[ci]
        path = cache / f"v{CACHE_VERSION}-chunk{chunk_size}-{ci:05d}.npz"
        local[ci] = _score_cached(get_scorer, opts, [s for s, _ in group], [p for _, p in group], path, counts) \
            if group else None
    if world > 1:
        gathered = gather_objects((local, counts))
        counts = {"scored": 0, "cached": 0, "missing": counts["missing"]}
        for part, c in gathered:
            local.update(part)
            counts["scored"] += c["scored"]
            counts["cached"] += c["cached"]
    ordered = [local[ci] for ci in range(len(chunks)) if local[ci] is not None]
    values = {k: np.concatenate([c[k] for c in ordered]) for k in ordered[0] if k != "keys"}
    return values, counts


def aggregate(values: dict[str, np.ndarray], n_bins: int = N_BINS) -> list[dict]:
    """Totals and per-bin rows ``{bin, metric, value, n_images}`` from per-image values."""
    from lama.metrics.fid import fid_from_features

    rows = []
    bins = area_bins(values["area"], n_bins)
    names = bin_names(n_bins)
    groups = [("total", np.arange(len(bins)))] + [(names[b], np.flatnonzero(bins == b))
                                                   for b in range(n_bins) if (bins == b).any()]
    for label, idx in groups:
        n = int(len(idx))
        for metric in PAIRWISE:
            v = values[metric][idx]
            rows.append({"bin": label, "metric": metric, "value": float(v.mean()), "n_images": n})
            rows.append({"bin": label, "metric": f"{metric}_std", "value": float(v.std()), "n_images": n})
        fid = fid_from_features(values["feat_real"][idx], values["feat_pred"][idx]) if n > 1 else float("nan")
        rows.append({"bin": label, "metric": "fid", "value": float(fid), "n_images": n})
    total = {r["metric"]: r["value"] for r in rows if r["bin"] == "total"}
    n = len(bins)
    rows.append({"bin": "total", "metric": "lpips_fid100_f1", "value": lpips_fid100_f1(total["lpips"], total["fid"]),
                 "n_images": n})
    rows.append({"bin": "total", "metric": "ssim_fid100_f1", "value": ssim_fid100_f1(total["ssim"], total["fid"]),
                 "n_images": n})
    return rows


def metric_suffix(opts: ScoreOptions) -> dict[str, str]:
    """Non-default metric variants are named in the results, never silent: e.g. ``fid[torchmetrics]``."""
    out = {}
    if opts.fid_resize != "lama":
        out["fid"] = f"fid[{opts.fid_resize}]"
    if opts.ssim_variant != "lama":
        out["ssim"] = f"ssim[{opts.ssim_variant}]"
    if opts.lpips_net != "vgg":
        out["lpips"] = f"lpips[{opts.lpips_net}]"
    return out


def rename_variants(rows: list[dict], opts: ScoreOptions) -> list[dict]:
    names = metric_suffix(opts)
    for r in rows:
        base = r["metric"].removesuffix("_std")
        if base in names:
            r["metric"] = names[base] + r["metric"][len(base):]
    return rows
