import re

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import resize_concat
from helpers import DTYPES, assert_close, assert_same_bits_across_thread_counts, backend_params

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte


def make_inputs(B, specs, device="cpu", dtype=torch.float32, requires_grad=False):
    """One tensor per spec (C, h, w, layout): layout "cl" is channels-last, "nchw" contiguous."""
    tensors = []
    for C, h, w, layout in specs:
        t = torch.randn(B, C, h, w).to(device, dtype)
        if layout == "cl":
            t = t.contiguous(memory_format=torch.channels_last)
        tensors.append(t.requires_grad_(requires_grad))
    return tensors


def channels_last_strides(shape):
    return torch.empty(shape, memory_format=torch.channels_last).stride()


def independent_resize(x, H, W):
    """F.interpolate(bilinear, align_corners=False) written out in float64 per output pixel:
    source = max((dst + 0.5) * in / out - 0.5, 0), i0 = floor, i1 = min(i0 + 1, in - 1)."""
    x = x.double()
    h, w = x.shape[-2:]

    def taps(out, size):
        src = ((torch.arange(out, dtype=torch.float64) + 0.5) * (size / out) - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=size - 1)
        return i0, (i0 + 1).clamp(max=size - 1), src - i0

    y0, y1, ly = taps(H, h)
    x0, x1, lx = taps(W, w)
    ly, lx = ly.view(H, 1), lx.view(1, W)
    top = x[..., y0, :][..., x0] * (1 - lx) + x[..., y0, :][..., x1] * lx
    bottom = x[..., y1, :][..., x0] * (1 - lx) + x[..., y1, :][..., x1] * lx
    return top * (1 - ly) + bottom * ly


# (B, [(C, h, w, layout)], (H, W)): MODNet's scale 2 with a same-size input, 1/2 and 1/4, its
# three-input form, non-integer scales both ways, 1 x 1 inputs, one-row and one-column outputs,
# a single input.
CASES = [
    (2, [(4, 6, 9, "cl"), (3, 12, 18, "nchw")], (12, 18)),
    (2, [(3, 24, 32, "nchw"), (5, 12, 16, "cl")], (6, 8)),
    (1, [(4, 8, 12, "cl"), (3, 4, 6, "cl"), (3, 32, 48, "nchw")], (8, 12)),
    (2, [(3, 5, 7, "cl"), (2, 17, 23, "nchw")], (11, 13)),
    (2, [(3, 1, 1, "cl"), (2, 1, 1, "nchw"), (1, 4, 5, "nchw")], (6, 7)),
    (2, [(3, 5, 6, "cl"), (2, 1, 9, "nchw")], (1, 9)),
    (1, [(3, 5, 6, "nchw"), (2, 7, 1, "cl")], (9, 1)),
    (3, [(6, 7, 9, "cl")], (14, 18)),
]


def test_reference_matches_the_formula_written_out():
    tensors = make_inputs(2, [(3, 5, 7, "nchw"), (2, 9, 8, "cl"), (1, 4, 6, "nchw")], dtype=torch.float64)
    got = reference.resize_concat(tensors, (9, 11))
    want = torch.cat([independent_resize(tensors[0], 9, 11), independent_resize(tensors[1], 9, 11),
                      independent_resize(tensors[2], 9, 11)], 1)
    assert_close(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(device, backend, case, dtype):
    B, specs, size = case
    tensors = make_inputs(B, specs, device, dtype)
    got = resize_concat(tensors, size, backend=backend)
    want = reference.resize_concat(tensors, size)
    shape = (B, sum(spec[0] for spec in specs), *size)
    assert got.shape == shape and got.dtype == dtype
    assert got.stride() == channels_last_strides(shape)
    assert_close(got, want)
    offset = 0
    for t in tensors:  # inputs at the output size are copied exactly
        if tuple(t.shape[-2:]) == size:
            assert torch.equal(got[:, offset:offset + t.shape[1]], t)
        offset += t.shape[1]


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_against_the_formula_written_out(device, backend):
    tensors = make_inputs(2, [(3, 6, 9, "cl"), (2, 13, 10, "nchw")], device, torch.float64)
    got = resize_concat(tensors, (12, 7), backend=backend)
    want = torch.cat([independent_resize(t.cpu(), 12, 7) for t in tensors], 1)
    torch.testing.assert_close(got.cpu(), want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_nan_propagates_like_the_reference(device, backend):
    tensors = make_inputs(1, [(2, 4, 5, "cl"), (2, 8, 10, "nchw"), (1, 16, 20, "nchw")], device)
    tensors[0][0, 1, 2, 3] = float("nan")
    tensors[1][0, 0, 7, 9] = float("nan")
    tensors[2][0, 0, 5, 6] = float("nan")
    got = resize_concat(tensors, (8, 10), backend=backend)
    want = reference.resize_concat(tensors, (8, 10))
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan()[:, 0].sum() == 0
    assert got.isnan()[:, 1].any() and got.isnan()[:, 2].any() and got.isnan()[:, 4].any()
    assert_close(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_batch(device, backend):
    tensors = make_inputs(0, [(3, 4, 5, "cl"), (2, 8, 10, "nchw")], device, requires_grad=True)
    got = resize_concat(tensors, (8, 10), backend=backend)
    assert got.shape == (0, 5, 8, 10) and got.stride() == channels_last_strides((0, 5, 8, 10))
    grads = torch.autograd.grad(got, tensors, torch.ones_like(got))
    assert [g.shape for g in grads] == [t.shape for t in tensors]


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs(device, backend):
    base = make_inputs(2, [(6, 10, 14, "nchw"), (3, 9, 11, "cl"), (4, 6, 8, "nchw")], device)
    tensors = [base[0][:, ::2, ::2, 1:],                  # strided slice, 5 x 6
               base[1][:, 1:],                            # a channel slice of a channels-last tensor
               base[2].transpose(2, 3).contiguous().transpose(2, 3)]  # H and W swapped in memory
    assert not any(t.is_contiguous() or t.is_contiguous(memory_format=torch.channels_last) for t in tensors)
    got = resize_concat(tuple(tensors), (6, 8), backend=backend)
    assert_close(got, reference.resize_concat([t.contiguous() for t in tensors], (6, 8)))


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_kernel_any_thread_count(threads):
    tensors = make_inputs(2, [(16, 33, 47, "cl"), (8, 66, 94, "cl"), (3, 17, 23, "nchw")])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = resize_concat(tensors, (66, 94), backend="cpu")
        assert_close(got, reference.resize_concat(tensors, (66, 94)))
    finally:
        torch.set_num_threads(previous)
    assert_same_bits_across_thread_counts(lambda: (resize_concat(tensors, (66, 94), backend="cpu"),))


GRADIENT_SPECS = [(3, 4, 5, "cl"), (2, 8, 10, "nchw"), (2, 16, 20, "cl"), (1, 5, 3, "nchw")]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_match_reference(device, backend, dtype):
    tensors = make_inputs(2, GRADIENT_SPECS, device, dtype, requires_grad=True)
    grad = torch.randn(2, 8, 8, 10).to(device, dtype)
    got = torch.autograd.grad(resize_concat(tensors, (8, 10), backend=backend), tensors, grad)
    want = torch.autograd.grad(reference.resize_concat(tensors, (8, 10)), tensors, grad)
    for g, w, t in zip(got, want, tensors):
        assert g.shape == t.shape and g.dtype == dtype
        assert_close(g, w)


# The backward is one op for every backend (test_gradients_match_reference runs it behind each
# forward); gradcheck's many forward calls are too slow for the Triton interpreter.
@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id != "triton-interpreter"])
def test_gradcheck_float64(device, backend):
    tensors = make_inputs(2, [(2, 3, 4, "cl"), (1, 6, 8, "nchw"), (2, 11, 13, "cl")], device, torch.float64,
                          requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: resize_concat(t, (6, 8), backend=backend), tuple(tensors))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    op = OP.resize_concat_triton if backend == "triton" else OP.resize_concat
    tensors = make_inputs(2, [(3, 4, 5, "cl"), (2, 8, 10, "nchw"), (1, 13, 7, "cl")], device,
                          requires_grad=True)
    torch.library.opcheck(op, (tensors, [8, 10]))
    grad = torch.randn(2, 6, 8, 10, device=device).contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(OP.resize_concat_backward, (grad, [t.detach() for t in tensors], [8, 10]))
    # a single input already at the output size: its gradient is a fresh tensor, not grad
    one = make_inputs(1, [(1, 8, 10, "nchw")], device)
    torch.library.opcheck(OP.resize_concat_backward, (torch.randn(1, 1, 8, 10, device=device), one, [8, 10]))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    # aot_eager traces dynamo + AOT autograd through the fake kernels, forward and backward;
    # inductor's first compile alone would take much of this file's budget on a CPU machine.
    torch._dynamo.reset()
    tensors = make_inputs(2, [(3, 4, 5, "cl"), (2, 8, 10, "nchw")], device, requires_grad=True)
    fn = torch.compile(lambda a, b: resize_concat([a, b], (8, 10), backend=backend) * 2, fullgraph=True,
                       backend="aot_eager")
    got = fn(*tensors)
    want = reference.resize_concat(tensors, (8, 10)) * 2
    assert_close(got, want)
    grad = torch.randn_like(want)
    for g, w in zip(torch.autograd.grad(got, tensors, grad), torch.autograd.grad(want, tensors, grad)):
        assert_close(g, w)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("change,message", [
    (lambda t, s: ([], s), "tensors must hold at least one tensor, got none"),
    (lambda t, s: ([t[0][0]] + t[1:], s), "tensors[0] must be 4-D [B, C, h, w]"),
    (lambda t, s: (t[:1] + [t[1][0]], s), "tensors[1] must be 4-D [B, C, h, w]"),
    (lambda t, s: ([t[0].int()], s), "tensors[0] must be a floating-point tensor"),
    (lambda t, s: (t[:1] + [t[1].double()], s), "tensors[1] must be torch.float32 (tensors[0]'s dtype)"),
    (lambda t, s: (t[:1] + [t[1][:1]], s), "tensors[1] must have tensors[0]'s batch 2"),
    (lambda t, s: (t[:1] + [t[1][..., :0]], s), "tensors[1] must be [B, C, h, w] with C, h, w >= 1"),
    (lambda t, s: ([t[0][:, :0]] + t[1:], s), "tensors[0] must be [B, C, h, w] with C, h, w >= 1"),
    (lambda t, s: (t[:1] + ["x"], s), "tensors[1] must be a torch.Tensor"),
    (lambda t, s: (t[0], s), "tensors must be a list or tuple of tensors"),
    (lambda t, s: (t, (8,)), "size must be (H, W), two ints >= 1"),
    (lambda t, s: (t, 8), "size must be (H, W), two ints >= 1"),
    (lambda t, s: (t, (0, 8)), "size[0] (H) must be an int in [1, 2**31 - 1], got 0"),
    (lambda t, s: (t, (8, 2.5)), "size[1] (W) must be an int in [1, 2**31 - 1]"),
    (lambda t, s: (t, (2 ** 20, 2 ** 20)), "the output would be [2, 5, 1048576, 1048576]"),
])
def test_bad_inputs_name_the_argument(backend, change, message):
    tensors, size = change(make_inputs(2, [(3, 4, 5, "cl"), (2, 8, 10, "nchw")]), (8, 10))
    with pytest.raises((ValueError, TypeError), match=re.escape("fastmatte.resize_concat: " + message)):
        resize_concat(tensors, size, backend=backend)


def test_kernels_check_their_inputs_when_called_directly():
    tensors = make_inputs(2, [(3, 4, 5, "cl"), (2, 8, 10, "nchw")])
    with pytest.raises(RuntimeError, match=r"tensors\[1\] must have tensors\[0\]'s batch 2"):
        OP.resize_concat([tensors[0], tensors[1][:1]], [8, 10])
    with pytest.raises(RuntimeError, match=r"tensors\[1\] must be Float \(tensors\[0\]'s dtype\)"):
        OP.resize_concat([tensors[0], tensors[1].double()], [8, 10])
    # (an empty list never reaches the kernel: the dispatcher refuses it, having no tensor to
    # dispatch on; the Python API names the argument, see test_bad_inputs_name_the_argument)
    with pytest.raises(RuntimeError, match=r"size\[1\] \(W\) must be an int in \[1, 2\*\*31 - 1\], got 0"):
        OP.resize_concat(tensors, [8, 0])
    with pytest.raises(RuntimeError, match=r"grad must be \[2, 5, 8, 10\] \(the output's shape\)"):
        OP.resize_concat_backward(torch.randn(2, 4, 8, 10), tensors, [8, 10])


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be"):
        resize_concat(make_inputs(1, [(1, 2, 2, "cl")]), (4, 4), backend="bogus")
