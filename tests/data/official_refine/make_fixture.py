"""Build tests/data/official_refine/expected.pt with the OFFICIAL LaMa multi-scale refinement.

Runs `refine_predict` from advimman/lama (`saicinpainting/evaluation/refinement.py`, Apache-2.0)
on the CPU, with the project's small official-format checkpoint (tests/data/official_reference/).
The official code is only imported, never copied; the only changes are made at run time, in this
driver's process:

- `pytorch_lightning` (pulled in by `saicinpainting.utils`, unused here) is stubbed;
- `saicinpainting.evaluation` is registered as a bare package so its heavy `__init__` (evaluator,
  FID/LPIPS losses) is not executed;
- the name `torch` inside the refinement module is replaced by a proxy whose `device(...)`
  always returns `torch.device('cpu')` (the official code is CUDA-only: it builds 'cuda:N');
  every other attribute is the real torch module's;
- `_infer` and `_l1_loss` of the refinement module are wrapped (delegating to the originals) to
  record each scale's result, the losses and the number of Adam steps.

Setup (no GPU needed; a few seconds of CPU):

    # official code, advimman/lama commit 786f5936b27fb3dacd2b1ad799e4de968ea697e7
    mkdir -p /tmp/lama_off && git --git-dir=/work/.mirror/advimman+lama/repo \
        archive 786f5936b27fb3dacd2b1ad799e4de968ea697e7 | tar -x -C /tmp/lama_off
    python3.11 -m venv /tmp/offvenv
    /tmp/offvenv/bin/pip install torch==2.14.1 kornia opencv-python-headless omegaconf tqdm numpy \
        pyyaml easydict pillow
    PYTHONPATH=/tmp/lama_off /tmp/offvenv/bin/python tests/data/official_refine/make_fixture.py

(run from the repository root; pass --no-write to only print the figures).
"""

import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # silence the official progress bars

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
LAMA = os.environ.get("LAMA_OFFICIAL", "/tmp/lama_off")
if LAMA not in sys.path:
    sys.path.insert(0, LAMA)

# --- stubs for imports that are not needed here ---------------------------------------------
_pl = types.ModuleType("pytorch_lightning")
_pl.seed_everything = lambda *a, **k: None
sys.modules.setdefault("pytorch_lightning", _pl)
_ev = types.ModuleType("saicinpainting.evaluation")
_ev.__path__ = [os.path.join(LAMA, "saicinpainting", "evaluation")]
sys.modules["saicinpainting.evaluation"] = _ev

import cv2  # noqa: E402
import kornia  # noqa: E402
import numpy as np  # noqa: E402
import saicinpainting.evaluation.refinement as R  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from saicinpainting.training.modules.ffc import FFCResNetGenerator  # noqa: E402

# n_iters=15, lr=0.002: the official configs/prediction/default.yaml values (n_iters=4 changed the
# result by only ~2e-3 max)
PARAMS = dict(modulo=8, n_iters=15, lr=0.002, min_side=48, max_scales=3, px_budget=1800000)
H, W = 192, 256


class _TorchCPUProxy:
    """Real torch, except `device(anything)` -> cpu."""

    def __init__(self, real):
        self._real = real

    def device(self, *args, **kwargs):
        return self._real.device("cpu")

    def __getattr__(self, name):
        return getattr(self._real, name)


R.torch = _TorchCPUProxy(torch)

# --- instrumentation (delegates to the official functions) ----------------------------------
_orig_infer = R._infer
_orig_l1 = R._l1_loss
LOG = {"scales": [], "losses": [], "cur_losses": None}


def _l1_wrapper(*args, **kwargs):
    loss = _orig_l1(*args, **kwargs)
    LOG["cur_losses"].append(float(loss.detach()))
    # args: pred, pred_downscaled, ref, mask, mask_downscaled, image
    LOG["cur_px"] = int((args[4][:, :1] >= 1e-8).sum())
    return loss


class _CountingAdam(torch.optim.Adam):
    steps = 0

    def step(self, *a, **k):
        _CountingAdam.steps += 1
        return super().step(*a, **k)


def _infer_wrapper(
    image, mask, forward_front, forward_rears, ref_lower_res, orig_shape, devices, scale_ind, n_iters=15, lr=0.002
):
    LOG["cur_losses"] = []
    LOG["cur_px"] = None
    _CountingAdam.steps = 0
    out = _orig_infer(
        image, mask, forward_front, forward_rears, ref_lower_res, orig_shape, devices, scale_ind, n_iters, lr
    )
    LOG["scales"].append(out[:, :, : orig_shape[0], : orig_shape[1]].clone())
    LOG["losses"].append(
        {
            "scale": scale_ind,
            "shape": tuple(image.shape[2:]),
            "losses": LOG["cur_losses"],
            "adam_steps": _CountingAdam.steps,
            "eroded_loss_px": LOG.get("cur_px"),
        }
    )
    return out


R._infer = _infer_wrapper
R._l1_loss = _l1_wrapper
R.Adam = _CountingAdam


class Inpainter(nn.Module):
    def __init__(self, generator):
        super().__init__()
        self.generator = generator
        self.add_noise_kwargs = None
        self.concat_mask = True


def load_generator():
    ref = ROOT / "tests" / "data" / "official_reference"
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(ref / "config.yaml")
    kw = OmegaConf.to_container(cfg.generator, resolve=True)  # resolves ${generator.*} interpolations
    kw.pop("kind")
    gen = FFCResNetGenerator(**kw)
    ckpt = torch.load(ref / "models" / "best.ckpt", map_location="cpu", weights_only=False)
    sd = {k[len("generator.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("generator.")}
    gen.load_state_dict(sd, strict=True)
    gen.eval()
    # sanity check against the official reference outputs
    exp = torch.load(ref / "expected.pt", weights_only=True)
    with torch.no_grad():
        pred = gen(torch.cat([exp["image"] * (1 - exp["mask"]), exp["mask"]], 1))
        inp = exp["mask"] * pred + (1 - exp["mask"]) * exp["image"]
    err = (inp - exp["inpainted"]).abs().max().item()
    assert err < 1e-5, err
    print(f"weights check: max |inpainted - expected| = {err:.2e}")
    return gen


def make_image_and_mask():
    im = cv2.imread(str(ROOT / "demo" / "examples" / "astronaut.png"), cv2.IMREAD_COLOR)  # 512x512 BGR
    im = cv2.resize(im[0:384], (W, H), interpolation=cv2.INTER_AREA)  # top 384 rows -> 192x256
    im = cv2.cvtColor(im, cv2.COLOR_BGR2RGB)
    m = np.zeros((H, W), np.uint8)
    cv2.ellipse(m, (150, 118), (44, 34), 20, 0, 360, 1, thickness=-1)  # over the face/collar
    pts = np.array([[40, 70], [58, 108], [74, 148]], np.int32)  # flag -> suit
    cv2.polylines(m, [pts], False, 1, thickness=24)
    image = torch.from_numpy(im).permute(2, 0, 1)[None].contiguous()
    mask = torch.from_numpy(m)[None, None].contiguous()
    return image, mask


def run_refine(gen, image_u8, mask_u8, threads, dtype=torch.float32):
    torch.set_num_threads(threads)
    LOG["scales"].clear()
    LOG["losses"].clear()
    g = gen.to(dtype)
    batch = {
        "image": image_u8.to(dtype) / 255.0,
        "mask": mask_u8.to(dtype),
        "unpad_to_size": [torch.tensor([H]), torch.tensor([W])],
    }
    out = R.refine_predict(batch, Inpainter(g).eval(), gpu_ids="0,", **PARAMS)
    scales = [s.clone() for s in LOG["scales"]]
    losses = [dict(d) for d in LOG["losses"]]
    gen.float()
    return out, scales, losses


def plain_output(gen, image_u8, mask_u8):
    img = image_u8.float() / 255.0
    m = mask_u8.float()
    with torch.no_grad():
        pred = gen(torch.cat([img * (1 - m), m], 1))
    return m * pred + (1 - m) * img


def diff(a, b, mask):
    d = (a.double() - b.double()).abs()
    hole = mask.expand_as(d).bool()
    return d.max().item(), d[hole].mean().item()


def main():
    torch.set_num_threads(1)
    gen = load_generator()
    image, mask = make_image_and_mask()
    print(f"hole fraction: {mask.float().mean().item():.4f}")

    refined, scales, losses = run_refine(gen, image, mask, threads=1)
    for d in losses:
        print(d)
    plain = plain_output(gen, image, mask)
    refined2, _, _ = run_refine(gen, image, mask, threads=2)
    torch.set_num_threads(1)
    refined64, _, _ = run_refine(gen, image, mask, threads=1, dtype=torch.float64)

    a = diff(refined, plain, mask)
    b = diff(refined, refined2, mask)
    c = diff(refined, refined64, mask)
    print(f"(a) refined vs plain      : max {a[0]:.3e}  hole-mean {a[1]:.3e}")
    print(f"(b) 1 vs 2 threads        : max {b[0]:.3e}  hole-mean {b[1]:.3e}")
    print(f"(c) float32 vs float64    : max {c[0]:.3e}  hole-mean {c[1]:.3e}")
    print("scale shapes:", [tuple(s.shape) for s in scales])
    print(f"torch {torch.__version__}, kornia {kornia.__version__}")
    assert all(np.isfinite(v) for d in losses for v in d["losses"])

    if "--no-write" not in sys.argv:
        assert torch.equal(scales[-1], refined)  # refine_predict returns the last scale's result
        refined = refined.float().contiguous()
        torch.save(
            {
                "image": image,
                "mask": mask,
                "refined": refined,
                # the last entry is the same tensor as `refined`, so torch.save stores it once
                "scales": [s.float().contiguous() for s in scales[:-1]] + [refined],
                "plain": plain.float().contiguous(),
                "params": dict(PARAMS, threads=1),
            },
            HERE / "expected.pt",
        )
        chk = torch.load(HERE / "expected.pt", weights_only=True)
        print("saved; keys:", sorted(chk), "size:", os.path.getsize(HERE / "expected.pt"))


if __name__ == "__main__":
    main()
