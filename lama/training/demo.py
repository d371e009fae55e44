"""A real training run on one CPU, end to end (``make train-demo``): the ``tiny-cpu`` config trained for a time
budget on the photos bundled with scikit-image and matplotlib, two photos held out.

It writes the run folder, loss curves and held-out LPIPS / PSNR-in-the-hole over time (PNG), and a table that
compares the final model with its own initialisation and with OpenCV Telea on the held-out crops (Markdown and
JSON). What the table shows is reported as it comes out: this is a tiny model, minutes of CPU time and 14 photos,
nothing like the paper's 3 GPUs x days on Places2.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HELD_OUT = ("chelsea", "grace_hopper")
SKIMAGE_PHOTOS = ("astronaut", "coffee", "rocket", "motorcycle_left", "hubble_deep_field", "ihc", "retina", "camera",
                  "coins", "moon", "brick", "grass", "gravel", "chelsea")
CROP = 128


def bundled_photos() -> dict[str, np.ndarray]:
    """Name -> HxWx3 uint8 of every photo used (grey ones as three equal channels)."""
    import matplotlib
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    out = {}
    for name in SKIMAGE_PHOTOS:
        path = next(p for p in folder.iterdir() if p.stem == name and p.suffix in (".png", ".jpg"))
        out[name] = np.asarray(Image.open(path).convert("RGB"))
    sample = Path(matplotlib.get_data_path()) / "sample_data"
    out["grace_hopper"] = np.asarray(Image.open(sample / "grace_hopper.jpg").convert("RGB"))
    out["minduka"] = np.asarray(Image.open(sample / "Minduka_Present_Blue_Pack.png").convert("RGB"))
    return out


def held_out_crops(photo: np.ndarray, per_side: int = 4) -> list[np.ndarray]:
    """A per_side x per_side grid of CROP x CROP crops of the photo resized to short side 2 * CROP."""
    h, w = photo.shape[:2]
    s = 2 * CROP / min(h, w)
    img = np.asarray(Image.fromarray(photo).resize((round(w * s), round(h * s)), Image.LANCZOS))
    h, w = img.shape[:2]
    ys = np.linspace(0, h - CROP, per_side).round().astype(int)
    xs = np.linspace(0, w - CROP, per_side).round().astype(int)
    return [img[y:y + CROP, x:x + CROP] for y in ys for x in xs]


def prepare(root: Path, per_side: int = 4) -> tuple[Path, Path]:
    train, val = root / "data" / "train", root / "data" / "val"
    train.mkdir(parents=True, exist_ok=True)
    val.mkdir(parents=True, exist_ok=True)
    for name, photo in bundled_photos().items():
        if name in HELD_OUT:
            for i, crop in enumerate(held_out_crops(photo, per_side)):
                Image.fromarray(crop).save(val / f"{name}_{i:02d}.png")
        else:
            Image.fromarray(photo).save(train / f"{name}.png")
    return train, val


@torch.no_grad()
def score(fill, val_set) -> dict[str, float]:
    """LPIPS, SSIM, PSNR in the hole and L1 in the hole of ``fill(img, mask) -> inpainted`` on the held-out crops."""
    from ..metrics import LPIPS, SSIM
    from .trainer import psnr_in_hole

    lpips, ssim, psnr, l1 = LPIPS(), SSIM(), [], []
    for i in range(len(val_set)):
        s = val_set[i]
        img, mask = s["image"][None], s["mask"][None]
        out = fill(img, mask).clamp(0, 1)
        lpips.update(out, img)
        ssim.update(out, img)
        psnr += psnr_in_hole(out, img, mask)
        l1.append(float(((out - img).abs() * mask).sum() / (mask.sum() * 3)))
    return {"lpips": float(lpips.compute()), "ssim": float(ssim.compute()), "psnr_hole": float(np.mean(psnr)),
            "l1_hole": float(np.mean(l1))}


def generator_fill(generator):
    def fill(img, mask):
        pred = generator(torch.cat([img * (1 - mask), mask], dim=1))
        return mask * pred + (1 - mask) * img
    return fill


def telea_fill(img, mask):
    from ..classical import inpaint_classical

    rgb = (img[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    out = inpaint_classical(rgb, mask[0, 0].numpy() > 0.5, "telea")
    return torch.from_numpy(out).permute(2, 0, 1)[None].float() / 255


def plot(metrics_csv: Path, telea: dict[str, float], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.read_csv(metrics_csv)
    wide = df.pivot_table(index="step", columns="name", values="value")
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    for key, a in (("gen_l1", ax[0, 0]), ("gen_fm", ax[0, 0]), ("gen_adv", ax[0, 0]), ("discr_adv", ax[0, 1]),
                   ("discr_real_out", ax[0, 1]), ("discr_fake_out", ax[0, 1])):
        s = wide[key].dropna()
        a.plot(s.index, s.rolling(10, min_periods=1).mean(), label=key)
    ax[0, 0].set_title("generator losses (moving mean of 10 logs)")
    ax[0, 0].set_yscale("log")
    ax[0, 1].set_title("discriminator loss and mean logits")
    for key, name, a in (("val/lpips", "LPIPS (lower is better)", ax[1, 0]),
                         ("val/psnr_hole", "PSNR in the hole, dB (higher is better)", ax[1, 1])):
        s = wide[key].dropna()
        a.plot(s.index, s.values, "o-", label="LaMa tiny-cpu")
        a.axhline(telea[key.split("/")[1]], color="gray", ls="--", label="OpenCV Telea")
        a.set_title(f"held-out crops: {name}")
    for a in ax.flat:
        a.set_xlabel("step")
        a.legend(fontsize=8)
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    from ..machine import cpu_model
    from .config import load_training_config
    from .trainer import Trainer

    ap = argparse.ArgumentParser(prog="python -m lama.training.demo", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--run", default="runs/tiny-cpu-demo")
    ap.add_argument("--docs", default="docs/training")
    ap.add_argument("--val-every", type=int, default=400)
    ap.add_argument("--crops-per-side", type=int, default=4, help="held-out crops: a grid of N x N per photo")
    args = ap.parse_args(argv)

    run = Path(args.run)
    train, val = prepare(run, args.crops_per_side)
    cfg = load_training_config("tiny-cpu", [
        f"data.train.indir={train}", f"data.val.indir={val}", "data.val.max_images=1000",
        "trainer.max_steps=null", "trainer.max_epochs=1000000", f"trainer.max_minutes={args.minutes}",
        f"trainer.val_every_n_steps={args.val_every}",
        "trainer.log_every_n_steps=20", "trainer.checkpoint_every_n_steps=1000",
        "training_model.visualize_each_iters=1000"])
    trainer = Trainer(cfg, run, progress_bar=True)
    initial = copy.deepcopy(trainer.generator).eval()
    trainer.validate()  # step 0: the initialisation's held-out numbers
    start = time.monotonic()
    state = trainer.fit()
    minutes = (time.monotonic() - start) / 60
    trainer.generator.eval()

    rows = {"LaMa tiny-cpu, initialisation (step 0)": score(generator_fill(initial), trainer.val_set),
            f"LaMa tiny-cpu, after {minutes:.0f} min ({state.step} steps)": score(
                generator_fill(trainer.generator), trainer.val_set),
            "OpenCV Telea (radius 3)": score(telea_fill, trainer.val_set)}
    docs = Path(args.docs)
    cpu = cpu_model()
    title = (f"tiny-cpu, {state.step} steps in {minutes:.0f} min on {cpu} ({torch.get_num_threads()} threads); "
             f"held out: {', '.join(HELD_OUT)} ({len(trainer.val_set)} crops)")
    plot(run / "metrics.csv", rows["OpenCV Telea (radius 3)"], docs / "tiny-cpu-demo.png", title)
    lines = [f"# {title}", "", "| method | LPIPS (lower better) | SSIM | PSNR in the hole, dB | L1 in the hole |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['lpips']:.4f} | {r['ssim']:.4f} | {r['psnr_hole']:.2f} | {r['l1_hole']:.4f} |")
    lines += ["", f"Training photos: {len(list(train.iterdir()))} (scikit-image and matplotlib sample data); "
              f"held-out crops: {CROP}x{CROP} with `random_medium_256` masks drawn at 256 and resized. "
              "Plot: `tiny-cpu-demo.png`. Made by `make train-demo` (`python -m lama.training.demo`)."]
    (docs / "tiny-cpu-demo.md").write_text("\n".join(lines) + "\n")
    (docs / "tiny-cpu-demo.json").write_text(json.dumps({"cpu": cpu, "steps": state.step, "minutes": minutes,
                                                         "rows": rows}, indent=2))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
