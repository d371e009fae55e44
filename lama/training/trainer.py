"""The training loop: the official LaMa recipe in plain PyTorch, one process or many (``torchrun``).

One step, as the official trainer (Lightning 1.2, two optimisers) does it:

1. generator step: ``predicted = G(cat(img * (1 - mask), mask))``; loss = masked L1 + adversarial + feature
   matching + ResNetPL on the raw prediction; D frozen; backward, gradients averaged over processes, clipped to
   norm 1, Adam step;
2. discriminator step: G runs again (already updated, no gradient); D sees the real image (which needs grad for
   R1) and the prediction; non-saturating loss with R1; G frozen; backward, average, clip, Adam step.

Everything a step depends on (the data order, each sample's augmentation and mask, the models, the optimisers,
the RNGs) is either a pure function of (seed, epoch, index) or stored in the checkpoint, so a resumed run
computes the same losses as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from .. import dist
from ..config import generator_section
from ..discriminator import NLayerDiscriminator
from ..errors import LamaError
from ..generator import generator_from_config
from ..io import atomic_write
from .checkpoint import (
    DISCRIMINATOR,
    GENERATOR,
    RESNET_PL,
    load_exact,
    load_training_checkpoint,
    read_init_weights,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from .data import TrainDataset, ValDataset, collate, list_images
from .distributed import average_gradients, convert_sync_batchnorm
from .losses import NonSaturatingWithR1, feature_matching_loss, masked_l1_loss

LOGGER = logging.getLogger("lama.train")
LOSS_KEYS = ("gen_l1", "gen_adv", "gen_fm", "gen_resnet_pl", "gen_total", "discr_adv", "discr_real_out",
             "discr_fake_out", "discr_real_gp")


def epoch_batches(n_items: int, epoch: int, seed: int, batch_size: int, rank: int, world: int,
                  limit: int | None = None) -> list[list[int]]:
    """This process's batches of one epoch: a permutation drawn from (seed, epoch), cut into global batches of
    ``batch_size * world`` items, of which process ``rank`` takes the ``rank``-th slice. So one process with batch
    ``B * N`` sees exactly the items that N processes with batch B see together. Small datasets are cycled so that
    an epoch has at least one batch; an incomplete last batch is dropped."""
    rng = np.random.default_rng([seed, epoch])
    global_batch = batch_size * world
    steps = max(1, n_items // global_batch)
    if limit:
        steps = min(steps, int(limit))
    order = np.concatenate([rng.permutation(n_items) for _ in range(math.ceil(steps * global_batch / n_items))])
    return [order[s * global_batch + rank * batch_size: s * global_batch + (rank + 1) * batch_size].tolist()
            for s in range(steps)]


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def psnr_in_hole(pred: Tensor, target: Tensor, mask: Tensor) -> list[float]:
    """PSNR (dB) of each image over its hole pixels only (what inpainting changes), capped at 100 dB."""
    se = ((pred - target) ** 2 * mask).sum(dim=(1, 2, 3))
    n = mask.sum(dim=(1, 2, 3)) * pred.shape[1]
    mse = (se / n.clamp(min=1)).double()
    return [min(100.0, float(10 * torch.log10(1 / m))) if m > 0 else 100.0 for m in mse]


def _requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_value: float | None = None
    best_step: int | None = None
    skipped_images: int = 0


class Trainer:
    """Builds the networks, data and optimisers from a training config and runs the loop.

    ``run_dir``: where ``config.yaml``, ``models/``, ``samples/``, ``metrics.csv`` and the TensorBoard events go.
    ``resume``: continue ``run_dir/models/last.ckpt``. ``init_from``: fine-tune from published weights.
    """

    def __init__(self, config: dict[str, Any], run_dir: str | Path, resume: bool = False,
                 init_from: str | None = None, progress_bar: bool = True):
        if resume and init_from:
            raise LamaError("--resume continues a run with its own weights; --init-from starts a new run: pass one")
        self.cfg = config
        self.run_dir = Path(run_dir)
        tcfg = config["trainer"]
        self.device = self._device(str(tcfg.get("device", "auto")))
        self.rank, self.world = dist.init_from_env("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        self.progress_bar = progress_bar and self.is_main
        self.precision = str(tcfg.get("precision", 32))
        if self.precision == "16" and self.device.type != "cuda":
            raise LamaError("trainer.precision=16 needs CUDA (fp16 with a grad scaler); use bf16 on the CPU")
        self.seed = int(tcfg.get("seed", 0))
        torch.manual_seed(self.seed)  # same initial weights in every process

        self.generator = generator_from_config(generator_section(config)).to(self.device)
        dcfg = config["discriminator"]
        self.discriminator = NLayerDiscriminator(int(dcfg.get("input_nc", 3)), int(dcfg.get("ndf", 64)),
                                                 int(dcfg.get("n_layers", 4))).to(self.device)
        losses = config["losses"]
        self.adversarial = NonSaturatingWithR1(weight=float(losses["adversarial"].get("weight", 10)),
                                               gp_coef=float(losses["adversarial"].get("gp_coef", 0.001)),
                                               mask_as_fake_target=bool(
                                                   losses["adversarial"].get("mask_as_fake_target", True)))
        init = read_init_weights(init_from) if init_from else None
        resumed = load_training_checkpoint(self.run_dir / "models" / "last.ckpt") if resume else None
        # the encoder of a with-discr fine-tune (or of a resumed run) comes with the weights: no ADE20k file needed
        encoder_state = init[0]["resnet_pl"] if init else _prefixed(resumed["state_dict"], RESNET_PL) if resumed else {}
        self.resnet_pl = self._resnet_pl(losses.get("resnet_pl", {}), encoder_state)
        if init:
            self._init_from(*init)
        if self.world > 1 and tcfg.get("sync_batchnorm", True):
            for m in self._networks().values():
                convert_sync_batchnorm(m)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=float(config["optimizers"]["generator"]["lr"]))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(),
                                      lr=float(config["optimizers"]["discriminator"]["lr"]))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "16")
        self.state = Progress()

        dcfg = config["data"]
        indir = dcfg["train"].get("indir")
        if not indir:
            raise LamaError("no training images: set data.train.indir in the config or pass --data DIR")
        self.train_set = TrainDataset(list_images(indir), out_size=int(dcfg["train"].get("out_size", 256)),
                                      transform=dcfg["train"].get("transform_variant", "distortions"),
                                      mask_preset=dcfg["train"].get("mask_preset", "train_random"), seed=self.seed)
        self.val_set = None
        vcfg = dcfg.get("val") or {}
        if vcfg.get("indir"):
            files = list_images(vcfg["indir"])[: int(vcfg.get("max_images") or 10**9)]
            self.val_set = ValDataset(files, size=int(vcfg.get("out_size", 256)),
                                      mask_preset=vcfg.get("mask_preset", "random_medium_256"), seed=self.seed)
        if resumed:
            self._resume(resumed, str(self.run_dir / "models" / "last.ckpt"))
        self._writer = None
        self._val_metrics = None
        self._last_val_step: int | None = None
        self.metrics_csv = self.run_dir / "metrics.csv"
        if self.is_main:
            self._trim_log(resumed is not None)

    # ------------------------------------------------------------------------------------------ set-up

    def _device(self, name: str) -> torch.device:
        """``auto``: the GPU of this process (``LOCAL_RANK``) if CUDA is available, else the CPU; ``cuda`` without
        an index also means this process's GPU."""
        import os

        if name == "auto":
            name = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(name)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return device

    def _resnet_pl(self, cfg: dict[str, Any], init_state: dict[str, Tensor]) -> nn.Module | None:
        weight = float(cfg.get("weight", 0))
        if weight <= 0:
            return None
        from .resnet_pl import ResNetPL, encoder_from_state

        batch_stats = bool(cfg.get("batch_stats", True))
        if init_state:  # from the checkpoint (big-lama-with-discr, a resumed run): no ADE20k file needed
            encoder = encoder_from_state(init_state, "the checkpoint's loss_resnet_pl.impl.* weights")
            return ResNetPL(encoder, weight, batch_stats).to(self.device)
        return ResNetPL.from_path(cfg.get("weights_path"), weight, batch_stats).to(self.device)

    def _networks(self) -> dict[str, nn.Module]:
        nets = {"generator": self.generator, "discriminator": self.discriminator}
        if self.resnet_pl is not None:
            nets["resnet_pl"] = self.resnet_pl.impl
        return nets

    def _init_from(self, parts: dict[str, dict[str, Tensor]], origin: str) -> None:
        load_exact(self.generator, parts["generator"], "generator", origin)
        if parts["discriminator"]:
            load_exact(self.discriminator, parts["discriminator"], "discriminator", origin)
        elif self.is_main:
            LOGGER.info("%s holds no discriminator: it starts from random weights", origin)
        if parts["resnet_pl"] and self.resnet_pl is None and self.is_main:
            LOGGER.info("%s holds ResNetPL encoder weights; losses.resnet_pl.weight is 0, so they are not used",
                        origin)

    def state_dict(self) -> dict[str, Tensor]:
        """The networks' weights with the official Lightning prefixes."""
        out = {}
        for prefix, net in ((GENERATOR, self.generator), (DISCRIMINATOR, self.discriminator)):
            out.update({prefix + k: v for k, v in net.state_dict().items()})
        if self.resnet_pl is not None:
            out.update({RESNET_PL + k: v for k, v in self.resnet_pl.impl.state_dict().items()})
        return out

    def _payload(self) -> dict[str, Any]:
        s = self.state
        return {"state_dict": self.state_dict(), "optimizer_states": [self.opt_g.state_dict(), self.opt_d.state_dict()],
                "scaler": self.scaler.state_dict(), "global_step": s.step, "epoch": s.epoch,
                "batch_in_epoch": s.batch_in_epoch, "best_value": s.best_value, "best_step": s.best_step,
                "skipped_images": s.skipped_images, "rng_states": rng_states(),
                "data_signature": self._data_signature(), "hyper_parameters": self.cfg}

    def _resume(self, ckpt: dict[str, Any], origin: str) -> None:
        sd = ckpt["state_dict"]
        load_exact(self.generator, _prefixed(sd, GENERATOR), "generator", origin)
        load_exact(self.discriminator, _prefixed(sd, DISCRIMINATOR), "discriminator", origin)
        self.opt_g.load_state_dict(ckpt["optimizer_states"][0])
        self.opt_d.load_state_dict(ckpt["optimizer_states"][1])
        for opt, name in ((self.opt_g, "generator"), (self.opt_d, "discriminator")):  # the config's lr wins
            for group in opt.param_groups:
                group["lr"] = float(self.cfg["optimizers"][name]["lr"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.state = Progress(ckpt["global_step"], ckpt["epoch"], ckpt["batch_in_epoch"], ckpt["best_value"],
                              ckpt["best_step"], ckpt.get("skipped_images", 0))
        set_rng_states(ckpt["rng_states"])
        data = self._data_signature()
        changed = [f"{k} {ckpt.get('data_signature', {}).get(k)} -> {v}" for k, v in data.items()
                   if ckpt.get("data_signature", {}).get(k) != v]
        if changed and self.is_main:
            LOGGER.warning("resuming with a different %s: the run goes on, but the data order is no longer the one "
                           "an uninterrupted run would have seen", "; ".join(changed))
        if self.is_main:
            LOGGER.info("resumed %s at step %d (epoch %d)", origin, self.state.step, self.state.epoch)

    def _data_signature(self) -> dict[str, Any]:
        """What the order of the training batches depends on (checked on resume)."""
        return {"world_size": self.world, "batch_size": int(self.cfg["data"]["batch_size"]), "seed": self.seed,
                "n_images": len(self.train_set), "limit_train_batches": self.cfg["trainer"].get("limit_train_batches")}

    # ------------------------------------------------------------------------------------------ one step

    def _autocast(self):
        if self.precision == "32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _clip_and_step(self, loss: Tensor, params: list[nn.Parameter], opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        average_gradients(params)
        self.scaler.unscale_(opt)
        clip = self.cfg["trainer"].get("gradient_clip_val")
        if clip:
            torch.nn.utils.clip_grad_norm_(params, float(clip))
        self.scaler.step(opt)

    def train_step(self, img: Tensor, mask: Tensor) -> dict[str, float]:
        """One generator step and one discriminator step on a batch; returns the losses of this process."""
        lcfg = self.cfg["losses"]
        G, D = self.generator, self.discriminator
        g_input = torch.cat([img * (1 - mask), mask], dim=1)

        _requires_grad(G, True)
        _requires_grad(D, False)
        with self._autocast():
            pred = G(g_input)
            real_logits, real_feats = D(img)
            fake_logits, fake_feats = D(pred)
        pred32 = pred.float()
        terms = {"gen_l1": masked_l1_loss(pred32, img, mask, float(lcfg["l1"].get("weight_known", 10)),
                                          float(lcfg["l1"].get("weight_missing", 0))),
                 "gen_adv": self.adversarial.generator_loss(fake_logits.float())}
        fm_weight = float(lcfg.get("feature_matching", {}).get("weight", 0))
        if fm_weight > 0:
            terms["gen_fm"] = feature_matching_loss([f.float() for f in fake_feats],
                                                    [f.float() for f in real_feats]) * fm_weight
        if self.resnet_pl is not None:
            with self._autocast():
                terms["gen_resnet_pl"] = self.resnet_pl(pred, img).float()
        g_total = sum(terms.values())
        self._clip_and_step(g_total, list(G.parameters()), self.opt_g)

        out = {k: float(v.detach()) for k, v in terms.items()}
        out["gen_total"] = float(g_total.detach())
        self._last = {"img": img, "mask": mask, "pred": pred.detach().float()}
        if self.adversarial.weight == 0:  # as the official trainer: no adversarial loss, no discriminator step
            self.scaler.update()
            return out

        _requires_grad(G, False)
        _requires_grad(D, True)
        if self.cfg["trainer"].get("recompute_prediction_for_discriminator", True):
            with torch.no_grad(), self._autocast():
                fake = G(g_input)
        else:
            fake = pred
        real = img.detach().requires_grad_(True)
        with self._autocast():
            real_logits, _ = D(real)
            fake_logits, _ = D(fake.detach())
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        d_loss, d_metrics = self.adversarial.discriminator_loss(real, real_logits.float(), fake_logits.float(), mask,
                                                                grad_scale=scale)
        self._clip_and_step(d_loss, list(D.parameters()), self.opt_d)
        self.scaler.update()
        _requires_grad(G, True)

        out["discr_adv"] = float(d_loss.detach())
        out.update({k: float(v) for k, v in d_metrics.items()})
        return out

    # ------------------------------------------------------------------------------------------ the loop

    def fit(self) -> Progress:
        tcfg, dcfg = self.cfg["trainer"], self.cfg["data"]
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.run_dir / "config.yaml", "w") as f:
                yaml.safe_dump(self.cfg, f, sort_keys=False)
        max_steps = math.inf if tcfg.get("max_steps") is None else int(tcfg["max_steps"])
        max_epochs = math.inf if tcfg.get("max_epochs") is None else int(tcfg["max_epochs"])
        batch_size = int(dcfg["batch_size"])
        bar = self._bar(max_steps, max_epochs)
        deadline = time.monotonic() + 60 * float(tcfg["max_minutes"]) if tcfg.get("max_minutes") is not None else None
        first = True
        while self.state.epoch < max_epochs and self.state.step < max_steps:
            batches = epoch_batches(len(self.train_set), self.state.epoch, self.seed, batch_size, self.rank,
                                    self.world, tcfg.get("limit_train_batches"))
            self.train_set.set_epoch(self.state.epoch)
            loader = torch.utils.data.DataLoader(self.train_set, batch_sampler=batches[self.state.batch_in_epoch:],
                                                 collate_fn=collate, num_workers=int(dcfg.get("num_workers", 0)))
            for batch, skipped in loader:
                if self.state.step >= max_steps:
                    break
                # one all-reduce a step: past the deadline anywhere, images skipped, processes without a batch
                late, skipped, empty = self._sum_over_processes(
                    [float(deadline is not None and time.monotonic() > deadline), float(skipped),
                     float(batch is None)])
                if late:
                    max_steps = self.state.step  # stop here (all processes agree on the deadline)
                    break
                self.state.skipped_images += int(skipped)
                if empty:  # all-or-none, so that the collectives stay in step
                    self.state.batch_in_epoch += 1
                    continue
                img, mask = batch["image"].to(self.device), batch["mask"].to(self.device)
                losses = self._first_step(img, mask) if first else self.train_step(img, mask)
                first = False
                self.state.step += 1
                self.state.batch_in_epoch += 1
                self._after_step(losses, bar)
            else:
                self.state.epoch += 1
                self.state.batch_in_epoch = 0
        self.save("last.ckpt")
        if self.val_set is not None and self._last_val_step != self.state.step:
            self.validate()
            self.save("last.ckpt")  # with the validation's best value
        if bar is not None:
            bar.close()
        if self._writer is not None:
            self._writer.close()
        dist.barrier()
        return self.state

    def _first_step(self, img: Tensor, mask: Tensor) -> dict[str, float]:
        try:
            return self.train_step(img, mask)
        except torch.OutOfMemoryError as e:
            b = int(self.cfg["data"]["batch_size"])
            raise LamaError(f"out of memory in the first training step with data.batch_size={b} per process on "
                            f"{self.device}; try data.batch_size={max(1, b // 2)} (or precision bf16)") from e

    def _sum_over_processes(self, values: list[float]) -> list[float]:
        if not dist.is_distributed():
            return list(values)
        import torch.distributed as tdist

        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        tdist.all_reduce(t)
        return t.tolist()

    def _mean_over_processes(self, values: dict[str, float]) -> dict[str, float]:
        keys = sorted(values)
        sums = self._sum_over_processes([values[k] for k in keys])
        return {k: v / self.world for k, v in zip(keys, sums, strict=True)}

    def _after_step(self, losses: dict[str, float], bar) -> None:
        tcfg, s = self.cfg["trainer"], self.state
        log_every = int(tcfg.get("log_every_n_steps", 50))
        if s.step % log_every == 0 or s.step == 1:
            mean = self._mean_over_processes(losses)
            mean["data/skipped_images"] = float(s.skipped_images)
            self.log_scalars(mean)
            if bar is not None:
                bar.set_postfix({k: f"{v:.3g}" for k, v in mean.items() if k in ("gen_total", "gen_l1", "discr_adv")})
        if bar is not None:
            bar.update(1)
        vis = int(self.cfg.get("training_model", {}).get("visualize_each_iters", 0) or 0)
        if vis and s.step % vis == 0 and self.is_main:
            self.save_grid(self._last["img"], self._last["mask"], self._last["pred"], f"train_step{s.step:07d}.png")
        if self.val_set is not None and s.step % int(tcfg.get("val_every_n_steps", 10**9)) == 0:
            self.validate()
        if s.step % int(tcfg.get("checkpoint_every_n_steps", 10**9)) == 0:
            self.save("last.ckpt")

    def _bar(self, max_steps, max_epochs):
        if not self.progress_bar:
            return None
        from tqdm import tqdm

        steps_per_epoch = len(epoch_batches(len(self.train_set), 0, self.seed, int(self.cfg["data"]["batch_size"]),
                                            0, self.world, self.cfg["trainer"].get("limit_train_batches")))
        total = min(max_steps, max_epochs * steps_per_epoch)
        if self.cfg["trainer"].get("max_minutes") is not None and max_steps == math.inf:
            total = math.inf  # a time budget: the number of steps is not known
        return tqdm(total=None if total == math.inf else int(total), initial=self.state.step, unit="step",
                    desc="train", dynamic_ncols=True)

    # ------------------------------------------------------------------------------------------ outputs

    def save(self, name: str) -> None:
        """Rank 0 writes (atomically); every process learns whether it worked, so none waits forever."""
        error = None
        if self.is_main:
            try:
                save_checkpoint(self.run_dir / "models" / name, self._payload())
            except Exception as e:  # disk full, permissions: reported on every process
                error = e
        if self._sum_over_processes([float(error is not None)])[0]:
            raise LamaError(f"could not write {self.run_dir / 'models' / name}: {error or 'failed on rank 0'}")

    def _trim_log(self, resumed: bool) -> None:
        """A fresh run starts a fresh metrics.csv; a resumed one drops the rows logged after its checkpoint (the
        steps that are about to be run again)."""
        if not self.metrics_csv.exists():
            return
        with open(self.metrics_csv, newline="") as f:
            rows = list(csv.reader(f))
        keep = [r for r in rows[1:] if resumed and int(r[0]) <= self.state.step]
        with atomic_write(self.metrics_csv, "w") as f:
            csv.writer(f).writerows(rows[:1] + keep)

    def log_scalars(self, values: dict[str, float]) -> None:
        if not self.is_main:
            return
        step = self.state.step
        new = not self.metrics_csv.exists()
        self.metrics_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(self.metrics_csv, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["step", "name", "value", "time"])
            now = f"{time.time():.3f}"
            for k, v in values.items():
                w.writerow([step, k, repr(float(v)), now])
        writer = self._tensorboard()
        if writer is not None:
            for k, v in values.items():
                writer.add_scalar(k, v, step)
            writer.flush()

    def _tensorboard(self):
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional (requirements-train.txt)
                self._writer = False
                return None
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer or None

    def save_grid(self, img: Tensor, mask: Tensor, pred: Tensor, name: str, rows: int = 4) -> None:
        """input with the mask shown | prediction | inpainted | target, one row per sample (PNG)."""
        from PIL import Image

        img, mask, pred = img[:rows].float().cpu(), mask[:rows].float().cpu(), pred[:rows].float().cpu()
        shown = img * (1 - mask) + mask * torch.tensor([1.0, 0.2, 0.2]).view(1, 3, 1, 1)
        inpainted = mask * pred + (1 - mask) * img
        grid = torch.cat([torch.cat([shown, pred, inpainted, img], dim=3)[i] for i in range(img.shape[0])], dim=1)
        arr = (grid.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        out = self.run_dir / "samples" / name
        try:
            with atomic_write(out) as f:
                Image.fromarray(arr).save(f, format="PNG")
        except OSError as e:  # a picture is not worth stopping a run for
            LOGGER.warning("could not write the sample grid %s: %s", out, e)

    # ------------------------------------------------------------------------------------------ validation

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """FID, LPIPS, SSIM, PSNR and PSNR in the hole of the inpainted validation images, the official
        ``ssim_fid100_f1``, a sample grid; ``best.ckpt`` when that improves.

        Each process scores its share; the per-image values and Inception features are gathered, so every process
        computes the same numbers (and takes the same best.ckpt decision) even when its share is empty."""
        from ..metrics.fid import fid_from_features

        if self._val_metrics is None:  # the metric networks load once per run
            from ..metrics import FID, LPIPS, PSNR, SSIM

            self._val_metrics = {"lpips": LPIPS(), "ssim": SSIM(), "psnr": PSNR(), "fid": FID()}
        metrics = {k: m.to(self.device) for k, m in self._val_metrics.items()}
        self.generator.eval()
        indices = dist.shard(list(range(len(self.val_set))), self.rank, self.world)
        vb = int(self.cfg["data"].get("val_batch_size", 2))
        local: dict[str, list] = {"lpips": [], "ssim": [], "psnr": [], "psnr_hole": [], "fake": [], "real": []}
        grid = None
        for start in range(0, len(indices), vb):
            batch, _ = collate([self.val_set[i] for i in indices[start:start + vb]])
            if batch is None:
                continue
            img, mask = batch["image"].to(self.device), batch["mask"].to(self.device)
            with self._autocast():
                pred = self.generator(torch.cat([img * (1 - mask), mask], dim=1)).float()
            out = (mask * pred + (1 - mask) * img).clamp(0, 1)
            for k in ("lpips", "ssim", "psnr"):
                local[k] += metrics[k].values_of(out, img).double().cpu().tolist()
            local["psnr_hole"] += psnr_in_hole(out, img, mask)
            local["fake"].append(metrics["fid"].features(out).cpu())
            local["real"].append(metrics["fid"].features(img).cpu())
            if grid is None:
                grid = (img, mask, pred)
        self.generator.train()
        self._last_val_step = self.state.step
        parts = dist.gather_objects(local)
        merged = {k: [v for p in parts for v in p[k]] for k in local}
        if not merged["lpips"]:
            raise LamaError(f"no readable validation image in {self.cfg['data']['val'].get('indir')}")
        values = {f"val/{k}": float(np.mean(merged[k])) for k in ("lpips", "ssim", "psnr", "psnr_hole")}
        n = len(merged["lpips"])  # FID needs covariances: at least 2 images (best.ckpt needs FID)
        values["val/fid"] = float(fid_from_features(torch.cat(merged["real"]), torch.cat(merged["fake"]))) \
            if n >= 2 else math.nan
        ssim, fid = values["val/ssim"], values["val/fid"]
        fid_rel = max(0.0, 100 - fid) / 100
        values["val/ssim_fid100_f1"] = 2 * ssim * fid_rel / (ssim + fid_rel + 1e-3) if n >= 2 else math.nan
        self.log_scalars(values)
        if self.is_main and grid is not None:
            self.save_grid(*grid, f"val_step{self.state.step:07d}.png")
        value = values["val/ssim_fid100_f1"]
        if math.isfinite(value) and (self.state.best_value is None or value > self.state.best_value):
            self.state.best_value, self.state.best_step = value, self.state.step
            self.save("best.ckpt")
        return values
