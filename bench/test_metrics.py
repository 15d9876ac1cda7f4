"""The matting metrics at HD and 4K: fastmatte vs a NumPy/SciPy implementation of the same
DIM definitions (fastmatte/bench/metrics.py). Run with `python -m pytest bench/test_metrics.py
-k hd`; each group pairs fastmatte with NumPy/SciPy ("eager") for one metric, resolution and
device. Fewer rounds than bench/test_ops.py: the NumPy side takes seconds per call at 4K."""
import functools

import pytest
import torch

from fastmatte.bench.timing import synchronize
from fastmatte.bench.metrics import metric_cases

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
METRICS = ["metric sad", "metric mse", "metric grad", "metric conn", "metric sad+mse+grad+conn"]


@functools.lru_cache(maxsize=None)
def cases(resolution, device):
    return {case.op: case for case in metric_cases(resolution, device)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resolution", ["hd", "4k"])
@pytest.mark.parametrize("op", METRICS)
@pytest.mark.parametrize("impl", ["fastmatte", "eager"])
def test_metric(benchmark, impl, op, resolution, device):
    case = cases(resolution, device)[op]
    fn = case.fastmatte if impl == "fastmatte" else case.eager
    benchmark.group = f"{op} {resolution} {device}"
    benchmark.extra_info.update(min_bytes=case.min_bytes, eager="NumPy/SciPy on the CPU")
    dev = torch.device(device)

    def timed():
        fn()
        synchronize(dev)

    benchmark.pedantic(timed, rounds=5, warmup_rounds=1)
