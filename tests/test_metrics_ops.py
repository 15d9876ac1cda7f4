"""The metric operators gradient_error and connectivity_error: every backend against the eager
reference on larger and harder inputs than tests/test_metrics.py, opcheck, torch.compile,
bad inputs in Python and in the kernels."""
import subprocess
import sys

import pytest
import torch

from fastmatte import reference
from fastmatte.ops import connectivity_error, gradient_error
from fastmatte.reference.connectivity_error import largest_component
from helpers import assert_same_bits_across_thread_counts, backend_params, subprocess_env

# No CUDA C++ kernels: on a GPU these ops run the Triton ones.
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OPS = {"gradient_error": (gradient_error, reference.gradient_error),
       "connectivity_error": (connectivity_error, reference.connectivity_error)}
# The interpreter is slow: keep its images small.
SHAPES = {"cpu": [(1, 1, 1), (2, 5, 7), (3, 33, 17), (1, 96, 130)],
          "triton": [(1, 1, 1), (2, 5, 7), (2, 19, 33)]}


def mattes(shape, dtype, device, seed=0, mask="bool"):
    """pred, gt, mask: gt with soft blobs, pred a noisy, partly quantized copy (threshold ties,
    many small equal components); mask ~70% of pixels, as bool, as a uint8 trimap (128 there,
    else 0 or 255) or None. uint8 mattes are round(255 * v)."""
    gen = torch.Generator().manual_seed(seed)
    B, H, W = shape
    y = torch.linspace(-1, 1, H)[:, None]
    x = torch.linspace(-1, 1, W)[None, :]
    gt = ((1.2 - (x * x + y * y).sqrt() * 1.5) * 2 + 0.3 * torch.randn(B, H, W, generator=gen)).clamp(0, 1)
    pred = (gt + 0.25 * torch.randn(B, H, W, generator=gen)).clamp(0, 1)
    ties = torch.rand(B, H, W, generator=gen) < 0.3
    pred = torch.where(ties, (pred * 5).round() / 5, pred)
    gt = (gt * 255).round() / 255
    counted = torch.rand(B, H, W, generator=gen) < 0.7
    known = torch.where(torch.rand(B, H, W, generator=gen) < 0.5, 0, 255).to(torch.uint8)
    region = {"bool": counted, "trimap": torch.where(counted, 128, known).to(torch.uint8), None: None}[mask]
    if dtype == torch.uint8:
        pred, gt = ((t * 255).round() for t in (pred, gt))
    return pred.to(device, dtype), gt.to(device, dtype), None if region is None else region.to(device)


def tolerance(name, dtype):
    if dtype == torch.float64:
        return dict(rtol=1e-10, atol=1e-14)
    # float32 filtering (uint8 too): the reference's conv2d sums taps in another order
    return dict(rtol=1e-5, atol=1e-9) if name == "gradient_error" else dict(rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
@pytest.mark.parametrize("mask_kind", [None, "bool", "trimap"])
def test_matches_reference(device, backend, name, dtype, mask_kind):
    op, ref = OPS[name]
    for i, shape in enumerate(SHAPES["triton" if backend == "triton" else "cpu"]):
        pred, gt, mask = mattes(shape, dtype, device, seed=i, mask=mask_kind)
        got = op(pred, gt, mask, backend=backend)
        assert got.dtype == torch.float64 and got.shape == (shape[0],) and got.device == pred.device
        torch.testing.assert_close(got.cpu(), ref(pred, gt, mask).cpu(), **tolerance(name, dtype))


@pytest.mark.parametrize("device,backend", BACKENDS + [pytest.param("cpu", "torch", id="reference")])
@pytest.mark.parametrize("name", list(OPS))
def test_uint8_gives_what_its_float32_copy_gives(device, backend, name):
    # uint8 mattes and a uint8 trimap reach the kernels as they are; the value must be the one
    # of the float32 copies v / 255 and the bool mask trimap == 128: the same bits where the
    # arithmetic is IEEE (the CPU, the interpreter), within float32 rounding on a GPU.
    op, _ = OPS[name]
    shape = (2, 19, 33) if backend == "triton" else (3, 70, 45)
    pred, gt, trimap = mattes(shape, torch.uint8, device, mask="trimap")
    pred[0] = pred[0].clamp(30, 200)  # an image that mat2gray stretches
    gt[1] = 77  # a constant one
    as_float = [t.float() / 255 for t in (pred, gt)]
    for mask, float_mask in ((trimap, trimap == 128), (None, None)):
        got = op(pred, gt, mask, backend=backend).cpu()
        want = op(*as_float, float_mask, backend=backend).cpu()
        if device == "cpu":
            assert torch.equal(got, want), (got, want)
        else:
            torch.testing.assert_close(got, want, **tolerance(name, torch.float32))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_conn_many_equal_components(device, backend):
    # A checkerboard of 2x2 blocks (4-connectivity keeps them apart): at every threshold all
    # the blocks that pass are equally large, so the column-major tie-break alone picks Omega,
    # and the blocks' different pred values make the pick visible in the error.
    H, W = (11, 18) if backend == "triton" else (41, 62)
    y, x = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    on = ((y // 2) + (x // 2)) % 2 == 0
    levels = torch.tensor([0.5, 0.7, 0.9, 1.0])[torch.randint(0, 4, ((H + 1) // 2, (W + 1) // 2))]
    gt = torch.where(on, 1.0, 0.0)
    pred = torch.where(on, levels[y // 2, x // 2], 0.0)
    for p, g in ((pred, gt), (pred.T, gt.T)):
        args = (p[None].contiguous().to(device), g[None].contiguous().to(device), None)
        torch.testing.assert_close(connectivity_error(*args, backend=backend).cpu(),
                                   reference.connectivity_error(*args).cpu(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_conn_tie_for_largest_component(device, backend):
    # Two equally large blobs, top-right (first in row-major order) and bottom-left (first in
    # column-major order, MATLAB's pick): only the picked one is Omega_1, and with different
    # pred values inside the blobs the pick changes the error.
    H, W = (9, 14) if backend == "triton" else (30, 41)
    gen = torch.Generator().manual_seed(0)
    gt = torch.zeros(H, W)
    gt[:3, -5:] = 1
    gt[-3:, :5] = 1
    pred = torch.where(gt > 0, 0.5 + 0.5 * torch.rand(H, W, generator=gen), 0.0)
    for p, g in ((pred, gt), (pred.T, gt.T)):
        args = (p[None].contiguous().to(device), g[None].contiguous().to(device), None)
        torch.testing.assert_close(connectivity_error(*args, backend=backend).cpu(),
                                   reference.connectivity_error(*args).cpu(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("name", list(OPS))
def test_empty_batch_and_images(device, backend, name):
    op, _ = OPS[name]
    for shape in [(0, 4, 5), (3, 0, 5), (2, 4, 0)]:
        for dtype in (torch.uint8, torch.float32):
            zeros = torch.zeros(shape, dtype=dtype, device=device)
            out = op(zeros, zeros, torch.zeros(shape, dtype=torch.uint8, device=device), backend=backend)
            assert out.shape == (shape[0],) and (out == 0).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_nan(device, backend):
    pred, gt, mask = mattes((2, 9, 11), torch.float32, device)
    pred[1, 4, 5] = float("nan")
    mask[1, 4, 5] = False
    grad = gradient_error(pred, gt, mask, backend=backend).cpu()
    assert not grad[0].isnan() and grad[1].isnan()
    conn = connectivity_error(pred, gt, mask, backend=backend).cpu()
    torch.testing.assert_close(conn, reference.connectivity_error(pred, gt, mask).cpu())
    assert not conn.isnan().any()  # the NaN pixel is not counted
    assert connectivity_error(pred, gt, None, backend=backend).cpu()[1].isnan()


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_same_bits_for_any_thread_count(name, dtype):
    pred, gt, mask = mattes((3, 150, 70), dtype, "cpu", mask="trimap")
    op, _ = OPS[name]
    assert_same_bits_across_thread_counts(lambda: (op(pred, gt, mask, backend="cpu"),))


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_opcheck(name, dtype):
    op = getattr(torch.ops.fastmatte, name).default
    for mask_kind in ("bool", "trimap", None):
        torch.library.opcheck(op, mattes((2, 11, 14), dtype, "cpu", mask=mask_kind))


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_opcheck_triton_op(name, dtype):
    pytest.importorskip("triton")
    args = mattes((1, 6, 9), dtype, "cuda" if torch.cuda.is_available() else "cpu", mask="trimap")
    # The interpreter runs on CPU tensors; opcheck's schema and fake checks hold either way.
    torch.library.opcheck(getattr(torch.ops.fastmatte, f"{name}_triton").default, args,
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_torch_compile(name, dtype):
    op, ref = OPS[name]
    pred, gt, mask = mattes((2, 13, 10), dtype, "cpu", mask="trimap")
    compiled = torch.compile(lambda p, g, m: op(p, g, m) * 2, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(pred, gt, mask), 2 * ref(pred, gt, mask), **tolerance(name, dtype))


@pytest.mark.parametrize("name", list(OPS))
@pytest.mark.parametrize(
    "args,message",
    [
        ((torch.zeros(4, 5), torch.zeros(4, 5)), r"pred must be 3-D \[B, H, W\], got \[4, 5\]"),
        ((torch.zeros(1, 4, 5, dtype=torch.float16), torch.zeros(1, 4, 5, dtype=torch.float16)),
         "pred must be uint8, float32 or float64, got torch.float16"),
        ((torch.zeros(1, 4, 5, dtype=torch.uint8), torch.zeros(1, 4, 5)), "gt must be torch.uint8"),
        ((torch.zeros(1, 4, 5), torch.zeros(1, 4, 5, dtype=torch.float64)), "gt must be torch.float32"),
        ((torch.zeros(1, 4, 5), torch.zeros(1, 5, 4)),
         r"gt must have pred's size \[1, 4, 5\], got \[1, 5, 4\]"),
        ((torch.zeros(1, 4, 5), torch.zeros(1, 4, 5), torch.zeros(1, 4, 5)),
         "mask must be bool or a uint8 trimap, got torch.float32"),
        ((torch.zeros(1, 4, 5), torch.zeros(1, 4, 5), torch.zeros(1, 4, 4, dtype=torch.bool)),
         "mask must have pred's size"),
    ],
)
def test_bad_inputs(name, args, message):
    op, _ = OPS[name]
    with pytest.raises(ValueError, match=f"fastmatte.{name}: {message}"):
        op(*args)


@pytest.mark.parametrize("name", list(OPS))
def test_kernel_checks(name):
    op = getattr(torch.ops.fastmatte, name)
    with pytest.raises(RuntimeError, match=f"fastmatte.{name}: pred must be contiguous"):
        op(torch.zeros(1, 5, 4).transpose(1, 2), torch.zeros(1, 4, 5))
    with pytest.raises(RuntimeError, match=f"fastmatte.{name}: gt must have pred's size"):
        op(torch.zeros(1, 4, 5), torch.zeros(1, 4, 6))
    with pytest.raises(RuntimeError, match=f"{name}: mask must be bool or a uint8 trimap, got Float"):
        op(torch.zeros(1, 4, 5), torch.zeros(1, 4, 5), torch.zeros(1, 4, 5))
    with pytest.raises(RuntimeError, match=f"{name}: pred must be uint8, float32 or float64, got Short"):
        op(torch.zeros(1, 4, 5, dtype=torch.int16), torch.zeros(1, 4, 5, dtype=torch.int16))
    with pytest.raises(RuntimeError, match=f"fastmatte.{name}: gt must be Byte, got Float"):
        op(torch.zeros(1, 4, 5, dtype=torch.uint8), torch.zeros(1, 4, 5))


@pytest.mark.parametrize("name", list(OPS))
def test_non_contiguous_inputs_are_copied(name):
    op, ref = OPS[name]
    pred, gt, mask = mattes((2, 12, 9), torch.float64, "cpu")
    pred_t, gt_t, mask_t = (t.transpose(1, 2) for t in (pred, gt, mask))
    want = ref(pred_t.contiguous(), gt_t.contiguous(), mask_t.contiguous())
    torch.testing.assert_close(op(pred_t, gt_t, mask_t), want)


def test_reference_tie_break_is_column_major():
    # The reference labels the transposed mask to number components in column-major order;
    # check it on a mask whose row-major and column-major first pixels differ.
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 2] = mask[2, 0] = True
    assert largest_component(mask).nonzero().tolist() == [[2, 0]]
    assert not largest_component(torch.zeros(2, 2, dtype=torch.bool)).any()


SM90_COMPILE = """
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
import fastmatte.kernels.connectivity_error as ce
import fastmatte.kernels.gradient_error as ge

def build(fn, signature, **constexprs):
    signature = {**signature, **{name: "constexpr" for name in constexprs}}
    source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
    triton.compile(source, target=GPUTarget("cuda", 90, 32))

image = {"H": "i32", "W": "i32"}
lanes = {"level_ptr": "*u8", "parent_ptr": "*i32", **image, "k": "i32"}
for t, work in (("*u8", "*fp32"), ("*fp32", "*fp32"), ("*fp64", "*fp64")):
    build(ge._horizontal_kernel, {"pred_ptr": t, "gt_ptr": t, "lo_ptr": t, "hi_ptr": t, "table_ptr": "*fp32",
                                  "taps_ptr": work, "planes_ptr": work, "B": "i32", **image})
    build(ce._levels_kernel, {"pred_ptr": t, "gt_ptr": t, "thresholds_ptr": work, "level_ptr": "*u8",
                              "parent_ptr": "*i32", **image})
    for mask in (0, 1, 128):
        build(ge._vertical_kernel, {"planes_ptr": work, "mask_ptr": "*u8", "taps_ptr": work,
                                    "out_ptr": "*fp64", "B": "i32", **image}, MASK=mask)
        build(ce._error_kernel, {"pred_ptr": t, "gt_ptr": t, "mask_ptr": "*u8", "thresholds_ptr": work,
                                 "bits_ptr": "*i32", "out_ptr": "*fp64", **image}, MASK=mask)
build(ce._union_kernel, lanes)
build(ce._sizes_kernel, {**lanes, "size_ptr": "*i32"})
build(ce._best_kernel, {**lanes, "size_ptr": "*i32", "best_ptr": "*i64"})
build(ce._members_kernel, {**lanes, "best_ptr": "*i64", "bits_ptr": "*i32"})
print("ok")
"""


def test_triton_kernels_compile_for_sm90():
    # Without a GPU the kernels only run in the interpreter, which accepts some things the
    # compiler does not: compile each specialization to an sm_90 cubin (no GPU needed).
    pytest.importorskip("triton")
    env = {k: v for k, v in subprocess_env().items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", SM90_COMPILE], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]
