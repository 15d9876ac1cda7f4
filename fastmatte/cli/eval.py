"""`fastmatte eval`: the metrics of a folder of predicted mattes against a folder of ground truths.

Files are matched by name without extension (pred/a.png with gt/a.jpg); a problem with one
image (no prediction, no ground truth, no trimap, an unreadable file, different sizes, two
files of one name, values the metrics cannot read: a trimap value other than 0/128/255, float
values outside 0..1) is recorded, naming the file, and the run goes on. The --csv and --json
files are checked before anything is computed and written whole or not at all.

--instances: both folders hold instance mattes named NAME_instance<k>_alpha.EXT (k = 1, 2, ...,
as `fastmatte matte` writes them for an instance model), grouped per image NAME; the instances
of each image are scored with fastmatte.metrics.instance_metrics (EMSE, EMAD, REC, ACC at each
--iou-thresholds), whose one-to-one matching ignores the order k. An image with no instance on
one side is known there by its NAME_instances.EXT file alone (the overview `fastmatte matte`
writes; only its size is read); other files are ignored. The means are over the images where
a score is a number; pooled REC and ACC are all matches over all ground-truth (predicted)
instances.
"""
import re
import csv
import json
import math
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from fastmatte import metrics
from fastmatte.cli import usage_error
from fastmatte.io import MATTE_SUFFIXES, UnreadableImage, read_image, read_matte
from fastmatte.io.atomic import atomic_path, output_file_problem

METRICS = {"sad": metrics.sad, "mse": metrics.mse, "mad": metrics.mad, "grad": metrics.grad_error,
           "conn": metrics.conn_error, "sad_t": metrics.sad_t}
# What to do about what a metrics.MetricInputError found in a file, by its kind.
FIXES = {"trimap values": "pass --snap-trimap to snap every value to the nearest of them (e.g. JPEG trimaps)",
         "0..255 floats": "save mattes as 8- or 16-bit images, or as float 0..1",
         "out of range": "float mattes are 0..1: clip them to [0, 1] when saving"}


DEFAULT_METRICS = "sad,mse,grad,conn"
INSTANCE_SCORES = ("emse", "emad", "rec", "acc", "matches")
_INSTANCE_FILE = re.compile(r"(.+)_instance([1-9][0-9]*)_alpha")  # on the name without extension
_OVERVIEW = "_instances"  # NAME_instances: the overview of an image, maybe with no instance


class Evaluation(NamedTuple):
    rows: list  # one dict per evaluated image: {"name": ..., metric: value}
    problems: list  # one line per problem, naming the file(s)
    snapped: int  # trimap pixels snapped to 0/128/255 (with snap_trimap)


def matte_files(folder: Path, problems: list) -> dict:
    """{name without extension: path} of the image files in `folder` (not recursive; hidden
    files, such as a killed run's temporary files, are skipped); names held by more than one
    file are left out and reported."""
    by_name = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in MATTE_SUFFIXES and not path.name.startswith("."):
            by_name.setdefault(path.stem, []).append(path)
    for name, paths in list(by_name.items()):
        if len(paths) > 1:
            listed = ", ".join(p.name for p in paths)
            problems.append(f"{folder}: {len(paths)} files named {name!r} ({listed}); skipped")
            del by_name[name]
    return {name: paths[0] for name, paths in by_name.items()}


def match_files(pred_dir, gt_dir, trimap_dir=None):
    """([(name, {"pred": path, "gt": path[, "trimap": path]})] for every name of gt_dir with a
    prediction (and a trimap), problems: one line per file left without a partner)."""
    problems = []
    preds = matte_files(Path(pred_dir), problems)
    gts = matte_files(Path(gt_dir), problems)
    trimaps = matte_files(Path(trimap_dir), problems) if trimap_dir is not None else None
    problems += [f"{preds[name]}: no ground truth named {name!r} in {gt_dir}"
                 for name in preds if name not in gts]
    pairs = []
    for name in gts:
        if name not in preds:
            problems.append(f"{gts[name]}: no prediction named {name!r} in {pred_dir}")
        elif trimaps is not None and name not in trimaps:
            problems.append(f"{gts[name]}: no trimap named {name!r} in {trimap_dir}")
        else:
            files = {"pred": preds[name], "gt": gts[name]}
            if trimaps is not None:
                files["trimap"] = trimaps[name]
            pairs.append((name, files))
    return pairs, problems


def instance_files(folder: Path, problems: list) -> dict:
    """{image NAME: {"mattes": [paths of NAME_instance<k>_alpha, by k], "overview": the path of
    NAME_instances or None}} of the image files in `folder` (matte_files: duplicates reported)."""
    images = {}
    for stem, path in matte_files(folder, problems).items():
        match = _INSTANCE_FILE.fullmatch(stem)
        if match:
            entry = images.setdefault(match.group(1), {"mattes": [], "overview": None})
            entry["mattes"].append((int(match.group(2)), path))
        elif stem.endswith(_OVERVIEW) and len(stem) > len(_OVERVIEW):
            images.setdefault(stem[:-len(_OVERVIEW)], {"mattes": [], "overview": None})["overview"] = path
    for entry in images.values():
        entry["mattes"] = [path for _, path in sorted(entry["mattes"])]
    return images


def match_instance_files(pred_dir, gt_dir):
    """([(name, {"pred": entry, "gt": entry})] (entries of instance_files) for every image NAME
    on both sides, problems: one line per image found on one side only)."""
    problems = []
    preds = instance_files(Path(pred_dir), problems)
    gts = instance_files(Path(gt_dir), problems)
    some = lambda entry: (entry["mattes"] or [entry["overview"]])[0]  # noqa: E731
    problems += [f"{some(preds[name])}: no ground-truth instances named {name!r} in {gt_dir}"
                 for name in preds if name not in gts]
    pairs = []
    for name in gts:
        if name not in preds:
            problems.append(f"{some(gts[name])}: no predicted instances named {name!r} in {pred_dir}")
        else:
            pairs.append((name, {"pred": preds[name], "gt": gts[name]}))
    return pairs, problems


def instance_columns(thresholds) -> list:
    """The per-image columns of an instance evaluation, besides "name"."""
    scores = [f"{score}@{t:g}" for t in thresholds for score in INSTANCE_SCORES]
    return ["pred_instances", "gt_instances"] + scores


def evaluate_instances(pairs, thresholds=(0.5, 0.75), device="cpu", progress=None) -> Evaluation:
    """metrics.instance_metrics of every (name, {"pred", "gt"}) pair of match_instance_files, each
    matte read with fastmatte.io.read_matte; one row per image (instance_columns)."""
    rows, problems = [], []
    for name, sides in progress(pairs) if progress else pairs:
        try:
            stacks = {role: _instance_stack(name, entry) for role, entry in sides.items()}
        except (UnreadableImage, _SizeError) as error:
            problems.append(str(error))
            continue
        (_, ph, pw), (_, gh, gw) = stacks["pred"].shape, stacks["gt"].shape
        if (ph, pw) != (gh, gw):
            problems.append(f"{name}: sizes differ (predictions {ph}x{pw}, ground truths {gh}x{gw})")
            continue
        try:
            scores = metrics.instance_metrics(torch.from_numpy(stacks["pred"]).to(device),
                                              torch.from_numpy(stacks["gt"]).to(device), thresholds)
        except ValueError as error:  # MetricInputError among them: values outside 0..1
            problems.append(f"{name}: {error}")
            continue
        row = {"name": name, "pred_instances": len(stacks["pred"]), "gt_instances": len(stacks["gt"])}
        for t in thresholds:
            for score in INSTANCE_SCORES:
                row[f"{score}@{t:g}"] = getattr(scores[t], score)
        rows.append(row)
    return Evaluation(rows, problems, 0)


class _SizeError(ValueError):
    pass


def _instance_stack(name, entry):
    """The mattes of one side of an image as one array [n, H, W] (uint8, or float32 0..1 when
    any file is not 8-bit); [0, H, W] with the overview's size when there are none."""
    if not entry["mattes"]:
        h, w = read_image(entry["overview"]).shape[:2]
        return np.zeros((0, h, w), np.uint8)
    mattes = [read_matte(path) for path in entry["mattes"]]
    if len({m.shape for m in mattes}) > 1:
        raise _SizeError(f"{name}: instance mattes of different sizes (" + ", ".join(
            f"{path.name} {m.shape[0]}x{m.shape[1]}" for path, m in zip(entry["mattes"], mattes)) + ")")
    if any(m.dtype != np.uint8 for m in mattes):
        mattes = [m.astype(np.float32) / 255 if m.dtype == np.uint8 else m for m in mattes]
    return np.stack(mattes)


def pooled(rows, thresholds) -> dict:
    """{threshold: {"rec": all matches / all ground-truth instances, "acc": all matches / all
    predicted instances (NaN where the total is 0), "matches", "pred_instances", "gt_instances"}}."""
    n_pred, n_gt = sum(r["pred_instances"] for r in rows), sum(r["gt_instances"] for r in rows)
    out = {}
    for t in thresholds:
        matches = sum(r[f"matches@{t:g}"] for r in rows)
        out[t] = {"rec": matches / n_gt if n_gt else math.nan,
                  "acc": matches / n_pred if n_pred else math.nan, "matches": matches,
                  "pred_instances": n_pred, "gt_instances": n_gt}
    return out


def write_instance_json(path, evaluation: Evaluation, thresholds, summary, totals):
    """{"iou_thresholds", "columns", "mean", "pooled", "images" (the rows), "problems"}; NaN as null."""
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    record = {"iou_thresholds": list(thresholds), "columns": instance_columns(thresholds),
              "mean": {c: clean(mean) for c, (mean, _) in summary.items()},
              "pooled": {f"{t:g}": {k: clean(v) for k, v in p.items()} for t, p in totals.items()},
              "images": [{k: clean(v) for k, v in row.items()} for row in evaluation.rows],
              "problems": evaluation.problems}
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def evaluate(pairs, names=("sad", "mse", "grad", "conn"), device="cpu", force_known=False, snap_trimap=False,
             progress=None) -> Evaluation:
    """Every metric in `names` (keys of METRICS) for every (name, files) pair of match_files,
    each file read with fastmatte.io.read_matte and its values checked (check=True); with
    snap_trimap, each trimap snapped to 0/128/255 first. `progress` wraps the list (e.g. tqdm)."""
    rows, problems, snapped = [], [], 0
    kwargs = {"force_known": True} if force_known else {}
    for name, files in progress(pairs) if progress else pairs:
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
        try:
            if snap_trimap and "trimap" in arrays:
                arrays["trimap"], changed = metrics.snap_trimap(arrays["trimap"])
                snapped += changed
            tensors = {role: torch.from_numpy(a).to(device) for role, a in arrays.items()}
            row = {"name": name}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # no unknown pixel: NaN means, left out
                for metric in names:
                    row[metric] = float(METRICS[metric](tensors["pred"], tensors["gt"], tensors.get("trimap"),
                                                        check=True, **kwargs))
        except metrics.MetricInputError as error:
            problems.append(f"{files[error.argument]}: {error.argument} {error.found}; {FIXES[error.kind]}")
            continue
        rows.append(row)
    return Evaluation(rows, problems, snapped)


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


def write_json(path, evaluation: Evaluation, names, summary, snap_trimap: bool):
    """{"metrics", "mean", "images" (the rows), "problems"[, "snapped_trimap_pixels"]}; NaN is
    written as null."""
    clean = lambda v: None if isinstance(v, float) and math.isnan(v) else v  # noqa: E731
    record = {"metrics": list(names), "mean": {m: clean(mean) for m, (mean, _) in summary.items()},
              "images": [{k: clean(v) for k, v in row.items()} for row in evaluation.rows],
              "problems": evaluation.problems}
    if snap_trimap:
        record["snapped_trimap_pixels"] = evaluation.snapped
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def write_output(path: Path, write) -> bool:
    """write(temporary path) into `path` atomically, creating its folder; False (and one line on
    stderr) if the file system refuses, e.g. full."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            write(temporary)
    except OSError as error:
        print(f"fastmatte eval: could not write {path}: {error.strerror or error}", file=sys.stderr)
        return False
    return True


def add_parser(sub):
    e = sub.add_parser("eval", help="matting metrics (DIM convention) of predicted mattes vs ground truths",
                       description="Matches PRED_DIR and GT_DIR files by name without extension, prints "
                                   "the mean of each metric, and lists missing, unreadable or mismatched "
                                   "files at the end (exit status 1 if there are any, or if no image "
                                   "could be evaluated).")
    e.add_argument("pred_dir", metavar="PRED_DIR")
    e.add_argument("gt_dir", metavar="GT_DIR")
    e.add_argument("--trimap-dir", help="trimaps (0/128/255; 128 = unknown): count only their unknown pixels")
    e.add_argument("--snap-trimap", action="store_true",
                   help="snap trimap values to the nearest of 0, 128, 255 (JPEG trimaps, unknown saved as "
                        "127); without it a trimap holding other values is a problem")
    e.add_argument("--metrics",
                   help=f"comma list of sad, mse, mad, grad, conn, sad_t (default: {DEFAULT_METRICS})")
    e.add_argument("--instances", action="store_true",
                   help="instance mattes: NAME_instance<k>_alpha files grouped per image NAME on both sides, "
                        "scored with EMSE, EMAD, REC, ACC (fastmatte.metrics.instance_metrics); a "
                        "NAME_instances file alone says NAME has no instance on that side")
    e.add_argument("--iou-thresholds", metavar="T,T",
                   help="with --instances: comma list of IoU thresholds in (0, 1] (default 0.5,0.75)")
    e.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    e.add_argument("--force-known", action="store_true",
                   help="set pred to 0/1 where the trimap is 0/255 first (PaddleSeg/mmediting convention)")
    e.add_argument("--csv", help="write one row per image to this CSV file")
    e.add_argument("--json", help="write the per-image rows, means and problems to this JSON file")
    e.add_argument("--force", action="store_true", help="replace existing --csv / --json files")
    e.set_defaults(run=run)


def run(args) -> int:
    from tqdm import tqdm

    if args.instances:
        return run_instances(args)
    if args.iou_thresholds is not None:
        return usage_error("eval", "--iou-thresholds needs --instances")
    names = (args.metrics or DEFAULT_METRICS).split(",")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        return usage_error("eval", f"--metrics must be a comma list of {', '.join(METRICS)}; "
                            f"got {', '.join(unknown)}")
    dirs = [d for d in (args.pred_dir, args.gt_dir, args.trimap_dir) if d is not None]
    for d in dirs:
        if not Path(d).is_dir():
            return usage_error("eval", f"{d} is not a directory")
    for option, needs_trimaps in (("--force-known", args.force_known), ("--snap-trimap", args.snap_trimap)):
        if needs_trimaps and args.trimap_dir is None:
            return usage_error("eval", f"{option} needs --trimap-dir")
    problem = _output_problem(args, dirs)
    if problem:
        return usage_error("eval", problem)

    pairs, problems = match_files(args.pred_dir, args.gt_dir, args.trimap_dir)
    if not pairs:
        report_problems(problems)
        with_trimaps = f" and a trimap in {args.trimap_dir}" if args.trimap_dir else ""
        print(f"fastmatte eval: nothing to evaluate: no name has both a prediction in {args.pred_dir} and a "
              f"ground truth in {args.gt_dir}{with_trimaps} (image files: {', '.join(MATTE_SUFFIXES)})",
              file=sys.stderr)
        return 1
    bar = lambda todo: tqdm(todo, desc="fastmatte eval", unit="image", file=sys.stderr)  # noqa: E731
    result = evaluate(pairs, names, args.device, args.force_known, args.snap_trimap, bar)
    result = result._replace(problems=problems + result.problems)
    if not result.rows:
        report_problems(result.problems)
        print("fastmatte eval: no image could be evaluated (problems above); nothing written",
              file=sys.stderr)
        return 1
    summary = means(result.rows, names)
    print(f"{len(result.rows)} images; DIM convention: SAD, Grad, Conn / 1000, MSE and MAD plain means"
          + (f", over trimap == 128 of {args.trimap_dir}" if args.trimap_dir else ", over whole images")
          + (", known regions forced" if args.force_known else ""))
    if args.snap_trimap:
        print(f"--snap-trimap: {result.snapped} trimap pixels snapped to the nearest of 0, 128, 255")
    print(f"{'metric':8s} {'mean':>14s} {'images':>7s}")
    for metric, (mean, count) in summary.items():
        print(f"{metric:8s} {mean:14.6g} {count:7d}")
    writes = []
    if args.csv:
        writes.append((args.csv, "per-image rows", lambda path: write_csv(path, result.rows, names)))
    if args.json:
        writes.append((args.json, "per-image rows, means and problems",
                       lambda path: write_json(path, result, names, summary, args.snap_trimap)))
    return finish(writes, result.problems)


def _output_problem(args, dirs):
    """Why --csv / --json / --device cannot be used as given (None if they can)."""
    outputs = [Path(p) for p in (args.csv, args.json) if p is not None]
    inputs = {Path(d).resolve() for d in dirs} | {p.resolve() for d in dirs for p in Path(d).iterdir()}
    for out in outputs:
        if out.resolve() in inputs:
            return f"refusing to write {out}: it is one of the inputs"
        problem = output_file_problem(out, args.force)
        if problem:
            return problem
    if len({out.resolve() for out in outputs}) < len(outputs):
        return "--csv and --json name the same file"
    if args.device == "cuda" and not torch.cuda.is_available():
        return "--device cuda, but no CUDA GPU is available"
    return None


def run_instances(args) -> int:
    """`fastmatte eval --instances` (see the module's docstring)."""
    from tqdm import tqdm

    for option, given in (("--trimap-dir", args.trimap_dir), ("--snap-trimap", args.snap_trimap),
                          ("--force-known", args.force_known), ("--metrics", args.metrics)):
        if given:
            return usage_error("eval", f"{option} does not apply to --instances (its scores are EMSE, EMAD, "
                                       "REC and ACC over whole images)")
    try:
        thresholds = tuple(float(t) for t in (args.iou_thresholds or "0.5,0.75").split(","))
    except ValueError:
        thresholds = ()
    if not thresholds or not all(0 < t <= 1 for t in thresholds) or len(set(thresholds)) < len(thresholds):
        return usage_error("eval", f"--iou-thresholds must be a comma list of distinct numbers in (0, 1]; "
                                   f"got {args.iou_thresholds!r}")
    dirs = [args.pred_dir, args.gt_dir]
    for d in dirs:
        if not Path(d).is_dir():
            return usage_error("eval", f"{d} is not a directory")
    problem = _output_problem(args, dirs)
    if problem:
        return usage_error("eval", problem)

    pairs, problems = match_instance_files(args.pred_dir, args.gt_dir)
    if not pairs:
        report_problems(problems)
        print(f"fastmatte eval: nothing to evaluate: no image NAME has instance mattes "
              f"(NAME_instance<k>_alpha) or a NAME_instances file both in {args.pred_dir} and in "
              f"{args.gt_dir}",
              file=sys.stderr)
        return 1
    bar = lambda todo: tqdm(todo, desc="fastmatte eval", unit="image", file=sys.stderr)  # noqa: E731
    result = evaluate_instances(pairs, thresholds, args.device, bar)
    result = result._replace(problems=problems + result.problems)
    if not result.rows:
        report_problems(result.problems)
        print("fastmatte eval: no image could be evaluated (problems above); nothing written",
              file=sys.stderr)
        return 1
    columns = instance_columns(thresholds)
    summary = means(result.rows, columns)
    totals = pooled(result.rows, thresholds)
    first = totals[thresholds[0]]
    print(f"{len(result.rows)} images, {first['pred_instances']} predicted and {first['gt_instances']} "
          "ground-truth instances; instance_metrics: EMSE, EMAD (0..1 scale) over matched pairs; means over "
          "the images where a score is a number; pooled REC/ACC = all matches / all gt (predicted) instances")
    print(f"{'IoU':>5s} {'EMSE':>12s} {'EMAD':>12s} {'REC':>8s} {'ACC':>8s} {'REC pool':>9s} "
          f"{'ACC pool':>9s} {'matches':>8s}")
    for t in thresholds:
        mean = lambda score: summary[f"{score}@{t:g}"][0]  # noqa: E731
        print(f"{t:5g} {mean('emse'):12.6g} {mean('emad'):12.6g} {mean('rec'):8.4f} {mean('acc'):8.4f} "
              f"{totals[t]['rec']:9.4f} {totals[t]['acc']:9.4f} {totals[t]['matches']:8d}")
    writes = []
    if args.csv:
        writes.append((args.csv, "per-image rows", lambda path: write_csv(path, result.rows, columns)))
    if args.json:
        writes.append((args.json, "per-image rows, means, pooled scores and problems",
                       lambda path: write_instance_json(path, result, thresholds, summary, totals)))
    return finish(writes, result.problems)


def finish(writes, problems) -> int:
    """Write every (path, what, write) of `writes` (each atomically, see write_output), report the
    problems; exit status 1 when a write failed or there were problems, else 0."""
    failed_writes = 0
    for path, what, write in writes:
        if write_output(Path(path), write):
            print(f"{what} written to {path}")
        else:
            failed_writes += 1
    report_problems(problems)
    return 1 if failed_writes or problems else 0


def report_problems(problems):
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
