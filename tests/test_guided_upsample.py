import re

import pytest
import torch
import torch.nn.functional as F

from fastmatte import reference
from fastmatte.ops import guided_upsample
from helpers import DTYPES, assert_close, backend_params

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte


def make_inputs(B, h, w, H, W, device="cpu", dtype=torch.float32):
    """A frame in [0, 1] and coefficients of RVM's scale: A around 0, b small, so that the
    foreground and alpha cover the inside of [0, 1] and both clamps."""
    image = torch.rand(B, 3, H, W)
    coef_a = torch.randn(B, 4, h, w) * 0.5
    coef_b = torch.randn(B, 4, h, w) * 0.4 + torch.tensor([0, 0, 0, 0.5]).view(1, 4, 1, 1)
    return tuple(t.to(device, dtype) for t in (image, coef_a, coef_b))


def independent_reference(image, coef_a, coef_b):
    """The math written out per channel in float64, without the reference's cat/promotions."""
    x, a, b = (t.double() for t in (image, coef_a, coef_b))
    size = x.shape[-2:]
    up_a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
    up_b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
    mean = (x[:, 0:1] + x[:, 1:2] + x[:, 2:3]) / 3
    foreground = torch.clamp(up_a[:, :3] * x + up_b[:, :3] + x, 0, 1)
    alpha = torch.clamp(up_a[:, 3:] * mean + up_b[:, 3:], 0, 1)
    return foreground, alpha


# (B, h, w, H, W): RVM's x4, odd non-integer scales, equal size, a 1 x 1 coefficient map, a
# downscale, and one row/column outputs.
SIZES = [(2, 6, 9, 24, 36), (1, 5, 7, 13, 23), (2, 9, 11, 9, 11), (1, 1, 1, 5, 6),
         (1, 20, 30, 7, 11), (1, 3, 4, 1, 17), (1, 3, 4, 19, 1), (3, 16, 24, 64, 96)]


def test_reference_matches_the_math_written_out():
    inputs = make_inputs(2, 5, 7, 13, 23, dtype=torch.float64)
    for got, want in zip(reference.guided_upsample(*inputs), independent_reference(*inputs)):
        assert_close(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(device, backend, size, dtype):
    inputs = make_inputs(*size, device=device, dtype=dtype)
    foreground, alpha = guided_upsample(*inputs, backend=backend)
    want_fg, want_alpha = reference.guided_upsample(*inputs)
    B, _, _, H, W = size
    assert foreground.shape == (B, 3, H, W) and alpha.shape == (B, 1, H, W)
    assert foreground.dtype == alpha.dtype == dtype and foreground.is_contiguous()
    assert_close(foreground, want_fg)
    assert_close(alpha, want_alpha)
    if size[1] * size[2] >= 20:  # enough coefficients that both clamps are hit
        assert (alpha == 0).any() and (alpha == 1).any()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_nan_passes_through_like_torch_clamp(device, backend):
    image, coef_a, coef_b = make_inputs(1, 4, 4, 8, 8, device)
    image[0, 1, 2, 3] = float("nan")
    coef_b[0, 3, 0, 0] = float("nan")
    for got, want in zip(guided_upsample(image, coef_a, coef_b, backend=backend),
                         reference.guided_upsample(image, coef_a, coef_b)):
        assert torch.equal(got.isnan(), want.isnan()) and got.isnan().any()
        assert_close(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_empty_batch_and_non_contiguous_inputs(device, backend):
    empty = make_inputs(0, 3, 3, 6, 6, device)
    foreground, alpha = guided_upsample(*empty, backend=backend)
    assert foreground.shape == (0, 3, 6, 6) and alpha.shape == (0, 1, 6, 6)
    image, coef_a, coef_b = make_inputs(2, 5, 6, 20, 24, device)
    strided = (image.to(memory_format=torch.channels_last),
               coef_a.transpose(2, 3).contiguous().transpose(2, 3),
               coef_b.to(memory_format=torch.channels_last))
    for got, want in zip(guided_upsample(*strided, backend=backend),
                         reference.guided_upsample(image, coef_a, coef_b)):
        assert_close(got, want)


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_kernel_any_thread_count(threads):
    """Runs of rows share widened coefficient rows: every split of the rows gives the same."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        inputs = make_inputs(2, 17, 31, 67, 121)
        for got, want in zip(guided_upsample(*inputs, backend="cpu"), reference.guided_upsample(*inputs)):
            assert_close(got, want)
    finally:
        torch.set_num_threads(previous)


def gradient_inputs(device, dtype=torch.float64):
    """Inputs whose pre-clamp values stay off the clamps' kinks at 0 and 1 (where torch versions
    disagree on the gradient), with some pixels clamped on each side."""
    image, coef_a, coef_b = make_inputs(2, 4, 5, 11, 14, device, dtype)
    fg, alpha = independent_reference(image, coef_a, coef_b)
    assert (alpha == 0).any() and (alpha == 1).any() and (fg == 1).any()
    return image, coef_a, coef_b


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_match_reference(device, backend, dtype):
    inputs = [t.requires_grad_() for t in gradient_inputs(device, dtype)]
    grads = [torch.randn(inputs[0].shape).to(device, dtype), torch.randn(2, 1, 11, 14).to(device, dtype)]
    got = torch.autograd.grad(guided_upsample(*inputs, backend=backend), inputs, grads)
    want = torch.autograd.grad(reference.guided_upsample(*inputs), inputs, grads)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        atol, rtol = {torch.float16: (1e-2, 1e-2), torch.bfloat16: (8e-2, 5e-2)}.get(dtype, (None, None))
        if atol is None:
            assert_close(g, w)
        else:  # gradients of the coefficients sum ~16 terms: a few output ulps
            torch.testing.assert_close(g.float(), w.float(), atol=atol, rtol=rtol)


# The backward is one op for every backend (test_gradients_match_reference runs it behind each
# forward); gradcheck's thousands of forward calls are too slow for the Triton interpreter.
@pytest.mark.parametrize("device,backend", [p for p in BACKENDS if p.id != "triton-interpreter"])
def test_gradcheck_float64(device, backend):
    inputs = tuple(t.requires_grad_() for t in gradient_inputs(device))
    assert torch.autograd.gradcheck(lambda *t: guided_upsample(*t, backend=backend), inputs)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    upsample = OP.guided_upsample_triton if backend == "triton" else OP.guided_upsample
    inputs = [t.requires_grad_() for t in make_inputs(2, 3, 5, 9, 17, device)]
    torch.library.opcheck(upsample, tuple(inputs))
    image, coef_a, coef_b = (t.detach() for t in inputs)
    grads = (torch.randn_like(image), torch.randn(2, 1, 9, 17, device=device))
    torch.library.opcheck(OP.guided_upsample_backward, (*grads, image, coef_a, coef_b))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    fn = torch.compile(lambda *t: guided_upsample(*t, backend=backend)[1] * 2, fullgraph=True)
    inputs = make_inputs(1, 4, 6, 16, 24, device)
    assert_close(fn(*inputs), reference.guided_upsample(*inputs)[1] * 2)


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("change,message", [
    (lambda i, a, b: (i[:, :2], a, b), "image must be [B, 3, H, W]"),
    (lambda i, a, b: (i[0], a, b), "image must be 4-D"),
    (lambda i, a, b: (i.int(), a, b), "image must be a floating-point tensor"),
    (lambda i, a, b: (i, a.double(), b), "coef_a must be torch.float32"),
    (lambda i, a, b: (i, a[:, :3], b), "coef_a must be [B=2, 4, h, w]"),
    (lambda i, a, b: (i, a, b[:1]), "coef_b must be [B=2, 4, h, w]"),
    (lambda i, a, b: (i, a, b[..., :2]), "coef_b must have coef_a's shape"),
    (lambda i, a, b: (i, a[..., :0], b[..., :0]),
     "coef_a must be [B=2, 4, h, w] (image's batch, 4 coefficients) with h, w >= 1"),
    (lambda i, a, b: (i, a, "b"), "coef_b must be a torch.Tensor"),
])
def test_bad_inputs_name_the_argument(backend, change, message):
    inputs = change(*make_inputs(2, 3, 4, 12, 16))
    with pytest.raises((ValueError, TypeError), match=re.escape("fastmatte.guided_upsample: " + message)):
        guided_upsample(*inputs, backend=backend)


def test_kernel_checks_its_inputs_when_called_directly():
    image, coef_a, coef_b = make_inputs(2, 3, 4, 12, 16)
    with pytest.raises(RuntimeError, match=r"coef_a must be \[B=2, 4, h, w\]"):
        OP.guided_upsample(image, coef_a[:, :3], coef_b)
    with pytest.raises(RuntimeError, match="coef_b must be Float"):
        OP.guided_upsample(image, coef_a, coef_b.double())


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend must be"):
        guided_upsample(*make_inputs(1, 2, 2, 4, 4), backend="bogus")
