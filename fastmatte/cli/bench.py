"""`fastmatte bench`: every operator case against its eager reference (with --model, the model
benchmark of fastmatte.cli.bench_model). Result files that exist already are replaced only with
--force, and whether they can be written is checked before anything is timed.

The run first times a plain device copy; its GB/s is the memory-bandwidth floor, and each
record's `floor_ratio` is the case's time over the time that copy speed allows for the case's
fewest bytes (1.0 would be running at memory speed). --json writes the records, and a Markdown
table of them beside it (same name, .md).
"""
import argparse
import json
from pathlib import Path

import torch

from fastmatte.bench.cases import RESOLUTIONS
from fastmatte.bench.markdown import ops_markdown
from fastmatte.bench.timing import copy_bandwidth_gbps, device_name, git_commit, median_ms
from fastmatte.cli import usage_error
from fastmatte.io.atomic import output_file_problem, write_file
from fastmatte.matter import PRECISIONS

DEFAULT_SUITES = ("tiles,attention,window_attention,gated_conv,trimap_fusion,guided_upsample,ibnorm,"
                  "resize_concat,area_resize")


def suites():
    from fastmatte.bench.area_resize import area_resize_cases
    from fastmatte.bench.attention import attention_cases
    from fastmatte.bench.gated_conv import gated_conv_cases
    from fastmatte.bench.guided_upsample import guided_upsample_cases
    from fastmatte.bench.ibnorm import ibnorm_cases
    from fastmatte.bench.metrics import metric_cases
    from fastmatte.bench.resize_concat import resize_concat_cases
    from fastmatte.bench.tiles import tile_op_cases
    from fastmatte.bench.trimap_fusion import trimap_fusion_cases
    from fastmatte.bench.window_attention import window_attention_cases

    return {"tiles": tile_op_cases, "attention": attention_cases,
            "window_attention": window_attention_cases, "gated_conv": gated_conv_cases,
            "trimap_fusion": trimap_fusion_cases, "guided_upsample": guided_upsample_cases,
            "ibnorm": ibnorm_cases, "resize_concat": resize_concat_cases, "area_resize": area_resize_cases,
            "metrics": metric_cases}


def add_parser(sub):
    b = sub.add_parser("bench", help="time the operators (or with --model, a whole model) against their "
                                     "eager references")
    b.add_argument("--model", help="time this zoo model end to end (cra, e2ehim, modnet, ppmatting, "
                                   "ppmattingv2, rvm) instead of the op suites: writes "
                                   "OUT/<model>_<device>_<precision>.json, .md and .png")
    b.add_argument("--res", default="hd", help="comma list of hd, 4k (default: hd); with --model also "
                                               "HEIGHTxWIDTH sizes, e.g. 64x96")
    b.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present, else cpu")
    b.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    b.add_argument("--suite", help="comma list of suites: tiles, attention, window_attention, gated_conv, "
                                   "trimap_fusion, guided_upsample, ibnorm, resize_concat, area_resize, "
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
                        "and eager forwards, also written to OUT/<model>_<device>_<precision>_profile.txt")
    b.add_argument("--out", help="with --model: the results folder (default bench/results)")
    b.add_argument("--force", action="store_true",
                   help="replace result files that exist already (checked before anything is timed)")
    b.set_defaults(run=run)


def run(args) -> int:
    if args.model:
        from fastmatte.cli.bench_model import run_model_bench

        return run_model_bench(args)
    return run_op_bench(args)


def run_op_bench(args) -> int:
    for option, given in (("--profile", args.profile), ("--out", args.out is not None)):
        if given:
            return usage_error("bench", f"{option} applies with --model only")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        return usage_error("bench", "--device cuda, but no CUDA GPU is available")
    repeats = 30 if args.repeats is None else args.repeats
    if repeats < 1:
        return usage_error("bench", f"--repeats must be a positive number of runs; got {repeats}")
    resolutions = args.res.split(",")
    if any(res not in RESOLUTIONS for res in resolutions):
        return usage_error("bench", f"--res must be a comma list of {', '.join(RESOLUTIONS)}; "
                                    f"got {args.res!r}")
    if args.json:
        for path in (Path(args.json), Path(args.json).with_suffix(".md")):
            problem = output_file_problem(path, args.force)
            if problem:
                return usage_error("bench", f"--json: {problem}")
    cases_of = suites()
    suite_names = (args.suite or DEFAULT_SUITES).split(",")
    if any(suite not in cases_of for suite in suite_names):
        return usage_error("bench", f"--suite must be a comma list of {', '.join(cases_of)}; "
                                    f"got {args.suite!r}")
    common = {"precision": args.precision, "device": device_name(device), "torch": torch.__version__,
              "commit": git_commit(), "command": getattr(args, "command_line", None)}
    copy_gbps = copy_bandwidth_gbps(device, repeats)
    records = [dict(op="device copy", resolution="-", backend="reference", median_ms=None, gbps=copy_gbps,
                    floor_ratio=1.0, tiles=0, **common)]
    print(f"device: {common['device']}   torch {common['torch']}   precision {args.precision}   "
          f"median of {repeats} runs (at least 5 within 10 s), synchronized")
    print(f"memory-bandwidth floor: a device copy runs at {copy_gbps:.1f} GB/s; 'x floor' is each time "
          "over the time its fewest bytes take at that speed")
    if "metrics" in suite_names:
        print("metrics suite: uint8 inputs (precision unused); its 'eager' column is a NumPy/SciPy "
              "implementation on the CPU")
    print(f"{'op':26s} {'res':4s} {'tiles':>6s} {'fastmatte ms':>13s} {'eager ms':>10s} {'speedup':>8s} "
          f"{'GB/s':>8s} {'x floor':>8s}")
    dtype = PRECISIONS[args.precision]
    wanted = args.ops.split(",") if args.ops else None
    for res in resolutions:
        for suite in suite_names:
            for case in cases_of[suite](res, device, dtype):
                if wanted is None or case.op in wanted:
                    records += time_case(case, res, device, repeats, args.compile, copy_gbps, common)
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, json.dumps(records, indent=1) + "\n")  # replaces: checked (and --force) above
        write_file(path.with_suffix(".md"), ops_markdown(records))
        print(f"records written to {path} (table: {path.with_suffix('.md')})")
    return 0


def time_case(case, res, device, repeats, compile_reference, copy_gbps, common):
    """Time one case's backends, print its row, and return its records."""
    timings = {"fastmatte": median_ms(case.fastmatte, device, repeats),
               "eager": median_ms(case.eager, device, repeats)}
    compiled = ""
    if compile_reference:
        try:
            timings["compile"] = median_ms(torch.compile(case.eager), device, repeats)
            compiled = f"   compile {timings['compile']:.3f} ms"
        except Exception as error:  # torch.compile's failure is a result to report, not a crash
            compiled = f"   compile failed: {type(error).__name__}: {error}".splitlines()[0][:300]
    records = []
    for backend, ms in timings.items():
        gbps = case.min_bytes / ms / 1e6
        records.append(dict(op=case.op, resolution=res, backend=backend, median_ms=ms, gbps=gbps,
                            floor_ratio=copy_gbps / gbps, tiles=case.tiles, **common))
    fast = records[0]
    print(f"{case.op:26s} {res:4s} {case.tiles:6d} {fast['median_ms']:13.3f} {timings['eager']:10.3f} "
          f"{timings['eager'] / fast['median_ms']:7.1f}x {fast['gbps']:8.1f} {fast['floor_ratio']:7.1f}x"
          + compiled)
    return records
