"""The trainer end to end on the tiny config: steps, checkpoints, exact resume, DDP equivalence, fine-tuning,
bad input. Small crops (64x64) of bundled photos keep each run to seconds."""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import run_job
from PIL import Image

import lama
from lama.errors import LamaError
from lama.testing import write_resnet_pl_weights
from lama.training.checkpoint import DISCRIMINATOR, GENERATOR, RESNET_PL
from lama.training.config import load_training_config
from lama.training.trainer import Trainer, epoch_batches

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "cat")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    import skimage.data

    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        a = getattr(skimage.data, name)()
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=-1)
        Image.fromarray(a).resize((96, 80)).save(root / f"{name}.png")
    return root


def tiny(data: Path, *overrides: str) -> dict:
    return load_training_config("tiny-cpu", [
        f"data.train.indir={data}", "data.train.out_size=64", "data.train.transform_variant=distortions",
        "data.batch_size=2", "data.val.out_size=64", "trainer.log_every_n_steps=1",
        "training_model.visualize_each_iters=0", "trainer.checkpoint_every_n_steps=1000", *overrides])


def losses_by_step(run: Path) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            out.setdefault(int(row["step"]), {})[row["name"]] = float(row["value"])
    return out


def test_epoch_batches_split_one_global_batch_between_processes():
    one = epoch_batches(10, epoch=3, seed=7, batch_size=4, rank=0, world=1)
    two = [epoch_batches(10, 3, 7, 2, r, 2) for r in range(2)]
    assert [a + b for a, b in zip(*two, strict=True)] == one
    assert len(one) == 2 and len({i for b in one for i in b}) == 8  # a permutation, last partial batch dropped
    assert epoch_batches(10, 4, 7, 4, 0, 1) != one  # a new order every epoch
    assert len(epoch_batches(3, 0, 0, 4, 0, 1)[0]) == 4  # fewer images than a batch: cycled


def test_a_few_steps_train_and_write_a_loadable_run(photos, tmp_path):
    run = tmp_path / "run"
    cfg = tiny(photos, "trainer.max_steps=16", "data.train.transform_variant=no_augs")
    trainer = Trainer(cfg, run, progress_bar=False)
    from lama.training.data import collate
    from lama.training.losses import masked_l1_loss

    batch, _ = collate([trainer.train_set.sample(i, epoch=0) for i in range(len(PHOTOS))])

    def known_l1() -> float:  # on a fixed batch: the step-to-step values vary with each batch's mask
        with torch.no_grad():
            img, mask = batch["image"], batch["mask"]
            pred = trainer.generator(torch.cat([img * (1 - mask), mask], dim=1))
            return float(masked_l1_loss(pred, img, mask, 1, 0) / (1 - mask).mean())

    before = known_l1()
    state = trainer.fit()
    after = known_l1()
    assert after < 0.9 * before, (before, after)  # measured 0.24 -> 0.20
    assert state.step == 16
    steps = losses_by_step(run)
    assert sorted(steps) == list(range(1, 17))
    for values in steps.values():
        assert all(math.isfinite(v) for v in values.values()), values
        assert {"gen_l1", "gen_adv", "gen_fm", "gen_total", "discr_adv", "discr_real_gp"} <= set(values)

    written = yaml.safe_load((run / "config.yaml").read_text())
    assert {"generator", "discriminator", "losses", "optimizers", "data"} <= set(written)
    ckpt = torch.load(run / "models" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 16 and len(ckpt["optimizer_states"]) == 2
    assert any(k.startswith(GENERATOR) for k in ckpt["state_dict"])
    assert any(k.startswith(DISCRIMINATOR) for k in ckpt["state_dict"])
    model = lama.load_model(run)  # the run folder, as the released big-lama folder (last.ckpt: no validation)
    ref = {k[len(GENERATOR):]: v for k, v in ckpt["state_dict"].items() if k.startswith(GENERATOR)}
    got = model.generator.state_dict()
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert torch.equal(got[k].cpu(), v), k
    img = np.asarray(Image.open(photos / "astronaut.png"))
    mask = np.zeros(img.shape[:2], np.uint8)
    mask[20:40, 30:60] = 255
    out = model(img, mask)
    assert out.shape == img.shape and out.dtype == np.uint8


def test_resume_gives_the_losses_of_an_uninterrupted_run(photos, tmp_path):
    """Stopped mid-epoch (6 photos at batch 2: 3 steps an epoch; k = 2), resumed across the epoch boundary."""
    k, m = 2, 3
    straight, split = tmp_path / "straight", tmp_path / "split"
    Trainer(tiny(photos, f"trainer.max_steps={k + m}"), straight, progress_bar=False).fit()
    Trainer(tiny(photos, f"trainer.max_steps={k}"), split, progress_bar=False).fit()
    ckpt = torch.load(split / "models" / "last.ckpt", weights_only=True)
    assert (ckpt["global_step"], ckpt["epoch"], ckpt["batch_in_epoch"]) == (k, 0, k)
    torch.manual_seed(1234)  # a resumed run must not depend on the state of the process it starts in
    np.random.seed(99)
    Trainer(tiny(photos, f"trainer.max_steps={k + m}"), split, resume=True, progress_bar=False).fit()
    a, b = losses_by_step(straight), losses_by_step(split)
    assert sorted(b) == list(range(1, k + m + 1))
    for step in range(k + 1, k + m + 1):
        for name, value in a[step].items():
            assert b[step][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (step, name)
    # the runs differ from step to step, so equal numbers are not a constant
    assert a[k + 1]["gen_l1"] != a[k + 2]["gen_l1"]


def test_resume_after_a_crash_logs_each_step_once(photos, tmp_path):
    """A crash after the last checkpoint: the steps logged since are run again and must not be logged twice."""
    run = tmp_path / "run"
    Trainer(tiny(photos, "trainer.max_steps=2"), run, progress_bar=False).fit()
    at_step_2 = (run / "models" / "last.ckpt").read_bytes()
    Trainer(tiny(photos, "trainer.max_steps=4"), run, resume=True, progress_bar=False).fit()
    (run / "models" / "last.ckpt").write_bytes(at_step_2)  # as if steps 3-4 had crashed before a checkpoint
    Trainer(tiny(photos, "trainer.max_steps=4"), run, resume=True, progress_bar=False).fit()
    with open(run / "metrics.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["name"] == "gen_l1"]
    assert steps == [1, 2, 3, 4]


def test_fine_tune_from_the_big_lama_with_discr_layout_consumes_every_key(photos, tmp_path):
    """A random-weight file in the official layout: generator.*, discriminator.*, loss_resnet_pl.impl.*."""
    cfg = tiny(photos, "trainer.max_steps=1", "losses.resnet_pl.weight=30",
               f"losses.resnet_pl.weights_path={tmp_path / 'no-ade20k-here'}")
    write_resnet_pl_weights(tmp_path / "th")
    source = Trainer(tiny(photos, "losses.resnet_pl.weight=30", f"losses.resnet_pl.weights_path={tmp_path / 'th'}"),
                     tmp_path / "unused", progress_bar=False)
    with torch.no_grad():
        for p in source.generator.parameters():
            p.add_(0.01)
        for p in source.discriminator.parameters():
            p.add_(0.02)
    state = source.state_dict()
    folder = tmp_path / "big-lama-with-discr"
    (folder / "models").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    torch.save({"state_dict": state, "epoch": 1, "global_step": 10, "pytorch-lightning_version": "1.2.9"},
               folder / "models" / "best.ckpt")

    t = Trainer(cfg, tmp_path / "ft", init_from=str(folder), progress_bar=False)  # no ADE20k file needed
    mine = t.state_dict()
    assert set(mine) == set(state)  # all keys consumed, none left over
    for key, value in state.items():
        assert torch.equal(mine[key], value), key
    assert any(k.startswith(RESNET_PL) for k in state)
    t.fit()
    # and the fine-tuning run resumes without the ADE20k file too: its checkpoint carries the encoder
    more = {**cfg, "trainer": {**cfg["trainer"], "max_steps": 2}}
    assert Trainer(more, tmp_path / "ft", resume=True, progress_bar=False).fit().step == 2

    state["discriminator.model9.0.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, folder / "models" / "best.ckpt")
    with pytest.raises(LamaError, match=r"unexpected keys: model9\.0\.weight"):
        Trainer(cfg, tmp_path / "ft2", init_from=str(folder), progress_bar=False)
    del state["discriminator.model9.0.weight"]
    state["optimizer_junk.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, folder / "models" / "best.ckpt")
    with pytest.raises(LamaError, match="optimizer_junk.weight"):
        Trainer(cfg, tmp_path / "ft3", init_from=str(folder), progress_bar=False)


def test_fine_tune_from_a_generator_only_release_starts_a_fresh_discriminator(photos, tmp_path):
    from lama.testing import write_safetensors

    cfg = tiny(photos, "trainer.max_steps=1")
    t0 = Trainer(cfg, tmp_path / "a", progress_bar=False)
    with torch.no_grad():
        for p in t0.generator.parameters():
            p.mul_(0.5)
    path = write_safetensors(tmp_path / "g.safetensors", t0.generator, cfg["generator"])
    t = Trainer(cfg, tmp_path / "b", init_from=str(path), progress_bar=False)
    for (k, a), b in zip(t0.generator.state_dict().items(), t.generator.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    big = load_training_config("big-lama")["generator"]
    with pytest.raises(LamaError, match="shape mismatches"):  # a big-lama file into the tiny config
        from lama.generator import generator_from_config

        write_safetensors(tmp_path / "big.safetensors", generator_from_config({**big, "n_blocks": 1}), None)
        Trainer(cfg, tmp_path / "c", init_from=str(tmp_path / "big.safetensors"), progress_bar=False)


def test_unreadable_images_are_skipped_and_counted(photos, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for p in list(photos.iterdir())[:3]:
        (data / p.name).write_bytes(p.read_bytes())
    (data / "broken.jpg").write_bytes(b"not an image at all")
    t = Trainer(tiny(data, "trainer.max_steps=4"), tmp_path / "run", progress_bar=False)
    state = t.fit()
    broken = [p.name for p in t.train_set.files].index("broken.jpg")
    drawn = [i for epoch in range(3) for batch in epoch_batches(4, epoch, 0, 2, 0, 1) for i in batch][:8]
    assert state.step == 4 and state.skipped_images == drawn.count(broken) > 0
    assert losses_by_step(tmp_path / "run")[4]["data/skipped_images"] == state.skipped_images


def test_clear_errors_for_an_empty_folder_and_a_missing_resnet_pl_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LamaError, match="no images found in .*empty"):
        Trainer(tiny(tmp_path / "empty"), tmp_path / "r1", progress_bar=False)
    (tmp_path / "one").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "one" / "x.png")
    cfg = tiny(tmp_path / "one", "losses.resnet_pl.weight=30", f"losses.resnet_pl.weights_path={tmp_path}")
    with pytest.raises(LamaError) as info:
        Trainer(cfg, tmp_path / "r2", progress_bar=False)
    msg = str(info.value)
    assert str(tmp_path / "ade20k") in msg and "http" in msg and "weight: 0" in msg


def test_validation_writes_metrics_a_grid_and_best_ckpt(photos, tmp_path, offline_metric_hub):
    run = tmp_path / "run"
    cfg = tiny(photos, "trainer.max_steps=2", "trainer.val_every_n_steps=2", f"data.val.indir={photos}",
               "data.val.max_images=4")
    (run).mkdir()
    (run / "metrics.csv").write_text("step,name,value,time\n7,gen_l1,1.0,0\n")  # an older run's log: dropped
    t = Trainer(cfg, run, progress_bar=False)
    t.validate()  # before training, as make train-demo does: kept
    t.fit()
    assert sorted(losses_by_step(run)) == [0, 1, 2]
    values = losses_by_step(run)[2]
    for name in ("val/ssim", "val/lpips", "val/fid", "val/psnr", "val/ssim_fid100_f1"):
        assert math.isfinite(values[name]), name
    assert 0 < values["val/ssim"] <= 1 and values["val/lpips"] > 0
    assert (run / "models" / "best.ckpt").is_file() and list((run / "samples").glob("val_step*.png"))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_cli_trains_and_refuses_to_overwrite_a_run(photos, tmp_path, capsys):
    from lama.__main__ import main

    args = ["train", "--config", "tiny-cpu", "--data", str(photos), "--out", str(tmp_path / "run"), "--quiet",
            "trainer.max_steps=2", "data.train.out_size=64", "data.batch_size=2"]
    assert main(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "run"), "--quiet", "trainer.max_steps=3"]) == 0
    assert torch.load(tmp_path / "run" / "models" / "last.ckpt", weights_only=True)["global_step"] == 3


DDP_SCRIPT = """
import sys, torch
from lama.training.config import load_training_config
from lama.training.data import collate
from lama.training.trainer import Trainer, epoch_batches
data, out, batch, th, pl = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
cfg = load_training_config("tiny-cpu", [f"data.train.indir={data}", "data.train.out_size=64",
    f"data.batch_size={batch}", "trainer.max_steps=2", "trainer.log_every_n_steps=1",
    "training_model.visualize_each_iters=0", f"losses.resnet_pl.weight={pl}", f"losses.resnet_pl.weights_path={th}",
    "trainer.recompute_prediction_for_discriminator=false", f"data.val.indir={sys.argv[6]}",
    "data.val.out_size=64", "trainer.val_every_n_steps=1"])
t = Trainer(cfg, out, progress_bar=False)
first = epoch_batches(len(t.train_set), 0, t.seed, batch, t.rank, t.world)[0]
b, _ = collate([t.train_set[i] for i in first])
losses = t._mean_over_processes(t.train_step(b["image"], b["mask"]))
grads = {f"{name}.{k}": p.grad.clone() for name, net in (("generator", t.generator), ("discriminator", t.discriminator))
         for k, p in net.named_parameters()}
if t.is_main:
    torch.save({"losses": losses, "grads": grads}, out + ".step1.pt")
t.fit()  # the loop in this mode: rank 0 writes; validation of 1 image (rank 1 scores none)
from lama.dist import shutdown
shutdown()
"""


@pytest.mark.parametrize("resnet_pl", [0, 30])
def test_two_processes_with_batch_2_equal_one_process_with_batch_4(photos, tmp_path, resnet_pl, offline_metric_hub):
    """One step: same seed, synchronised BatchNorm (G, D and the ResNetPL encoder), averaged gradients. The losses
    and the clipped gradients of G and D equal those of one process with the whole batch.

    Tolerance: float32 sums taken in another order (per-process partial sums, then all-reduced) differ by ~1e-7
    relative; allowed 1e-5 for the losses and 1e-4 of each tensor's largest gradient (the biases in front of a
    BatchNorm have a true gradient of 0 and are float noise in both runs: they are only checked to be that).
    With ResNetPL the generator's gradient is itself ill-conditioned in
    float32 (through the encoder's train-mode BatchNorm, as the official fixture's README documents: 1.3e-2 of
    the official code against float64): one process with 1 vs 2 threads already differs by 1.9 % of the largest
    first-layer gradient here, 2 processes by 3.6 %; so the generator's gradients get 8 % in that case, and the
    exactness of the synchronised gradients is what the resnet_pl=0 case checks."""
    write_resnet_pl_weights(tmp_path / "th")
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    (tmp_path / "val").mkdir()
    Image.open(photos / "coffee.png").save(tmp_path / "val" / "coffee.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    args = [str(photos), str(tmp_path / "one"), "4", str(tmp_path / "th"), str(resnet_pl), str(tmp_path / "val")]
    one = run_job([sys.executable, str(script), *args], env)
    assert one.returncode == 0, one.stderr[-4000:]
    args[1:3] = [str(tmp_path / "two"), "2"]
    two = run_job([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(script), *args], env)
    assert two.returncode == 0, two.stderr[-4000:]
    a = torch.load(str(tmp_path / "one") + ".step1.pt", weights_only=True)
    b = torch.load(str(tmp_path / "two") + ".step1.pt", weights_only=True)
    assert ("gen_resnet_pl" in a["losses"]) == (resnet_pl > 0)
    for name, value in a["losses"].items():
        assert b["losses"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), (name, value, b["losses"][name])
    assert set(a["grads"]) == set(b["grads"])
    for net in ("generator", "discriminator"):
        grads = {k: g for k, g in a["grads"].items() if k.startswith(net)}
        scale = max(float(g.abs().max()) for g in grads.values())
        rel = 0.08 if (net == "generator" and resnet_pl) else 1e-4
        for key, g in grads.items():
            if float(g.abs().max()) < 1e-5 * scale:  # a bias in front of a BatchNorm: 0 up to float noise
                assert float(b["grads"][key].abs().max()) < 1e-5 * scale, key
                continue
            allowed = rel * float(g.abs().max())
            assert float((g - b["grads"][key]).abs().max()) <= allowed, key
    two_log, one_log = losses_by_step(tmp_path / "two"), losses_by_step(tmp_path / "one")
    assert two_log[2]["gen_total"] > 0  # the 2-process loop ran and rank 0 logged
    assert two_log[2]["val/lpips"] == pytest.approx(one_log[2]["val/lpips"], rel=0.05)


def test_bf16_autocast_steps_are_finite_and_close_to_fp32(photos, tmp_path):
    a = Trainer(tiny(photos, "trainer.max_steps=2"), tmp_path / "fp32", progress_bar=False)
    b = Trainer(tiny(photos, "trainer.max_steps=2", "trainer.precision=bf16"), tmp_path / "bf16", progress_bar=False)
    a.fit()
    b.fit()
    la, lb = losses_by_step(tmp_path / "fp32")[1], losses_by_step(tmp_path / "bf16")[1]
    assert all(math.isfinite(v) for v in lb.values())
    for name in ("gen_l1", "gen_adv", "gen_fm", "discr_adv"):  # same weights and batch; bf16 has ~3 digits
        assert lb[name] == pytest.approx(la[name], rel=0.05), name


def test_out_of_memory_in_the_first_step_names_a_batch_size(photos, tmp_path, monkeypatch):
    t = Trainer(tiny(photos, "trainer.max_steps=1", "data.batch_size=6"), tmp_path / "run", progress_bar=False)

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(t, "train_step", oom)
    with pytest.raises(LamaError, match=r"data.batch_size=6 .*try data.batch_size=3"):
        t.fit()


def test_a_time_budget_stops_the_run_and_saves_it(photos, tmp_path):
    state = Trainer(tiny(photos, "trainer.max_steps=1000", "trainer.max_minutes=0"), tmp_path / "run",
                    progress_bar=False).fit()
    assert state.step == 0
    assert torch.load(tmp_path / "run" / "models" / "last.ckpt", weights_only=True)["global_step"] == 0


def test_psnr_in_the_hole_counts_hole_pixels_only():
    from lama.training.trainer import psnr_in_hole

    target = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4] = 1
    pred = target.clone()
    pred[0, :, :4] = 0.1  # error 0.1 in the hole: MSE 0.01 -> 20 dB
    pred[1, :, 4:] = 0.5  # error outside the hole only
    assert psnr_in_hole(pred, target, mask) == pytest.approx([20.0, 100.0])


def test_convert_makes_a_release_file_of_a_run(photos, tmp_path):
    from lama.__main__ import main

    run = tmp_path / "run"
    Trainer(tiny(photos, "trainer.max_steps=1"), run, progress_bar=False).fit()
    assert main(["convert", str(run), str(tmp_path / "mine.safetensors")]) == 0
    a, b = lama.load_model(run), lama.load_model(str(tmp_path / "mine.safetensors"))
    for (k, x), y in zip(a.generator.state_dict().items(), b.generator.state_dict().values(), strict=True):
        assert torch.equal(x, y), k


def test_the_training_demo_writes_its_plot_and_table(tmp_path, offline_metric_hub):
    """`make train-demo` at a few seconds: the bundled photos, the held-out split, the plot and the table."""
    from lama.training.demo import HELD_OUT, main

    docs = tmp_path / "docs"
    assert main(["--minutes", "0.03", "--run", str(tmp_path / "run"), "--docs", str(docs), "--val-every", "4",
                 "--crops-per-side", "2"]) == 0
    table = (docs / "tiny-cpu-demo.md").read_text()
    assert table.count("\n| ") == 4  # header + 3 methods
    assert "OpenCV Telea" in table and "initialisation" in table
    assert (docs / "tiny-cpu-demo.png").stat().st_size > 10_000
    held = {p.name.rsplit("_", 1)[0] for p in (tmp_path / "run" / "data" / "val").iterdir()}
    assert held == set(HELD_OUT)
    assert not {p.stem for p in (tmp_path / "run" / "data" / "train").iterdir()} & set(HELD_OUT)


def test_options_the_trainer_does_not_implement_are_refused():
    for override, key in (("optimizers.generator.kind=adamw", "optimizers.generator.kind"),
                          ("losses.adversarial.mask_scale_mode=maxpool", "mask_scale_mode"),
                          ("+losses.feature_matching.pass_mask=true", "pass_mask"),
                          ("+training_model.average_generator=true", "average_generator"),
                          ("trainer.limit_train_batches=0.5", "limit_train_batches")):
        with pytest.raises(LamaError, match=key):
            load_training_config("tiny-cpu", [override])


def test_without_the_adversarial_loss_the_discriminator_is_not_trained(photos, tmp_path):
    t = Trainer(tiny(photos, "trainer.max_steps=2", "losses.adversarial.weight=0", "losses.feature_matching.weight=0"),
                tmp_path / "run", progress_bar=False)
    before = {k: v.detach().clone() for k, v in t.discriminator.named_parameters()}
    t.fit()  # (its BatchNorm statistics still move: the generator step runs it, as the official one does)
    assert all(torch.equal(v, dict(t.discriminator.named_parameters())[k]) for k, v in before.items())
    assert "discr_adv" not in losses_by_step(tmp_path / "run")[2]
