import re

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import select_tiles
from helpers import DTYPES, backend_params, needs_cuda

BACKENDS = backend_params(triton=False)


def assert_same_selection(got, want):
    for name, g, w in zip(("tiles", "count", "tile_map", "candidates"), got, want):
        assert g.dtype == torch.int32, name
        assert torch.equal(g.cpu(), w.cpu()), f"{name} differs:\n{g}\nvs\n{w}"


def assert_consistent(sel, trimap, capacity, unknown_class=1):
    """Properties that hold for any correct selection, checked without the reference."""
    tiles, count, tile_map, candidates = (t.cpu() for t in sel)
    trimap = trimap.float().cpu()
    n = int(count)
    is_cand = trimap.argmax(1) == unknown_class
    assert int(candidates) == int(is_cand.sum())
    assert n == min(int(candidates), capacity)
    assert (tiles[n:] == -1).all()
    kept = tiles[:n].long()
    assert is_cand[kept[:, 0], kept[:, 1], kept[:, 2]].all()
    raster = (kept[:, 0] * tile_map.shape[1] + kept[:, 1]) * tile_map.shape[2] + kept[:, 2]
    assert (raster[1:] > raster[:-1]).all(), "rows must be in raster order"
    assert torch.equal(tile_map[kept[:, 0], kept[:, 1], kept[:, 2]], torch.arange(n, dtype=torch.int32))
    assert int((tile_map >= 0).sum()) == n
    score = trimap[:, unknown_class]
    dropped = is_cand & (tile_map < 0)
    if n and dropped.any():
        assert score[kept[:, 0], kept[:, 1], kept[:, 2]].min() >= score[dropped].max()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 3, 5, 7), (3, 3, 17, 31), (1, 4, 9, 2)])
@pytest.mark.parametrize("capacity_fraction", [0.0, 0.1, 0.34, 1.0, 2.0])
def test_matches_reference(device, backend, shape, capacity_fraction):
    trimap = torch.randn(shape, device=device)
    capacity = int(capacity_fraction * shape[0] * shape[2] * shape[3])
    got = select_tiles(trimap, capacity, backend=backend)
    assert_same_selection(got, reference.select_tiles(trimap, capacity))
    assert_consistent(got, trimap, capacity)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes(device, backend, dtype):
    trimap = torch.randn(2, 3, 13, 11, device=device).to(dtype)
    got = select_tiles(trimap, 20, backend=backend)
    assert_same_selection(got, reference.select_tiles(trimap, 20))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_ties_cut_in_raster_order(device, backend):
    # Few distinct scores, many candidates: the capacity cut falls inside a run of equal scores.
    trimap = torch.zeros(2, 3, 9, 10, device=device)
    trimap[:, 1] = torch.randint(1, 4, (2, 9, 10), device=device).float()
    trimap[:, 0] = torch.where(torch.rand(2, 9, 10, device=device) < 0.2, 9.0, 0.0)
    trimap[:, 2] = trimap[:, 1]  # argmax ties between class 1 and 2: the first (1) wins
    got = select_tiles(trimap, 37, backend=backend)
    assert_same_selection(got, reference.select_tiles(trimap, 37))
    assert_consistent(got, trimap, 37)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_no_candidates_and_all_candidates(device, backend):
    none = torch.tensor([5.0, 1.0, 0.0], device=device).view(1, 3, 1, 1).expand(2, 3, 6, 7)
    sel = select_tiles(none, 10, backend=backend)
    assert int(sel.count) == 0 and int(sel.candidates) == 0
    assert (sel.tiles == -1).all() and (sel.tile_map == -1).all()

    every = torch.tensor([0.0, 1.0, 0.0], device=device).view(1, 3, 1, 1).expand(2, 3, 6, 7)
    sel = select_tiles(every, 84, backend=backend)
    assert int(sel.count) == 84 and int(sel.candidates) == 84
    assert torch.equal(sel.tile_map.flatten().cpu(), torch.arange(84, dtype=torch.int32))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_argmax_is_exact(device, backend):
    # Logits that differ only beyond float32 precision still have a unique maximum.
    trimap = torch.zeros(1, 3, 2, 2, dtype=torch.float64, device=device)
    trimap[0, 0] = 1.0
    trimap[0, 1] = 1.0 + 1e-12
    sel = select_tiles(trimap, 4, backend=backend)
    assert int(sel.candidates) == 4
    assert_same_selection(sel, reference.select_tiles(trimap, 4))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_nan_follows_torch_argmax_and_sort(device, backend):
    trimap = torch.randn(1, 3, 6, 6, device=device)
    trimap[0, 1, 2, 3] = float("nan")  # NaN wins the argmax and ranks highest
    trimap[0, 0, 4, 4] = float("nan")  # a NaN in another class makes that tile not a candidate
    got = select_tiles(trimap, 3, backend=backend)
    assert_same_selection(got, reference.select_tiles(trimap, 3))
    assert int(got.tile_map[0, 2, 3]) >= 0 and int(got.tile_map[0, 4, 4]) == -1


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_input_is_accepted(device, backend):
    trimap = torch.randn(2, 7, 5, 3, device=device).permute(0, 3, 2, 1)  # [2, 3, 5, 7] view
    assert not trimap.is_contiguous()
    assert_same_selection(select_tiles(trimap, 9, backend=backend), reference.select_tiles(trimap, 9))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    trimap = torch.randn(2, 3, 5, 7, device=device)
    torch.library.opcheck(torch.ops.fastmatte.select_tiles.default, (trimap, 6, 1))


@pytest.mark.parametrize(
    "args,message",
    [
        ((torch.randn(3, 5, 7), 4), r"trimap must be 4-D \[B, classes, h, w\], got \[3, 5, 7\]"),
        ((torch.zeros(1, 3, 5, 7, dtype=torch.int64), 4), "trimap must be a floating-point tensor"),
        ((torch.randn(1, 3, 5, 7), -1), r"capacity must be an int in \[0, 2\*\*31 - 1\], got -1"),
        ((torch.randn(1, 3, 5, 7), 4, 3), r"unknown_class must be an int in \[0, classes - 1 = 2\], got 3"),
    ],
)
def test_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        select_tiles(*args)


def test_bad_types_and_backends():
    with pytest.raises(TypeError, match="capacity must be an int"):
        select_tiles(torch.randn(1, 3, 2, 2), 2.5)
    with pytest.raises(TypeError, match="trimap must be a torch.Tensor"):
        select_tiles([[1.0]], 2)
    with pytest.raises(ValueError, match="backend='triton' cannot run: select_tiles has no Triton kernel"):
        select_tiles(torch.randn(1, 3, 2, 2), 2, backend="triton")
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        select_tiles(torch.randn(1, 3, 2, 2), 2, backend="cuda")
    with pytest.raises(ValueError, match=re.escape(
            'fastmatte.select_tiles: backend must be None, "cpu", "cuda", "triton" or "torch", got \'fast\'')):
        select_tiles(torch.randn(1, 3, 2, 2), 2, backend="fast")


def test_kernel_rejects_what_the_python_api_would_copy():
    trimap = torch.randn(1, 7, 5, 3).permute(0, 3, 2, 1)
    with pytest.raises(RuntimeError, match="fastmatte.select_tiles: trimap must be contiguous"):
        torch.ops.fastmatte.select_tiles(trimap, 4, 1)


@needs_cuda
@pytest.mark.cuda
def test_cuda_graph_replay_selects_from_new_data():
    # No host sync inside: the op can be captured once and replayed on every new frame.
    static = torch.randn(2, 3, 30, 40, device="cuda")
    select_tiles(static, 200)  # warm up (allocations, cub temp storage) outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        sel = select_tiles(static, 200)
    for _ in range(3):
        static.copy_(torch.randn_like(static))
        graph.replay()
        assert_same_selection(sel, reference.select_tiles(static, 200))
