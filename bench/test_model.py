"""The zoo models end to end, batch 1, on the inputs of `fastmatte bench --model` (each model's
workload, fastmatte.bench.workloads), fp32 on the CPU, fp16 on CUDA:

- CRA (random weights from a fixed seed, a fixed portrait trimap): fastmatte vs the same model
  with backend="torch" (eager) and, on CUDA, vs torch.compile of the eager model; HD, and 4K.
- RVM (its released weights when fetched, else random ones; each timed call the next frame of
  the astronaut pan clip, the state carried): fastmatte vs eager vs onnxruntime running the
  released ONNX file (fp32 only, so skipped in fp16 on CUDA, and skipped without onnxruntime
  or the released weights, saying why); HD.
- MODNet (random weights from a fixed seed, BatchNorm statistics measured on a photo; every timed
  call predict on the astronaut photo, the official recipe's resizes around the network, which
  runs at 512 x 896 at HD and 4K): fastmatte vs eager vs onnxruntime running an ONNX export of the
  eager network between the same resizes (fp32 only, so skipped in fp16 on CUDA, and skipped
  without onnxruntime, saying why) and, on CUDA, vs torch.compile of the eager predict; HD and 4K.

Run with `python -m pytest bench/test_model.py` (CPU always, CUDA where present). Each group
holds the backends of one model, resolution and device, so pytest-benchmark's table shows their
ratio. 4K on the CPU is skipped unless FASTMATTE_BENCH_CPU_4K=1: CRA's eager reference takes
seconds a frame. Every timed backend is first checked against the eager model's alpha over the
workload's first frames, and warmed up (fastmatte.bench.model.check_backend)."""
import functools
import os

import pytest
import torch

from fastmatte.bench.model import check_backend, frame_size, reference_alphas
from fastmatte.bench.timing import synchronize
from fastmatte.bench.workloads import workload
from fastmatte.matter import PRECISIONS

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PRECISION = {"cpu": "fp32", "cuda": "fp16"}
ROUNDS = {"cpu": 5, "cuda": 50}


@functools.lru_cache(maxsize=None)
def prepared(model_name, device):
    """(the model's workload, its model on the device in the device's precision)."""
    work = workload(model_name)
    return work, work.prepare(device, PRECISIONS[PRECISION[device]])


@functools.lru_cache(maxsize=None)
def inputs(model_name, resolution, device):
    height, width, _ = frame_size(resolution)
    return prepared(model_name, device)[0].inputs(height, width, device, PRECISIONS[PRECISION[device]])


@functools.lru_cache(maxsize=None)
def reference(model_name, resolution, device):
    """The eager model's alphas over the workload's checked frames."""
    work, model = prepared(model_name, device)
    with torch.inference_mode():
        return reference_alphas(work.runner(model, "eager", inputs(model_name, resolution, device)),
                                work.check_frames)


def time_backend(benchmark, model_name, backend, resolution, device):
    work, model = prepared(model_name, device)
    dev, precision, frame = torch.device(device), PRECISION[device], inputs(model_name, resolution, device)
    with torch.inference_mode():
        run = work.runner(model, backend, frame)
        # a benchmark of a model that computes something else is worthless: OutputMismatch fails
        figures, out = check_backend(run, backend, reference(model_name, resolution, device), dev,
                                     work.tolerance(backend, precision), resolution)
        if figures["error"] and backend == "onnxruntime":  # optional: not installed, fp16, RVM's weights
            pytest.skip(figures["error"])
        assert figures["error"] is None, figures["error"]
        benchmark.group = f"{model_name} {resolution} {device} {precision}"
        benchmark.extra_info.update(max_abs_diff_vs_eager=figures["max_abs_diff_vs_eager"],
                                    **work.figures(frame), **work.output_figures(out))

        def timed():
            run()
            synchronize(dev)

        benchmark.pedantic(timed, rounds=ROUNDS[device], warmup_rounds=2)


def skip_slow_on_cpu(model_name, backend, resolution, device):
    """On the CPU: 4K only with FASTMATTE_BENCH_CPU_4K=1, and no torch.compile (minutes of compiling)."""
    if device == "cpu" and resolution == "4k" and os.environ.get("FASTMATTE_BENCH_CPU_4K") != "1":
        pytest.skip("4K on the CPU: set FASTMATTE_BENCH_CPU_4K=1")
    if device == "cpu" and backend == "compile":
        pytest.skip(f"compile is timed on CUDA only here; on the CPU: fastmatte bench --model {model_name} "
                    f"--compile")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resolution", ["hd", "4k"])
@pytest.mark.parametrize("backend", ["fastmatte", "eager", "compile"])
def test_model(benchmark, backend, resolution, device):
    skip_slow_on_cpu("cra", backend, resolution, device)
    time_backend(benchmark, "cra", backend, resolution, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["fastmatte", "eager", "onnxruntime"])
def test_rvm(benchmark, backend, device):
    time_backend(benchmark, "rvm", backend, "hd", device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resolution", ["hd", "4k"])
@pytest.mark.parametrize("backend", ["fastmatte", "eager", "compile", "onnxruntime"])
def test_modnet(benchmark, backend, resolution, device):
    skip_slow_on_cpu("modnet", backend, resolution, device)
    time_backend(benchmark, "modnet", backend, resolution, device)
