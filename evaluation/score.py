"""Scores of a folder of predictions against a split, as the official LaMa evaluator computes them.

Per image: SSIM (zero-padded, the official), PSNR, LPIPS (VGG, v0.1) and the FID Inception features
of the prediction and the ground truth. Totals and the official mask-area bins (0-10 %, ... 90-100 %:
``np.linspace(0, 1, 11)``, FID recomputed inside each bin, NaN for bins with fewer than 2 images), and
the summary scores ``lpips_fid100_f1`` / ``ssim_fid100_f1`` of ``saicinpainting/evaluation/evaluator.py``.

Work is done in fixed chunks of samples cached on disk, so an interrupted run resumes, and under
``torchrun`` each process scores every N-th chunk; the chunks meet through ``torch.distributed``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .predict import EvaluationError, Sample, list_samples, read_mask, read_rgb

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
    """The metric networks, loaded once (real weights only: see ``evaluation.metrics.weights``)."""

    def __init__(self, opts: ScoreOptions):
        from .metrics.fid import InceptionFeatures
        from .metrics.lpips_metric import LPIPS

        self.opts = opts
        self.inception = InceptionFeatures(resize=opts.fid_resize).to(opts.device).eval()
        self.lpips = LPIPS(net=opts.lpips_net).to(opts.device).eval()

    @torch.inference_mode()
    def batch(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        from .metrics.ssim import psnr, ssim

        dev = self.opts.device
        pred, target = pred.to(dev), target.to(dev)
        return {
            "ssim": ssim(pred, target, self.opts.ssim_variant).double().cpu().numpy(),
            "psnr": psnr(pred, target).double().cpu().numpy(),
            "lpips": self.lpips(pred, target).reshape(-1).double().cpu().numpy(),
            "feat_pred": self.inception(pred).double().cpu().numpy(),
            "feat_real": self.inception(target).double().cpu().numpy(),
        }


def _prediction(pred_dir: Path, s: Sample) -> Path:
    for ext in (".png", ".jpg", ".jpeg", ".webp"):
        p = pred_dir / f"{s.name}{ext}"
        if p.exists():
            return p
    raise EvaluationError(f"no prediction {s.name}.png in {pred_dir}; run `python -m evaluation predict` first")


def score_chunk(scorer: Scorer, samples: list[Sample], pred_dir: Path) -> dict[str, np.ndarray]:
    """Per-image values of one chunk of samples."""
    parts: list[dict[str, np.ndarray]] = []
    areas = []
    bs = scorer.opts.batch_size
    for i in range(0, len(samples), bs):
        group = samples[i: i + bs]
        targets, preds = [], []
        for s in group:
            rgb, pred = read_rgb(s.image), read_rgb(_prediction(pred_dir, s))
            if pred.shape != rgb.shape:
                raise EvaluationError(f"prediction for {s.name} is {pred.shape[1]}x{pred.shape[0]}, the image "
                                      f"{rgb.shape[1]}x{rgb.shape[0]}")
            targets.append(rgb)
            preds.append(pred)
            areas.append(read_mask(s.mask).mean())
        if len({t.shape for t in targets}) == 1:
            parts.append(scorer.batch(_to_t(preds), _to_t(targets)))
        else:  # mixed sizes: one at a time
            for p, t in zip(preds, targets, strict=True):
                parts.append(scorer.batch(_to_t([p]), _to_t([t])))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out["area"] = np.asarray(areas, dtype=np.float64)
    out["names"] = np.asarray([s.name for s in samples])
    return out


def _to_t(arrays: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0


def _save_npz(path: Path, data: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **data)
    os.replace(tmp, path)


def collect(split: Path, pred_dir: Path, cache_dir: Path, opts: ScoreOptions, rank: int = 0, world: int = 1,
            progress: bool = True) -> dict[str, np.ndarray]:
    """Per-image values of the whole split, computed chunk by chunk (cached), gathered across ranks."""
    from tqdm import tqdm

    samples = list_samples(split)
    chunks = [samples[i: i + CHUNK] for i in range(0, len(samples), CHUNK)]
    mine = list(range(rank, len(chunks), world))
    scorer: Scorer | None = None
    local: dict[int, dict[str, np.ndarray]] = {}
    for ci in tqdm(mine, desc="score", unit="chunk", disable=not progress):
        path = cache_dir / f"chunk{ci:05d}_{len(chunks[ci])}.npz"
        if path.exists():
            with np.load(path) as z:
                data = {k: z[k] for k in z.files}
            if list(data["names"]) == [s.name for s in chunks[ci]]:
                local[ci] = data
                continue
        scorer = scorer or Scorer(opts)
        local[ci] = score_chunk(scorer, chunks[ci], pred_dir)
        _save_npz(path, local[ci])
    if world > 1:
        import torch.distributed as dist

        gathered: list[dict[int, dict[str, np.ndarray]] | None] = [None] * world
        dist.all_gather_object(gathered, local)
        for part in gathered:
            local.update(part or {})
    ordered = [local[ci] for ci in range(len(chunks))]
    return {k: np.concatenate([c[k] for c in ordered]) for k in ordered[0]}


def aggregate(values: dict[str, np.ndarray], n_bins: int = N_BINS) -> list[dict]:
    """Totals and per-bin rows ``{bin, metric, value, n_images}`` from per-image values."""
    from .metrics.fid import fid_from_features

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
