import re

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import gather_tiles, select_tiles
from helpers import DTYPES, assert_close, backend_params, needs_cuda

BACKENDS = backend_params(triton=True)
OP = torch.ops.fastmatte


def make_inputs(B, C, Cc, h, w, tile, device, dtype=torch.float32, requires_grad=False):
    image = torch.randn(B, C, h * tile, w * tile, device=device).to(dtype)
    coarse = torch.randn(B, Cc, h, w, device=device).to(dtype)
    return image.requires_grad_(requires_grad), coarse.requires_grad_(requires_grad)


def random_selection(B, h, w, capacity, device, unknown_fraction=0.5):
    """A select_tiles selection of a random trimap (made on the CPU, then moved)."""
    trimap = torch.randn(B, 3, h, w)
    trimap[:, 1] += torch.where(torch.rand(B, h, w) < unknown_fraction, 9.0, -9.0)
    sel = select_tiles(trimap, capacity, backend="cpu")
    return sel.tiles.to(device), sel.count.to(device)


def hand_selection(rows, count, device):
    return (torch.tensor(rows, dtype=torch.int32, device=device).view(-1, 3),
            torch.tensor([count], dtype=torch.int32, device=device))


def expected(image, coarse, tiles, count, tile, halo):
    """The reference in float64, rounded once to the inputs' dtype."""
    out = reference.gather_tiles(image.double(), coarse.double(), tiles, count, tile, halo)
    return out.to(image.dtype)


def check_forward(image, coarse, tiles, count, tile, halo, backend):
    got = gather_tiles(image, coarse, tiles, count, tile, halo, backend=backend)
    size = tile + 2 * halo
    assert got.shape == (tiles.shape[0], image.shape[1] + coarse.shape[1], size, size)
    assert got.dtype == image.dtype and got.device == image.device and got.is_contiguous()
    assert_close(got, expected(image, coarse, tiles, count, tile, halo))
    return got


# (B, C, Cc, h, w, tile, halo): odd grids, batches, channel counts, halos wider than a tile.
SHAPES = [
    (2, 3, 1, 3, 5, 8, 0),
    (1, 3, 1, 7, 1, 8, 1),
    (3, 2, 2, 4, 3, 4, 3),
    (2, 1, 3, 5, 6, 4, 1),
    (1, 4, 1, 2, 2, 4, 5),
    (2, 0, 2, 3, 2, 2, 1),
]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("capacity_fraction", [0.2, 1.5])
def test_matches_reference(device, backend, shape, capacity_fraction):
    B, C, Cc, h, w, tile, halo = shape
    image, coarse = make_inputs(B, C, Cc, h, w, tile, device)
    capacity = max(1, int(capacity_fraction * B * h * w))
    tiles, count = random_selection(B, h, w, capacity, device)
    got = check_forward(image, coarse, tiles, count, tile, halo, backend)
    assert not got[int(count):].any(), "rows past count must be zeros"


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("halo", [0, 1, 3])
def test_border_tiles_duplicates_and_garbage_past_count(device, backend, halo):
    # Every corner and edge of a 3 x 4 grid, a repeated tile, then rows past count that are
    # valid tiles or -1: they must come out as zeros either way.
    rows = [[0, 0, 0], [0, 0, 3], [1, 2, 0], [1, 2, 3], [0, 1, 0], [1, 0, 2], [1, 2, 3],
            [0, 1, 1], [-1, -1, -1]]
    tiles, count = hand_selection(rows, 7, device)
    image, coarse = make_inputs(2, 3, 1, 3, 4, 8, device)
    got = check_forward(image, coarse, tiles, count, 8, halo, backend)
    assert not got[7:].any()
    # Independent of the reference: the centre of each window is the tile's own image crop.
    for r, (b, ty, tx) in enumerate(rows[:7]):
        crop = image[b, :, ty * 8:(ty + 1) * 8, tx * 8:(tx + 1) * 8]
        assert torch.equal(got[r, :3, halo:halo + 8, halo:halo + 8], crop)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_and_full_selections(device, backend):
    image, coarse = make_inputs(2, 3, 1, 3, 5, 4, device)
    tiles, count = random_selection(2, 3, 5, 6, device, unknown_fraction=0.0)
    assert int(count) == 0
    assert not check_forward(image, coarse, tiles, count, 4, 1, backend).any()
    none, zero = hand_selection([], 0, device)
    assert check_forward(image, coarse, none, zero, 4, 1, backend).shape == (0, 4, 6, 6)

    tiles, count = random_selection(2, 3, 5, 30, device, unknown_fraction=1.0)
    assert int(count) == 30
    patches = check_forward(image, coarse, tiles, count, 4, 0, backend)
    # With every tile selected and no halo, the patches tile the whole image exactly.
    mosaic = patches[:, :3].reshape(2, 3, 5, 3, 4, 4).permute(0, 3, 1, 4, 2, 5).reshape(2, 3, 12, 20)
    assert torch.equal(mosaic, image)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(device, backend, dtype):
    image, coarse = make_inputs(2, 3, 1, 3, 5, 8, device, dtype)
    tiles, count = random_selection(2, 3, 5, 12, device)
    check_forward(image, coarse, tiles, count, 8, 2, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_power_of_two_tile(device, backend):
    # scale = 1/3 is inexact in fp32: the kernels use PyTorch's fp32 index math, like the
    # reference does in fp32 (an fp64 reference uses fp64 indices, which is not compared here).
    image, coarse = make_inputs(2, 3, 2, 3, 4, 3, device)
    tiles, count = random_selection(2, 3, 4, 20, device)
    got = gather_tiles(image, coarse, tiles, count, 3, 2, backend=backend)
    assert_close(got, reference.gather_tiles(image, coarse, tiles, count, 3, 2))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("halo", [0, 1, 3])
def test_gradients_match_reference(device, backend, dtype, halo):
    image, coarse = make_inputs(2, 3, 2, 3, 5, 4, device, dtype, requires_grad=True)
    rows = [[0, 0, 0], [1, 2, 4], [0, 1, 2], [0, 1, 2], [1, 0, 4], [0, 2, 0], [1, 1, 1]]
    tiles, count = hand_selection(rows, 6, device)  # a duplicate tile and one row past count
    got = gather_tiles(image, coarse, tiles, count, 4, halo, backend=backend)
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, (image, coarse), grad)
    # The reference's autograd in float64, rounded once to dtype.
    image64, coarse64 = (t.detach().double().requires_grad_() for t in (image, coarse))
    want = reference.gather_tiles(image64, coarse64, tiles, count, 4, halo)
    want_grads = torch.autograd.grad(want, (image64, coarse64), grad.double())
    for g, w in zip(got_grads, want_grads):
        assert g.dtype == dtype
        # Up to ~20 windows add into one border cell: allow for the sum's rounding in fp16.
        torch.testing.assert_close(g, w.to(dtype), atol=2e-5 if dtype == torch.float32 else 2e-2,
                                   rtol=1e-5 if dtype == torch.float32 else 4e-3)


@pytest.mark.parametrize("halo", [0, 2])
def test_gradcheck_float64(halo):
    image, coarse = make_inputs(2, 2, 1, 2, 3, 4, "cpu", torch.float64, requires_grad=True)
    rows = [[0, 0, 0], [1, 1, 2], [0, 1, 2], [1, 1, 2], [1, 0, 1], [0, 0, 1]]
    tiles, count = hand_selection(rows, 5, "cpu")
    assert torch.autograd.gradcheck(
        lambda i, c: gather_tiles(i, c, tiles, count, 4, halo, backend="cpu"), (image, coarse))


def test_cpu_backward_is_deterministic():
    image, coarse = make_inputs(2, 3, 1, 4, 4, 4, "cpu", requires_grad=True)
    tiles, count = random_selection(2, 4, 4, 32, "cpu", unknown_fraction=1.0)
    tiles = torch.cat([tiles, tiles])  # every tile twice: many adds into each cell
    count = count * 2
    grad = torch.randn(64, 4, 10, 10)
    first = OP.gather_tiles_backward(grad, tiles, count, image.shape, coarse.shape, 4, 3)
    second = OP.gather_tiles_backward(grad, tiles, count, image.shape, coarse.shape, 4, 3)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@needs_cuda
@pytest.mark.cuda
def test_cuda_backward_alerts_under_deterministic_mode():
    image, coarse = make_inputs(1, 3, 1, 2, 2, 8, "cuda", requires_grad=True)
    tiles, count = random_selection(1, 2, 2, 4, "cuda", unknown_fraction=1.0)
    out = gather_tiles(image, coarse, tiles, count, backend="cuda")
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match=r"fastmatte.gather_tiles_backward \(CUDA\)"):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs_are_accepted(device, backend):
    image = torch.randn(2, 16, 24, 3, device=device).permute(0, 3, 2, 1)  # [2, 3, 24, 16]
    coarse = torch.randn(2, 1, 3, 4, device=device)[..., :2]
    tiles, count = random_selection(2, 3, 2, 9, device)
    tiles = torch.stack([tiles, tiles], 1)[:, 0]  # a non-contiguous [capacity, 3] view
    assert not (image.is_contiguous() or coarse.is_contiguous() or tiles.is_contiguous())
    check_forward(image, coarse, tiles, count, 8, 1, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("halo", [0, 2])
def test_opcheck(device, backend, halo):
    image, coarse = make_inputs(2, 3, 1, 3, 2, 4, device, requires_grad=True)
    tiles, count = random_selection(2, 3, 2, 5, device)
    op = OP.gather_tiles_triton if backend == "triton" else OP.gather_tiles
    torch.library.opcheck(op.default, (image, coarse, tiles, count, 4, halo))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "triton" not in p.id])
def test_opcheck_backward(device, backend):
    tiles, count = random_selection(2, 3, 2, 5, device)
    grad = torch.randn(5, 4, 8, 8, device=device)
    torch.library.opcheck(OP.gather_tiles_backward.default,
                          (grad, tiles, count, [2, 3, 12, 8], [2, 1, 3, 2], 4, 2))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    # aot_eager traces dynamo + AOT autograd through the fake kernels; inductor's first
    # compile alone would take ~30 s of this file's budget on a CPU machine.
    image, coarse = make_inputs(2, 3, 1, 3, 5, 8, device, requires_grad=True)
    tiles, count = random_selection(2, 3, 5, 8, device)
    fn = torch.compile(lambda i, c: gather_tiles(i, c, tiles, count, 8, 1, backend=backend) * 2,
                       fullgraph=True, backend="aot_eager")
    got = fn(image, coarse)
    assert_close(got, 2 * expected(image, coarse, tiles, count, 8, 1))
    got.sum().backward()
    assert image.grad is not None and coarse.grad is not None


def ok_inputs(**changes):
    args = dict(image=torch.randn(1, 3, 16, 16), coarse=torch.randn(1, 1, 2, 2),
                tiles=torch.zeros(2, 3, dtype=torch.int32), count=torch.ones(1, dtype=torch.int32),
                tile=8, halo=0)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(image=torch.randn(3, 16, 16)), r"image must be 4-D \[B, C, H, W\], got \[3, 16, 16\]"),
        (dict(image=torch.zeros(1, 3, 16, 16, dtype=torch.int64)), "image must be a floating-point tensor"),
        (dict(coarse=torch.randn(1, 2, 2)), r"coarse must be 4-D \[B, Cc, h, w\], got \[1, 2, 2\]"),
        (dict(coarse=torch.randn(1, 1, 2, 2, dtype=torch.float64)), "coarse must be torch.float32, got torch.float64"),
        (dict(coarse=torch.randn(1, 1, 2, 2, device="meta")), "coarse is on meta but the other inputs are on cpu"),
        (dict(image=torch.randn(1, 3, 12, 16)), "image height and width must be multiples of tile=8, got 12 x 16"),
        (dict(coarse=torch.randn(1, 1, 3, 2)), r"coarse must be \[B=1, Cc, H/tile=2, W/tile=2\], got \[1, 1, 3, 2\]"),
        (dict(coarse=torch.randn(2, 1, 2, 2)), r"coarse must be \[B=1, Cc, H/tile=2, W/tile=2\], got \[2, 1, 2, 2\]"),
        (dict(halo=-1), r"halo must be an int in \[0, max\(H, W\) = 16\], got -1"),
        (dict(tile=0), r"tile must be an int in \[1, 2\*\*31 - 1\], got 0"),
        (dict(tiles=torch.zeros(2, 2, dtype=torch.int32)), r"tiles must be \[capacity, 3\] \(b, ty, tx\), got \[2, 2\]"),
        (dict(tiles=torch.zeros(2, 3, dtype=torch.int64)), "tiles must be torch.int32, got torch.int64"),
        (dict(count=torch.ones(2, dtype=torch.int32)), r"count must hold one element, got \[2\]"),
        (dict(count=torch.ones(1)), "count must be torch.int32, got torch.float32"),
    ],
)
def test_bad_inputs(changes, message):
    with pytest.raises(ValueError, match="fastmatte.gather_tiles: " + message):
        gather_tiles(**ok_inputs(**changes))


def test_bad_types_and_backends():
    with pytest.raises(TypeError, match="tile must be an int"):
        gather_tiles(**ok_inputs(tile=8.0))
    with pytest.raises(TypeError, match="coarse must be a torch.Tensor"):
        gather_tiles(**ok_inputs(coarse=None))
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        gather_tiles(**ok_inputs(), backend="cuda")
    with pytest.raises(ValueError, match=re.escape(
            'fastmatte.gather_tiles: backend must be None, "cpu", "cuda", "triton" or "torch", got \'fast\'')):
        gather_tiles(**ok_inputs(), backend="fast")


def test_kernel_checks():
    args = ok_inputs()
    image, coarse, tiles, count = args["image"], args["coarse"], args["tiles"], args["count"]
    cases = [
        ((image.transpose(2, 3), coarse, tiles, count, 8, 0), "image must be contiguous"),
        ((image, coarse.double(), tiles, count, 8, 0), "coarse must be Float, got Double"),
        ((image, coarse, tiles, count, 0, 0), r"tile must be an int in \[1, 2\*\*31 - 1\], got 0"),
        ((image, coarse, tiles, count, 8, -2), r"halo must be an int in \[0, max\(H, W\) = 16\], got -2"),
        ((image, coarse, tiles, count, 4, 0), r"coarse must be \[B=1, Cc, H/tile=4, W/tile=4\]"),
        ((image[:, :, :12].contiguous(), coarse, tiles, count, 8, 0), "image height and width must be multiples of tile=8, got 12 x 16"),
        ((image, coarse, tiles.long(), count, 8, 0), "tiles must be Int, got Long"),
        ((image, coarse, torch.tensor([[0, 0, 0], [0, 2, 0]], dtype=torch.int32), count + 1, 8, 0),
         r"tiles row 1 = \(0, 2, 0\) is outside the tile grid \[B=1, h=2, w=2\]"),
        ((image, coarse, tiles, count + 2, 8, 0), r"count must be in \[0, 2\] \(the capacity\), got 3"),
    ]
    for call_args, message in cases:
        with pytest.raises(RuntimeError, match="fastmatte.gather_tiles: " + message):
            OP.gather_tiles(*call_args)

    grad = torch.zeros(2, 4, 8, 8)
    with pytest.raises(RuntimeError, match=r"gather_tiles_backward: grad_patches must be \[capacity=2, C \+ Cc=4, 10, 10\]"):
        OP.gather_tiles_backward(grad, tiles, count, [1, 3, 16, 16], [1, 1, 2, 2], 8, 1)
    with pytest.raises(RuntimeError, match=r"gather_tiles_backward: coarse_size must be \[B=1, Cc, H/tile=2"):
        OP.gather_tiles_backward(grad, tiles, count, [1, 3, 16, 16], [1, 1, 2, 3], 8, 0)
