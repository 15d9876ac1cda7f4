"""`fastmatte bench --model NAME`: the end-to-end model benchmark as a table, JSON records and a chart.

Files, in --out (default bench/results, relative to the current folder), named
<model>_<device>_<precision> with device "cpu" or "cuda": .json (the records), .md (them as a
Markdown table), .png (the chart) and, with --profile, _profile.txt. These are the benchmark's
own result files: a run that would replace them needs --force (checked before anything is
timed); nothing else is written.
"""
import json
import sys
from pathlib import Path

import torch

from fastmatte.bench.chart import write_chart
from fastmatte.bench.markdown import figure_columns, model_markdown, speedup, speedup_baselines
from fastmatte.bench.model import (DEFAULT_REPEATS, OutputMismatch, check_arguments, model_benchmark,
                                   parse_resolutions)
from fastmatte.bench.profiling import format_profile, format_stage_comparison
from fastmatte.bench.workloads import workload
from fastmatte.cli import usage_error
from fastmatte.io.atomic import output_file_problem, write_file
from fastmatte.models import WeightsError

DEFAULT_OUT = "bench/results"
OPTION_NAMES = {"model_name": "--model", "resolutions": "--res", "device": "--device",
                "precision": "--precision"}
OP_SUITE_OPTIONS = {"json": "--json", "suite": "--suite", "ops": "--ops"}


def run_model_bench(args) -> int:
    """Run model_benchmark as the bench arguments ask; exit status 2 for arguments that cannot
    run, 1 when a backend's output (fastmatte's, its CUDA graph's, onnxruntime's) does not match
    the eager model's or the model's weights file cannot be read."""
    for dest, option in OP_SUITE_OPTIONS.items():
        if getattr(args, dest) is not None:
            return usage_error("bench", f"{option} is for the op suites; with --model the records go to "
                                f"OUT/<model>_<device>_<precision>.json (choose OUT with --out)")
    if args.repeats is not None and args.repeats < 1:
        return usage_error("bench", f"--repeats must be a positive number of runs; got {args.repeats}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        resolutions = parse_resolutions(args.res, "--res")
        check_arguments(args.model, resolutions, device, args.precision, OPTION_NAMES)
    except ValueError as error:
        return usage_error("bench", str(error))
    out = Path(args.out or DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        return usage_error("bench", f"--out {out} is a file, not a folder")
    stem = out / f"{args.model}_{device.type}_{args.precision}"
    results = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    if args.profile:
        results.append(stem.with_name(stem.name + "_profile.txt"))
    for path in results:
        problem = output_file_problem(path, args.force)
        if problem:
            return usage_error("bench", problem)
    repeats = args.repeats or DEFAULT_REPEATS[device.type]
    print(f"model {args.model} ({workload(args.model).describe()}), batch 1, median of {repeats} calls (at "
          f"least 5 within 10 s), backends taking turns, synchronized")
    try:
        records = model_benchmark(args.model, resolutions, device, args.precision, repeats, args.compile,
                                  args.profile)
    except (OutputMismatch, WeightsError) as error:
        print(f"fastmatte bench: {error}", file=sys.stderr)
        return 1
    for record in records:
        record["command"] = getattr(args, "command_line", None)
    print(format_table(records))
    out.mkdir(parents=True, exist_ok=True)
    written = results[:3]
    write_file(written[0], json.dumps(records, indent=1) + "\n")
    write_file(written[1], model_markdown(records))
    write_chart(records, written[2])
    profiles = [format_profile(r["profile"], f"{r['model']} {r['resolution']} {r['backend']}")
                for r in records if "profile" in r]
    if profiles:
        text = "\n\n".join([format_stage_comparison(records)] + profiles)
        print(text)
        written.append(results[3])
        first = records[0]
        write_file(written[-1], f"device: {first['device']}   torch {first['torch']}   precision "
                                f"{first['precision']}   commit {first['commit']}\n\n{text}\n")
    print(f"written: {', '.join(map(str, written))}")
    return 0


def format_table(records) -> str:
    """Records as text: device line, then resolution, backend, the model's own figure (CRA:
    tiles; RVM: the downsample ratio; MODNet has none), ms, FPS, speedup vs eager and, where its
    records exist, vs onnxruntime (same resolution; RVM's released file, MODNet's export), max
    |alpha - eager alpha|; a failed backend shows its error."""
    first = records[0]
    figures = figure_columns(records)
    baselines = speedup_baselines(records)
    lines = [f"device: {first['device']}   torch {first['torch']}   precision {first['precision']}",
             f"{'res':10s} {'backend':11s} " + "".join(f"{title:>6s} " for _, title, _ in figures)
             + f"{'ms':>10s} {'FPS':>8s} " + "".join(f"{'vs ' + b:>{len(b) + 3}s} " for b in baselines)
             + f"{'max|diff|':>10s}"]
    for r in records:
        head = f"{r['resolution']:10s} {r['backend']:11s}"
        if r["ms_median"] is None:
            lines.append(f"{head} failed: {r['error']}")
            continue
        lines.append(f"{head} " + "".join(f"{r[key]:6{fmt}} " for key, _, fmt in figures)
                     + f"{r['ms_median']:10.2f} {r['fps_median']:8.2f} "
                     + "".join(f"{speedup(records, r, b):>{len(b) + 3}s} " for b in baselines)
                     + f"{r['max_abs_diff_vs_eager']:10.2g}")
    return "\n".join(lines)
