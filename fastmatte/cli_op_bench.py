"""`fastmatte bench` without --model: every operator case against its eager reference.

The run first times a plain device copy; its GB/s is the memory-bandwidth floor, and each
record's `floor_ratio` is the case's time over the time that copy speed allows for the case's
fewest bytes (1.0 would be running at memory speed). --json writes the records, and a Markdown
table of them beside it (same name, .md).
"""
import json
import sys
from pathlib import Path

import torch

from fastmatte.benchmark import (PRECISIONS, RESOLUTIONS, copy_bandwidth_gbps, device_name, git_commit,
                                 median_ms)
from fastmatte.benchmark_markdown import ops_markdown

DEFAULT_SUITES = "tiles,attention,window_attention,gated_conv,trimap_fusion"


def suites():
    from fastmatte.benchmark_attention import attention_cases
    from fastmatte.benchmark_gated_conv import gated_conv_cases
    from fastmatte.benchmark_metrics import metric_cases
    from fastmatte.benchmark_tiles import tile_op_cases
    from fastmatte.benchmark_trimap_fusion import trimap_fusion_cases
    from fastmatte.benchmark_window_attention import window_attention_cases

    return {"tiles": tile_op_cases, "attention": attention_cases,
            "window_attention": window_attention_cases, "gated_conv": gated_conv_cases,
            "trimap_fusion": trimap_fusion_cases, "metrics": metric_cases}


def cmd_bench_ops(args) -> int:
    for option, given in (("--profile", args.profile), ("--out", args.out is not None)):
        if given:
            return usage_error(f"{option} applies with --model only")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        return usage_error("--device cuda, but no CUDA GPU is available")
    repeats = 30 if args.repeats is None else args.repeats
    if repeats < 1:
        return usage_error(f"--repeats must be a positive number of runs; got {repeats}")
    resolutions = args.res.split(",")
    if any(res not in RESOLUTIONS for res in resolutions):
        return usage_error(f"--res must be a comma list of {', '.join(RESOLUTIONS)}; got {args.res!r}")
    cases_of = suites()
    suite_names = (args.suite or DEFAULT_SUITES).split(",")
    if any(suite not in cases_of for suite in suite_names):
        return usage_error(f"--suite must be a comma list of {', '.join(cases_of)}; got {args.suite!r}")
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
        path.write_text(json.dumps(records, indent=1) + "\n")
        path.with_suffix(".md").write_text(ops_markdown(records))
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


def usage_error(message) -> int:
    """Say what is wrong with the bench arguments; exit status 2 (shared with `bench --model`)."""
    print(f"fastmatte bench: {message}", file=sys.stderr)
    return 2
