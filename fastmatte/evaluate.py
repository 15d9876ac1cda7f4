"""`fastmatte eval`: the metrics of a folder of predicted mattes against a folder of ground truths.

Files are matched by name without extension (pred/a.png with gt/a.jpg); a problem with one
image (no prediction, no ground truth, no trimap, an unreadable file, different sizes, two
files of one name) is recorded and the run goes on.
"""
import csv
import json
import math
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

from fastmatte import metrics
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
