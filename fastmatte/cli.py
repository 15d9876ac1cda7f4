"""The `fastmatte` command (also `python -m fastmatte`).

    fastmatte info                      version, torch, backends present, GPU
    fastmatte bench [--res hd,4k] ...   the operators vs their eager reference, as a table
"""
import argparse
import json
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
    from fastmatte.benchmark import PRECISIONS, RESOLUTIONS, device_name, git_commit, median_ms
    from fastmatte.benchmark_attention import attention_cases
    from fastmatte.benchmark_gated_conv import gated_conv_cases
    from fastmatte.benchmark_tiles import tile_op_cases
    from fastmatte.benchmark_trimap_fusion import trimap_fusion_cases

    suites = {"tiles": tile_op_cases, "attention": attention_cases, "gated_conv": gated_conv_cases,
              "trimap_fusion": trimap_fusion_cases}

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = PRECISIONS[args.precision]
    resolutions = args.res.split(",")
    for res in resolutions:
        if res not in RESOLUTIONS:
            print(f"fastmatte bench: --res must be a comma list of {', '.join(RESOLUTIONS)}; got {res!r}",
                  file=sys.stderr)
            return 2
    for suite in args.suite.split(","):
        if suite not in suites:
            print(f"fastmatte bench: --suite must be a comma list of {', '.join(suites)}; got {suite!r}",
                  file=sys.stderr)
            return 2
    common = {"precision": args.precision, "device": device_name(device), "torch": torch.__version__,
              "commit": git_commit()}
    records = []
    print(f"device: {common['device']}   torch {common['torch']}   precision {args.precision}   "
          f"median of {args.repeats} runs (at least 5 within 10 s), synchronized")
    print(f"{'op':26s} {'res':4s} {'tiles':>6s} {'fastmatte ms':>13s} {'eager ms':>10s} {'speedup':>8s} "
          f"{'GB/s':>8s}")
    cases = ((res, case) for res in resolutions for suite in args.suite.split(",")
             for case in suites[suite](res, device, dtype))
    for res, case in cases:
        if args.ops and case.op not in args.ops.split(","):
            continue
        timings = {"fastmatte": median_ms(case.fastmatte, device, args.repeats),
                   "eager": median_ms(case.eager, device, args.repeats)}
        if device.type == "cuda" and args.compile:
            compiled = torch.compile(case.eager)
            timings["compile"] = median_ms(compiled, device, args.repeats)
        for backend, ms in timings.items():
            records.append(dict(op=case.op, resolution=res, backend=backend, median_ms=ms,
                                gbps=case.min_bytes / ms / 1e6, tiles=case.tiles, **common))
        fast = timings["fastmatte"]
        print(f"{case.op:26s} {res:4s} {case.tiles:6d} {fast:13.3f} {timings['eager']:10.3f} "
              f"{timings['eager'] / fast:7.1f}x {case.min_bytes / fast / 1e6:8.1f}"
              + (f"   compile {timings['compile']:.3f} ms" if "compile" in timings else ""))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, indent=1) + "\n")
        print(f"records written to {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastmatte", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, torch, backends present, GPU").set_defaults(run=cmd_info)
    b = sub.add_parser("bench", help="time the operators against their eager references")
    b.add_argument("--res", default="hd", help="comma list of hd, 4k (default: hd)")
    b.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if present, else cpu")
    b.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp32")
    b.add_argument("--suite", default="tiles,attention,gated_conv,trimap_fusion",
                   help="comma list of suites: tiles, attention, gated_conv, trimap_fusion (default: all)")
    b.add_argument("--ops", help="comma list of cases to time within the suites (default: all)")
    b.add_argument("--repeats", type=int, default=30, help="timed runs per figure (default 30)")
    b.add_argument("--compile", action="store_true", help="on CUDA, also time torch.compile of the reference")
    b.add_argument("--json", help="write the records (a JSON list) to this file")
    b.set_defaults(run=cmd_bench)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)
