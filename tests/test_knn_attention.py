import math

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import knn_attention
from helpers import (ATTENTION_CASES, DTYPES, assert_close, assert_same_bits_across_thread_counts,
                     attention_selection, backend_params, far_apart_groups, official_bucket)

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte


def make_inputs(n, heads, dim, search_range, device, dtype=torch.float32, requires_grad=False):
    """q, k, v and a bias table large enough to matter next to the q.k scores."""
    shapes = [(n, heads, dim)] * 3 + [((2 * search_range - 1) ** 2 + 1, heads)]
    return [torch.randn(s, device=device).to(dtype).requires_grad_(requires_grad) for s in shapes]


def reference_grads(grad, q, k, v, tiles, nbr, table, search_range):
    """The reference's output and autograd in float64."""
    inputs = [t.detach().double().requires_grad_() for t in (q, k, v, table)]
    out = reference.knn_attention(*inputs[:3], tiles, nbr, inputs[3], search_range)
    return out, torch.autograd.grad(out, inputs, grad.double())


def check(q, k, v, tiles, nbr, table, search_range, backend, gradients=True):
    got = knn_attention(q, k, v, tiles, nbr, table, search_range, backend=backend)
    assert got.shape == (q.shape[0], nbr.shape[1] + 1, *q.shape[1:]) and got.dtype == q.dtype
    grad = torch.randn_like(got)
    want, want_grads = reference_grads(grad, q, k, v, tiles, nbr, table, search_range)
    assert_close(got, want.to(q.dtype))
    if gradients:
        got_grads = torch.autograd.grad(got, (q, k, v, table), grad)
        for name, g, w in zip(("q", "k", "v", "bias_table"), got_grads, want_grads):
            assert g.dtype == q.dtype, name
            assert_close(g, w.to(q.dtype), q.dtype)
    return got


def loop_knn_attention(q, k, v, tiles, nbr, table, search_range):
    """knn_attention as plain loops over groups and members with bucketing="official"
    (official_bucket): the oracle of that bucketing, independent of the reference."""
    yx, members = tiles[:, 1:].tolist(), nbr.shape[1] + 1
    rows = []
    for i, neighbours in enumerate(nbr.tolist()):
        group = [i] + neighbours
        keys = [b for b in group if b >= 0]
        for a in group:
            if a < 0 or tiles[i, 0] < 0:
                rows.append(torch.zeros_like(q[0]))
                continue
            rel = [official_bucket(yx[b][0] - yx[a][0], yx[b][1] - yx[a][1], search_range) for b in keys]
            scores = (q[a] * k[keys]).sum(-1) / math.sqrt(q.shape[-1]) + table[rel]  # [keys, heads]
            rows.append((scores.softmax(0)[..., None] * v[keys]).sum(0))
    return torch.stack(rows).view(len(rows) // members, members, *q.shape[1:])


def test_official_bucketing_index():
    s, query = 4, torch.tensor([5, -3])
    by_hand = {(0, 4): 28, (0, -4): 20, (-4, 0): 49, (4, 0): 49, (0, 0): 24, (1, -3): 28, (-1, 3): 20}
    for (dy, dx), want in by_hand.items():
        assert official_bucket(dy, dx, s) == want
    for s in range(1, 6):
        offsets = [(dy, dx) for dy in range(-2 * s, 2 * s + 1) for dx in range(-2 * s, 2 * s + 1)]
        got = reference.relative_position_index(query, query + torch.tensor(offsets), s, "official")
        assert got.tolist() == [official_bucket(dy, dx, s) for dy, dx in offsets]
        side = 2 * s - 1
        per_axis = [(dy + s - 1) * side + dx + s - 1 if max(abs(dy), abs(dx)) < s else side * side
                    for dy, dx in offsets]
        assert reference.relative_position_index(query, query + torch.tensor(offsets), s).tolist() == per_axis


@pytest.mark.parametrize("device,backend", BACKENDS + [pytest.param("cpu", "torch", id="torch")])
@pytest.mark.parametrize("search_range", [2, 3])
def test_official_bucketing_matches_a_loop(device, backend, search_range):
    tiles, nbr = far_apart_groups(device)
    inputs = make_inputs(12, 2, 4, search_range, device, torch.float64, requires_grad=True)
    args = (tiles, nbr, inputs[3], search_range)
    got = knn_attention(*inputs[:3], *args, bucketing="official", backend=backend)
    want = loop_knn_attention(*inputs[:3], *args)
    assert_close(got, want)
    assert not torch.allclose(got, knn_attention(*inputs[:3], *args, backend=backend)), "bucketings agree"
    grad = torch.randn_like(got)
    want_grads = torch.autograd.grad(want, inputs, grad)
    for g, w in zip(torch.autograd.grad(got, inputs, grad), want_grads):
        assert_close(g, w)
    if backend == "triton":  # the fixed-order table gradient too
        detached = [t.detach() for t in inputs]
        grads = OP.knn_attention_backward_triton(grad, *detached[:3], tiles, nbr, detached[3], search_range,
                                                 "official", True)
        for g, w in zip(grads, want_grads):
            assert_close(g, w)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=str)
def test_forward_and_gradients_match_reference(device, backend, case):
    B, h, w, capacity, K, heads, dim, s, fraction = case
    tiles, nbr, _ = attention_selection(B, h, w, capacity, K, device, fraction)
    q, k, v, table = make_inputs(capacity, heads, dim, s, device, requires_grad=True)
    check(q, k, v, tiles, nbr, table, s, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("search_range", range(1, 9))
def test_search_ranges(device, backend, search_range):
    # All tiles of a 3 x 5 grid selected: neighbours lie at every offset up to +-4.
    tiles, nbr, _ = attention_selection(1, 3, 5, 8, 6, device, unknown_fraction=1.0)
    q, k, v, table = make_inputs(8, 2, 4, search_range, device, requires_grad=True)
    check(q, k, v, tiles, nbr, table, search_range, backend,
          gradients=backend == "cpu" or search_range in (1, 8))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_arbitrary_neighbour_rows(device, backend):
    # nbr is any [-1, N) table: repeated rows, rows of invalid tiles, the center itself.
    tiles, _, _ = attention_selection(2, 3, 4, 8, 0, device, unknown_fraction=0.4)
    nbr = torch.randint(-1, 8, (8, 5), dtype=torch.int32, device=device)
    nbr[0] = torch.tensor([0, 3, 3, -1, 7], dtype=torch.int32)
    q, k, v, table = make_inputs(8, 3, 8, 2, device, requires_grad=True)
    check(q, k, v, tiles, nbr, table, 2, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_selections(device, backend):
    tiles, nbr, count = attention_selection(2, 3, 3, 5, 4, device, unknown_fraction=0.0)
    assert count == 0
    q, k, v, table = make_inputs(5, 2, 4, 3, device, requires_grad=True)
    out = check(q, k, v, tiles, nbr, table, 3, backend)
    assert not out.any()
    tiles, nbr, _ = attention_selection(1, 2, 2, 0, 4, device)  # capacity 0: no groups at all
    q, k, v, table = make_inputs(0, 2, 4, 3, device, requires_grad=True)
    out = check(q, k, v, tiles, nbr, table, 3, backend)
    assert out.shape == (0, 5, 2, 4)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(device, backend, dtype):
    tiles, nbr, _ = attention_selection(1, 4, 4, 8, 4, device)
    q, k, v, table = make_inputs(8, 2, 16, 3, device, dtype, requires_grad=True)
    check(q, k, v, tiles, nbr, table, 3, backend,
          gradients=backend == "cpu" or dtype in (torch.float32, torch.float64))


def test_gradcheck_float64():
    tiles, nbr, _ = attention_selection(1, 3, 3, 6, 3, "cpu", unknown_fraction=0.7)
    inputs = make_inputs(6, 2, 4, 2, "cpu", torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v, table: knn_attention(q, k, v, tiles, nbr, table, 2, backend="cpu"), inputs)


def test_cpu_backward_is_deterministic_across_thread_counts():
    tiles, nbr, _ = attention_selection(2, 12, 16, 300, 8, "cpu", unknown_fraction=0.8)
    q, k, v, table = make_inputs(300, 2, 8, 4, "cpu")
    grad = torch.randn(300, 9, 2, 8)
    assert_same_bits_across_thread_counts(
        lambda: OP.knn_attention_backward(grad, q, k, v, tiles, nbr, table, 4, "per_axis"))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "triton" in p.id])
def test_triton_deterministic_mode(device, backend):
    n = 3000 if device == "cuda" else 9
    grid = (4, 30, 30) if device == "cuda" else (1, 3, 4)
    tiles, nbr, _ = attention_selection(*grid, n, 8, device, unknown_fraction=0.97)
    q, k, v, table = make_inputs(n, 8, 16, 4, device)
    grad = torch.randn(n, 9, 8, 16, device=device)
    args = (grad, q, k, v, tiles, nbr, table, 4, "per_axis")
    first = OP.knn_attention_backward_triton(*args, True)
    assert all(torch.equal(a, b) for a, b in zip(first, OP.knn_attention_backward_triton(*args, True)))
    _, want = reference_grads(*args[:-1])
    for got in (first, OP.knn_attention_backward_triton(*args, False)):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w.float(), atol=1e-4, rtol=1e-5)
    inputs = [t.requires_grad_() for t in (q, k, v, table)]
    torch.use_deterministic_algorithms(True)
    try:  # through autograd, deterministic mode reaches the kernel
        grads = torch.autograd.grad(knn_attention(*inputs[:3], tiles, nbr, inputs[3], 4, backend=backend),
                                    inputs, grad)
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(grads, first))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs_are_accepted(device, backend):
    tiles, nbr, _ = attention_selection(1, 3, 4, 6, 3, device)
    q, k, v = (torch.randn(6, 4, 2, device=device).transpose(1, 2) for _ in range(3))
    table = torch.randn(2, 10, device=device).t()
    assert not any(t.is_contiguous() for t in (q, k, v, table))
    check(q, k, v, tiles, nbr, table, 2, backend, gradients=False)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("bucketing", ["per_axis", "official"])
def test_opcheck(device, backend, bucketing):
    tiles, nbr, _ = attention_selection(1, 2, 3, 4, 2, device, unknown_fraction=0.7)
    q, k, v, table = make_inputs(4, 2, 4, 2, device, requires_grad=True)
    triton = backend == "triton"
    forward = OP.knn_attention_triton if triton else OP.knn_attention
    backward = OP.knn_attention_backward_triton if triton else OP.knn_attention_backward
    torch.library.opcheck(forward.default, (q, k, v, tiles, nbr, table, 2, bucketing))
    grad = torch.randn(4, 3, 2, 4, device=device)
    args = (grad, q.detach(), k.detach(), v.detach(), tiles, nbr, table.detach(), 2, bucketing)
    torch.library.opcheck(backward.default, args + ((False,) if triton else ()))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    tiles, nbr, _ = attention_selection(1, 3, 3, 6, 3, device)
    q, k, v, table = make_inputs(6, 2, 4, 2, device, requires_grad=True)
    fn = torch.compile(lambda q, k, v, table: knn_attention(q, k, v, tiles, nbr, table, 2,
                                                            backend=backend) * 2,
                       fullgraph=True, backend="aot_eager")
    got = fn(q, k, v, table)
    assert_close(got, 2 * reference.knn_attention(q, k, v, tiles, nbr, table, 2))
    got.sum().backward()
    assert all(t.grad is not None for t in (q, k, v, table))


def ok_inputs(**changes):
    n, K, heads, dim = 3, 2, 2, 4
    args = dict(q=torch.randn(n, heads, dim), k=torch.randn(n, heads, dim), v=torch.randn(n, heads, dim),
                tiles=torch.zeros(n, 3, dtype=torch.int32), nbr=torch.full((n, K), -1, dtype=torch.int32),
                bias_table=torch.randn(10, heads), search_range=2)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(q=torch.randn(3, 8)), r"q must be 3-D \[N, heads, D\], got \[3, 8\]"),
        (dict(q=torch.zeros(3, 2, 4, dtype=torch.int64)), "q must be a floating-point tensor"),
        (dict(nbr=torch.full((4, 2), -1, dtype=torch.int32)), r"nbr must be \[N=3, K\] \(N = q.shape\[0\]\), got \[4, 2\]"),
        (dict(k=torch.randn(4, 2, 4)), r"k must have q's shape \[3, 2, 4\], got \[4, 2, 4\]"),
        (dict(v=torch.randn(3, 2, 4, dtype=torch.float64)), "v must be torch.float32, got torch.float64"),
        (dict(tiles=torch.zeros(2, 3, dtype=torch.int32)), r"tiles must be \[N=3, 3\] \(b, ty, tx\), got \[2, 3\]"),
        (dict(bias_table=torch.randn(9, 2)), r"bias_table must be \[\(2\*search_range-1\)\^2\+1, heads\] = \[10, 2\] for search_range=2, got \[9, 2\]"),
        (dict(search_range=0), r"search_range must be an int in \[1, 23170\], got 0"),
        (dict(bucketing="x"), 'bucketing must be "per_axis" or "official", got \'x\''),
    ],
)
def test_bad_inputs(changes, message):
    with pytest.raises(ValueError, match="fastmatte.knn_attention: " + message):
        knn_attention(**ok_inputs(**changes))


def test_neighbour_out_of_range_on_cpu():
    nbr = torch.tensor([[0, 1], [2, -1], [3, 0]], dtype=torch.int32)
    with pytest.raises(RuntimeError, match=r"fastmatte.knn_attention: nbr\[2, 0\] = 3"):
        knn_attention(**ok_inputs(nbr=nbr), backend="cpu")


def test_kernel_rejects_non_contiguous():
    a = ok_inputs()
    k = a["k"].transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(RuntimeError, match="fastmatte.knn_attention: k must be contiguous"):
        OP.knn_attention(a["q"], k, a["v"], a["tiles"], a["nbr"], a["bias_table"], 2)
