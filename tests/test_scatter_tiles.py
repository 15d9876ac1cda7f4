import pytest
import torch
import torch.nn.functional as F

from fastmatte import reference
from fastmatte.ops import scatter_tiles, select_tiles
from helpers import DTYPES, assert_close, backend_params, tolerance

BACKENDS = backend_params(triton=True)
MODES = ["bilinear", "nearest"]


def make_selection(B, h, w, capacity, unknown_fraction, device):
    """A select_tiles selection in which about `unknown_fraction` of the tiles are candidates."""
    candidate = torch.rand(B, h, w) < unknown_fraction
    trimap = torch.rand(B, 3, h, w) * 0.5
    trimap[:, 1] = torch.where(candidate, 1 + torch.rand(B, h, w), torch.zeros(()))
    sel = select_tiles(trimap, capacity)
    return sel.tiles.to(device), sel.count.to(device), sel.tile_map.to(device)


def make_case(B, C, h, w, t, capacity, unknown_fraction=0.5, device="cpu", dtype=torch.float32):
    """Inputs with values in [-0.3, 1.3], so both the clamp and its gradient mask matter, but
    none exactly 0 or 1: at the clamp's kink either gradient is right, and torch's own choice
    there changed between versions (2.13 passes the gradient, 2.14 does not), while fp16/bf16
    rounding lands a value on 1.0 about once per thousand."""
    def values(*shape):
        x = (torch.rand(*shape) * 1.6 - 0.3).to(device, dtype)
        return torch.where((x == 0) | (x == 1), torch.full_like(x, 0.5), x)

    coarse, refined = values(B, C, h, w), values(capacity, C, t, t)
    return (coarse, refined) + make_selection(B, h, w, capacity, unknown_fraction, device)


def forward_backward(fn, inputs, grad_out):
    """fn's output and the gradients of coarse_alpha and refined for the upstream grad_out."""
    coarse, refined, *selection = inputs
    coarse = coarse.detach().clone().requires_grad_()
    refined = refined.detach().clone().requires_grad_()
    out = fn(coarse, refined, *selection)
    out.backward(grad_out)
    return out.detach(), coarse.grad, refined.grad


def assert_grad_close(actual, expected, dtype):
    # Gradients are sums of up to 9 t^2 terms: compare relative to their largest magnitude.
    if expected is None:  # the reference never reads an empty refined
        expected = torch.zeros_like(actual)
    atol, rtol = tolerance(dtype)
    scale = max(1.0, expected.abs().nan_to_num().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, atol=atol * scale, rtol=rtol, equal_nan=True)


def check_against_reference(inputs, mode, backend, dtype=torch.float32):
    coarse = inputs[0]
    t = inputs[1].shape[-1]
    B, C, h, w = coarse.shape
    grad_out = torch.randn(B, C, h * t, w * t, device=coarse.device).to(dtype)
    got = forward_backward(lambda *a: scatter_tiles(*a, mode, backend=backend), inputs, grad_out)
    want = forward_backward(lambda *a: reference.scatter_tiles(*a, mode), inputs, grad_out)
    assert got[0].dtype == dtype and got[0].shape == (B, C, h * t, w * t)
    assert_close(got[0], want[0], dtype)
    assert_grad_close(got[1], want[1], dtype)
    assert_grad_close(got[2], want[2], dtype)
    return got


# (B, C, h, w, t): odd grids, batch > 1, C = 1 and 3, tile sizes 8, 4 and an odd 5.
SHAPES = [(1, 1, 5, 7, 8), (2, 3, 3, 4, 4), (2, 1, 4, 3, 5), (1, 3, 1, 1, 8)]
# (candidate fraction, capacity as a fraction of the tiles): count 0; some tiles with
# capacity > count; more candidates than capacity; every tile selected.
SELECTIONS = {"none": (0.0, 0.5), "some": (0.5, 1.0), "cut": (0.7, 0.3), "all": (1.0, 1.0)}


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("selection", SELECTIONS)
def test_matches_reference(device, backend, mode, shape, selection):
    B, C, h, w, t = shape
    fraction, capacity_fraction = SELECTIONS[selection]
    capacity = max(1, round(capacity_fraction * B * h * w))
    inputs = make_case(B, C, h, w, t, capacity, fraction, device)
    expected_count = {"none": 0, "all": B * h * w}.get(selection)
    assert expected_count is None or int(inputs[3]) == expected_count
    check_against_reference(inputs, mode, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("t", [8, 5])
def test_dtypes(device, backend, mode, dtype, t):
    inputs = make_case(2, 2, 3, 5, t, 20, 0.6, device, dtype)
    check_against_reference(inputs, mode, backend, dtype)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_clamp_and_its_gradient_mask_are_applied(device, backend):
    inputs = make_case(2, 1, 4, 5, 4, 40, 0.5, device)
    out, grad_coarse, grad_refined = check_against_reference(inputs, "bilinear", backend)
    # The inputs reach outside [0, 1] both in refined and in coarse tiles, so both are clamped.
    assert (out == 0).any() and (out == 1).any()
    refined, count = inputs[1], int(inputs[3])
    outside = (refined[:count] < 0) | (refined[:count] > 1)
    assert outside.any() and (grad_refined[:count][outside] == 0).all()
    assert (grad_refined[:count][~outside] != 0).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("capacity", [0, 3])
def test_empty_selection_is_the_clamped_upsample(device, backend, capacity):
    inputs = make_case(2, 1, 3, 4, 8, capacity, 0.0, device)
    assert int(inputs[3]) == 0
    out = scatter_tiles(*inputs, backend=backend)
    upsampled = F.interpolate(inputs[0], size=(24, 32), mode="bilinear", align_corners=False)
    assert_close(out, upsampled.clamp(0, 1))
    check_against_reference(inputs, "nearest", backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_rows_past_count_are_never_read(device, backend, mode):
    # capacity 6, count 3. Row 2 is below count but its tile's map entry is -1: it is pasted
    # nowhere. tile_map also points at rows 3 and 4 (past count) and 9 (past the capacity):
    # those tiles keep the upsampled coarse alpha. Rows past count are NaN: reading one shows.
    h, w, t = 3, 4, 4
    coarse = (torch.rand(1, 1, h, w) * 1.6 - 0.3).to(device)
    refined = torch.rand(6, 1, t, t) * 1.6 - 0.3
    refined[3:] = float("nan")
    refined = refined.to(device)
    tiles = torch.tensor([[0, 0, 1], [0, 2, 3], [0, 2, 0], [0, 1, 1], [0, 0, 0], [-1, -1, -1]],
                         dtype=torch.int32, device=device)
    count = torch.tensor([3], dtype=torch.int32, device=device)
    tile_map = torch.full((1, h, w), -1, dtype=torch.int32)
    tile_map[0, 0, 1], tile_map[0, 2, 3] = 0, 1
    tile_map[0, 1, 1], tile_map[0, 0, 0], tile_map[0, 1, 2] = 3, 4, 9
    tile_map = tile_map.to(device)
    inputs = (coarse, refined, tiles, count, tile_map)

    out, _, grad_refined = check_against_reference(inputs, mode, backend)
    expected = F.interpolate(coarse, size=(h * t, w * t), mode=mode,
                             **({"align_corners": False} if mode == "bilinear" else {}))
    expected[0, 0, 0:t, t:2 * t] = refined[0, 0]
    expected[0, 0, 2 * t:3 * t, 3 * t:4 * t] = refined[1, 0]
    assert_close(out, expected.clamp(0, 1))
    assert not out.isnan().any()
    assert (grad_refined[2:] == 0).all() and (grad_refined[:2] != 0).any()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_nan_propagates(device, backend, mode):
    B, h, w, t = 1, 4, 5, 4
    trimap = torch.zeros(B, 3, h, w)
    trimap[:, 1, :, :2] = 1.0  # columns 0 and 1 are refined, the rest is upsampled
    sel = select_tiles(trimap, 12)
    assert int(sel.count) == 8
    coarse = torch.rand(B, 1, h, w) * 1.6 - 0.3
    coarse[0, 0, 2, 3] = float("nan")
    refined = torch.rand(12, 1, t, t) * 1.6 - 0.3
    refined[0, 0, 1, 2] = float("nan")  # row 0 is tile (0, 0, 0): output pixel (1, 2)
    refined[10] = float("nan")  # past count: must not show
    inputs = (coarse.to(device), refined.to(device), sel.tiles.to(device), sel.count.to(device),
              sel.tile_map.to(device))
    out = check_against_reference(inputs, mode, backend)[0].cpu()
    assert out[0, 0, 1, 2].isnan() and out[0, 0, 2 * t + 1, 3 * t + 1].isnan()
    # Bilinear: the 2t x 2t pixels whose taps read the NaN (a zero weight too: 0 * NaN = NaN).
    assert int(out.isnan().sum()) == 1 + (4 * t * t if mode == "bilinear" else t * t)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("t", [4, 3])
def test_gradcheck_float64(mode, t):
    coarse, refined, tiles, count, tile_map = make_case(2, 2, 3, 4, t, 8, 0.5, "cpu", torch.float64)
    # Finite differences must not cross the clamp's kinks: keep every pre-clamp value off 0 and 1.
    options = {"align_corners": False} if mode == "bilinear" else {}
    upsampled = F.interpolate(coarse, size=(3 * t, 4 * t), mode=mode, **options)
    for values in (upsampled, refined):
        assert ((values.abs() > 1e-4) & ((values - 1).abs() > 1e-4)).all()
    coarse.requires_grad_()
    refined.requires_grad_()
    fn = lambda c, r: scatter_tiles(c, r, tiles, count, tile_map, mode, backend="cpu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, (coarse, refined))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_opcheck(device, backend, mode):
    coarse, refined, tiles, count, tile_map = make_case(2, 2, 3, 4, 4, 8, 0.5, device)
    op = torch.ops.fastmatte.scatter_tiles_triton if backend == "triton" else torch.ops.fastmatte.scatter_tiles
    args = (coarse.requires_grad_(), refined.requires_grad_(), tiles, count, tile_map, mode)
    torch.library.opcheck(op.default, args)
    if backend != "triton":
        grad = torch.randn(2, 2, 12, 16, device=device)
        torch.library.opcheck(torch.ops.fastmatte.scatter_tiles_backward.default,
                              (grad, coarse.detach(), refined.detach(), tiles, count, tile_map, mode))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    inputs = make_case(2, 1, 3, 5, 4, 10, 0.5, device)

    def loss(coarse, refined, tiles, count, tile_map):
        return scatter_tiles(coarse, refined, tiles, count, tile_map, backend=backend).square().sum()

    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    grad_out = torch.ones((), device=device)
    got = forward_backward(compiled, inputs, grad_out)
    want = forward_backward(loss, inputs, grad_out)
    for g, w in zip(got, want):
        assert_close(g, w)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_backward_is_deterministic(device, backend):
    inputs = make_case(2, 3, 5, 6, 8, 30, 0.5, device)
    grad_out = torch.randn(2, 3, 40, 48, device=device)
    fn = lambda *a: scatter_tiles(*a, backend=backend)  # noqa: E731
    first, second = forward_backward(fn, inputs, grad_out), forward_backward(fn, inputs, grad_out)
    for a, b in zip(first, second):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs_are_accepted(device, backend):
    coarse, refined, tiles, count, tile_map = make_case(2, 3, 4, 5, 4, 12, 0.5, device)
    coarse_t = coarse.transpose(2, 3).contiguous().transpose(2, 3)  # same values, other strides
    refined_t = refined.transpose(2, 3).contiguous().transpose(2, 3)
    assert not coarse_t.is_contiguous() and not refined_t.is_contiguous()
    check_against_reference((coarse_t, refined_t, tiles, count, tile_map), "bilinear", backend)


def valid_args(**changes):
    args = dict(coarse_alpha=torch.rand(1, 1, 5, 7), refined=torch.rand(6, 1, 8, 8),
                tiles=torch.full((6, 3), -1, dtype=torch.int32),
                count=torch.zeros(1, dtype=torch.int32),
                tile_map=torch.full((1, 5, 7), -1, dtype=torch.int32), mode="bilinear")
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(coarse_alpha=torch.rand(1, 5, 7)), r"coarse_alpha must be 4-D \[B, C, h, w\], got \[1, 5, 7\]"),
        (dict(coarse_alpha=torch.zeros(1, 1, 5, 7, dtype=torch.int32)), "coarse_alpha must be a floating-point"),
        (dict(coarse_alpha=torch.zeros(1, 1, 5, 7, dtype=torch.float8_e4m3fn)),
         "coarse_alpha must be float32, float64, float16 or bfloat16, got torch.float8_e4m3fn"),
        (dict(refined=torch.rand(6, 8, 8)), r"refined must be 4-D \[capacity, C, t, t\]"),
        (dict(refined=torch.rand(6, 1, 8, 8, dtype=torch.float64)),
         "refined must have coarse_alpha's dtype torch.float32, got torch.float64"),
        (dict(refined=torch.rand(6, 1, 8, 4)), r"refined must be \[capacity, C, t, t\] with coarse_alpha's C = 1 "
                                               r"and square t x t patches, got \[6, 1, 8, 4\]"),
        (dict(refined=torch.rand(6, 3, 8, 8)), r"with coarse_alpha's C = 1 .*got \[6, 3, 8, 8\]"),
        (dict(refined=torch.rand(6, 1, 8, 8, device="meta")), "refined is on meta but the other inputs are on cpu"),
        (dict(tiles=torch.zeros(6, 2, dtype=torch.int32)), r"tiles must be \[capacity, 3\]"),
        (dict(tiles=torch.zeros(6, 3, dtype=torch.int64)), "tiles must be torch.int32, got torch.int64"),
        (dict(tiles=torch.zeros(5, 3, dtype=torch.int32)), "tiles has 5 rows but refined has 6"),
        (dict(count=torch.zeros(2, dtype=torch.int32)), "count must hold one element"),
        (dict(tile_map=torch.full((1, 7, 5), -1, dtype=torch.int32)),
         r"tile_map must be \[B, h, w\] = \[1, 5, 7\] \(coarse_alpha's grid\), got \[1, 7, 5\]"),
        (dict(tile_map=torch.full((1, 5, 7), -1)), "tile_map must be torch.int32, got torch.int64"),
        (dict(tile_map=torch.full((5, 7), -1, dtype=torch.int32)), r"tile_map must be 3-D \[B, h, w\]"),
        (dict(mode="bicubic"), "mode must be \"bilinear\" or \"nearest\", got 'bicubic'"),
    ],
)
def test_bad_inputs(changes, message):
    with pytest.raises(ValueError, match=message):
        scatter_tiles(**valid_args(**changes))


def test_bad_backends():
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        scatter_tiles(**valid_args(), backend="cuda")
    with pytest.raises(TypeError, match="coarse_alpha must be a torch.Tensor"):
        scatter_tiles(**valid_args(coarse_alpha=[[0.5]]))


def kernel_args(**changes):
    """Arguments for the compiled op: one selected tile (0, 1, 2) in row 0 of 6."""
    tiles = torch.full((6, 3), -1, dtype=torch.int32)
    tiles[0] = torch.tensor([0, 1, 2])
    tile_map = torch.full((1, 5, 7), -1, dtype=torch.int32)
    tile_map[0, 1, 2] = 0
    args = valid_args(tiles=tiles, count=torch.ones(1, dtype=torch.int32), tile_map=tile_map)
    args.update(changes)
    return list(args.values())


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(coarse_alpha=torch.rand(1, 1, 7, 5).transpose(2, 3)), "coarse_alpha must be contiguous"),
        (dict(count=torch.tensor([7], dtype=torch.int32)), r"count must be in \[0, 6\] \(the capacity\), got 7"),
        (dict(tiles=torch.tensor([[0, 5, 0]] + [[-1] * 3] * 5, dtype=torch.int32)),
         r"tiles row 0 = \(0, 5, 0\) is outside the tile grid \[B=1, h=5, w=7\]"),
        (dict(tiles=torch.tensor([[0, 2, 2]] + [[-1] * 3] * 5, dtype=torch.int32)),
         r"tile_map\[0, 1, 2\] = 0 but tiles row 0 is \(0, 2, 2\); tiles and tile_map must come from the same"),
        (dict(mode="area"), "mode must be \"bilinear\" or \"nearest\", got \"area\""),
        (dict(refined=torch.rand(6, 1, 8, 8, dtype=torch.float64)), "refined must have coarse_alpha's dtype Float"),
    ],
)
def test_kernel_checks(changes, message):
    with pytest.raises(RuntimeError, match="fastmatte.scatter_tiles: " + message):
        torch.ops.fastmatte.scatter_tiles(*kernel_args(**changes))


def test_backward_kernel_checks():
    args = kernel_args()
    torch.ops.fastmatte.scatter_tiles_backward(torch.rand(1, 1, 40, 56), *args)
    with pytest.raises(RuntimeError, match=r"scatter_tiles_backward: grad_alpha must be \[1, 1, 40, 56\]"):
        torch.ops.fastmatte.scatter_tiles_backward(torch.rand(1, 1, 40, 48), *args)
    bad_map = args[4].clone()
    bad_map[0, 3, 3] = 0
    with pytest.raises(RuntimeError, match=r"scatter_tiles_backward: tile_map\[0, 3, 3\] = 0 but tiles row 0"):
        torch.ops.fastmatte.scatter_tiles_backward(torch.rand(1, 1, 40, 56), *args[:4], bad_map, args[5])
