"""The CRA model end to end, batch 1: fastmatte vs the same model with backend="torch" (eager)
and, on CUDA, vs torch.compile of the eager model, on the inputs of `fastmatte bench --model cra`
(random weights from a fixed seed, a fixed portrait trimap). HD in fp32 on the CPU; HD and 4K in
fp16 on CUDA.

Run with `python -m pytest bench/test_model.py` (CPU always, CUDA where present). Each group
holds the backends of one resolution and device, so pytest-benchmark's table shows their ratio.
4K on the CPU is skipped unless FASTMATTE_BENCH_CPU_4K=1: its eager reference takes seconds a
frame. Every timed backend is first checked against the eager model's alpha."""
import functools
import os

import pytest
import torch

from fastmatte.bench.timing import synchronize
from fastmatte.matter import PRECISIONS
from fastmatte.bench.model import (DIFF_TOLERANCE, forward_fn, frame_size, max_abs_diff, model_inputs,
                                       prepare_model)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PRECISION = {"cpu": "fp32", "cuda": "fp16"}
ROUNDS = {"cpu": 5, "cuda": 50}


@functools.lru_cache(maxsize=None)
def model(device):
    return prepare_model("cra", device, PRECISIONS[PRECISION[device]])


@functools.lru_cache(maxsize=None)
def inputs(resolution, device):
    height, width, _ = frame_size(resolution)
    return model_inputs(height, width, device, PRECISIONS[PRECISION[device]])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resolution", ["hd", "4k"])
@pytest.mark.parametrize("backend", ["fastmatte", "eager", "compile"])
def test_model(benchmark, backend, resolution, device):
    if device == "cpu" and resolution == "4k" and os.environ.get("FASTMATTE_BENCH_CPU_4K") != "1":
        pytest.skip("4K on the CPU: set FASTMATTE_BENCH_CPU_4K=1")
    if device == "cpu" and backend == "compile":
        pytest.skip("compile is timed on CUDA only here; on the CPU: fastmatte bench --model cra --compile")
    dev, precision = torch.device(device), PRECISION[device]
    frame = inputs(resolution, device)
    with torch.inference_mode():
        run = forward_fn(model(device), backend, frame)
        out = run()  # compiles the compile backend
        # a benchmark of a model that computes something else is worthless
        diff = max_abs_diff(out["alpha"], forward_fn(model(device), "eager", frame)()["alpha"])
        assert diff <= DIFF_TOLERANCE[precision]
        benchmark.group = f"cra {resolution} {device} {precision}"
        benchmark.extra_info.update(tiles=int(out["selection"].count.sum()), max_abs_diff_vs_eager=diff)

        def timed():
            run()
            synchronize(dev)

        benchmark.pedantic(timed, rounds=ROUNDS[device], warmup_rounds=2)
