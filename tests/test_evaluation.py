"""The evaluation suite end to end on the offline sample split, plus its bookkeeping rules."""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SMALL_GENERATOR, randomize_bn, run_job
from PIL import Image

from evaluation.__main__ import main
from evaluation.score import ScoreOptions, area_bins, bin_names, cache_dir, collect, lpips_fid100_f1, ssim_fid100_f1
from lama.testing import config_text, write_folder

PRESET = "random_thick_256"


def test_official_bins_and_summary_scores():
    assert bin_names() == ["0-10%", "10-20%", "20-30%", "30-40%", "40-50%", "50-60%", "60-70%", "70-80%",
                           "80-90%", "90-100%"]
    assert bin_names(40)[1] == "2.5-5.0%"
    assert area_bins(np.array([0.0, 0.05, 0.1, 0.35, 0.999, 1.0])).tolist() == [0, 0, 1, 3, 9, 9]
    # hand-computed: 1 - 0.2 = 0.8, (100 - 20) / 100 = 0.8 -> 2 * 0.64 / 1.601
    assert lpips_fid100_f1(0.2, 20.0) == pytest.approx(1.28 / 1.601)
    assert ssim_fid100_f1(0.9, 150.0) == 0.0  # FID beyond the scale gives 0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("eval")


@pytest.fixture(scope="module")
def split(workdir):
    photos = workdir / "photos"
    assert main(["sample", "--out", str(photos), "--quiet"]) == 0
    out = workdir / PRESET
    assert main(["prepare", "--preset", PRESET, "--images", str(photos), "--out", str(out), "--seed", "0",
                 "--quiet"]) == 0
    return out


def test_prepare_writes_the_official_layout_and_is_seeded_and_resumable(split, workdir):
    masks = sorted(split.rglob("*_mask*.png"))
    assert len(masks) >= 6  # one crop per sample photo (8), none dropped for size
    for m in masks:
        img = m.with_name(m.name.rsplit("_mask", 1)[0] + ".png")
        a, b = Image.open(img), Image.open(m)
        assert a.size == b.size == (256, 256) and b.mode == "L"
        v = np.asarray(b)
        assert set(np.unique(v)) <= {0, 255} and (v > 0).mean() <= 0.5
    before = {p: p.stat().st_mtime_ns for p in split.rglob("*.png")}
    assert main(["prepare", "--preset", PRESET, "--images", str(workdir / "photos"), "--out", str(split),
                 "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in split.rglob("*.png")} == before  # resumed: nothing redone
    again = workdir / "again"
    assert main(["prepare", "--preset", PRESET, "--images", str(workdir / "photos"), "--out", str(again),
                 "--jobs", "2", "--quiet"]) == 0
    for p in split.rglob("*.png"):  # same seed, other process count: same bytes
        assert (again / p.relative_to(split)).read_bytes() == p.read_bytes()
    other = workdir / "seed1"
    main(["prepare", "--preset", PRESET, "--images", str(workdir / "photos"), "--out", str(other), "--seed", "1",
          "--quiet"])
    assert any((other / p.relative_to(split)).exists() and
               (other / p.relative_to(split)).read_bytes() != p.read_bytes() for p in split.rglob("*_mask*.png"))


@pytest.fixture(scope="module")
def predictions(split, workdir):
    torch.manual_seed(0)
    model = write_folder(workdir / "model", randomize_bn(generator_from_small()),
                         config_text(SMALL_GENERATOR["ngf"], SMALL_GENERATOR["n_blocks"]))
    preds = {"lama-random": workdir / "pred" / "lama-random"}
    assert main(["predict", "--model", str(model), "--split", str(split), "--out", str(preds["lama-random"]),
                 "--quiet"]) == 0
    for method in ("telea", "ns", "biharmonic"):
        preds[method] = workdir / "pred" / method
        assert main(["predict", "--method", method, "--split", str(split), "--out", str(preds[method]),
                     "--quiet"]) == 0
    return preds


def generator_from_small():
    from lama.generator import generator_from_config

    return generator_from_config(SMALL_GENERATOR)


def test_predictions_keep_known_pixels_and_fill_holes(split, predictions):
    for folder in predictions.values():
        for m in sorted(split.rglob("*_mask*.png")):
            mask = np.asarray(Image.open(m)) > 127
            img = np.asarray(Image.open(m.with_name(m.name.rsplit("_mask", 1)[0] + ".png")).convert("RGB"))
            pred = np.asarray(Image.open(folder / m.relative_to(split)).convert("RGB"))
            assert np.array_equal(pred[~mask], img[~mask])
            if mask.any():
                assert not np.array_equal(pred[mask], img[mask])


@pytest.fixture(scope="module")
def scored(split, predictions, workdir):
    out = workdir / "results"
    for name, folder in predictions.items():
        assert main(["score", "--split", str(split), "--predictions", str(folder), "--method", name, "--dataset",
                     "sample", "--mask-set", PRESET, "--out", str(out), "--quiet"]) == 0
    return out


def test_score_writes_tidy_results_for_every_method(scored, predictions, split):
    with open(scored / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == {"dataset", "mask_set", "method", "bin", "metric", "value", "n_images"}
    n = len(list(split.rglob("*_mask*.png")))
    for method in predictions:
        total = {r["metric"]: float(r["value"]) for r in rows if r["method"] == method and r["bin"] == "total"}
        assert {"fid", "lpips", "ssim", "psnr", "lpips_fid100_f1", "ssim_fid100_f1"} <= set(total)
        assert all(int(r["n_images"]) == n for r in rows if r["method"] == method and r["bin"] == "total")
        assert 0 < total["lpips"] < 1 and 0 < total["ssim"] < 1 and total["psnr"] > 5 and total["fid"] > 0


def test_scoring_the_ground_truth_gives_the_identities(split, workdir):
    """LPIPS 0, SSIM 1, PSNR at its cap and FID 0 when the predictions are the originals."""
    gt = workdir / "pred" / "ground-truth"
    gt.mkdir(parents=True)
    for m in split.rglob("*_mask*.png"):
        (gt / m.name).write_bytes(m.with_name(m.name.rsplit("_mask", 1)[0] + ".png").read_bytes())
    out = workdir / "gt-results"
    assert main(["score", "--split", str(split), "--predictions", str(gt), "--method", "ground-truth", "--dataset",
                 "sample", "--mask-set", PRESET, "--out", str(out), "--quiet"]) == 0
    with open(out / "results.csv") as f:
        total = {r["metric"]: float(r["value"]) for r in csv.DictReader(f) if r["bin"] == "total"}
    assert total["lpips"] == pytest.approx(0, abs=1e-6) and total["ssim"] == pytest.approx(1, abs=1e-6)
    assert total["psnr"] == pytest.approx(100) and abs(total["fid"]) < 1e-2


def test_report_puts_ours_beside_the_paper_and_draws_plots(scored, predictions, split, workdir):
    out = workdir / "report"
    args = ["report", "--results", str(scored / "results.csv"), "--out", str(out), "--split", str(split),
            "--predictions"] + [f"{k}={v}" for k, v in predictions.items()]
    assert main(args) == 0
    md = (out / "report.md").read_text()
    for method in predictions:
        assert method in md
    assert "| LaMa-Fourier | 27 | Places | 512 | narrow | 0.63 | 0.090 |" in md  # the paper's Table 1, as data
    for stem in ("fid_by_method", "lpips_by_method", "fid_by_mask_area", "qualitative_grid"):
        assert (out / f"{stem}.png").stat().st_size > 1000 and (out / f"{stem}.svg").exists()


def _read_totals(path: Path, method: str) -> dict[str, float]:
    with open(path) as f:
        return {r["metric"]: float(r["value"]) for r in csv.DictReader(f) if r["method"] == method and
                r["bin"] == "total"}


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_rescoring_rescores_what_changed_and_refuses_missing_predictions(split, predictions, workdir, capsys):
    folder = workdir / "pred" / "rescored"
    shutil.copytree(predictions["telea"], folder)
    out = workdir / "rescore-results"
    args = ["score", "--split", str(split), "--predictions", str(folder), "--method", "m", "--dataset", "sample",
            "--mask-set", PRESET, "--out", str(out), "--quiet"]
    n = len(list(split.rglob("*_mask*.png")))
    opts = ScoreOptions()
    cache = cache_dir(out, "sample", PRESET, "m", opts)

    assert main(args) == 0
    report = _last_json(capsys)
    assert (report["scored"], report["cached"], report["missing"]) == (n, 0, 0)
    first_totals = _read_totals(out / "results.csv", "m")
    first, counts = collect(split, folder, cache, opts, progress=False)
    assert counts == {"scored": 0, "cached": n, "missing": 0}

    # a regenerated prediction: another method's output for the same mask, under the same name
    changed = sorted(folder.rglob("*.png"))[2]
    name = changed.relative_to(folder).with_suffix("").as_posix()
    new_bytes = (predictions["ns"] / changed.relative_to(folder)).read_bytes()
    assert new_bytes != changed.read_bytes()
    changed.write_bytes(new_bytes)

    assert main(args) == 0
    report = _last_json(capsys)
    assert (report["scored"], report["cached"], report["missing"]) == (1, n - 1, 0)
    second, _ = collect(split, folder, cache, opts, progress=False)
    i = list(second["names"]).index(name)
    assert list(second["names"]) == list(first["names"])
    for metric in ("lpips", "ssim", "psnr", "feat_pred"):
        assert not np.array_equal(second[metric][i], first[metric][i]), metric
        others = np.arange(n) != i
        assert np.array_equal(second[metric][others], first[metric][others]), metric
    assert _read_totals(out / "results.csv", "m")["lpips"] != first_totals["lpips"]

    # an empty folder: an error naming the expected files; the results keep the last good numbers
    empty = workdir / "pred" / "empty"
    empty.mkdir()
    before = (out / "results.csv").read_bytes()
    assert main(args[:4] + [str(empty)] + args[5:]) == 2
    err = capsys.readouterr().err
    assert f"{n} of {n} predictions are missing" in err and "_mask000.png" in err
    assert (out / "results.csv").read_bytes() == before

    # some missing: refused unless --allow-missing, which scores the rest and says how many were left out
    gone = sorted(folder.rglob("*.png"))[:2]
    for p in gone:
        p.unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"2 of {n} predictions are missing" in err and gone[0].name in err and "--allow-missing" in err
    assert main(args + ["--allow-missing"]) == 0
    report = _last_json(capsys)
    assert (report["n_images"], report["scored"], report["cached"], report["missing"]) == (n - 2, 0, n - 2, 2)
    totals = _read_totals(out / "results.csv", "m")
    assert totals["n_missing"] == 2
    assert main(["report", "--results", str(out / "results.csv"), "--out", str(workdir / "rescore-report"),
                 "--quiet"]) == 0
    assert f"| {n - 2} (2 missing) |" in (workdir / "rescore-report" / "report.md").read_text()


def test_two_process_torchrun_equals_one_process(split, predictions, workdir):
    """Sharded scoring gives the one-process numbers. Both runs are processes with the same thread settings
    (float32 reductions in the metric networks change with the thread count) and the same chunks of 3 images,
    so that both ranks score some: the per-image values are then computed identically and only the sharding
    and gathering can make a difference."""
    folder = predictions["telea"]
    one, two = workdir / "dist1", workdir / "dist2"
    base = ["score", "--split", str(split), "--predictions", str(folder), "--method", "telea", "--dataset", "sample",
            "--mask-set", PRESET, "--chunk-size", "3", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    runs = {one: [sys.executable, "-m", "evaluation"],
            two: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                  "-m", "evaluation"]}
    n = len(list(split.rglob("*_mask*.png")))
    for out, cmd in runs.items():
        r = run_job(cmd + base + ["--out", str(out)], env)
        assert r.returncode == 0, r.stderr[:6000]
        report = json.loads(r.stdout.strip().splitlines()[-1])
        assert (report["n_images"], report["scored"], report["cached"]) == (n, n, 0)

    def load(p: Path) -> dict:
        with open(p / "results.csv") as f:
            return {(r["bin"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}

    a, b = load(one), load(two)
    assert a.keys() == b.keys()
    for k in a:
        if np.isnan(a[k]):
            assert np.isnan(b[k]), k
        else:  # the same float64 arithmetic on the same per-image values
            assert b[k] == pytest.approx(a[k], rel=1e-12, abs=1e-12), k
