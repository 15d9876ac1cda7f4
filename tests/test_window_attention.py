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

# (B, Hp, Wp, heads, D, window, window_size, shift, size): padding with a shift; a window
# narrower than the table's; no padding and no shift (nothing blocked); a map one window high
# shifted along the width only; a shift and no padding; more than a window of padding (whole
# windows of padded tokens); D from 4 to 32.
CASES = [
    (1, 14, 21, 2, 8, 7, (7, 7), (3, 3), (12, 19)),
    (2, 6, 8, 2, 4, 3, (3, 2), (1, 1), (5, 7)),
    (1, 6, 6, 1, 16, 3, (3, 3), (0, 0), (6, 6)),
    (1, 5, 14, 2, 8, 7, (5, 7), (0, 3), (4, 12)),
    (2, 14, 14, 1, 32, 7, (7, 7), (3, 3), (14, 14)),
    (1, 12, 9, 1, 8, 3, (3, 3), (1, 1), (4, 5)),
]


def make_inputs(case, device="cpu", dtype=torch.float32, requires_grad=False):
    b, hp, wp, heads, dim, window = case[:6]
    gen = torch.Generator().manual_seed(hp * 100 + wp + heads + dim)
    qkv = torch.randn(b, hp, wp, 3 * heads * dim, generator=gen)
    table = torch.randn((2 * window - 1) ** 2, heads, generator=gen)
    return [t.to(device, dtype).requires_grad_(requires_grad) for t in (qkv, table)]


def layout(case):
    """(window, window_size, shift, size) of a case, as lists."""
    return case[5], list(case[6]), list(case[7]), list(case[8])


def dense_oracle(qkv, table, window, window_size, shift, size):
    """The docstring's definition over all token pairs of the map, in float64."""
    b, hp, wp, channels = qkv.shape
    heads = table.shape[1]
    dim = channels // 3 // heads
    (wh, ww), (sh, sw), (height, width) = window_size, shift, size
    y, x = torch.meshgrid(torch.arange(hp), torch.arange(wp), indexing="ij")
    y, x = y.reshape(-1), x.reshape(-1)
    ry, rx = (y - sh) % hp, (x - sw) % wp

    def region(r, padded, w, s):
        return (r >= padded - w).long() + (r >= padded - s).long() if s else r * 0

    win = (ry // wh) * (wp // ww) + rx // ww
    reg = region(ry, hp, wh, sh) * 3 + region(rx, wp, ww, sw)
    real = (y < height) & (x < width)
    allowed = (win[:, None] == win[None, :]) & (reg[:, None] == reg[None, :]) & real[None, :]
    iy, ix = ry % wh, rx % ww
    idx = (iy[:, None] - iy[None, :] + window - 1) * (2 * window - 1) + (ix[:, None] - ix[None, :] + window - 1)
    q, k, v = qkv.double().reshape(b, hp * wp, 3, heads, dim).unbind(2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(dim) + table.double()[idx].permute(2, 0, 1)
    scores = scores.masked_fill(~allowed, float("-inf"))
    scores = torch.where(real[:, None], scores, 0.0)  # padded queries: finite, zeroed below
    out = torch.einsum("bhij,bjhd->bihd", torch.softmax(scores, -1), v)
    out = torch.where(real[None, :, None, None], out, 0.0)
    return out.reshape(b, hp, wp, heads * dim)


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
    grad = torch.randn_like(got)
    want, want_grads = reference_grads(grad, qkv, table, case)
    assert_close(got, want.to(dtype), dtype)
    for g, w in zip(torch.autograd.grad(got, (qkv, table), grad), want_grads):
        assert g.dtype == dtype and g.shape == w.shape
        scale = w.abs().max().item() + 1e-6  # gradients are sums of rounded products
        atol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(dtype, 2e-2) * scale
        torch.testing.assert_close(g.double(), w, atol=atol, rtol=atol / scale)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_padding_is_zero_and_ignored(device, backend):
    case = CASES[0]
    (height, width) = case[8]
    qkv, table = make_inputs(case, device)
    noisy = qkv.clone()
    noisy[:, height:], noisy[:, :, width:] = 1e4, -1e4
    got = window_attention(qkv, table, *layout(case), backend=backend)
    again = window_attention(noisy, table, *layout(case), backend=backend)
    assert torch.equal(got[:, height:], torch.zeros_like(got[:, height:]))
    assert torch.equal(got[:, :, width:], torch.zeros_like(got[:, :, width:]))
    assert_close(again, got)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_batch_and_non_contiguous(device, backend):
    case = CASES[1]
    qkv, table = make_inputs(case, device)
    empty = window_attention(qkv[:0], table, *layout(case), backend=backend)
    assert empty.shape == (0,) + qkv.shape[1:3] + (qkv.shape[3] // 3,)
    strided = qkv.transpose(1, 2).contiguous().transpose(1, 2)  # same values, not contiguous
    assert_close(window_attention(strided, table, *layout(case), backend=backend),
                 window_attention(qkv, table, *layout(case), backend=backend))


def test_gradcheck_cpu():
    case = (1, 6, 4, 2, 2, 3, (3, 2), (1, 1), (5, 3))
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
    (dict(qkv=torch.zeros(2, 6, 8, 24, dtype=torch.int32)), "qkv must be a floating-point tensor"),
    (dict(qkv=torch.zeros(6, 8, 24)), "qkv must be 4-D"),
    (dict(table=torch.zeros(25, 2, dtype=torch.float64)), "bias_table must be torch.float32"),
    (dict(table=torch.zeros(24, 2)), "bias_table must be \\[\\(2\\*window-1\\)\\^2 = 25"),
    (dict(qkv=torch.zeros(2, 6, 8, 20)), "qkv's last axis must be 3 \\* heads \\* D"),
    (dict(window_size=[3, 3]), "must be a non-empty multiple of window_size"),
    (dict(window_size=[4, 2]), "window_size must be in \\[1, window=3\\]"),
    (dict(shift=[3, 1]), "shift must be in \\[0, window_size\\)"),
    (dict(size=[7, 7]), "size \\(the real tokens\\) must be within"),
    (dict(size=[5]), "size must be a pair of ints"),
    (dict(window=0), "window must be >= 1"),
    (dict(backend="cuda"), "backend='cuda' cannot run"),
])
def test_bad_input_names_the_argument(change, message):
    qkv, table = make_inputs(CASES[1])
    args = dict(qkv=qkv, table=table, window=3, window_size=[3, 2], shift=[1, 1], size=[5, 7]) | change
    backend = args.pop("backend", None)
    with pytest.raises((ValueError, TypeError), match=message):
        window_attention(args["qkv"], args["table"], args["window"], args["window_size"], args["shift"],
                         args["size"], backend=backend)
