"""Command line: ``python -m lama predict|convert|export|train|bench``.

predict: inpaint a file or a folder. Masks come from ``--mask`` (a file, or a folder matched by file
stem) or, without it, from the official layout (``x.png`` beside ``x_mask000.png``, ``x_mask001.png``...).
Existing outputs are skipped, so a re-run resumes; a bad file is reported and skipped, and the exit
code is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import LamaError
from .io import IMAGE_EXTS

_MASK_NAME = re.compile(r"^(?P<stem>.+)_mask\d*$")


@dataclass
class Job:
    image: Path
    mask: Path
    output: Path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def plan_jobs(inp: Path, mask: Path | None, out_dir: Path) -> tuple[list[Job], list[str]]:
    """Pair images with masks; returns the jobs and the problems found while pairing."""
    problems: list[str] = []
    if not inp.exists():
        raise LamaError(f"--input {inp} does not exist")
    if mask is not None and not mask.exists():
        raise LamaError(f"--mask {mask} does not exist")
    if inp.is_file():
        if mask is None:
            masks = sorted(p for p in inp.parent.glob(f"{inp.stem}_mask*") if p.suffix.lower() in IMAGE_EXTS)
            if not masks:
                raise LamaError(f"no mask for {inp}: pass --mask or put {inp.stem}_mask.png beside it")
            return [Job(inp, m, out_dir / f"{m.stem}{inp.suffix}") for m in masks], problems
        m = mask if mask.is_file() else _match_by_stem(inp, mask)
        if m is None:
            raise LamaError(f"no mask named {inp.stem}.* in {mask}")
        return [Job(inp, m, out_dir / inp.name)], problems

    jobs: list[Job] = []
    files = _images(inp)
    if mask is None:  # the official layout: x.png with x_mask*.png in the same folder
        by_stem = {p.stem: p for p in files if not _MASK_NAME.match(p.stem)}
        for p in files:
            mm = _MASK_NAME.match(p.stem)
            if mm and mm.group("stem") in by_stem:
                img = by_stem[mm.group("stem")]
                jobs.append(Job(img, p, out_dir / f"{p.stem}{img.suffix}"))
        with_mask = {j.image for j in jobs}
        problems += [f"{p}: no mask ({p.stem}_mask*.png) found" for p in by_stem.values() if p not in with_mask]
        return jobs, problems
    for p in files:
        m = mask if mask.is_file() else _match_by_stem(p, mask)
        if m is None:
            problems.append(f"{p}: no mask named {p.stem}.* in {mask}")
        else:
            jobs.append(Job(p, m, out_dir / p.name))
    return jobs, problems


def _match_by_stem(image: Path, folder: Path) -> Path | None:
    for ext in sorted(IMAGE_EXTS):
        for cand in (folder / f"{image.stem}{ext}", folder / f"{image.stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .inpainter import load_model, save_image

    if not 1 <= args.jpeg_quality <= 100:
        raise LamaError(f"--jpeg-quality must be 1..100, got {args.jpeg_quality}")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise LamaError(f"--output {args.output} exists and is not a folder")
    jobs, problems = plan_jobs(Path(args.input), Path(args.mask) if args.mask else None, Path(args.output))
    todo = [j for j in jobs if not j.output.exists()]
    skipped = len(jobs) - len(todo)
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    if not todo:
        print(f"nothing to do: {skipped} output(s) already exist in {args.output}")
        return 1 if problems else 0
    model = load_model(args.model, device=args.device, dtype=args.dtype, preset=args.preset)
    for name in ("n_iters", "lr", "min_side", "max_scales", "px_budget"):
        value = getattr(args, f"refine_{name}")
        if value is not None:
            if not value > 0:
                raise LamaError(f"--refine-{name.replace('_', '-')} must be > 0, got {value}")
            setattr(model, f"refine_{name}", value)
    if args.refine_devices:
        model.refine_devices = [d for d in args.refine_devices.split(",") if d]
    failed = len(problems)
    for job in tqdm(todo, desc="inpainting", unit="img", disable=args.quiet):
        try:
            save_image(model(job.image, job.mask, dilate=args.dilate, strategy=args.strategy), job.output,
                       quality=args.jpeg_quality)
        except Exception as e:  # one bad file never stops the batch; it is reported and counted
            failed += 1
            tqdm.write(f"failed: {job.image}: {e if isinstance(e, LamaError) else repr(e)}", file=sys.stderr)
    done = len(todo) - (failed - len(problems))
    print(f"{done} written, {skipped} already done, {failed} failed -> {args.output}")
    return 1 if failed else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import load_generator, save_safetensors

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise LamaError(f"output must end in .safetensors, got {out}")
    loaded = load_generator(args.source, preset=args.preset)
    save_safetensors(loaded, out)
    n = sum(p.numel() for p in loaded.generator.parameters())
    print(f"wrote {out}: {n:,} parameters, n_blocks={loaded.config.get('n_blocks')} from {loaded.source}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import logging

    from .training.config import load_training_config
    from .training.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.resume:
        run = Path(args.resume)
        if not (run / "config.yaml").is_file():
            raise LamaError(f"--resume {run}: no config.yaml there; pass the run folder of an earlier training run")
        cfg = load_training_config(run / "config.yaml", args.overrides)
    else:
        if not args.config:
            raise LamaError("pass --config NAME_OR_FILE (bundled: lama-fourier, big-lama, lama-fourier-celeba, "
                            "big-lama-celeba, tiny-cpu) or --resume RUN_FOLDER")
        cfg = load_training_config(args.config, args.overrides)
        run = Path(args.out) if args.out else Path("runs") / f"{cfg.get('run_title') or 'lama'}"
        if (run / "models" / "last.ckpt").exists():
            raise LamaError(f"{run} already holds a training run; continue it with --resume {run} or choose --out")
    if args.data:
        cfg["data"]["train"]["indir"] = args.data
    if args.val_data:
        cfg["data"]["val"]["indir"] = args.val_data
    trainer = Trainer(cfg, run, resume=bool(args.resume), init_from=args.init_from, progress_bar=not args.quiet)
    state = trainer.fit()
    if trainer.is_main:
        print(f"trained {state.step} steps ({state.skipped_images} unreadable images skipped) -> {run}")
    from .dist import shutdown

    shutdown()
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    formats = {".onnx": "onnx", ".pt": "torchscript", ".xml": "openvino"}
    fmt = args.format or formats.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise LamaError(f"cannot tell the format from {args.out}: pass --format onnx|torchscript|openvino")
    path = export(args.source, args.out, format=fmt, fft=args.fft, raw=args.raw, opset=args.opset,
                  preset=args.preset, pipeline=args.pipeline, dtype=args.dtype)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lama", description="LaMa inpainting")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="inpaint a file or a folder of images")
    p.add_argument("--model", default=None,
                   help="big-lama.zip, its folder, .ckpt, .safetensors, .pt, owner/repo[/file] or a preset "
                        "(default: $LAMA_MODEL, else big-lama)")
    p.add_argument("--input", required=True, help="an image or a folder of images")
    p.add_argument("--mask", default=None, help="a mask file or a folder of masks matched by stem "
                                                "(default: x_mask*.png beside each x.png)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"],
                   help="bfloat16 on recent CPUs and GPUs, float16 on CUDA; auto: float16 on CUDA, bfloat16 on a CPU "
                        "with AMX or AVX512-BF16, else float32; FFTs stay float32")
    p.add_argument("--preset", default=None, help="structure for weight files without a config")
    p.add_argument("--dilate", type=int, default=0, help="grow the mask by this many pixels")
    p.add_argument("--strategy", default="crop", choices=["crop", "resize", "original", "refine", "crop+refine"],
                   help="what the network sees of a large photo (crop: each hole's surroundings); refine: the "
                        "official multi-scale refinement, slower, sharper on large photos; crop+refine: per crop")
    p.add_argument("--refine-n-iters", type=int, default=None, help="refinement steps per scale (default 15)")
    p.add_argument("--refine-lr", type=float, default=None, help="refinement Adam learning rate (default 0.002)")
    p.add_argument("--refine-min-side", type=int, default=None, help="pyramid scales: see lama.refine (default 512)")
    p.add_argument("--refine-max-scales", type=int, default=None, help="at most this many scales (default 3)")
    p.add_argument("--refine-px-budget", type=int, default=None,
                   help="photos above this many pixels are refined at a reduced size (default 1800000)")
    p.add_argument("--refine-devices", default=None,
                   help="split the refinement over devices, e.g. cuda:0,cuda:1 (default: --device)")
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)
    c = sub.add_parser("convert", help="write generator-only safetensors with the config in its metadata")
    c.add_argument("source")
    c.add_argument("out")
    c.add_argument("--preset", default=None)
    c.set_defaults(func=cmd_convert)
    e = sub.add_parser("export", help="write ONNX, TorchScript (IOPaint's big-lama.pt) or OpenVINO IR "
                                      "(see lama/export.py)")
    e.add_argument("source", help="weights in any format --model takes")
    e.add_argument("out", help="the file to write (.onnx, .pt, or .xml with its .bin beside it)")
    e.add_argument("--format", default=None, choices=["onnx", "torchscript", "openvino"],
                   help="default: from OUT's extension (.onnx, .pt, .xml)")
    e.add_argument("--fft", default="matmul", choices=["matmul", "dft-op"],
                   help="ONNX: FFTs as DFT matrix products (default, any runtime) or ONNX DFT ops")
    e.add_argument("--raw", action="store_true", help="output the generator's prediction, not the composited image")
    e.add_argument("--pipeline", action="store_true",
                   help="ONNX: uint8 HxWx3 photo + HxW mask in, uint8 photo out (padding and compositing inside)")
    e.add_argument("--opset", type=int, default=None, help="ONNX opset (default 20)")
    e.add_argument("--dtype", default="float32", choices=["float32", "float16"],
                   help="ONNX: float16 for GPU runtimes (the Fourier units stay float32; inputs stay float32)")
    e.add_argument("--preset", default=None, help="structure for weight files without a config")
    e.set_defaults(func=cmd_export)
    t = sub.add_parser("train", help="train or fine-tune LaMa (torchrun --nproc_per_node N -m lama train ... for DDP)")
    t.add_argument("--config", default=None, help="a bundled config name or a YAML file")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides of the config, e.g. data.batch_size=4")
    t.add_argument("--data", default=None, help="a folder of training images (sets data.train.indir)")
    t.add_argument("--val-data", default=None, help="a folder of validation images (sets data.val.indir)")
    t.add_argument("--out", default=None, help="the run folder (default: runs/RUN_TITLE)")
    t.add_argument("--resume", default=None, metavar="RUN", help="continue RUN/models/last.ckpt")
    t.add_argument("--init-from", default=None, metavar="WEIGHTS",
                   help="fine-tune from published weights: big-lama (generator only), a big-lama-with-discr "
                        "folder or .ckpt (generator, discriminator, ResNetPL encoder), any format lama loads")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    b = sub.add_parser("bench", help="reference vs fast inference paths (table + JSON); see lama/bench.py",
                       add_help=False)
    b.set_defaults(func=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # its own options
        from .bench import main as bench_main

        return bench_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LamaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
