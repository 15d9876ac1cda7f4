"""Benchmarks (what `fastmatte bench` and the pytest-benchmark suites in bench/ run): the cases
per operator suite against their eager references (attention, gated_conv, metrics, tiles,
trimap_fusion, window_attention; cases.py says what a case is), the end-to-end model benchmark
(model.py) with each zoo model's workload (workloads/), timing (timing.py), per-stage profiles
(profiling.py), and the records as Markdown tables (markdown.py) and bar charts (chart.py)."""
