import math

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import group_attention
from helpers import (ATTENTION_CASES, DTYPES, assert_close, assert_same_bits_across_thread_counts,
                     attention_selection, backend_params, far_apart_groups, official_bucket)

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte


def table_size(search_range):
    return (2 * search_range - 1) ** 2 + 1


def make_inputs(n, k, heads, dim, search_range, device, dtype=torch.float32, requires_grad=False):
    """q0, k, v and a bias table large enough to matter next to the q.k scores."""
    shapes = [(n, heads, dim), (n, k + 1, heads, dim), (n, k + 1, heads, dim),
              (table_size(search_range), heads)]
    return [torch.randn(s, device=device).to(dtype).requires_grad_(requires_grad) for s in shapes]


def expected(q0, k, v, tiles, nbr, table, search_range):
    """The reference in float64, rounded once to the inputs' dtype."""
    out = reference.group_attention(q0.double(), k.double(), v.double(), tiles, nbr, table.double(),
                                    search_range)
    return out.to(q0.dtype)


def expected_grads(grad, q0, k, v, tiles, nbr, table, search_range):
    """The reference's autograd in float64 (q0, k, v, table gradients)."""
    inputs = [t.detach().double().requires_grad_() for t in (q0, k, v, table)]
    out = reference.group_attention(*inputs[:3], tiles, nbr, inputs[3], search_range)
    return torch.autograd.grad(out, inputs, grad.double())


def check_forward(q0, k, v, tiles, nbr, table, search_range, backend):
    got = group_attention(q0, k, v, tiles, nbr, table, search_range, backend=backend)
    assert got.shape == q0.shape and got.dtype == q0.dtype and got.device == q0.device
    want = expected(q0, k, v, tiles, nbr, table, search_range)
    assert_close(got, want)
    return got


def check_gradients(q0, k, v, tiles, nbr, table, search_range, backend, dtype=torch.float32):
    got = group_attention(q0, k, v, tiles, nbr, table, search_range, backend=backend)
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, (q0, k, v, table), grad)
    want_grads = expected_grads(grad, q0, k, v, tiles, nbr, table, search_range)
    for name, g, w in zip(("q0", "k", "v", "bias_table"), got_grads, want_grads):
        assert g.dtype == dtype, name
        assert_close(g, w.to(dtype), dtype)


def loop_group_attention(q0, k, v, tiles, nbr, table, search_range):
    """group_attention as a plain loop over groups with bucketing="official" (official_bucket):
    the oracle of that bucketing, independent of the reference."""
    yx = tiles[:, 1:].tolist()
    rows = []
    for i, neighbours in enumerate(nbr.tolist()):
        if tiles[i, 0] < 0:
            rows.append(torch.zeros_like(q0[i]))
            continue
        group = [i] + neighbours
        members = [b for b, row in enumerate(group) if row >= 0]
        rel = [official_bucket(yx[group[b]][0] - yx[i][0], yx[group[b]][1] - yx[i][1], search_range)
               for b in members]
        scores = (q0[i] * k[i, members]).sum(-1) / math.sqrt(q0.shape[-1]) + table[rel]  # [members, heads]
        rows.append((scores.softmax(0)[..., None] * v[i, members]).sum(0))
    return torch.stack(rows)


@pytest.mark.parametrize("device,backend", BACKENDS + [pytest.param("cpu", "torch", id="torch")])
@pytest.mark.parametrize("search_range", [2, 3])
def test_official_bucketing_matches_a_loop(device, backend, search_range):
    tiles, nbr = far_apart_groups(device)
    inputs = make_inputs(12, 5, 2, 4, search_range, device, torch.float64, requires_grad=True)
    args = (tiles, nbr, inputs[3], search_range)
    got = group_attention(*inputs[:3], *args, bucketing="official", backend=backend)
    want = loop_group_attention(*inputs[:3], *args)
    assert_close(got, want)
    assert not torch.allclose(got, group_attention(*inputs[:3], *args, backend=backend)), "bucketings agree"
    grad = torch.randn_like(got)
    want_grads = torch.autograd.grad(want, inputs, grad)
    for g, w in zip(torch.autograd.grad(got, inputs, grad), want_grads):
        assert_close(g, w)
    if backend == "triton":  # the fixed-order table gradient too
        detached = [t.detach() for t in inputs]
        grads = OP.group_attention_backward_triton(grad, *detached[:3], tiles, nbr, detached[3], search_range,
                                                   "official", True)
        for g, w in zip(grads, want_grads):
            assert_close(g, w)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=str)
def test_forward_and_gradients_match_reference(device, backend, case):
    B, h, w, capacity, K, heads, dim, s, fraction = case
    tiles, nbr, _ = attention_selection(B, h, w, capacity, K, device, fraction)
    inputs = make_inputs(capacity, K, heads, dim, s, device, requires_grad=True)
    check_forward(*inputs[:3], tiles, nbr, inputs[3], s, backend)
    check_gradients(*inputs[:3], tiles, nbr, inputs[3], s, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("search_range", range(1, 9))
def test_search_ranges(device, backend, search_range):
    # All tiles of a 3 x 5 grid selected: neighbours lie at every offset up to +-4.
    tiles, nbr, _ = attention_selection(1, 3, 5, 8, 6, device, unknown_fraction=1.0)
    inputs = make_inputs(8, 6, 2, 4, search_range, device, requires_grad=True)
    check_forward(*inputs[:3], tiles, nbr, inputs[3], search_range, backend)
    if backend == "cpu" or search_range in (1, 8):
        check_gradients(*inputs[:3], tiles, nbr, inputs[3], search_range, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_arbitrary_neighbour_rows(device, backend):
    # nbr is any [-1, N) table: repeated rows, rows of invalid tiles, the center itself.
    tiles, _, _ = attention_selection(2, 3, 4, 8, 0, device, unknown_fraction=0.4)
    nbr = torch.randint(-1, 8, (8, 5), dtype=torch.int32, device=device)
    nbr[0] = torch.tensor([0, 3, 3, -1, 7], dtype=torch.int32)
    inputs = make_inputs(8, 5, 3, 8, 2, device, requires_grad=True)
    check_forward(*inputs[:3], tiles, nbr, inputs[3], 2, backend)
    check_gradients(*inputs[:3], tiles, nbr, inputs[3], 2, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_selections(device, backend):
    # count 0: every center invalid, every output and gradient row zero.
    tiles, nbr, count = attention_selection(2, 3, 3, 5, 4, device, unknown_fraction=0.0)
    assert count == 0
    inputs = make_inputs(5, 4, 2, 4, 3, device, requires_grad=True)
    out = check_forward(*inputs[:3], tiles, nbr, inputs[3], 3, backend)
    assert not out.any()
    grads = torch.autograd.grad(out, inputs, torch.randn_like(out))
    assert not any(g.any() for g in grads)
    # capacity 0: no groups at all.
    tiles, nbr, _ = attention_selection(1, 2, 2, 0, 4, device)
    inputs = make_inputs(0, 4, 2, 4, 3, device, requires_grad=True)
    out = check_forward(*inputs[:3], tiles, nbr, inputs[3], 3, backend)
    grads = torch.autograd.grad(out, inputs, torch.randn_like(out))
    assert grads[0].shape == (0, 2, 4) and not grads[3].any()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dtypes(device, backend, dtype):
    tiles, nbr, _ = attention_selection(1, 4, 4, 8, 4, device)
    inputs = make_inputs(8, 4, 2, 16, 3, device, dtype, requires_grad=True)
    check_forward(*inputs[:3], tiles, nbr, inputs[3], 3, backend)
    if backend == "cpu" or dtype == torch.float32:
        check_gradients(*inputs[:3], tiles, nbr, inputs[3], 3, backend, dtype)


def test_gradcheck_float64():
    tiles, nbr, _ = attention_selection(1, 3, 3, 6, 3, "cpu", unknown_fraction=0.7)
    inputs = make_inputs(6, 3, 2, 4, 2, "cpu", torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q0, k, v, table: group_attention(q0, k, v, tiles, nbr, table, 2, backend="cpu"),
        inputs)


def test_cpu_backward_is_deterministic_across_thread_counts():
    # 300 groups: several 64-group blocks of the table gradient, summed in a fixed order.
    tiles, nbr, _ = attention_selection(2, 12, 16, 300, 8, "cpu", unknown_fraction=0.8)
    q0, k, v, table = make_inputs(300, 8, 2, 8, 4, "cpu")
    grad = torch.randn_like(q0)
    assert_same_bits_across_thread_counts(
        lambda: OP.group_attention_backward(grad, q0, k, v, tiles, nbr, table, 4, "per_axis"))


@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if "triton" in p.id])
def test_triton_deterministic_table_gradient(device, backend):
    # Enough groups on a GPU for several groups per program and many programs per entry.
    n = 5000 if device == "cuda" else 9
    grid = (4, 36, 36) if device == "cuda" else (1, 3, 4)
    tiles, nbr, _ = attention_selection(*grid, n, 8, device, unknown_fraction=0.97)
    q0, k, v, table = make_inputs(n, 8, 8, 16, 4, device)
    grad = torch.randn_like(q0)
    args = (grad, q0, k, v, tiles, nbr, table, 4, "per_axis")
    first = OP.group_attention_backward_triton(*args, True)
    assert all(torch.equal(a, b) for a, b in zip(first, OP.group_attention_backward_triton(*args, True)))
    want = expected_grads(*args[:-1])
    for got in (first, OP.group_attention_backward_triton(*args, False)):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w.float(), atol=1e-4, rtol=1e-5)
    # Through autograd, deterministic mode reaches the kernel.
    inputs = [t.requires_grad_() for t in (q0, k, v, table)]
    torch.use_deterministic_algorithms(True)
    try:
        out = group_attention(*inputs[:3], tiles, nbr, inputs[3], 4, backend=backend)
        grads = torch.autograd.grad(out, inputs, grad)
    finally:
        torch.use_deterministic_algorithms(False)
    assert all(torch.equal(a, b) for a, b in zip(grads, first))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs_are_accepted(device, backend):
    tiles, nbr, _ = attention_selection(1, 3, 4, 6, 3, device)
    q0 = torch.randn(6, 4, 2, device=device).transpose(1, 2)
    k, v = (torch.randn(6, 4, 4, 2, device=device).transpose(2, 3) for _ in range(2))
    table = torch.randn(2, 10, device=device).t()
    nbr = torch.stack([nbr, nbr], 2)[..., 0]
    assert not any(t.is_contiguous() for t in (q0, k, v, table, nbr))
    check_forward(q0, k, v, tiles, nbr, table, 2, backend)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("bucketing", ["per_axis", "official"])
def test_opcheck(device, backend, bucketing):
    tiles, nbr, _ = attention_selection(1, 2, 3, 4, 2, device, unknown_fraction=0.7)
    q0, k, v, table = make_inputs(4, 2, 2, 4, 2, device, requires_grad=True)
    if backend == "triton":
        forward, backward = OP.group_attention_triton, OP.group_attention_backward_triton
        extra = (False,)
    else:
        forward, backward = OP.group_attention, OP.group_attention_backward
        extra = ()
    torch.library.opcheck(forward.default, (q0, k, v, tiles, nbr, table, 2, bucketing))
    grad = torch.randn(4, 2, 4, device=device)
    torch.library.opcheck(backward.default, (grad, q0.detach(), k.detach(), v.detach(), tiles, nbr,
                                             table.detach(), 2, bucketing) + extra)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    # aot_eager traces dynamo + AOT autograd through the fake kernels (inductor's first compile
    # alone would take much of this file's budget on a CPU machine).
    tiles, nbr, _ = attention_selection(1, 3, 3, 6, 3, device)
    q0, k, v, table = make_inputs(6, 3, 2, 4, 2, device, requires_grad=True)
    fn = torch.compile(lambda q0, k, v, table: group_attention(q0, k, v, tiles, nbr, table, 2,
                                                               backend=backend) * 2,
                       fullgraph=True, backend="aot_eager")
    got = fn(q0, k, v, table)
    assert_close(got, 2 * expected(q0, k, v, tiles, nbr, table, 2))
    got.sum().backward()
    assert all(t.grad is not None for t in (q0, k, v, table))


def ok_inputs(**changes):
    n, K, heads, dim, s = 3, 2, 2, 4, 2
    args = dict(q0=torch.randn(n, heads, dim), k=torch.randn(n, K + 1, heads, dim),
                v=torch.randn(n, K + 1, heads, dim), tiles=torch.zeros(n, 3, dtype=torch.int32),
                nbr=torch.full((n, K), -1, dtype=torch.int32), bias_table=torch.randn(10, heads),
                search_range=s)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(q0=torch.randn(3, 8)), r"q0 must be 3-D \[N, heads, D\], got \[3, 8\]"),
        (dict(q0=torch.zeros(3, 2, 4, dtype=torch.int64)), "q0 must be a floating-point tensor"),
        (dict(q0=torch.zeros(3, 2, 0)), r"q0 must be \[N, heads, D\] with D >= 1, got \[3, 2, 0\]"),
        (dict(nbr=torch.full((4, 2), -1, dtype=torch.int32)), r"nbr must be \[N=3, K\] \(N = q0.shape\[0\]\), got \[4, 2\]"),
        (dict(nbr=torch.zeros(3, 2, dtype=torch.int64)), "nbr must be torch.int32, got torch.int64"),
        (dict(k=torch.randn(3, 4, 2, 4)), r"k must be \[N, K\+1, heads, D\] = \[3, 3, 2, 4\] \(K = nbr.shape\[1\]\), got \[3, 4, 2, 4\]"),
        (dict(v=torch.randn(2, 3, 2, 4)), r"v must be \[N, K\+1, heads, D\] = \[3, 3, 2, 4\]"),
        (dict(k=torch.randn(3, 3, 2, 4, dtype=torch.float64)), "k must be torch.float32, got torch.float64"),
        (dict(bias_table=torch.randn(10, 2, dtype=torch.float16)), "bias_table must be torch.float32, got torch.float16"),
        (dict(v=torch.randn(3, 3, 2, 4, device="meta")), "v is on meta but the other inputs are on cpu"),
        (dict(tiles=torch.zeros(2, 3, dtype=torch.int32)), r"tiles must be \[N=3, 3\] \(b, ty, tx\), got \[2, 3\]"),
        (dict(bias_table=torch.randn(9, 2)), r"bias_table must be \[\(2\*search_range-1\)\^2\+1, heads\] = \[10, 2\] for search_range=2, got \[9, 2\]"),
        (dict(bias_table=torch.randn(10, 2), search_range=4), r"bias_table must be .* = \[50, 2\] for search_range=4, got \[10, 2\]"),
        (dict(search_range=0), r"search_range must be an int in \[1, 23170\], got 0"),
        (dict(bucketing="per-axis"), 'bucketing must be "per_axis" or "official", got \'per-axis\''),
    ],
)
def test_bad_inputs(changes, message):
    with pytest.raises(ValueError, match="fastmatte.group_attention: " + message):
        group_attention(**ok_inputs(**changes))


def test_neighbour_out_of_range_on_cpu():
    for bad in (3, -2):
        nbr = torch.tensor([[0, 1], [2, -1], [bad, 0]], dtype=torch.int32)
        with pytest.raises(RuntimeError, match=rf"nbr entries must be in \[-1, N=3\), got nbr\[2, 0\] = {bad}"):
            group_attention(**ok_inputs(nbr=nbr), backend="cpu")


def test_bad_types_and_backends():
    with pytest.raises(TypeError, match="search_range must be an int"):
        group_attention(**ok_inputs(search_range=2.0))
    with pytest.raises(TypeError, match="k must be a torch.Tensor"):
        group_attention(**ok_inputs(k=None))
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        group_attention(**ok_inputs(), backend="cuda")


def test_kernel_checks():
    a = ok_inputs()
    q0, k, v, tiles, nbr, table = (a[name] for name in ("q0", "k", "v", "tiles", "nbr", "bias_table"))
    cases = [
        ((q0, k.transpose(2, 3).contiguous().transpose(2, 3), v, tiles, nbr, table, 2), "k must be contiguous"),
        ((q0, k, v.double(), tiles, nbr, table, 2), "v must be Float, got Double"),
        ((q0, k, v, tiles, nbr.long(), table, 2), "nbr must be Int, got Long"),
        ((q0, k, v, tiles, nbr[:2].contiguous(), table, 2), r"nbr must be \[N, K\] with N = q0.size\(0\) = 3"),
        ((q0, k[:, :2].contiguous(), v, tiles, nbr, table, 2),
         r"k must be \[N, K\+1, heads, D\] \(K = nbr.size\(1\)\) = \[3, 3, 2, 4\], got \[3, 2, 2, 4\]"),
        ((q0, k, v, tiles[:, :2].contiguous(), nbr, table, 2), r"tiles must be \[N, 3\] \(b, ty, tx\) = \[3, 3\]"),
        ((q0, k, v, tiles, nbr, table, 4), r"bias_table must be \[\(2\*search_range-1\)\^2\+1, heads\] = \[50, 2\] for search_range=4, got \[10, 2\]"),
        ((q0, k, v, tiles, nbr, table, 0), r"search_range must be an int in \[1, 23170\], got 0"),
        ((q0[..., :0], k[..., :0], v[..., :0], tiles, nbr, table, 2), r"q0 must be \[N, heads, D\] with D >= 1"),
        ((q0, k, v, tiles, torch.full_like(nbr, 5), table, 2), r"nbr entries must be in \[-1, N=3\), got nbr\[0, 0\] = 5"),
        ((q0, k, v, tiles, nbr, table, 2, "Official"),
         'bucketing must be "per_axis" or "official", got \'Official\''),
    ]
    for call_args, message in cases:
        with pytest.raises(RuntimeError, match="fastmatte.group_attention: " + message):
            OP.group_attention(*call_args)
    with pytest.raises(RuntimeError, match=r"group_attention_backward: grad_out must be q0's shape \[N, heads, D\] = \[3, 2, 4\], got \[3, 2, 3\]"):
        OP.group_attention_backward(torch.zeros(3, 2, 3), q0, k, v, tiles, nbr, table, 2, "per_axis")
    with pytest.raises(RuntimeError, match="group_attention_backward: grad_out must be Float, got Half"):
        OP.group_attention_backward(q0.half(), q0, k, v, tiles, nbr, table, 2, "per_axis")
