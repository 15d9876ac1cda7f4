"""Markdown tables of benchmark records, as committed beside their JSON under bench/results/.

    python -m fastmatte.bench.markdown RECORDS.json...   writes RECORDS.md beside each

Operator records (`fastmatte bench`) and model records (`fastmatte bench --model`) are told
apart by their `model` key. Each table starts with what makes its figures comparable: device,
torch, precision, commit and the command that measured them.
"""
import json
import sys
from pathlib import Path

from fastmatte.io.atomic import write_file


def _provenance(records) -> str:
    first = records[0]
    line = (f"device {first['device']}, torch {first['torch']}, precision {first['precision']}, "
            f"commit {first['commit'] or 'unknown'}")
    command = first.get("command")
    return line + (f"; measured by `{command}`" if command else "") + _workload(first)


def _workload(record) -> str:
    """What a zoo model's records ran on: weights, the photo or clip, and onnxruntime."""
    if "clip" in record:
        return (f". {record['weights'].capitalize()} weights; each call is the next frame of a pan across "
                f"the {record['clip']} photo, the state carried; onnxruntime "
                f"{record['onnxruntime'] or 'not installed'}")
    if "photo" in record:
        variant = f"; variant {record['variant']}" if "variant" in record else ""
        ort = f"; onnxruntime {record['onnxruntime'] or 'not installed'}" if "onnxruntime" in record else ""
        return (f". {record['weights'].capitalize()} weights{variant}; the {record['photo']} photo, network "
                f"input {record['network']}{ort}")
    return ""


def _number(value, fmt) -> str:
    return "-" if value is None else format(value, fmt)


def ops_markdown(records) -> str:
    """One row per case and resolution: the fastmatte time, the eager (and torch.compile, when
    timed) reference, speedups, fastmatte's GB/s and its time over the bandwidth floor."""
    copies = [r for r in records if r["backend"] == "reference"]
    by_case = {}
    for r in records:
        if r["backend"] != "reference":
            by_case.setdefault((r["op"], r["resolution"]), {})[r["backend"]] = r
    lines = [_provenance(records), ""]
    if copies:
        lines += [f"Memory-bandwidth floor: a device copy at {copies[0]['gbps']:.1f} GB/s; 'x floor' is the "
                  "fastmatte time over the time the case's fewest bytes take at that speed.", ""]
    lines += ["| op | res | tiles | fastmatte ms | eager ms | compile ms | vs eager | vs compile | GB/s | "
              "x floor |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (op, res), backends in by_case.items():
        fast, eager, compiled = (backends.get(b) for b in ("fastmatte", "eager", "compile"))
        ms = {name: r["median_ms"] if r else None for name, r in (("eager", eager), ("compile", compiled))}
        speedups = [_number(t / fast["median_ms"] if t else None, ".1f") + ("x" if t else "")
                    for t in ms.values()]
        lines.append(f"| {op} | {res} | {fast['tiles']} | {fast['median_ms']:.3f} | "
                     f"{_number(ms['eager'], '.3f')} | {_number(ms['compile'], '.3f')} | {speedups[0]} | "
                     f"{speedups[1]} | {fast['gbps']:.1f} | {_number(fast.get('floor_ratio'), '.2f')} |")
    return "\n".join(lines) + "\n"


# A model's own per-record figure, shown after the backend: record key -> (column title, format)
FIGURE_COLUMNS = {"tiles": ("tiles", "d"), "downsample_ratio": ("ratio", ".4g")}


def figure_columns(records) -> list[tuple[str, str, str]]:
    """(key, title, format) of the FIGURE_COLUMNS the records have."""
    return [(key, *FIGURE_COLUMNS[key]) for key in FIGURE_COLUMNS if key in records[0]]


def speedup_baselines(records, always=("eager",)) -> list[str]:
    """The backends each row's speed is compared with: `always`, and onnxruntime where a record
    of it exists."""
    return list(always) + ["onnxruntime"] * any(r["backend"] == "onnxruntime" for r in records)


def speedup(records, record, baseline) -> str:
    """"1.23x": the baseline backend's ms at the record's resolution over the record's ("-"
    when either has no figure)."""
    ms = next((r["ms_median"] for r in records
               if r["backend"] == baseline and r["resolution"] == record["resolution"]), None)
    return f"{ms / record['ms_median']:.2f}x" if ms and record["ms_median"] else "-"


def model_markdown(records) -> str:
    """One row per resolution and backend: the model's own figure (CRA: tiles refined; RVM:
    the downsample ratio), ms, FPS, speedup over eager, over torch.compile (when timed) and
    over onnxruntime (a column only where its records exist), and the largest difference from
    the eager model's alpha."""
    figures = figure_columns(records)
    baselines = speedup_baselines(records, ("eager", "compile"))
    head = ["resolution", "backend", *(title for _, title, _ in figures), "ms", "FPS",
            *(f"vs {b}" for b in baselines), "max abs diff vs eager"]
    lines = [_provenance(records), "", _row(head), _row(["---"] * 2 + ["---:"] * (len(head) - 2))]
    for r in records:
        cells = [r["resolution"], r["backend"], *(_number(r.get(key), fmt) for key, _, fmt in figures)]
        if r["ms_median"] is None:
            failed = "failed: " + r["error"].replace("|", "\\|")
            cells += [failed] + [""] * (len(head) - len(cells) - 1)
        else:
            ratios = [speedup(records, r, baseline) for baseline in baselines]
            cells += [f"{r['ms_median']:.2f}", f"{r['fps_median']:.1f}", *ratios,
                      _number(r["max_abs_diff_vs_eager"], ".1e")]
        lines.append(_row(cells))
    return "\n".join(lines) + "\n"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(records) -> str:
    return model_markdown(records) if "model" in records[0] else ops_markdown(records)


def main(paths) -> int:
    if not paths:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    for name in paths:
        path = Path(name)
        write_file(path.with_suffix(".md"), markdown(json.loads(path.read_text())))
        print(f"wrote {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
