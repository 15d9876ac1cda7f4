import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fastmatte import reference
from fastmatte.ops import trimap_fusion
from helpers import DTYPES, backend_params, subprocess_env

# The GPU kernel of this op is Triton's (no CUDA C++ kernel): every backend but "cuda".
BACKENDS = [p for p in backend_params(triton=True) if p.id != "cuda"]
OP = torch.ops.fastmatte
# Under TRITON_INTERPRET=1 the Triton kernel (ATen's CUDA arithmetic, unfused in NumPy) is
# compared with ATen's CPU F.interpolate: where the reference's best resized scores are this many
# ulps apart or closer (ulps of semantic's largest finite magnitude), any of those near-tied
# classes may win (measured: under 1 ulp apart wherever the two differ). Everywhere else, and on
# every pixel for the CPU kernel, the result must be bit-exact.
NEAR_TIE_ULPS = 2


def resized_scores(semantic, size):
    """The scores whose argmax the reference takes (float64 copies of semantic's dtype values)."""
    semantic = semantic.flatten(0, -4)
    if semantic.shape[-2:] != size:
        semantic = F.interpolate(semantic, size=size, mode="bilinear", align_corners=False)
    return semantic.double()


def near_tied_classes(semantic, shape):
    """[planes, 3, H, W] mask of the classes whose resized score is within NEAR_TIE_ULPS of the
    best one, at the pixels where more than one class is."""
    scores = resized_scores(semantic, shape[-2:])
    finite = semantic[semantic.isfinite()]
    scale = finite.abs().max().item() if finite.numel() else 1.0
    eps = NEAR_TIE_ULPS * torch.finfo(semantic.dtype).eps * max(scale, 1.0)
    tied = scores >= scores.max(1, keepdim=True).values - eps
    return tied & (tied.sum(1, keepdim=True) > 1)


def near_ties(semantic, shape):
    """[..., 1, H, W] mask of the pixels where more than one class is near-tied for the best."""
    return near_tied_classes(semantic, shape).any(1, keepdim=True).view(shape)


def must_be_exact(device, backend):
    # The CPU kernel reproduces ATen's CPU arithmetic; on a GPU, Triton reproduces ATen's CUDA
    # kernel (fused multiply-adds in the same places; to be confirmed on a GPU).
    return backend == "cpu" or device == "cuda"


def check_against_reference(device, backend, semantic, detail, fg_class=0, unknown_class=1):
    """Forward and detail gradient of the op equal the reference's, bit for bit (NaN == NaN),
    except at the near ties the interpreter may decide otherwise. Returns (alpha, those pixels)."""
    detail = detail.detach().requires_grad_()
    grad = torch.randn(detail.shape).to(detail)
    got = trimap_fusion(semantic, detail, fg_class, unknown_class, backend=backend)
    want = reference.trimap_fusion(semantic, detail, fg_class, unknown_class)
    assert got.shape == detail.shape and got.dtype == detail.dtype and got.device == detail.device
    got_grad, = torch.autograd.grad(got, detail, grad)
    want_grad, = torch.autograd.grad(want, detail, grad)
    allowed = torch.zeros(detail.shape, dtype=torch.bool, device=detail.device)
    if not must_be_exact(device, backend):
        # Near a tie, the value must still be that of one of the near-tied classes.
        tied = near_tied_classes(semantic, detail.shape).view(*detail.shape[:-3], 3, *detail.shape[-2:])
        d, g = detail.detach(), grad
        for c in range(3):
            alpha_c = d if c == unknown_class else torch.full_like(d, float(c == fg_class))
            grad_c = g if c == unknown_class else torch.zeros_like(g)
            allowed |= tied.narrow(-3, c, 1) & same_bits(got, alpha_c) & same_bits(got_grad, grad_c)
    for name, g, w in (("alpha", got, want), ("grad_detail", got_grad, want_grad)):
        same = same_bits(g, w) | allowed
        assert same.all(), f"{name}: {int((~same).sum())} of {same.numel()} pixels differ"
    return got.detach(), allowed


def same_bits(a, b):
    return (a == b) | (a.isnan() & b.isnan())


def near_tie_semantic(B, h, w, dtype, device="cpu"):
    """Scores where classes 1 and 2 are class 0 moved by -2..2 ulps at each pixel: resized, the
    differences are sums of a few ulps of mixed signs that often cancel, so the argmax hangs on
    the last bit of the resized scores, and on the exact weights that made them."""
    s0 = torch.randn(B, h, w).to(dtype)
    ulp = (torch.nextafter(s0, torch.tensor(float("inf"), dtype=dtype)) - s0).double()
    s1, s2 = ((s0.double() + torch.randint(-2, 3, (B, h, w)) * ulp).to(dtype) for _ in range(2))
    return torch.stack([s0, s1, s2], 1).to(device)


def make_inputs(B, h, w, H, W, device, dtype=torch.float32, detail_dtype=None):
    semantic = (torch.randn(B, 3, h, w) * 2).to(device, dtype)
    detail = torch.rand(B, 1, H, W).to(device, detail_dtype or dtype)
    return semantic, detail


# (B, h, w, H, W): semantic at lower resolution (odd sizes, x2.6 / x3.3), at 1/4, at equal
# resolution, at higher resolution (downscaling), with one axis already full size, a 1 x 1
# semantic, and an output with H + W > 128 (ATen's separable path on more than one thread).
SIZES = [(2, 5, 7, 13, 23), (1, 6, 9, 24, 36), (2, 9, 11, 9, 11), (1, 20, 30, 7, 11),
         (1, 8, 12, 8, 31), (1, 1, 1, 5, 6), (2, 20, 36, 80, 144)]
# ATen's four-tap path (H + W <= 128) at odd scales, its separable path at odd scales (where
# float16/bfloat16 weights round) and at x4.
NEAR_TIE_SIZES = [(2, 5, 7, 13, 23), (1, 13, 21, 61, 97), (1, 20, 36, 80, 144)]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("size", SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_matches_reference(device, backend, size, dtype):
    check_against_reference(device, backend, *make_inputs(*size, device, dtype))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("size", NEAR_TIE_SIZES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_near_ties_created_by_rounding(device, backend, size, dtype):
    """Scores one ulp apart: the resized values, rounded to semantic's dtype, tie or not exactly
    as F.interpolate's do (float16/bfloat16 rounding makes many exact ties)."""
    B, h, w, H, W = size
    semantic = near_tie_semantic(B, h, w, dtype, device)
    check_against_reference(device, backend, semantic, torch.rand(B, 1, H, W).to(device, dtype))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("size", NEAR_TIE_SIZES[:2], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_cpu_follows_atens_path_for_the_thread_count(threads, size, dtype):
    """ATen sums four weighted taps on one thread (and for H + W <= 128) and interpolates
    separably otherwise; the two round differently, and the CPU kernel follows the one taken."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        B, h, w, H, W = size
        semantic = near_tie_semantic(B, h, w, dtype)
        check_against_reference("cpu", "cpu", semantic, torch.rand(B, 1, H, W).to(dtype))
    finally:
        torch.set_num_threads(previous)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 CPU capabilities")
@pytest.mark.parametrize("capability", ["default", "avx2"])
def test_cpu_is_exact_under_each_aten_cpu_capability(capability):
    """ATen's AVX2/AVX512 kernels fuse multiply-adds and its DEFAULT ones do not; the kernel
    follows whichever this process runs (ATEN_CPU_CAPABILITY picks it at start-up)."""
    script = (
        "import torch; import test_trimap_fusion as t\n"
        f"assert torch.backends.cpu.get_cpu_capability() == {capability.upper()!r}\n"
        "for threads in (1, 2):\n"
        "    torch.set_num_threads(threads)\n"
        "    for dtype in t.DTYPES:\n"
        "        for size in t.NEAR_TIE_SIZES:\n"
        "            torch.manual_seed(0)\n"
        "            s = t.near_tie_semantic(*size[:3], dtype)\n"
        "            t.check_against_reference('cpu', 'cpu', s, torch.rand(size[0], 1, *size[3:]).to(dtype))\n"
    )
    env = subprocess_env(ATEN_CPU_CAPABILITY=capability)
    out = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parent, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_per_instance_form(device, backend, dtype):
    semantic = torch.randn(2, 3, 3, 5, 6).to(device, dtype)
    detail = torch.rand(2, 3, 1, 11, 14).to(device, dtype)
    got, _ = check_against_reference(device, backend, semantic, detail)
    for i in range(3):  # each instance is the 4-D op on its own planes
        torch.testing.assert_close(got[:, i], reference.trimap_fusion(semantic[:, i], detail[:, i]))


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("fg_class,unknown_class", [(f, u) for f in range(3) for u in range(3) if f != u])
def test_class_permutations(device, backend, fg_class, unknown_class):
    semantic, detail = make_inputs(2, 5, 6, 12, 13, device)
    got, allowed = check_against_reference(device, backend, semantic, detail, fg_class, unknown_class)
    index = resized_scores(semantic, (12, 13)).argmax(1, keepdim=True)  # the definition, directly
    want = torch.where(index == unknown_class, detail, (index == fg_class).float())
    assert ((got == want) | allowed).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("winner,expected", [(0, "ones"), (1, "detail"), (2, "zeros")])
def test_uniform_regions(device, backend, winner, expected):
    """All foreground, all unknown, all background."""
    semantic = torch.zeros(2, 3, 4, 5, device=device)
    semantic[:, winner] = 5.0
    detail = torch.rand(2, 1, 9, 11, device=device)
    got, _ = check_against_reference(device, backend, semantic, detail)
    want = {"ones": torch.ones_like(detail), "detail": detail, "zeros": torch.zeros_like(detail)}[expected]
    assert torch.equal(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_exact_ties_go_to_the_first_class(device, backend, dtype):
    """Equal scores everywhere: class 0 wins (fg with the default ids, unknown if permuted)."""
    semantic = torch.full((1, 3, 3, 4), 0.7).to(device, dtype)
    detail = torch.rand(1, 1, 7, 9).to(device, dtype)
    assert torch.equal(check_against_reference(device, backend, semantic, detail)[0], torch.ones_like(detail))
    assert torch.equal(check_against_reference(device, backend, semantic, detail, 1, 0)[0], detail)
    semantic[:, 0] = 0.0  # classes 1 and 2 tie above 0: class 1 wins
    assert torch.equal(check_against_reference(device, backend, semantic, detail)[0], detail)


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("semantic_dtype,detail_dtype",
                         [(torch.float32, torch.float16), (torch.float16, torch.float32),
                          (torch.bfloat16, torch.float64), (torch.float64, torch.bfloat16)], ids=str)
def test_mixed_dtypes(device, backend, semantic_dtype, detail_dtype):
    """semantic's dtype sets the argmax's rounding, detail's the output's."""
    check_against_reference(device, backend, *make_inputs(2, 5, 7, 13, 23, device, semantic_dtype, detail_dtype))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_nan_and_inf(device, backend):
    """A NaN score wins the argmax wherever bilinear reads it (also with weight 0), as in
    torch.argmax; inf scores and NaN details follow the reference too: a NaN detail shows only
    in the unknown region (torch.where semantics)."""
    semantic, detail = make_inputs(1, 6, 7, 15, 17, device)
    semantic[0, 1, 2, 3] = float("nan")  # unknown wins around it
    semantic[0, 0, 4, 1] = float("nan")
    semantic[0, 2, 4, 2] = float("nan")  # class 2's NaN loses to class 0's where both are read
    semantic[0, 0, 0, 5] = float("inf")
    semantic[0, 2, 5, 6] = float("-inf")
    detail[0, 0, ::3, ::2] = float("nan")
    got, allowed = check_against_reference(device, backend, semantic, detail)
    unknown = resized_scores(semantic, (15, 17)).argmax(1, keepdim=True) == 1
    assert got[unknown].isnan().any() and not got[~unknown & ~allowed].isnan().any()


def test_cpu_inf_with_one_axis_at_full_size_becomes_nan_like_aten():
    """ATen's CPU kernel resamples an axis of equal size with taps (i, i) weighted (1, 0), so an
    infinite score turns into NaN (inf * 0) and wins the argmax; the CPU kernel does the same."""
    semantic, detail = make_inputs(1, 5, 6, 5, 13, "cpu")
    semantic[0, 2, 1, 1] = float("inf")
    got, _ = check_against_reference("cpu", "cpu", semantic, detail)
    assert (got[0, 0, 1, 1:4] == 0).all()  # background: class 2's NaN wins


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_equal_size_is_no_resize(device, backend):
    """At H x W already, the scores are used as they are: an infinite score wins its own pixel
    only (resampling, even with weights (1, 0), would spread inf * 0 = NaN to its neighbours)."""
    semantic = torch.zeros(1, 3, 5, 6, device=device)
    semantic[:, 2] = 5.0
    semantic[0, 1, 2, 2] = float("inf")
    semantic[0, 0, 3, 4] = float("-inf")
    detail = torch.rand(1, 1, 5, 6, device=device)
    got, _ = check_against_reference(device, backend, semantic, detail)
    want = torch.zeros_like(detail)
    want[0, 0, 2, 2] = detail[0, 0, 2, 2]
    assert torch.equal(got, want)


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_gradcheck_float64(device, backend):
    semantic, detail = make_inputs(2, 3, 4, 7, 9, device, torch.float64)
    detail.requires_grad_()
    assert torch.autograd.gradcheck(lambda d: trimap_fusion(semantic, d, backend=backend), (detail,))
    five_d = detail.detach().view(1, 2, 1, 7, 9).requires_grad_()
    assert torch.autograd.gradcheck(lambda d: trimap_fusion(semantic[None], d, backend=backend), (five_d,))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_opcheck(device, backend):
    fusion = OP.trimap_fusion_triton if backend == "triton" else OP.trimap_fusion
    fusion_backward = OP.trimap_fusion_backward_triton if backend == "triton" else OP.trimap_fusion_backward
    semantic, detail = make_inputs(2, 4, 5, 9, 11, device)
    torch.library.opcheck(fusion, (semantic, detail.requires_grad_(), 2, 0))
    torch.library.opcheck(fusion_backward, (torch.randn_like(detail), semantic, 1))


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_torch_compile_fullgraph(device, backend):
    semantic, detail = make_inputs(1, 4, 5, 9, 11, device)
    detail.requires_grad_()
    fn = torch.compile(lambda s, d: trimap_fusion(s, d, backend=backend) * 2, fullgraph=True,
                       backend="aot_eager")
    got = fn(semantic, detail)
    want = 2 * reference.trimap_fusion(semantic, detail)
    allowed = near_ties(semantic, detail.shape) & (not must_be_exact(device, backend))
    got_grad, = torch.autograd.grad(got.sum(), detail)
    want_grad, = torch.autograd.grad(want.sum(), detail)
    assert ((got == want) | allowed).all() and ((got_grad == want_grad) | allowed).all()


@pytest.mark.parametrize("device,backend", BACKENDS)
@pytest.mark.parametrize("shapes", [((0, 3, 4, 5), (0, 1, 8, 9)), ((2, 0, 3, 4, 5), (2, 0, 1, 8, 9))], ids=str)
def test_empty_batch(device, backend, shapes):
    semantic = torch.randn(shapes[0], device=device)
    detail = torch.rand(shapes[1], device=device, requires_grad=True)
    out = trimap_fusion(semantic, detail, backend=backend)
    assert out.shape == detail.shape
    grad, = torch.autograd.grad(out, detail, torch.ones_like(out))
    assert grad.shape == detail.shape


@pytest.mark.parametrize("device,backend", BACKENDS)
def test_non_contiguous_inputs(device, backend):
    semantic = torch.randn(2, 5, 7, 3, device=device).permute(0, 3, 1, 2)
    detail = torch.rand(2, 19, 13, 1, device=device).permute(0, 3, 2, 1)
    check_against_reference(device, backend, semantic, detail)


def test_semantic_gets_no_gradient():
    semantic, detail = make_inputs(1, 3, 4, 6, 8, "cpu")
    semantic.requires_grad_()
    detail.requires_grad_()
    out = trimap_fusion(semantic, detail, backend="cpu")
    grads = torch.autograd.grad(out.sum(), (semantic, detail), allow_unused=True)
    assert grads[0] is None and grads[1] is not None


def valid_args(**changes):
    args = dict(semantic=torch.randn(1, 3, 4, 5), detail=torch.rand(1, 1, 8, 10), fg_class=0, unknown_class=1)
    args.update(changes)
    return args


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(semantic=torch.randn(3, 4, 5)),
         r"semantic must be 4-D \[B, 3, h, w\] or 5-D \[B, N, 3, h, w\], got \[3, 4, 5\]"),
        (dict(semantic=torch.randn(1, 4, 4, 5)),
         r"semantic must be \[B, 3, h, w\] with 3 class channels \(fg, unknown, bg scores\) and h, w >= 1, "
         r"got \[1, 4, 4, 5\]"),
        (dict(semantic=torch.randn(1, 3, 0, 5)), r"semantic must be .* with 3 class channels .* got \[1, 3, 0, 5\]"),
        (dict(semantic=torch.zeros(1, 3, 4, 5, dtype=torch.int64)), "semantic must be a floating-point tensor"),
        (dict(semantic=torch.zeros(1, 3, 4, 5, dtype=torch.float8_e4m3fn)),
         "semantic must be float32, float64, float16 or bfloat16, got torch.float8_e4m3fn"),
        (dict(detail=torch.rand(1, 2, 8, 10)),
         r"detail must be \[1, 1, H, W\] \(semantic's B, one channel\) with H, W >= 1, got \[1, 2, 8, 10\]"),
        (dict(detail=torch.rand(2, 1, 8, 10)), r"detail must be \[1, 1, H, W\] .*got \[2, 1, 8, 10\]"),
        (dict(detail=torch.rand(1, 1, 8, 0)), r"detail must be \[1, 1, H, W\] .*got \[1, 1, 8, 0\]"),
        (dict(detail=torch.rand(1, 1, 1, 8, 10)), r"detail must be 4-D \[B, 1, H, W\], got \[1, 1, 1, 8, 10\]"),
        (dict(semantic=torch.randn(2, 3, 3, 4, 5), detail=torch.rand(2, 2, 1, 8, 10)),
         r"detail must be \[2, 3, 1, H, W\] \(semantic's B, N, one channel\)"),
        (dict(detail=torch.zeros(1, 1, 8, 10, dtype=torch.int32)), "detail must be a floating-point tensor"),
        (dict(detail=torch.rand(1, 1, 8, 10, device="meta")), "detail is on meta but the other inputs are on cpu"),
        (dict(fg_class=3), r"fg_class must be an int in \[0, 2\], got 3"),
        (dict(unknown_class=-1), r"unknown_class must be an int in \[0, 2\], got -1"),
        (dict(fg_class=1), "fg_class and unknown_class must differ, both are 1"),
    ],
)
def test_bad_inputs(changes, message):
    with pytest.raises(ValueError, match="fastmatte.trimap_fusion: " + message):
        trimap_fusion(**valid_args(**changes))


def test_bad_types_and_backends():
    with pytest.raises(TypeError, match="fastmatte.trimap_fusion: semantic must be a torch.Tensor"):
        trimap_fusion(**valid_args(semantic=[[0.5]]))
    with pytest.raises(TypeError, match="fastmatte.trimap_fusion: unknown_class must be an int"):
        trimap_fusion(**valid_args(unknown_class=1.0))
    with pytest.raises(ValueError, match="backend='cuda' cannot run"):
        trimap_fusion(**valid_args(), backend="cuda")
    with pytest.raises(ValueError, match=re.escape(
            'fastmatte.trimap_fusion: backend must be None, "cpu", "cuda", "triton" or "torch", got \'numpy\'')):
        trimap_fusion(**valid_args(), backend="numpy")


@pytest.mark.parametrize(
    "changes,message",
    [
        (dict(semantic=torch.randn(1, 3, 5, 4).transpose(2, 3)), "semantic must be contiguous"),
        (dict(detail=torch.rand(1, 1, 10, 8).transpose(2, 3)), "detail must be contiguous"),
        (dict(semantic=torch.randn(1, 2, 4, 5)), r"semantic must be \[B, 3, h, w\] \(fg, unknown, bg scores\)"),
        (dict(semantic=torch.randn(3, 4, 5)), r"semantic must be 4-D \[B, 3, h, w\], got \[3, 4, 5\]"),
        (dict(semantic=torch.zeros(1, 3, 4, 5, dtype=torch.int32)),
         "semantic must be float32, float64, float16 or bfloat16, got Int"),
        (dict(detail=torch.rand(2, 1, 8, 10)), r"detail must be \[B=1, 1, H, W\] \(semantic's batch\)"),
        (dict(fg_class=1), "fg_class and unknown_class must differ, both are 1"),
        (dict(unknown_class=3), r"unknown_class must be an int in \[0, 2\], got 3"),
    ],
)
def test_kernel_checks(changes, message):
    with pytest.raises(RuntimeError, match="fastmatte.trimap_fusion: " + message):
        OP.trimap_fusion(*valid_args(**changes).values())


def test_backward_kernel_checks():
    semantic = torch.randn(1, 3, 4, 5)
    OP.trimap_fusion_backward(torch.rand(1, 1, 8, 10), semantic, 1)
    with pytest.raises(RuntimeError, match=r"trimap_fusion_backward: grad_alpha must be \[B=1, 1, H, W\]"):
        OP.trimap_fusion_backward(torch.rand(1, 2, 8, 10), semantic, 1)
    with pytest.raises(RuntimeError, match="trimap_fusion_backward: grad_alpha must be contiguous"):
        OP.trimap_fusion_backward(torch.rand(1, 1, 10, 8).transpose(2, 3), semantic, 1)
    with pytest.raises(RuntimeError,
                       match=r"trimap_fusion_backward: unknown_class must be an int in \[0, 2\], got 5"):
        OP.trimap_fusion_backward(torch.rand(1, 1, 8, 10), semantic, 5)
    with pytest.raises(ValueError, match=r"trimap_fusion_backward: grad_alpha must be \[1, 1, H, W\]"):
        OP.trimap_fusion_backward_triton(torch.rand(2, 1, 8, 10), semantic, 1)
