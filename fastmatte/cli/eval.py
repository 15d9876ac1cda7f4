"""`fastmatte eval`: the metrics of a folder of predicted mattes against a folder of ground truths.

Files are matched by name without extension (pred/a.png with gt/a.jpg); a problem with one
image (no prediction, no ground truth, no trimap, an unreadable file, different sizes, two
files of one name) is recorded and the run goes on.
"""
import csv
import json
import math
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from fastmatte import metrics
from fastmatte.cli import usage_error
from fastmatte.io import MATTE_SUFFIXES, UnreadableImage, read_matte

METRICS = {"sad": metrics.sad, "mse": metrics.mse, "mad": metrics.mad, "grad": metrics.grad_error,
           "conn": metrics.conn_error, "sad_t": metrics.sad_t}


class Evaluation(NamedTuple):
    rows: list  # one dict per evaluated image: {"name": ..., metric: value}
    problems: list  # one line per problem, naming the file(s)


def matte_files(folder: Path, problems: list) -> dict:
    """{name without extension: path} of the image files in `folder` (not recursive); names
    held by more than one file are left out and reported."""
    by_name = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in MATTE_SUFFIXES:
            by_name.setdefault(path.stem, []).append(path)
    for name, paths in list(by_name.items()):
        if len(paths) > 1:
            listed = ", ".join(p.name for p in paths)
            problems.append(f"{folder}: {len(paths)} files named {name!r} ({listed}); skipped")
            del by_name[name]
    return {name: paths[0] for name, paths in by_name.items()}


def evaluate(pred_dir, gt_dir, trimap_dir=None, names=("sad", "mse", "grad", "conn"), device="cpu",
             force_known=False, progress=None) -> Evaluation:
    """Every metric in `names` (keys of METRICS) for every image of gt_dir, each file read
    with fastmatte.io.read_matte. `progress` wraps the list of names (e.g. tqdm)."""
    problems = []
    preds = matte_files(Path(pred_dir), problems)
    gts = matte_files(Path(gt_dir), problems)
    trimaps = matte_files(Path(trimap_dir), problems) if trimap_dir is not None else None
    problems += [f"{preds[name]}: no ground truth named {name!r} in {gt_dir}" for name in preds if name not in gts]
    todo = []
    for name in gts:
        if name not in preds:
            problems.append(f"{gts[name]}: no prediction named {name!r} in {pred_dir}")
        elif trimaps is not None and name not in trimaps:
            problems.append(f"{gts[name]}: no trimap named {name!r} in {trimap_dir}")
        else:
            todo.append(name)

    rows = []
    for name in progress(todo) if progress else todo:
        files = {"pred": preds[name], "gt": gts[name]}
        if trimaps is not None:
            files["trimap"] = trimaps[name]
        try:
            arrays = {role: read_matte(path) for role, path in files.items()}
        except UnreadableImage as error:
            problems.append(str(error))
            continue
        sizes = {role: a.shape for role, a in arrays.items()}
        if len(set(sizes.values())) > 1:
            problems.append(f"{name}: sizes differ (" + ", ".join(
                f"{role} {files[role].name} {h}x{w}" for role, (h, w) in sizes.items()) + ")")
            continue
        tensors = {role: torch.from_numpy(a).to(device) for role, a in arrays.items()}
        row = {"name": name}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an empty unknown region: NaN, said below
            for metric in names:
                kwargs = {"force_known": True} if force_known else {}
                row[metric] = float(METRICS[metric](tensors["pred"], tensors["gt"], tensors.get("trimap"), **kwargs))
        rows.append(row)
    return Evaluation(rows, problems)


def means(rows, names) -> dict:
    """{metric: (mean over the images where it is a number, how many those are)}."""
    out = {}
    for metric in names:
        values = [row[metric] for row in rows if not math.isnan(row[metric])]
        out[metric] = (sum(values) / len(values) if values else math.nan, len(values))
    return out


def write_csv(path, rows, names):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name"] + list(names))
        writer.writeheader()
        writer.writerows(rows)


def write_json(path, evaluation: Evaluation, names, summary):
    """{"metrics", "mean", "images" (the rows), "problems"}; NaN is written as null."""
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    record = {"metrics": list(names), "mean": {m: clean(mean) for m, (mean, _) in summary.items()},
              "images": [{k: clean(v) for k, v in row.items()} for row in evaluation.rows],
              "problems": evaluation.problems}
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def add_parser(sub):
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
    e.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    names = args.metrics.split(",")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        return usage_error("eval", f"--metrics must be a comma list of {', '.join(METRICS)}; "
                            f"got {', '.join(unknown)}")
    dirs = [d for d in (args.pred_dir, args.gt_dir, args.trimap_dir) if d is not None]
    for d in dirs:
        if not Path(d).is_dir():
            return usage_error("eval", f"{d} is not a directory")
    if args.force_known and args.trimap_dir is None:
        return usage_error("eval", "--force-known needs --trimap-dir")
    outputs = [Path(p).resolve() for p in (args.csv, args.json) if p is not None]
    inputs = {Path(d).resolve() for d in dirs} | {p.resolve() for d in dirs for p in Path(d).iterdir()}
    for out in outputs:
        if out in inputs:
            return usage_error("eval", f"refusing to write {out}: it is one of the inputs")
    if len(set(outputs)) < len(outputs):
        return usage_error("eval", "--csv and --json name the same file")
    if args.device == "cuda" and not torch.cuda.is_available():
        return usage_error("eval", "--device cuda, but no CUDA GPU is available")

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
