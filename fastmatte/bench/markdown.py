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
    return line + (f"; measured by `{command}`" if command else "")


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


def model_markdown(records) -> str:
    """One row per resolution and backend: tiles refined, ms, FPS, speedup over eager and over
    torch.compile (when timed), and the largest difference from the eager model's alpha."""
    lines = [_provenance(records), "",
             "| resolution | backend | tiles | ms | FPS | vs eager | vs compile | max abs diff vs eager |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    reference = {(r["resolution"], r["backend"]): r["ms_median"] for r in records}
    for r in records:
        if r["ms_median"] is None:
            lines.append(f"| {r['resolution']} | {r['backend']} | - | failed: {r['error']} | | | | |")
            continue
        ratios = []
        for other in ("eager", "compile"):
            ms = reference.get((r["resolution"], other))
            ratios.append(f"{ms / r['ms_median']:.2f}x" if ms else "-")
        lines.append(f"| {r['resolution']} | {r['backend']} | {r['tiles']} | {r['ms_median']:.2f} | "
                     f"{r['fps_median']:.1f} | {ratios[0]} | {ratios[1]} | "
                     f"{_number(r['max_abs_diff_vs_eager'], '.1e')} |")
    return "\n".join(lines) + "\n"


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
