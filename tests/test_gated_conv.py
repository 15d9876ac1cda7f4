import pytest
import torch
import torch.nn.functional as F

from fastmatte import reference
from fastmatte.nn import GatedConv2d
from fastmatte.ops import gated_conv
from helpers import (DTYPES, assert_close, assert_same_bits_across_thread_counts, backend_params,
                     needs_triton)

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte
NAMES = ("x", "guide", "w_hidden", "b_hidden", "w_gate", "b_gate", "w_out")


def make_inputs(B, C, H, W, h, w, device, dtype=torch.float32, requires_grad=False):
    """x, guide and weights scaled so that hidden units and the gate vary over their range."""
    gen = torch.Generator().manual_seed(B * 1000 + C * 100 + H + W + h + w)
    shapes = [(B, C, H, W), (B, 1, h, w), (C + 1, C + 1), (C + 1,), (C + 1,), (1,), (C, C)]
    scales = [1, 2, (C + 1) ** -0.5, 0.5, (C + 1) ** -0.5, 0.5, C ** -0.5]
    return [(torch.randn(s, generator=gen) * k).to(device, dtype).requires_grad_(requires_grad)
            for s, k in zip(shapes, scales)]


def reference_grads(grad, inputs):
    """The reference's output and autograd in float64."""
    inputs = [t.detach().double().requires_grad_() for t in inputs]
    out = reference.gated_conv(*inputs)
    return out, torch.autograd.grad(out, inputs, grad.double())


def grad_close(got, want, dtype):
    """Half-precision gradients are sums of rounded products: compare relative to their scale."""
    if dtype in (torch.float16, torch.bfloat16):
        scale = want.abs().max().item() + 1e-6
        torch.testing.assert_close(got.double(), want, atol=2e-2 * scale, rtol=2e-2)
    else:
        assert_close(got, want.to(dtype), dtype)


# (B, C, H, W, h, w): guide at lower, equal and higher resolution, odd sizes, C = 1 and C + 1
# not a power of two, C = 64 (the largest the issue asks for).
CASES = [
    (2, 3, 7, 9, 3, 4),
    (1, 1, 5, 6, 5, 6),
    (2, 8, 9, 13, 3, 5),
    (1, 16, 6, 10, 12, 15),
    (1, 64, 4, 6, 1, 2),
]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(device, backend, case, dtype):
    inputs = make_inputs(*case, device, dtype, requires_grad=True)
    got = gated_conv(*inputs, backend=backend)
    assert got.shape == inputs[0].shape and got.dtype == dtype and got.device == inputs[0].device
    grad = torch.randn_like(got)
    want, want_grads = reference_grads(grad, inputs)
    assert_close(got, want.to(dtype))
    for name, g, w in zip(NAMES, torch.autograd.grad(got, inputs, grad), want_grads):
        assert g.dtype == dtype and g.shape == w.shape, name
        grad_close(g, w, dtype)


def check_against_reference(inputs, backend, dtype=torch.float32):
    got = gated_conv(*inputs, backend=backend)
    grad = torch.randn(got.shape, generator=torch.Generator().manual_seed(5)).to(got)
    want, want_grads = reference_grads(grad, inputs)
    assert_close(got, want.to(dtype))
    for g, w in zip(torch.autograd.grad(got, inputs, grad), want_grads):
        grad_close(g, w, dtype)


def test_cpu_many_blocks_per_weight_gradient_group():
    # 2 x 142 blocks of 256 pixels (the last of each image partial) in 256 groups: some groups
    # sum two blocks, one of them across the batch boundary.
    check_against_reference(make_inputs(2, 3, 190, 190, 50, 47, "cpu", requires_grad=True), "cpu")


@needs_triton
def test_triton_backward_with_several_blocks_per_program(monkeypatch):
    # 3 images x 3 blocks of 64 pixels in 2 programs of 5 blocks: a program crosses images and
    # the last block of the last program does not exist.
    import fastmatte.kernels.gated_conv as kernels

    monkeypatch.setattr(kernels, "MAX_BACKWARD_PROGRAMS", 2)
    check_against_reference(make_inputs(3, 5, 10, 13, 4, 6, "cpu", requires_grad=True), "triton")


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs(device, backend):
    x, guide, w_hidden, b_hidden, w_gate, b_gate, w_out = make_inputs(2, 4, 6, 9, 3, 5, device)
    inputs = [x.to(memory_format=torch.channels_last), guide.transpose(2, 3).contiguous().transpose(2, 3),
              w_hidden.t().contiguous().t(), b_hidden.repeat(2)[::2], w_gate.repeat(2)[::2], b_gate,
              w_out.t().contiguous().t()]
    assert not any(t.is_contiguous() for i, t in enumerate(inputs) if i != 5)
    check_against_reference([t.requires_grad_() for t in inputs], backend)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_cpu_channels_last_is_read_and_written_in_place(dtype):
    # several blocks of 256 pixels and a partial one, two images, an odd channel count
    inputs = make_inputs(2, 5, 19, 33, 4, 7, "cpu", dtype)
    x = inputs[0].contiguous(memory_format=torch.channels_last)
    got = gated_conv(x, *inputs[1:], backend="cpu")
    assert got.is_contiguous(memory_format=torch.channels_last) and not got.is_contiguous()
    assert torch.equal(got, gated_conv(*inputs, backend="cpu"))  # the same arithmetic, per pixel
    assert_close(got, reference.gated_conv(*inputs), dtype)
    torch.library.opcheck(OP.gated_conv, (x.requires_grad_(), *[t.requires_grad_() for t in inputs[1:]]))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_nan_propagates_like_the_reference(device, backend):
    inputs = make_inputs(1, 3, 6, 8, 3, 4, device)
    inputs[0][0, 1, 2, 3] = float("nan")  # one pixel of one channel: that pixel's outputs
    inputs[1][0, 0, 2, 0] = float("nan")  # one guide cell: the pixels that sample it
    got = gated_conv(*inputs, backend=backend)
    want = reference.gated_conv(*inputs)
    assert want.isnan().any() and not want.isnan().all()
    assert_close(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("gate_bias", [-200.0, 200.0])
def test_saturated_gate(device, backend, gate_bias):
    inputs = make_inputs(1, 4, 5, 6, 2, 3, device, requires_grad=True)
    inputs[5] = torch.full((1,), gate_bias, device=device, requires_grad=True)
    check_against_reference(inputs, backend)


def test_cpu_backward_is_deterministic_across_thread_counts():
    inputs = make_inputs(2, 8, 33, 40, 9, 10, "cpu")
    grad = torch.randn_like(inputs[0])
    assert_same_bits_across_thread_counts(lambda: OP.gated_conv_backward(grad, *inputs))


def test_empty_batch():
    inputs = make_inputs(0, 4, 5, 6, 2, 3, "cpu", requires_grad=True)
    out = gated_conv(*inputs, backend="cpu")
    assert out.shape == (0, 4, 5, 6)
    grads = torch.autograd.grad(out, inputs, torch.ones_like(out))
    assert all(g.shape == t.shape and not g.any() for g, t in zip(grads, inputs))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck(device, backend):
    inputs = make_inputs(2, 3, 5, 4, 3, 2, device, torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *a: gated_conv(*a, backend=backend), inputs)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    op = OP.gated_conv_triton if backend == "triton" else OP.gated_conv
    inputs = make_inputs(2, 4, 5, 7, 3, 4, device, requires_grad=True)
    torch.library.opcheck(op, tuple(inputs))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    inputs = make_inputs(1, 4, 6, 8, 3, 4, device, requires_grad=True)
    fn = torch.compile(lambda *a: gated_conv(*a, backend=backend) * 2, fullgraph=True, backend="aot_eager")
    got = fn(*inputs)
    assert_close(got, 2 * reference.gated_conv(*inputs))
    got.sum().backward()
    assert all(t.grad is not None for t in inputs)


def randomize_batch_norms(module):
    gen = torch.Generator().manual_seed(3)
    for bn in (module._gate_conv[0], module._gate_conv[4]):
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=gen))
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.bias.data.copy_(torch.randn(n, generator=gen))
    return module


def functional_gated_conv(module, x, guide, training):
    """GatedConv2d's math written from the PaddleSeg definition with torch.nn.functional."""
    bn_in, hidden, _, gate, bn_gate = module._gate_conv[:5]

    def batch_norm(t, bn):
        return F.batch_norm(t, bn.running_mean.clone(), bn.running_var.clone(), bn.weight, bn.bias,
                            training, 0.1, bn.eps)

    guide = F.interpolate(guide, size=x.shape[-2:], mode="bilinear", align_corners=False)
    z = F.relu(F.conv2d(batch_norm(torch.cat([x, guide], 1), bn_in), hidden.weight, hidden.bias))
    g = torch.sigmoid(batch_norm(F.conv2d(z, gate.weight, gate.bias), bn_gate))
    return F.conv2d(x * (g + 1), module.conv.weight)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_module_eval_runs_the_fused_op_with_the_layers_function(device, backend):
    module = randomize_batch_norms(GatedConv2d(5)).eval().to(device)
    x = torch.randn(2, 5, 9, 11, device=device, requires_grad=True)
    guide = torch.randn(2, 1, 3, 4, device=device, requires_grad=True)
    grad = torch.randn(2, 5, 9, 11, device=device)
    wrt = list(module.parameters()) + [x, guide]
    got = module(x, guide, backend=backend)
    want = functional_gated_conv(module, x, guide, training=False)
    assert_close(got, want)
    for g, w in zip(torch.autograd.grad(got, wrt, grad), torch.autograd.grad(want, wrt, grad)):
        torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)


def test_module_training_uses_batch_statistics():
    module = randomize_batch_norms(GatedConv2d(3)).train()
    twin = GatedConv2d(3).train()
    twin.load_state_dict(module.state_dict())
    x, guide = torch.randn(2, 3, 8, 10), torch.randn(2, 1, 4, 5)
    got = module(x, guide)
    want = functional_gated_conv(twin, x, guide, training=True)
    assert_close(got, want)
    got.square().sum().backward()
    want_grads = torch.autograd.grad(want.square().sum(), list(twin.parameters()))
    for g, w in zip((p.grad for p in module.parameters()), want_grads):
        assert_close(g, w)
    bn = module._gate_conv[0]
    batch = torch.cat([x, F.interpolate(guide, size=(8, 10), mode="bilinear", align_corners=False)], 1)
    assert_close(bn.running_mean, 0.9 * twin._gate_conv[0].running_mean + 0.1 * batch.mean((0, 2, 3)))


def test_module_frozen_batch_norms_take_the_fused_path(monkeypatch):
    module = randomize_batch_norms(GatedConv2d(3)).train()
    module._gate_conv[0].eval()
    module._gate_conv[4].eval()
    calls = []
    monkeypatch.setattr("fastmatte.nn.gated_conv.ops.gated_conv",
                        lambda *a, **k: calls.append(1) or reference.gated_conv(*a))
    module(torch.randn(1, 3, 4, 4), torch.randn(1, 1, 2, 2))
    assert calls


def test_module_state_dict_has_paddleseg_layout():
    keys = set(GatedConv2d(4).state_dict())
    bn = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    want = ({f"_gate_conv.0.{k}" for k in bn} | {f"_gate_conv.4.{k}" for k in bn}
            | {"_gate_conv.1.weight", "_gate_conv.1.bias", "_gate_conv.3.weight", "_gate_conv.3.bias",
               "conv.weight"})
    assert keys == want
    shapes = {k: list(v.shape) for k, v in GatedConv2d(4).state_dict().items()}
    assert shapes["_gate_conv.1.weight"] == [5, 5, 1, 1] and shapes["_gate_conv.3.weight"] == [1, 5, 1, 1]
    assert shapes["conv.weight"] == [4, 4, 1, 1] and shapes["_gate_conv.0.running_var"] == [5]


def test_module_half_precision_matches_float():
    module = randomize_batch_norms(GatedConv2d(8)).eval()
    x, guide = torch.randn(1, 8, 6, 7), torch.randn(1, 1, 3, 3)
    want = module(x, guide, backend="torch")
    got = module.to(torch.bfloat16)(x.bfloat16(), guide.bfloat16())
    torch.testing.assert_close(got.float(), want, atol=0.1, rtol=0.05)


def test_module_errors():
    with pytest.raises(ValueError, match="channels must be an int >= 1"):
        GatedConv2d(0)
    with pytest.raises(ValueError, match=r"x must be \[B, 4, H, W\]"):
        GatedConv2d(4).eval()(torch.randn(1, 3, 5, 5), torch.randn(1, 1, 2, 2))


def ok_inputs(**changes):
    args = dict(zip(NAMES, make_inputs(1, 4, 5, 6, 2, 3, "cpu")))
    args.update(changes)
    return args


@pytest.mark.parametrize("changes,message", [
    (dict(x=torch.randn(4, 5, 6)), r"x must be 4-D \[B, C, H, W\], got \[4, 5, 6\]"),
    (dict(x=torch.ones(1, 4, 5, 6, dtype=torch.int32)), "x must be a floating-point tensor"),
    (dict(guide=torch.randn(1, 2, 2, 3)), r"guide must be \[B=1, 1, h, w\]"),
    (dict(guide=torch.randn(2, 1, 2, 3)), r"guide must be \[B=1, 1, h, w\]"),
    (dict(guide=torch.randn(1, 1, 0, 3)), r"with h, w >= 1"),
    (dict(guide=torch.randn(1, 1, 2, 3).double()), "guide must be torch.float32"),
    (dict(w_hidden=torch.randn(4, 4)), r"w_hidden must be \[5, 5\] for x's C = 4, got \[4, 4\]"),
    (dict(b_hidden=torch.randn(4)), r"b_hidden must be \[5\]"),
    (dict(w_gate=torch.randn(1, 5)), r"w_gate must be \[5\]"),
    (dict(b_gate=torch.randn(())), r"b_gate must be \[1\]"),
    (dict(w_out=torch.randn(4, 5)), r"w_out must be \[4, 4\]"),
    (dict(w_out=torch.randn(4, 4).half()), "w_out must be torch.float32"),
])
def test_bad_inputs(changes, message):
    with pytest.raises(ValueError, match=message):
        gated_conv(**ok_inputs(**changes))


def test_cpp_kernel_checks_inputs():
    args = ok_inputs()
    args["w_hidden"] = torch.randn(4, 4)
    with pytest.raises(RuntimeError, match="w_hidden"):
        OP.gated_conv(*args.values())
    args = ok_inputs()
    args["x"] = args["x"].transpose(2, 3).contiguous().transpose(2, 3)
    with pytest.raises(RuntimeError, match="x must be contiguous"):
        OP.gated_conv(*args.values())


def test_forced_backend_that_cannot_run():
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        gated_conv(**ok_inputs(), backend="cuda")
