"""Timing and synthetic inputs shared by `fastmatte bench` and the pytest-benchmark suites.

Figures are medians of many runs with the device synchronized inside every timed call, and
every fastmatte figure is reported next to the eager reference measured in the same run.
"""
import math
import statistics
import subprocess
import time
from pathlib import Path

import torch

RESOLUTIONS = {"hd": (1080, 1920), "4k": (2160, 3840)}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


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


def portrait_trimap(height, width, tile=8, band=0.018, batch=1, device="cpu", dtype=torch.float32,
                    seed=0):
    """3-class logits on the tile grid [B, 3, H/t, W/t] of a head-and-shoulders silhouette:
    class 0 (foreground) inside, 2 (background) outside, 1 (unknown) in a band around the
    outline `band` x the grid height wide on each side, roughened like hair. About 5-10% of
    tiles are unknown at HD/4K."""
    h, w = height // tile, width // tile
    band = band * h
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(h, dtype=torch.float32).view(h, 1)
    x = torch.arange(w, dtype=torch.float32).view(1, w)
    cx, scale = w / 2, h / 10
    head = ((x - cx) / (2.2 * scale)) ** 2 + ((y - 3.6 * scale) / (2.8 * scale)) ** 2
    body = ((x - cx) / (4.8 * scale)) ** 2 + ((y - 11.5 * scale) / (5.0 * scale)) ** 2
    inside = torch.minimum(head, body)  # < 1 inside the silhouette
    # distance to the outline in tiles, roughly: (value - 1) times the local radius
    distance = (inside.sqrt() - 1) * 2.5 * scale
    distance = distance + torch.rand(h, w, generator=gen) * band * 1.5 * (y < 5 * scale)
    logits = torch.randn(batch, 3, h, w, generator=gen) * 0.3
    unknown = distance.abs() < band
    logits[:, 0] += torch.where(~unknown & (distance < 0), 3.0, 0.0)
    logits[:, 2] += torch.where(~unknown & (distance >= 0), 3.0, 0.0)
    logits[:, 1] += torch.where(unknown, 3.0, 0.0)
    return logits.to(device=device, dtype=dtype)


def capacity_for(candidates: int) -> int:
    """A fixed capacity with headroom, as a video pipeline would set it: next multiple of 1024
    above 1.25 x the tiles seen."""
    return max(1024, math.ceil(candidates * 1.25 / 1024) * 1024)


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
