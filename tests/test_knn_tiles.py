import warnings

import pytest
import torch

import fastmatte.ops.knn_tiles as knn_module
from fastmatte import reference
from fastmatte.ops import knn_tiles, select_tiles
from helpers import backend_params, needs_cuda

BACKENDS = backend_params(triton=False)
OP = torch.ops.fastmatte
WITH_MAP = pytest.mark.parametrize("use_map", [True, False], ids=["tile_map", "no_map"])


def select_mask(mask, extra_capacity=0):
    """select_tiles of a trimap whose unknown tiles are exactly `mask` [B, h, w] (made on the
    CPU), with `extra_capacity` rows past count."""
    trimap = torch.zeros(mask.shape[0], 3, *mask.shape[1:])
    trimap[:, 1] = torch.where(mask, 1.0, -1.0)
    return select_tiles(trimap, int(mask.sum()) + extra_capacity, backend="cpu")


def hand_selection(rows, count):
    return torch.tensor(rows, dtype=torch.int32).view(-1, 3), torch.tensor([count], dtype=torch.int32)


def assert_matches_reference(tiles, count, k, tile_map, device, backend):
    want = reference.knn_tiles(tiles, count, k)
    got = knn_tiles(tiles.to(device), count.to(device), k,
                    None if tile_map is None else tile_map.to(device), backend=backend)
    assert got.dtype == torch.int32 and got.device.type == device
    assert got.shape == (tiles.shape[0], k) and got.is_contiguous()
    got = got.cpu()
    if not torch.equal(got, want):
        wrong = (got != want).any(1).nonzero().flatten()[:5].tolist()
        pytest.fail(f"rows {wrong} differ:\n{got[wrong]}\nvs reference\n{want[wrong]}")
    return got


def check_selection(sel, k, use_map, device, backend):
    return assert_matches_reference(sel.tiles, sel.count, k, sel.tile_map if use_map else None,
                                    device, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
@pytest.mark.parametrize("shape", [(1, 7, 9), (2, 13, 11), (3, 5, 17), (2, 1, 23)], ids=str)
@pytest.mark.parametrize("unknown_fraction", [0.15, 0.6])
@pytest.mark.parametrize("k", [1, 8, 16])
def test_random_selections(device, backend, use_map, shape, unknown_fraction, k):
    B, h, w = shape
    trimap = torch.randn(B, 3, h, w)
    trimap[:, 1] += torch.where(torch.rand(B, h, w) < unknown_fraction, 9.0, -9.0)
    # A third of the grid: some selections are cut at capacity, others stop short of it.
    sel = select_tiles(trimap, B * h * w // 3, backend="cpu")
    check_selection(sel, k, use_map, device, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
def test_larger_random_selection(device, backend, use_map):
    mask = torch.rand(2, 45, 64) < 0.3
    check_selection(select_mask(mask, extra_capacity=7), 8, use_map, device, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
@pytest.mark.parametrize("k", [1, 8, 16])
def test_images_with_fewer_than_k_plus_one_tiles(device, backend, use_map, k):
    # Image 0 has no tile, image 1 one tile, image 2 exactly k, image 3 k + 1.
    mask = torch.zeros(4, 6, 7, dtype=torch.bool)
    mask[1, 4, 2] = True
    for b, n in ((2, k), (3, k + 1)):
        mask[b].view(-1)[torch.randperm(42)[:n]] = True
    got = check_selection(select_mask(mask, extra_capacity=3), k, use_map, device, backend)
    assert (got[0] == -1).all()  # the lone tile of image 1 (row 0) has no neighbour
    assert (got[1:1 + k, k - 1] == -1).all() and (got[1 + k:2 + 2 * k] >= 0).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
@pytest.mark.parametrize("B", [1, 2])
@pytest.mark.parametrize("k", [8, 16])
def test_far_apart_clusters(device, backend, use_map, B, k):
    mask = torch.zeros(B, 60, 90, dtype=torch.bool)
    mask[0, :3, :3] = True  # 9 tiles: with k = 16 their neighbours include the far blob
    mask[0, 56:, 85:] = True
    if B == 2:  # two lone tiles at opposite corners, and three spread out
        mask[1, 0, 0] = mask[1, 59, 89] = True
        mask[1, 30, 1] = mask[1, 2, 60] = mask[1, 58, 44] = True
    check_selection(select_mask(mask), k, use_map, device, backend)


def checkerboard(h, w):
    return (torch.arange(h)[:, None] + torch.arange(w)) % 2 == 0


EQUAL_DISTANCE_PATTERNS = {
    "full block": torch.ones(9, 11, dtype=torch.bool),
    "row": torch.ones(1, 23, dtype=torch.bool),
    "column": torch.ones(17, 1, dtype=torch.bool),
    "checkerboard": checkerboard(10, 13),
    "hollow square": torch.nn.functional.pad(torch.zeros(7, 7, dtype=torch.bool), (1, 1, 1, 1), value=True),
    "every third row": (torch.arange(15) % 3 == 0)[:, None].expand(15, 8),
    "sparse lattice": (torch.arange(21)[:, None] % 5 == 0) & (torch.arange(26) % 4 == 0),
}


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
@pytest.mark.parametrize("pattern", EQUAL_DISTANCE_PATTERNS)
@pytest.mark.parametrize("k", [1, 4, 8, 32])
def test_many_equal_distances(device, backend, use_map, pattern, k):
    check_selection(select_mask(EQUAL_DISTANCE_PATTERNS[pattern][None]), k, use_map, device, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
@pytest.mark.parametrize("drop", [1, 7, "all"])
def test_rows_past_count_are_never_chosen(device, backend, use_map, drop):
    # The rows past the new count still hold real tiles, and tile_map still names them.
    sel = select_mask(torch.rand(2, 9, 10) < 0.5)
    n = 0 if drop == "all" else int(sel.count) - drop
    count = torch.tensor([n], dtype=torch.int32)
    got = assert_matches_reference(sel.tiles, count, 8, sel.tile_map if use_map else None, device, backend)
    assert (got[n:] == -1).all() and (got < n).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
def test_k_zero_and_k_beyond_capacity(device, backend, use_map):
    sel = select_mask(torch.rand(1, 4, 5) < 0.4, extra_capacity=2)
    assert check_selection(sel, 0, use_map, device, backend).shape == (sel.tiles.shape[0], 0)
    small = select_mask(torch.ones(1, 1, 5, dtype=torch.bool))  # capacity 5
    got = check_selection(small, 16, use_map, device, backend)
    assert (got[:, 4:] == -1).all()
    empty = select_mask(torch.zeros(2, 3, 3, dtype=torch.bool))  # capacity 0
    assert check_selection(empty, 8, use_map, device, backend).shape == (0, 8)


@WITH_MAP
def test_large_k_on_cpu(use_map):
    check_selection(select_mask(torch.rand(2, 8, 9) < 0.4, extra_capacity=1), 40, use_map, "cpu", "cpu")


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_hand_made_tiles(device, backend):
    # Unordered rows, interleaved images, a repeated tile, and garbage past count.
    rows = [(1, 4, 4), (0, 2, 3), (1, 0, 0), (0, 2, 3), (0, 7, 1), (1, 4, 5), (2, 0, 0), (0, 0, 0),
            (1, 3, 4), (-1, -1, -1), (5, 99, -4)]
    tiles, count = hand_selection(rows, 9)
    for k in (0, 1, 3, 8, 16):
        assert_matches_reference(tiles, count, k, None, device, backend)
    # A few tiles far out on a huge grid: the CPU scans rows instead of building the grid.
    tiles, count = hand_selection([(0, 30000, 2), (0, 5, 32000), (0, 0, 0), (1, 32767, 32767),
                                   (0, 29000, 10), (1, 0, 1)], 6)
    assert_matches_reference(tiles, count, 4, None, device, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_backend_torch_is_the_reference(device, backend):
    sel = select_mask(torch.rand(1, 5, 6) < 0.5)
    got = knn_tiles(sel.tiles.to(device), sel.count.to(device), 3, backend="torch")
    assert torch.equal(got.cpu(), reference.knn_tiles(sel.tiles, sel.count, 3))


@pytest.mark.parametrize("device,backend", BACKENDS)
@WITH_MAP
def test_opcheck(device, backend, use_map):
    sel = select_mask(torch.rand(2, 5, 6) < 0.5, extra_capacity=2)
    tile_map = sel.tile_map.to(device) if use_map else None
    torch.library.opcheck(OP.knn_tiles.default, (sel.tiles.to(device), sel.count.to(device), 8, tile_map))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    sel = select_mask(torch.rand(2, 5, 6) < 0.5, extra_capacity=2)
    tiles, count, tile_map = (t.to(device) for t in (sel.tiles, sel.count, sel.tile_map))
    fn = torch.compile(lambda t, c, m: knn_tiles(t, c, 8, m, backend=backend) + 1,
                       fullgraph=True, backend="aot_eager")
    assert torch.equal(fn(tiles, count, tile_map).cpu(), reference.knn_tiles(sel.tiles, sel.count, 8) + 1)


def ok_inputs(**changes):
    sel = select_mask(torch.ones(1, 2, 3, dtype=torch.bool))
    inputs = dict(tiles=sel.tiles, count=sel.count, k=2, tile_map=sel.tile_map)
    inputs.update(changes)
    return inputs


@pytest.mark.parametrize("changes,message", [
    (dict(k=-1), r"k must be an int in \[0, 2\*\*31 - 1\], got -1"),
    (dict(tiles=torch.zeros(6, 2, dtype=torch.int32)), r"tiles must be \[capacity, 3\]"),
    (dict(tiles=torch.zeros(6, dtype=torch.int32)), "tiles must be 2-D"),
    (dict(tiles=torch.zeros(6, 3, dtype=torch.int64)), "tiles must be torch.int32"),
    (dict(count=torch.zeros(1, dtype=torch.int32, device="meta")), "count is on meta"),
    (dict(tile_map=torch.zeros(2, 3, dtype=torch.int32)), r"tile_map must be 3-D \[B, h, w\]"),
    (dict(tile_map=torch.zeros(1, 2, 3)), "tile_map must be torch.int32"),
    (dict(tile_map=torch.zeros(1, 2, 3, dtype=torch.int32, device="meta")), "tile_map is on meta"),
])
def test_python_errors(changes, message):
    with pytest.raises(ValueError, match="fastmatte.knn_tiles: " + message):
        knn_tiles(**ok_inputs(**changes))


def test_python_type_and_backend_errors():
    with pytest.raises(TypeError, match="k must be an int"):
        knn_tiles(**ok_inputs(k=2.0))
    with pytest.raises(TypeError, match="tiles must be a torch.Tensor"):
        knn_tiles(**ok_inputs(tiles=[[0, 0, 0]]))
    with pytest.raises(ValueError, match="knn_tiles has no Triton kernel"):
        knn_tiles(**ok_inputs(), backend="triton")
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        knn_tiles(**ok_inputs(), backend="cuda")


def kernel_inputs(**changes):
    inputs = ok_inputs(**changes)
    return inputs["tiles"], inputs["count"], inputs["k"], inputs["tile_map"]


def unmapped_rows(rows):
    tiles, count = hand_selection(rows, len(rows))
    return dict(tiles=tiles, count=count, tile_map=None)


@pytest.mark.parametrize("changes,message", [
    (dict(k=-1), r"k must be an int in \[0, 2\*\*31 - 1\], got -1"),
    (dict(tiles=torch.zeros(6, 2, dtype=torch.int32)), r"tiles must be \[capacity, 3\]"),
    (dict(tiles=torch.zeros(6, 3, dtype=torch.int64)), "tiles must be Int"),
    (dict(tiles=torch.zeros(3, 6, dtype=torch.int32).t()), "tiles must be contiguous"),
    (dict(count=torch.tensor([7], dtype=torch.int32)), r"count must be in \[0, 6\]"),
    (dict(tile_map=torch.zeros(2, 3, dtype=torch.int32)), r"tile_map must be 3-D \[B, h, w\]"),
    (dict(tile_map=torch.zeros(1, 3, 2, dtype=torch.int32).transpose(1, 2)), "tile_map must be contiguous"),
    (dict(tile_map=torch.zeros(1, 2, 3, dtype=torch.int64)), "tile_map must be Int"),
    (dict(tile_map=torch.zeros(1, 1, 40000, dtype=torch.int32)), "tile_map.s grid must be at most 32768 x 32768 tiles"),
    (dict(tile_map=torch.zeros(1, 2, 2, dtype=torch.int32)),
     r"tiles row 2 = \(0, 0, 2\) is outside the tile grid \[B=1, h=2, w=2\]"),
    (dict(tile_map=torch.arange(6, dtype=torch.int32).flip(0).view(1, 2, 3)),
     r"tiles row 0 = \(0, 0, 0\) but tile_map there holds 5"),
    (unmapped_rows([(0, 0, 0), (0, 0, -1)]), r"tiles row 1 = \(0, 0, -1\) is outside the tile grid"),
    (unmapped_rows([(0, 0, 0), (0, 32768, 0)]),
     r"tiles row 1 = \(0, 32768, 0\) is outside the tile grid \[B=2147483647, h=32768, w=32768\]"),
])
def test_kernel_errors(changes, message):
    with pytest.raises(RuntimeError, match="fastmatte.knn_tiles: " + message):
        OP.knn_tiles(*kernel_inputs(**changes))


def test_kernel_rejects_a_tile_map_cell_naming_another_tile():
    tiles, count = hand_selection([(0, 0, 0), (0, 1, 1)], 2)
    tile_map = torch.tensor([[[0, 1], [-1, 1]]], dtype=torch.int32)  # cell (0, 1) claims row 1
    with pytest.raises(RuntimeError, match=r"tile_map\[0, 0, 1\] = 1 but tiles row 1 is \(0, 1, 1\)"):
        OP.knn_tiles(tiles, count, 1, tile_map)


@needs_cuda
def test_cuda_errors():
    tiles, count, _, tile_map = kernel_inputs()
    tiles, count = tiles.cuda(), count.cuda()
    with pytest.raises(RuntimeError, match="fastmatte.knn_tiles: k must be <= 32 on CUDA"):
        OP.knn_tiles(tiles, count, 33, tile_map.cuda())
    with pytest.raises(RuntimeError, match="fastmatte.knn_tiles: tile_map is on cpu but tiles is on cuda"):
        OP.knn_tiles(tiles, count, 2, tile_map)
    with pytest.raises(RuntimeError, match="fastmatte.knn_tiles: count is on cpu but tiles is on cuda"):
        OP.knn_tiles(tiles, count.cpu(), 2, None)


@needs_cuda
def test_cuda_without_tile_map_warns_once(monkeypatch):
    monkeypatch.setattr(knn_module, "_warned_exhaustive_cuda", False)
    tiles, count, _, _ = (t.cuda() if isinstance(t, torch.Tensor) else t for t in kernel_inputs())
    with pytest.warns(RuntimeWarning, match="pass select_tiles' tile_map"):
        knn_tiles(tiles, count, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        knn_tiles(tiles, count, 2)
