"""Timing shared by `fastmatte bench` and the pytest-benchmark suites.

Figures are medians of many runs with the device synchronized inside every timed call, and
every fastmatte figure is reported next to the eager reference measured in the same run.
"""
import statistics
import subprocess
import time
from pathlib import Path

import torch

def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, repeats=30, warmup=2, budget_s=10.0) -> float:
    """Median wall time of fn() in milliseconds, the device synchronized around every call:
    `repeats` timed runs, or fewer (at least 5) once they have taken `budget_s` seconds, so
    that a slow eager reference does not stretch a run to many minutes."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    while len(times) < repeats and (len(times) < 5 or sum(times) < budget_s * 1e3):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


COPY_BYTES = 256 * 2**20  # far beyond any cache, so the copy runs at memory speed


def copy_bandwidth_gbps(device: torch.device, repeats=30) -> float:
    """GB/s of a plain device-to-device copy of COPY_BYTES (read once, written once), timed
    like the ops: the memory-bandwidth floor that the ops' GB/s are compared with."""
    src = torch.ones(COPY_BYTES // 4, device=device)
    dst = torch.empty_like(src)
    return 2 * COPY_BYTES / median_ms(lambda: dst.copy_(src), device, repeats) / 1e6
