"""window_attention (Swin's shifted-window attention) on every backend against the reference,
and the reference against a dense oracle written from the op's docstring: every token pair of
the map, windows and shift regions found from coordinates, no roll and no partition."""
import math

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import window_attention
from helpers import DTYPES, assert_close, backend_params

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]

# (B, H, W, heads, D, window, window_size, shift): padding with a shift; a window narrower than
# the table's; no padding and no shift (nothing blocked); a map one window high shifted along
# the width only; a shift and no padding; a map smaller than the window; D from 4 to 32.
CASES = [
    (1, 12, 19, 2, 8, 7, (7, 7), (3, 3)),
    (2, 5, 7, 2, 4, 3, (3, 2), (1, 1)),
    (1, 6, 6, 1, 16, 3, (3, 3), (0, 0)),
    (1, 4, 12, 2, 8, 7, (5, 7), (0, 3)),
    (2, 14, 14, 1, 32, 7, (7, 7), (3, 3)),
    (1, 2, 5, 1, 8, 3, (2, 3), (1, 1)),
]


def make_inputs(case, device="cpu", dtype=torch.float32, requires_grad=False):
    b, height, width, heads, dim, window = case[:6]
    gen = torch.Generator().manual_seed(height * 100 + width + heads + dim)
    qkv = torch.randn(b, height, width, 3 * heads * dim, generator=gen)
    table = torch.randn((2 * window - 1) ** 2, heads, generator=gen)
    return [t.to(device, dtype).requires_grad_(requires_grad) for t in (qkv, table)]


def layout(case):
    """(window, window_size, shift) of a case, as lists."""
    return case[5], list(case[6]), list(case[7])


def dense_oracle(qkv, table, window, window_size, shift):
    """The docstring's definition over all token pairs of the map, in float64."""
    b, height, width, channels = qkv.shape
    heads = table.shape[1]
    dim = channels // 3 // heads
    (wh, ww), (sh, sw) = window_size, shift
    hp, wp = math.ceil(height / wh) * wh, math.ceil(width / ww) * ww
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)
    ry, rx = (y - sh) % hp, (x - sw) % wp

    def region(r, padded, w, s):
        return (r >= padded - w).long() + (r >= padded - s).long() if s else r * 0

    win = (ry // wh) * (wp // ww) + rx // ww
    reg = region(ry, hp, wh, sh) * 3 + region(rx, wp, ww, sw)
    allowed = (win[:, None] == win[None, :]) & (reg[:, None] == reg[None, :])
    iy, ix = ry % wh, rx % ww
    idx = (iy[:, None] - iy[None, :] + window - 1) * (2 * window - 1) + (ix[:, None] - ix[None, :] + window - 1)
    q, k, v = qkv.double().reshape(b, height * width, 3, heads, dim).unbind(2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(dim) + table.double()[idx].permute(2, 0, 1)
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, -1), v)
    return out.reshape(b, height, width, heads * dim)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_matches_dense_oracle(case):
    qkv, table = make_inputs(case, dtype=torch.float64)
    got = reference.window_attention(qkv, table, *layout(case))
    assert_close(got, dense_oracle(qkv, table, *layout(case)))


def reference_grads(grad, qkv, table, case):
    """The oracle's output and autograd in float64."""
    qkv, table = (t.detach().double().requires_grad_() for t in (qkv, table))
    out = dense_oracle(qkv, table, *layout(case))
    return out, torch.autograd.grad(out, (qkv, table), grad.double())


@pytest.mark.parametrize("device,backend", BACKENDS + [pytest.param("cpu", "torch", id="torch")])
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_oracle_with_gradients(device, backend, case, dtype):
    qkv, table = make_inputs(case, device, dtype, requires_grad=True)
    got = window_attention(qkv, table, *layout(case), backend=backend)
    assert got.shape == qkv.shape[:3] + (qkv.shape[3] // 3,) and got.dtype == dtype
    assert got.is_contiguous() or backend == "torch"  # the reference returns a crop of its padded map
    grad = torch.randn_like(got)
    want, want_grads = reference_grads(grad, qkv, table, case)
    assert_close(got, want.to(dtype), dtype)
    for g, w in zip(torch.autograd.grad(got, (qkv, table), grad), want_grads):
        assert g.dtype == dtype and g.shape == w.shape
        scale = w.abs().max().item() + 1e-6  # gradients are sums of rounded products
        atol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 2e-2) * scale
        torch.testing.assert_close(g.double(), w, atol=atol, rtol=atol / scale)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_batch_and_non_contiguous(device, backend):
    case = CASES[1]
    qkv, table = make_inputs(case, device)
    for empty in (qkv[:0], qkv[:, :0]):
        got = window_attention(empty, table, *layout(case), backend=backend)
        assert got.shape == empty.shape[:3] + (qkv.shape[3] // 3,)
    strided = qkv.transpose(1, 2).contiguous().transpose(1, 2)  # same values, not contiguous
    assert_close(window_attention(strided, table, *layout(case), backend=backend),
                 window_attention(qkv, table, *layout(case), backend=backend))


def test_gradcheck_cpu():
    case = (1, 5, 3, 2, 2, 3, (3, 2), (1, 1))
    qkv, table = make_inputs(case, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, t: window_attention(a, t, *layout(case), backend="cpu"),
                                    (qkv, table))


def test_opcheck():
    for case in CASES[:2]:
        qkv, table = make_inputs(case, requires_grad=True)
        torch.library.opcheck(torch.ops.fastmatte.window_attention.default, (qkv, table, *layout(case)))


def test_compiles_fullgraph():
    case = CASES[0]
    qkv, table = make_inputs(case)
    compiled = torch.compile(lambda a, t: window_attention(a, t, *layout(case)), fullgraph=True)
    assert_close(compiled(qkv, table), window_attention(qkv, table, *layout(case)))


@pytest.mark.parametrize("change,message", [
    (dict(qkv=torch.zeros(2, 5, 7, 24, dtype=torch.int32)), "qkv must be a floating-point tensor"),
    (dict(qkv=torch.zeros(5, 7, 24)), "qkv must be 4-D"),
    (dict(table=torch.zeros(25, 2, dtype=torch.float64)), "bias_table must be torch.float32"),
    (dict(table=torch.zeros(24, 2)), "bias_table must be \\[\\(2\\*window-1\\)\\^2 = 25"),
    (dict(qkv=torch.zeros(2, 5, 7, 20)), "qkv's last axis must be 3 \\* heads \\* D"),
    (dict(window_size=[4, 2]), r"window_size\[0\] must be an int in \[1, window = 3\], got 4"),
    (dict(window_size=[0, 2]), r"window_size\[0\] must be an int in \[1, window = 3\], got 0"),
    (dict(shift=[3, 1]), r"shift\[0\] must be an int in \[0, window_size\[0\] - 1 = 2\], got 3"),
    (dict(shift=[1]), "shift must be a pair of ints"),
    (dict(window=0), r"window must be an int in \[1, 23170\], got 0"),
    (dict(backend="cuda"), "backend='cuda' cannot run"),
])
def test_bad_input_names_the_argument(change, message):
    qkv, table = make_inputs(CASES[1])
    args = dict(qkv=qkv, table=table, window=3, window_size=[3, 2], shift=[1, 1]) | change
    backend = args.pop("backend", None)
    with pytest.raises((ValueError, TypeError), match=message):
        window_attention(args["qkv"], args["table"], args["window"], args["window_size"], args["shift"],
                         backend=backend)


@pytest.mark.parametrize("change,message", [
    (dict(qkv=torch.zeros(2, 5, 7, 24).transpose(1, 2)), "qkv must be contiguous"),
    (dict(window_size=[3]), "window_size must be 2 ints"),
    (dict(shift=[3, 1]), r"shift\[0\] must be an int in \[0, window_size\[0\] - 1 = 2\], got 3"),
    (dict(window_size=[3, 4]), r"window_size\[1\] must be an int in \[1, window = 3\], got 4"),
    (dict(window=23171), r"window must be an int in \[1, 23170\], got 23171"),
])
def test_cpu_kernel_checks_its_inputs(change, message):
    qkv, table = make_inputs(CASES[1])
    args = dict(qkv=qkv, table=table, window=3, window_size=[3, 2], shift=[1, 1]) | change
    with pytest.raises(RuntimeError, match=message):
        torch.ops.fastmatte.window_attention(*args.values())
