import re

import pytest
import torch
import torch.nn.functional as F

from fastmatte import reference
from fastmatte.ops import ibnorm
from helpers import DTYPES, assert_close, assert_same_bits_across_thread_counts, backend_params

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte
LAYOUTS = [pytest.param(torch.contiguous_format, id="nchw"), pytest.param(torch.channels_last, id="nhwc")]


def make_inputs(B, C, K, H, W, device="cpu", dtype=torch.float32, layout=torch.contiguous_format, mean=0.0):
    """A conv output's scale (per-channel offsets, so the ReLU cuts some channels more than others)
    and BatchNorm / InstanceNorm parameters around 1 and 0: (x, bn_scale, bn_shift, in_weight,
    in_bias). `mean` is added to x."""
    x = torch.randn(B, C, H, W) * (0.5 + torch.rand(1, C, 1, 1)) + torch.randn(1, C, 1, 1) + mean
    params = (1 + 0.5 * torch.randn(K), 0.5 * torch.randn(K),
              1 + 0.5 * torch.randn(C - K), 0.5 * torch.randn(C - K))
    x = x.to(device, dtype).contiguous(memory_format=layout)
    return (x, *(t.to(device, dtype) for t in params))


def independent_reference(x, bn_scale, bn_shift, in_weight, in_bias, eps=1e-5, relu=True):
    """The math through torch's own BatchNorm (eval, with running statistics that fold to
    bn_scale / bn_shift) and InstanceNorm, in float64."""
    x, bn_scale, bn_shift, in_weight, in_bias = (t.double() for t in (x, bn_scale, bn_shift, in_weight,
                                                                      in_bias))
    k = bn_scale.shape[0]
    running_var = torch.rand(k, dtype=torch.float64) + 0.5
    weight = bn_scale * torch.sqrt(running_var + 1e-3)
    running_mean = torch.randn(k, dtype=torch.float64)
    bias = bn_shift + running_mean * bn_scale
    bn, instance = x[:, :k], x[:, k:]  # either may have no channels, which the norms refuse
    if k > 0:
        bn = F.batch_norm(bn, running_mean, running_var, weight, bias, training=False, eps=1e-3)
    if instance.shape[1] > 0:  # torch.instance_norm: F.instance_norm refuses 1 x 1 maps
        instance = torch.instance_norm(instance, in_weight, in_bias, None, None, True, 0.0, eps, False)
    y = torch.cat([bn, instance], 1)
    return y.clamp_min(0) if relu else y


# (B, C, K, H, W): MODNet's split K = C / 2 at odd sizes, batch 3, a 1 x 1 map, a single row,
# no BatchNorm channels (K = 0), no instance channels (K = C), one channel, and C = 40 (a channel
# block larger than one vector, not a power of two).
SIZES = [(2, 16, 8, 13, 17), (3, 6, 3, 9, 5), (1, 7, 3, 1, 1), (1, 5, 2, 1, 23), (1, 6, 0, 9, 5),
         (2, 6, 6, 5, 9), (1, 1, 0, 7, 6), (1, 40, 20, 11, 7)]


@pytest.mark.parametrize("relu", [True, False])
def test_reference_matches_torch_batch_norm_and_instance_norm(relu):
    for size in SIZES:
        inputs = make_inputs(*size, dtype=torch.float64)
        want = independent_reference(*inputs, relu=relu)
        assert_close(reference.ibnorm(*inputs, eps=1e-5, relu=relu), want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(device, backend, layout, size, dtype):
    inputs = make_inputs(*size, device=device, dtype=dtype, layout=layout)
    relu = size[0] != 3  # one size without the ReLU (every size below has it off too)
    y = ibnorm(*inputs, relu=relu, backend=backend)
    x = inputs[0]
    assert y.shape == x.shape and y.dtype == dtype
    assert y.stride() == torch.empty_like(x).stride()  # the layout of x, as the fake kernel says
    assert_close(y, reference.ibnorm(*inputs, relu=relu))
    if dtype == torch.float32:
        assert_close(y, independent_reference(*inputs, relu=relu).float())
        no_relu = ibnorm(*inputs, relu=False, backend=backend)
        assert_close(no_relu, reference.ibnorm(*inputs, relu=False))
        if relu and size[2] < size[1] and size[3] * size[4] > 1:
            assert (y == 0).any() and (no_relu < 0).any()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_large_mean_costs_no_precision(device, backend, layout):
    """x = 1e4 + N(0, 1) in float32 (an ulp of x is 1e-3): the output agrees with float64 math on
    the same float32 values to 1e-5, where a one-pass sum of squares would lose everything and a
    float32 sum of the values alone loses ~1e-3 (the float32 reference's own error)."""
    inputs = make_inputs(2, 16, 8, 37, 53, device=device, layout=layout, mean=1e4)
    y = ibnorm(*inputs, relu=False, backend=backend)
    exact = reference.ibnorm(*(t.double() for t in inputs), relu=False)
    torch.testing.assert_close(y.double(), exact, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_float64_variance_below_eps(device, backend):
    """eps dominates a variance of 1e-6: it must reach the kernels as the float64 it is."""
    x, *params = make_inputs(2, 6, 3, 9, 11, device=device, dtype=torch.float64)
    x = x * 1e-3
    for eps in (1e-5, 0.1):
        assert_close(ibnorm(x, *params, eps=eps, relu=False, backend=backend),
                     reference.ibnorm(x, *params, eps=eps, relu=False))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_nan_propagates_like_torch(device, backend, layout):
    """A NaN on a BatchNorm channel gives a NaN at its own pixel; on an instance channel it makes
    the statistics NaN, so its whole (sample, channel) plane; the ReLU passes NaN through."""
    x, *params = make_inputs(2, 6, 3, 5, 7, device=device, layout=layout)
    x[0, 1, 2, 3] = float("nan")  # BatchNorm channel
    x[1, 4, 0, 0] = float("nan")  # instance channel, the first pixel (the kernels' shift)
    x[1, 5, 3, 6] = float("nan")  # instance channel, the last pixel
    for relu in (True, False):
        y = ibnorm(x, *params, relu=relu, backend=backend)
        want = reference.ibnorm(x, *params, relu=relu)
        assert torch.equal(y.isnan(), want.isnan())
        assert y.isnan().sum() == 1 + 2 * 35
        assert_close(y, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_empty_batch_and_no_channels(device, backend, layout):
    for size in [(0, 6, 3, 4, 5), (2, 0, 0, 4, 5)]:
        inputs = make_inputs(*size, device=device, layout=layout)
        y = ibnorm(*inputs, backend=backend)
        assert y.shape == inputs[0].shape and y.stride() == torch.empty_like(inputs[0]).stride()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_strided_inputs(device, backend):
    """x sliced (not dense: computed in a contiguous copy), x dense but neither NCHW nor
    channels-last, and parameters with a stride: empty_like(x)'s layout out, the right values."""
    x, *params = make_inputs(2, 10, 4, 12, 18, device=device)
    params = [torch.stack([p, p], 1)[:, 0] for p in params]  # stride 2
    nhcw = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 2, 1)  # dense, neither NCHW nor NHWC
    for strided in (x[:, :, ::2, 1::3], x.transpose(2, 3), nhcw):
        y = ibnorm(strided, *params, backend=backend)
        assert y.stride() == torch.empty_like(strided).stride()
        assert_close(y, reference.ibnorm(strided.contiguous(), *(p.contiguous() for p in params)))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", [(2, 24, 8, 97, 211), (1, 160, 16, 33, 41)], ids=str)
def test_cpu_kernel_any_thread_count(layout, size):
    """Tasks and blocks depend on the shapes only and their partial moments are merged in order:
    1 and 2 threads give the same bits (sizes with many tasks and block tails; 144 instance
    channels channels-last take several strips of vectors)."""
    inputs = make_inputs(*size, layout=layout)
    assert_same_bits_across_thread_counts(lambda: (ibnorm(*inputs, backend="cpu"),))
    assert_close(ibnorm(*inputs, backend="cpu"), reference.ibnorm(*inputs))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gradients_match_reference(device, backend, layout, dtype):
    inputs = make_inputs(2, 10, 4, 7, 9, device=device, dtype=dtype, layout=layout)
    inputs = [t.requires_grad_() for t in inputs]
    grad = torch.randn(inputs[0].shape).to(device, dtype)
    for relu in (True, False):
        got = torch.autograd.grad(ibnorm(*inputs, relu=relu, backend=backend), inputs, grad)
        want = torch.autograd.grad(reference.ibnorm(*inputs, relu=relu), inputs, grad)
        assert got[0].stride() == torch.empty_like(inputs[0]).stride()
        for g, w in zip(got, want):
            assert g.dtype == dtype and g.shape == w.shape
            atol, rtol = {torch.float16: (2e-2, 1e-2), torch.bfloat16: (1.5e-1, 5e-2)}.get(dtype, (0, 0))
            if atol == 0:
                assert_close(g, w, dtype=torch.float32 if dtype == torch.float32 else None)
            else:  # the parameters' gradients sum 126 terms: a few output ulps
                torch.testing.assert_close(g.float(), w.float(), atol=atol, rtol=rtol)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_gradcheck_float64(relu, layout):
    """The backward is one op for every backend (test_gradients_match_reference runs it behind each
    forward); gradcheck's many forward calls are too slow for the Triton interpreter."""
    inputs = tuple(t.requires_grad_() for t in make_inputs(2, 5, 2, 4, 3, dtype=torch.float64, layout=layout))
    assert torch.autograd.gradcheck(lambda *t: ibnorm(*t, relu=relu, backend="cpu"), inputs)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_opcheck(device, backend, layout):
    op = OP.ibnorm_triton if backend == "triton" else OP.ibnorm
    inputs = [t.requires_grad_() for t in make_inputs(2, 6, 2, 5, 7, device=device, layout=layout)]
    torch.library.opcheck(op, (*inputs, 1e-5, True))
    x, *params = (t.detach() for t in inputs)
    grad = torch.randn_like(x)
    torch.library.opcheck(OP.ibnorm_backward, (grad, x, *params, 1e-5, True))
    torch.library.opcheck(OP.ibnorm_backward, (grad, x, *params, 1e-3, False))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    torch._dynamo.reset()
    fn = torch.compile(lambda *t: ibnorm(*t, eps=1e-4, backend=backend) * 2, fullgraph=True)
    inputs = make_inputs(1, 8, 4, 6, 10, device=device, layout=torch.channels_last)
    assert_close(fn(*inputs), reference.ibnorm(*inputs, eps=1e-4) * 2)


# (the arguments made from the valid (x, bn_scale, bn_shift, in_weight, in_bias), keyword arguments,
# the error, its message after "fastmatte.ibnorm: ")
BAD_INPUTS = [
    (lambda x, s, h, w, b: (x[0], s, h, w, b), {}, ValueError, "x must be 4-D [B, C, H, W], got [6, 5, 7]"),
    (lambda x, s, h, w, b: (x.int(), s, h, w, b), {}, ValueError, "x must be a floating-point tensor"),
    (lambda x, s, h, w, b: (x[..., :0], s, h, w, b), {}, ValueError,
     "x must be [B, C, H, W] with H, W >= 1, got [2, 6, 5, 0]"),
    (lambda x, s, h, w, b: ("x", s, h, w, b), {}, TypeError, "x must be a torch.Tensor, got str"),
    (lambda x, s, h, w, b: (x, s.double(), h, w, b), {}, ValueError, "bn_scale must be torch.float32"),
    (lambda x, s, h, w, b: (x, s[None], h, w, b), {}, ValueError, "bn_scale must be 1-D [K], got [1, 2]"),
    (lambda x, s, h, w, b: (x, torch.ones(7), h, torch.ones(0), torch.ones(0)), {}, ValueError,
     "bn_scale must be [K] with K <= C = 6 (x's channels), got [7]"),
    (lambda x, s, h, w, b: (x, s, h[:1], w, b), {}, ValueError,
     "bn_shift must have bn_scale's shape [2], got [1]"),
    (lambda x, s, h, w, b: (x, s, h, w[:3], b), {}, ValueError,
     "in_weight must be [C - K = 4] (x's 6 channels less bn_scale's 2), got [3]"),
    (lambda x, s, h, w, b: (x, s, h, w, torch.ones(5)), {}, ValueError, "in_bias must be [C - K = 4]"),
    (lambda x, s, h, w, b: (x, s, h, w, b.half()), {}, ValueError, "in_bias must be torch.float32"),
    (lambda *t: t, {"eps": 0.0}, ValueError, "eps must be a positive finite number, got 0.0"),
    (lambda *t: t, {"eps": float("inf")}, ValueError, "eps must be a positive finite number, got inf"),
    (lambda *t: t, {"eps": "1e-5"}, TypeError, "eps must be a positive finite number, got '1e-5' (str)"),
    (lambda *t: t, {"relu": 1}, TypeError, "relu must be a bool, got 1 (int)"),
]


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("change,kwargs,error,message", BAD_INPUTS)
def test_bad_inputs_name_the_argument(backend, change, kwargs, error, message):
    args = change(*make_inputs(2, 6, 2, 5, 7))
    with pytest.raises(error, match=re.escape("fastmatte.ibnorm: " + message)):
        ibnorm(*args, **kwargs, backend=backend)


def test_inputs_on_different_devices_are_refused():
    x, s, h, w, b = make_inputs(1, 4, 2, 3, 3)
    with pytest.raises(ValueError, match="in_weight is on meta but the other inputs are on cpu"):
        ibnorm(x, s, h, w.to("meta"), b)


def test_kernel_checks_its_inputs_when_called_directly():
    x, s, h, w, b = make_inputs(2, 6, 2, 5, 7)
    with pytest.raises(RuntimeError, match=re.escape("in_weight must be [C - K = 4] (x's 6 channels less "
                                                     "bn_scale's 2), got [3]")):
        OP.ibnorm(x, s, h, w[:3], b)
    with pytest.raises(RuntimeError, match="bn_shift must be Float"):
        OP.ibnorm(x, s, h.double(), w, b)
    with pytest.raises(RuntimeError, match="eps must be a positive finite number, got -1"):
        OP.ibnorm(x, s, h, w, b, -1.0)
    with pytest.raises(RuntimeError, match=re.escape("ibnorm_backward: grad must have x's shape")):
        OP.ibnorm_backward(x[:1], x, s, h, w, b, 1e-5, True)


def test_backend_choice():
    inputs = make_inputs(1, 4, 2, 3, 3)
    with pytest.raises(ValueError, match="backend must be"):
        ibnorm(*inputs, backend="bogus")
    with pytest.raises(ValueError, match="backend='cuda' cannot run: backend 'cuda' needs cuda tensors"):
        ibnorm(*inputs, backend="cuda")
