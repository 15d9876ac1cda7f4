import re

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import area_resize
from helpers import DTYPES, assert_close, assert_same_bits_across_thread_counts, backend_params

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte


def make_input(B, C, h, w, layout="nchw", device="cpu", dtype=torch.float32, requires_grad=False):
    """randn [B, C, h, w]: layout "cl" is channels-last, "nchw" contiguous."""
    x = torch.randn(B, C, h, w).to(device, dtype)
    if layout == "cl":
        x = x.contiguous(memory_format=torch.channels_last)
    return x.requires_grad_(requires_grad)


def independent_area(x, H, W):
    """F.adaptive_avg_pool2d written out in float64, window by window: output (i, j) is the mean
    of x[..., floor(i * h / H) : ceil((i + 1) * h / H), floor(j * w / W) : ceil((j + 1) * w / W)]."""
    x = x.double()
    h, w = x.shape[-2:]
    out = torch.empty(*x.shape[:2], H, W, dtype=torch.float64)
    for i in range(H):
        hs, he = i * h // H, -(-(i + 1) * h // H)
        for j in range(W):
            ws, we = j * w // W, -(-(j + 1) * w // W)
            out[:, :, i, j] = x[:, :, hs:he, ws:we].sum((-2, -1)) / ((he - hs) * (we - ws))
    return out


# (B, C, h, w, layout, (H, W)): integer and non-integer ratios down and up, down one axis and up
# the other, identity, 1 x 1 in and out, one-row in and out, one-column, B > 1, NCHW and
# channels-last, many channels.
CASES = [
    (2, 3, 16, 24, "nchw", (8, 12)),
    (2, 3, 17, 23, "cl", (5, 7)),
    (2, 2, 4, 6, "nchw", (12, 18)),
    (1, 3, 5, 7, "cl", (17, 23)),
    (2, 4, 13, 5, "nchw", (6, 11)),
    (2, 3, 9, 11, "cl", (9, 11)),
    (2, 3, 1, 1, "nchw", (4, 5)),
    (2, 5, 9, 7, "cl", (1, 1)),
    (1, 2, 1, 9, "nchw", (3, 4)),
    (2, 3, 6, 8, "cl", (1, 8)),
    (1, 2, 7, 1, "nchw", (3, 1)),
    (3, 16, 20, 30, "cl", (7, 9)),
    (1, 1, 23, 37, "nchw", (64, 80)),
]


def test_reference_matches_the_formula_written_out():
    x = make_input(2, 3, 11, 13, dtype=torch.float64)
    for size in [(4, 5), (11, 13), (17, 29), (1, 13)]:
        assert_close(reference.area_resize(x, size), independent_area(x, *size))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(device, backend, case, dtype):
    B, C, h, w, layout, size = case
    x = make_input(B, C, h, w, layout, device, dtype)
    got = area_resize(x, size, backend=backend)
    want = reference.area_resize(x, size)
    assert got.shape == (B, C, *size) and got.dtype == dtype
    assert got.stride() == want.stride()  # x's memory format, as ATen's
    assert_close(got, want)
    if (h, w) == size:
        assert torch.equal(got, x)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_float64_against_the_formula_written_out(device, backend, layout):
    x = make_input(2, 3, 13, 10, layout, device, torch.float64)
    for size in [(5, 4), (29, 23), (13, 3)]:
        got = area_resize(x, size, backend=backend)
        torch.testing.assert_close(got.cpu(), independent_area(x.cpu(), *size), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_nan_propagates_like_the_reference(device, backend, layout):
    x = make_input(2, 3, 12, 14, layout, device)
    x[0, 1, 5, 6] = float("nan")
    x[1, 2, 0, 13] = float("inf")
    for size in [(5, 6), (25, 31)]:
        got = area_resize(x, size, backend=backend)
        want = reference.area_resize(x, size)
        assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
        assert torch.equal(got.isinf(), want.isinf()) and got.isinf().any()
        assert_close(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_empty_batch(device, backend, layout):
    x = make_input(0, 3, 8, 10, layout, device, requires_grad=True)
    got = area_resize(x, (4, 5), backend=backend)
    want = reference.area_resize(x, (4, 5))
    assert got.shape == (0, 3, 4, 5) and got.stride() == want.stride()
    (grad,) = torch.autograd.grad(got, x, torch.ones_like(got))
    assert grad.shape == x.shape


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs(device, backend):
    base = make_input(2, 6, 14, 18, "nchw", device)
    cl = make_input(2, 5, 9, 11, "cl", device)
    inputs = [base[:, ::2, ::2, 1:],                       # strided slice
              cl[:, 1:],                                   # a channel slice of a channels-last tensor
              base.transpose(2, 3),                        # H and W swapped
              base[:, :, 3:10].permute(0, 1, 3, 2)[..., 1:]]
    for x in inputs:
        assert not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        for size in [(3, 4), (13, 17)]:
            got = area_resize(x, size, backend=backend)
            want = reference.area_resize(x, size)
            assert got.stride() == want.stride()
            assert_close(got, want)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_cpu_kernel_any_thread_count(threads, layout):
    x = make_input(2, 5, 67, 93, layout)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for size in [(21, 30), (150, 211)]:
            assert_close(area_resize(x, size, backend="cpu"), reference.area_resize(x, size))
    finally:
        torch.set_num_threads(previous)
    assert_same_bits_across_thread_counts(lambda: (area_resize(x, (21, 30), backend="cpu"),
                                                   area_resize(x, (150, 211), backend="cpu")))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
@pytest.mark.parametrize("size", [(5, 4), (19, 17)], ids=str)
def test_gradients_match_reference(device, backend, dtype, layout, size):
    x = make_input(2, 3, 11, 9, layout, device, dtype, requires_grad=True)
    grad = torch.randn(2, 3, *size).to(device, dtype)
    (got,) = torch.autograd.grad(area_resize(x, size, backend=backend), x, grad)
    (want,) = torch.autograd.grad(reference.area_resize(x, size), x, grad)
    assert got.shape == x.shape and got.dtype == dtype and got.stride() == want.stride()
    assert_close(got, want)


# The backward is one op for every backend (test_gradients_match_reference runs it behind each
# forward); gradcheck's many forward calls are too slow for the Triton interpreter.
@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id != "triton-interpreter"])
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_gradcheck_float64(device, backend, layout):
    x = make_input(2, 2, 7, 5, layout, device, torch.float64, requires_grad=True)
    for size in [(3, 2), (9, 8)]:
        assert torch.autograd.gradcheck(lambda t: area_resize(t, size, backend=backend), (x,))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", ["nchw", "cl"])
def test_opcheck(device, backend, layout):
    op = OP.area_resize_triton if backend == "triton" else OP.area_resize
    x = make_input(2, 3, 10, 13, layout, device, requires_grad=True)
    for size in [[4, 5], [17, 19]]:
        torch.library.opcheck(op, (x, size))
        grad = torch.randn(2, 3, *size, device=device)
        torch.library.opcheck(OP.area_resize_backward, (grad, x.detach(), size))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    # aot_eager traces dynamo + AOT autograd through the fake kernels, forward and backward;
    # inductor's first compile alone would take much of this file's budget on a CPU machine.
    torch._dynamo.reset()
    x = make_input(2, 3, 12, 10, "cl", device, requires_grad=True)
    fn = torch.compile(lambda t: area_resize(t, (5, 7), backend=backend) * 2, fullgraph=True,
                       backend="aot_eager")
    got = fn(x)
    want = reference.area_resize(x, (5, 7)) * 2
    assert got.stride() == want.stride()
    assert_close(got, want)
    grad = torch.randn_like(want)
    assert_close(torch.autograd.grad(got, x, grad)[0], torch.autograd.grad(want, x, grad)[0])


def test_one_int_size_means_both_sides():
    x = make_input(1, 2, 9, 7)
    assert_close(area_resize(x, 4, backend="cpu"), reference.area_resize(x, (4, 4)))


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("change,message", [
    (lambda x, s: (x[0], s), "x must be 4-D [B, C, h, w]"),
    (lambda x, s: (x.int(), s), "x must be a floating-point tensor"),
    (lambda x, s: (x.to(torch.float8_e4m3fn), s), "x must be float32, float64, float16 or bfloat16"),
    (lambda x, s: (x[:, :0], s), "x must be [B, C, h, w] with C, h, w >= 1"),
    (lambda x, s: (x[..., :0], s), "x must be [B, C, h, w] with C, h, w >= 1"),
    (lambda x, s: ("x", s), "x must be a torch.Tensor"),
    (lambda x, s: (x, (8,)), "size must be (H, W), two ints >= 1"),
    (lambda x, s: (x, "88"), "size must be (H, W), two ints >= 1"),
    (lambda x, s: (x, (0, 8)), "size[0] (H) must be an int in [1, 2**31 - 1], got 0"),
    (lambda x, s: (x, (8, 2.5)), "size[1] (W) must be an int in [1, 2**31 - 1]"),
    (lambda x, s: (x, (8, True)), "size[1] (W) must be an int in [1, 2**31 - 1]"),
    (lambda x, s: (x, (2 ** 20, 2 ** 20)), "the output would be [2, 3, 1048576, 1048576]"),
])
def test_bad_inputs_name_the_argument(backend, change, message):
    x, size = change(make_input(2, 3, 8, 10), (4, 5))
    with pytest.raises((ValueError, TypeError), match=re.escape("fastmatte.area_resize: " + message)):
        area_resize(x, size, backend=backend)


def test_kernels_check_their_inputs_when_called_directly():
    x = make_input(2, 3, 8, 10)
    with pytest.raises(RuntimeError, match=r"fastmatte.area_resize: x must be 4-D \[B, C, h, w\]"):
        OP.area_resize(x[0], [4, 5])
    with pytest.raises(RuntimeError, match=r"x must be float32, float64, float16 or bfloat16, got Int"):
        OP.area_resize(x.int(), [4, 5])
    with pytest.raises(RuntimeError, match=r"x must be \[B, C, h, w\] with C, h, w >= 1"):
        OP.area_resize(x[:, :, :0], [4, 5])
    with pytest.raises(RuntimeError, match=r"size\[1\] \(W\) must be an int in \[1, 2\*\*31 - 1\], got 0"):
        OP.area_resize(x, [4, 0])
    with pytest.raises(RuntimeError, match=r"the output would be \[2, 3, 1048576, 1048576\]"):
        OP.area_resize(x, [2 ** 20, 2 ** 20])
    shape = r"area_resize_backward: grad must be \[2, 3, 4, 5\] \(the output's shape\)"
    with pytest.raises(RuntimeError, match=shape):
        OP.area_resize_backward(torch.randn(2, 3, 4, 6), x, [4, 5])
    with pytest.raises(RuntimeError, match=r"area_resize_backward: grad must be Float"):
        OP.area_resize_backward(torch.randn(2, 3, 4, 5).double(), x, [4, 5])


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be"):
        area_resize(make_input(1, 1, 2, 2), (4, 4), backend="bogus")
