"""The `fastmatte` command (also `python -m fastmatte`).

    fastmatte info                      version, torch, backends present, GPU
    fastmatte bench [--res hd,4k] ...   the operators vs their eager reference, as a table
    fastmatte bench --model cra ...     the whole model end to end (FPS), table + JSON + chart
    fastmatte eval PRED_DIR GT_DIR ...  matting metrics of predicted mattes vs ground truths
    fastmatte sample OUT_DIR ...        a synthetic portrait photo and its true alpha, as PNGs
    fastmatte matte INPUT... -o OUT     alpha mattes (and composites) of images, folders, videos
"""
import argparse
import shlex
import sys
from pathlib import Path

import torch


def cmd_info(args) -> int:
    import fastmatte

    for key, value in fastmatte.info().items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in value.items())
        print(f"{key:16s} {value}")
    return 0


def cmd_bench(args) -> int:
    if args.model:
        from fastmatte.cli_model_bench import cmd_bench_model

        return cmd_bench_model(args)
    from fastmatte.cli_op_bench import cmd_bench_ops

    return cmd_bench_ops(args)


def cmd_eval(args) -> int:
    from tqdm import tqdm

    from fastmatte.evaluate import METRICS, evaluate, means, write_csv, write_json

    names = args.metrics.split(",")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        return _usage_error(f"--metrics must be a comma list of {', '.join(METRICS)}; "
                            f"got {', '.join(unknown)}")
    dirs = [d for d in (args.pred_dir, args.gt_dir, args.trimap_dir) if d is not None]
    for d in dirs:
        if not Path(d).is_dir():
            return _usage_error(f"{d} is not a directory")
    if args.force_known and args.trimap_dir is None:
        return _usage_error("--force-known needs --trimap-dir")
    outputs = [Path(p).resolve() for p in (args.csv, args.json) if p is not None]
    inputs = {Path(d).resolve() for d in dirs} | {p.resolve() for d in dirs for p in Path(d).iterdir()}
    for out in outputs:
        if out in inputs:
            return _usage_error(f"refusing to write {out}: it is one of the inputs")
    if len(set(outputs)) < len(outputs):
        return _usage_error("--csv and --json name the same file")
    if args.device == "cuda" and not torch.cuda.is_available():
        return _usage_error("--device cuda, but no CUDA GPU is available")

    bar = lambda todo: tqdm(todo, desc="fastmatte eval", unit="image", file=sys.stderr)  # noqa: E731
    result = evaluate(args.pred_dir, args.gt_dir, args.trimap_dir, names, args.device, args.force_known, bar)
    summary = means(result.rows, names)
    print(f"{len(result.rows)} images; DIM convention: SAD, Grad, Conn / 1000, MSE and MAD plain means"
          + (f", over trimap == 128 of {args.trimap_dir}" if args.trimap_dir else ", over whole images")
          + (", known regions forced" if args.force_known else ""))
    print(f"{'metric':8s} {'mean':>14s} {'images':>7s}")
    for metric, (mean, count) in summary.items():
        print(f"{metric:8s} {mean:14.6g} {count:7d}")
    if args.csv:
        write_csv(args.csv, result.rows, names)
        print(f"per-image rows written to {args.csv}")
    if args.json:
        write_json(args.json, result, names, summary)
        print(f"per-image rows, means and problems written to {args.json}")
    if result.problems:
        print(f"{len(result.problems)} problem(s):", file=sys.stderr)
        for line in result.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


def cmd_sample(args) -> int:
    from fastmatte.benchmark import RESOLUTIONS
    from fastmatte.sample import write_sample

    try:
        paths = write_sample(args.out_dir, RESOLUTIONS[args.res], args.seed, args.force)
    except OSError as error:  # an existing file (not overwritten), or the folder cannot be written
        print(f"fastmatte sample: {error}", file=sys.stderr)
        return 2
    height, width = RESOLUTIONS[args.res]
    print(f"wrote {paths[0]} (synthetic portrait, {width}x{height} RGB, seed {args.seed}) and {paths[1]} "
          "(its true alpha)")
    return 0


def cmd_matte(args) -> int:
    from fastmatte.matte_files import run

    return run(args)


def _usage_error(message) -> int:
    print(f"fastmatte eval: {message}", file=sys.stderr)
    return 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmatte", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, backends present, GPU").set_defaults(run=cmd_info)
    b = sub.add_parser("bench", help="time the operators (or with --model, a whole model) against their "
                                     "eager references")
    b.add_argument("--model", help="time this model end to end (cra) instead of the op suites: writes "
                                   "OUT/<model>_<device>_<precision>.json and .png, replacing them")
    b.add_argument("--res", default="hd", help="comma list of hd, 4k (default: hd); with --model also "
                                               "HEIGHTxWIDTH sizes, e.g. 64x96")
    b.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present, else cpu")
    b.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    b.add_argument("--suite", help="comma list of suites: tiles, attention, gated_conv, trimap_fusion, "
                                   "metrics (default: all but metrics)")
    b.add_argument("--ops", help="comma list of cases to time within the suites (default: all)")
    b.add_argument("--repeats", type=int,
                   help="timed runs per figure (default 30; with --model 10 on the CPU, 100 on CUDA)")
    b.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="also time torch.compile of the eager reference (a failure is reported, not "
                        "raised); with --model on by default on CUDA")
    b.add_argument("--json", help="write the records (a JSON list) to this file")
    b.add_argument("--profile", action="store_true",
                   help="with --model: time per stage and a torch.profiler summary of the fastmatte "
                        "forward, also written to OUT/<model>_<device>_<precision>_profile.txt")
    b.add_argument("--out", help="with --model: the results folder (default bench/results)")
    b.set_defaults(run=cmd_bench)
    e = sub.add_parser("eval", help="matting metrics (DIM convention) of predicted mattes vs ground truths",
                       description="Matches PRED_DIR and GT_DIR files by name without extension, prints "
                                   "the mean of each metric, and lists missing, unreadable or mismatched "
                                   "files at the end (exit status 1 if there are any).")
    e.add_argument("pred_dir", metavar="PRED_DIR")
    e.add_argument("gt_dir", metavar="GT_DIR")
    e.add_argument("--trimap-dir", help="trimaps (128 = unknown): count only their unknown pixels")
    e.add_argument("--metrics", default="sad,mse,grad,conn",
                   help="comma list of sad, mse, mad, grad, conn, sad_t (default: sad,mse,grad,conn)")
    e.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    e.add_argument("--force-known", action="store_true",
                   help="set pred to 0/1 where the trimap is 0/255 first (PaddleSeg/mmediting convention)")
    e.add_argument("--csv", help="write one row per image to this CSV file")
    e.add_argument("--json", help="write the per-image rows, means and problems to this JSON file")
    e.set_defaults(run=cmd_eval)
    s = sub.add_parser("sample", help="write a synthetic portrait photo and its true alpha (PNG)",
                       description="Writes OUT_DIR/portrait.png and OUT_DIR/portrait_alpha.png, made here "
                                   "from the seed (procedural, no download); refuses to overwrite them.")
    s.add_argument("out_dir", metavar="OUT_DIR", help="created if missing")
    s.add_argument("--res", choices=["hd", "4k"], default="hd", help="1920x1080 or 3840x2160 (default hd)")
    s.add_argument("--seed", type=int, default=0, help="the same seed gives the same picture (default 0)")
    s.add_argument("--force", action="store_true", help="overwrite existing portrait files")
    s.set_defaults(run=cmd_sample)
    from fastmatte import matte_files

    m = sub.add_parser("matte", help="alpha mattes (and composites) of image and video files",
                       description=matte_files.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or folders of them")
    m.add_argument("-o", "--out-dir", required=True, help="where the outputs go (created if missing)")
    m.add_argument("--model", default="cra", help="model name (default cra)")
    m.add_argument("--weights", help="local weights file (.safetensors or .pt); without it, random weights")
    m.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present, else cpu")
    m.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32",
                   help="fp16/bf16: CUDA only (default fp32)")
    m.add_argument("--background", metavar="COLOR|IMAGE",
                   help="also write composites over a colour (green, white, #RRGGBB, r,g,b) or an image file")
    m.add_argument("--force", action="store_true", help="overwrite existing outputs (inputs never)")
    m.set_defaults(run=cmd_matte)
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.command_line = shlex.join(["fastmatte"] + argv)  # kept in benchmark records
    return args.run(args)
