"""Tile operators (select, gather, scatter, and their chains) at HD and 4K vs eager PyTorch.

Run with `python -m pytest bench -k hd` (CPU always, CUDA where present). Each group holds
fastmatte and the eager reference of one op at one resolution, so pytest-benchmark's table
shows their ratio (the figures in parentheses)."""
import functools

import pytest
import torch

from fastmatte.benchmark import synchronize
from fastmatte.benchmark_tiles import tile_op_cases

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
OPS = ["select_tiles", "gather_tiles", "scatter_tiles", "gather+scatter", "select+gather+scatter"]


@functools.lru_cache(maxsize=None)
def cases(resolution, device):
    return {case.op: case for case in tile_op_cases(resolution, device)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("resolution", ["hd", "4k"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("impl", ["fastmatte", "eager"])
def test_tile_op(benchmark, impl, op, resolution, device):
    case = cases(resolution, device)[op]
    fn = case.fastmatte if impl == "fastmatte" else case.eager
    benchmark.group = f"{op} {resolution} {device}"
    benchmark.extra_info.update(tiles=case.tiles, min_bytes=case.min_bytes)
    dev = torch.device(device)

    def timed():
        fn()
        synchronize(dev)

    benchmark.pedantic(timed, rounds=20, warmup_rounds=2)
