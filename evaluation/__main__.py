"""``python -m evaluation prepare|sample|sample-places|sample-celebahq|predict|score|report``.

Under ``torchrun --nproc_per_node N -m evaluation predict|score ...`` each process takes its share;
``score`` gathers the per-image values through torch.distributed and rank 0 writes the results.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from lama.dist import init_from_env, shutdown

from .predict import BASELINES, EvaluationError
from .splits import DATASETS


def cmd_prepare(args) -> int:
    from .splits import prepare_split

    t = time.perf_counter()
    counts = prepare_split(args.preset, Path(args.images), Path(args.out), seed=args.seed, jobs=args.jobs,
                           progress=not args.quiet)
    for e in counts["errors"]:
        print(f"failed: {e}", file=sys.stderr)
    print(f"{args.preset}: {counts['done']} images written, {counts['skipped']} already done, {counts['small']} "
          f"too small, {len(counts['errors'])} failed -> {args.out} ({time.perf_counter() - t:.1f} s)")
    return 1 if counts["errors"] else 0


def cmd_sample(args) -> int:
    from .splits import copy_sample_photos, sample_celebahq, sample_places

    if args.command == "sample":
        files = copy_sample_photos(Path(args.out))
    elif args.command == "sample-places":
        files = sample_places(Path(args.source), Path(args.out), seed=args.seed, n=args.n)
    else:
        files = sample_celebahq(Path(args.source), Path(args.out), seed=args.seed, n=args.n)
    print(f"{len(files)} source images in {args.out}")
    return 0


def cmd_predict(args) -> int:
    from .predict import predict_split

    rank, world = init_from_env()
    t = time.perf_counter()
    counts = predict_split(Path(args.split), Path(args.out), method=args.method, model=args.model,
                           batch_size=args.batch_size, device=args.device, rank=rank, world=world,
                           progress=not args.quiet and rank == 0)
    print(f"[rank {rank}] {counts['written']} predictions written, {counts['skipped']} already done -> "
          f"{args.out} ({time.perf_counter() - t:.1f} s)")
    return 0


def cmd_score(args) -> int:
    from .report import write_results
    from .score import CHUNK, ScoreOptions, aggregate, cache_dir, collect, rename_variants

    rank, world = init_from_env()
    opts = ScoreOptions(fid_resize=args.fid_resize, ssim_variant=args.ssim_variant, lpips_net=args.lpips_net,
                        batch_size=args.batch_size, device=args.device)
    out = Path(args.out)
    cache = cache_dir(out, args.dataset, args.mask_set, args.method, opts)
    t = time.perf_counter()
    values, counts = collect(Path(args.split), Path(args.predictions), cache, opts, rank=rank, world=world,
                             progress=not args.quiet and rank == 0, allow_missing=args.allow_missing,
                             chunk_size=args.chunk_size or CHUNK)
    if rank != 0:
        return 0
    rows = rename_variants(aggregate(values), opts)
    if counts["missing"]:  # scored under --allow-missing: the results say how many were left out
        rows.append({"bin": "total", "metric": "n_missing", "value": float(counts["missing"]),
                     "n_images": len(values["area"])})
    for r in rows:
        r.update(dataset=args.dataset, mask_set=args.mask_set, method=args.method)
    write_results(out / "results.csv", rows)
    seconds = time.perf_counter() - t
    totals = {r["metric"]: r["value"] for r in rows if r["bin"] == "total"}
    print(json.dumps({"method": args.method, "dataset": args.dataset, "mask_set": args.mask_set,
                      "n_images": len(values["area"]), **counts, "seconds": round(seconds, 1),
                      **{k: round(v, 4) for k, v in totals.items()}}))
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    grid = None
    if args.split and args.predictions:
        preds = {}
        for item in args.predictions:
            name, _, folder = item.partition("=")
            if not folder:
                raise EvaluationError(f"--predictions takes NAME=FOLDER, got {item!r}")
            preds[name] = Path(folder)
        grid = {"split": Path(args.split), "predictions": preds}
    paths = write_report([Path(p) for p in args.results], Path(args.out), grid=grid)
    print("\n".join(str(p) for p in paths))
    return 0


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation", description="LaMa evaluation protocol")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("prepare", help="masked crops of a folder of photos (the official recipe, seeded)")
    a.add_argument("--preset", required=True, help="random_thin_512, random_thick_256, segm_256, ...")
    a.add_argument("--images", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--jobs", type=int, default=1, help="processes")
    a.set_defaults(func=cmd_prepare)

    s = sub.add_parser("sample", help="copy the real photos shipped in installed packages (offline sample)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_sample)
    for name, n in (("sample-places", 30_000), ("sample-celebahq", 2_000)):
        key = name.split("-")[1]
        s = sub.add_parser(name, help=DATASETS[key])
        s.add_argument("--source", required=True, help="your local copy (see the help text)")
        s.add_argument("--out", required=True)
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--n", type=int, default=n)
        s.set_defaults(func=cmd_sample)

    r = sub.add_parser("predict", help="predictions of a LaMa model or a classical baseline on a split")
    g = r.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="any lama.load_model source")
    g.add_argument("--method", choices=BASELINES)
    r.add_argument("--split", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=cmd_predict)

    c = sub.add_parser("score", help="FID, LPIPS, SSIM, PSNR of a folder of predictions")
    c.add_argument("--split", required=True)
    c.add_argument("--predictions", required=True)
    c.add_argument("--method", required=True, help="name of the method in the results")
    c.add_argument("--dataset", required=True, help="e.g. places, celebahq, sample")
    c.add_argument("--mask-set", required=True, help="e.g. random_thin_512")
    c.add_argument("--out", required=True, help="folder of results.csv and the cache")
    c.add_argument("--fid-resize", default="lama", help="lama (the paper's), or a named alternative")
    c.add_argument("--ssim-variant", default="lama", choices=["lama", "torchmetrics"])
    c.add_argument("--lpips-net", default="vgg", choices=["vgg", "alex"])
    c.add_argument("--batch-size", type=int, default=8)
    c.add_argument("--device", default="cpu")
    c.add_argument("--allow-missing", action="store_true",
                   help="score the masks that have a prediction; the results say how many were left out")
    c.add_argument("--chunk-size", type=_positive, default=None,
                   help="images per cache file and per torchrun share (default 64)")
    c.set_defaults(func=cmd_score)

    t = sub.add_parser("report", help="Markdown tables beside the paper and plots")
    t.add_argument("--results", required=True, nargs="+", metavar="RESULTS_CSV",
                   help="one or more results.csv files, combined in the order given; where two files have the "
                        "same run (dataset, mask_set, method), the later file wins")
    t.add_argument("--out", required=True)
    t.add_argument("--split", help="for the qualitative grid")
    t.add_argument("--predictions", nargs="*", help="NAME=FOLDER for the qualitative grid")
    t.set_defaults(func=cmd_report)
    for sp in sub.choices.values():
        sp.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lama import LamaError


    try:
        return args.func(args)
    except (EvaluationError, LamaError) as e:  # MetricWeightsError is a LamaError
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        shutdown()


if __name__ == "__main__":
    sys.exit(main())
