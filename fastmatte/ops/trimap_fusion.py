"""fastmatte.ops.trimap_fusion: PP-Matting's semantic-detail fusion in one pass."""
import torch

from fastmatte import reference
from fastmatte._extension import HAS_C
from fastmatte.ops._backend import OpBackends
from fastmatte.ops._checks import FLOAT_DTYPES, check_int, check_tensor, fail

BACKENDS = OpBackends("trimap_fusion", triton=True)
CLASSES = 3


def trimap_fusion(semantic: torch.Tensor, detail: torch.Tensor, fg_class: int = 0,
                  unknown_class: int = 1, *, backend=None) -> torch.Tensor:
    """Alpha from a 3-class semantic map and a detail alpha: the detail in the unknown region,
    1 in the foreground, 0 in the background.

    Args:
        semantic: [B, 3, h, w] class scores (logits or probabilities; PP-Matting: 0 foreground,
            1 transition, 2 background), any h, w >= 1: resized to H x W like
            ``F.interpolate(mode="bilinear", align_corners=False)``, downscaling included, and
            used as is when already H x W. Or [B, N, 3, h, w] per instance (E2E-HIM).
            float32, float64, float16 or bfloat16; its dtype may differ from detail's.
        detail: [B, 1, H, W] (or [B, N, 1, H, W]) detail alpha, one of the same four dtypes,
            on semantic's device.
        fg_class, unknown_class: distinct class ids in [0, 2].
        backend: None (fastest here), "cpu", "triton" or "torch" (the reference).

    Returns:
        alpha shaped and typed like detail: with ``k`` the argmax over the 3 classes of the
        resized scores (first maximum wins, a NaN wins like torch.argmax), ``detail`` where
        ``k == unknown_class``, 1 where ``k == fg_class``, else 0 (torch.where: a NaN detail
        outside the unknown region does not leak). The argmax is the reference's: the scores
        are resampled with ATen's own arithmetic and rounded to semantic's dtype, as the tensor
        F.interpolate returns is. On the CPU that follows ATen's CPU kernels, including their
        choice of evaluation order (four-tap for H + W <= 128 or one torch thread, separable
        otherwise) and of fused multiply-adds (AVX2/AVX512 builds), so a near tie can resolve
        differently with one thread, exactly as it does in F.interpolate; the Triton kernel
        evaluates ATen's CUDA expression. The low-res semantic and detail are read once and
        alpha written once; the full-resolution semantic is never built.

    Differentiable in detail (gradient: grad_alpha in the unknown region, 0 elsewhere); the
    argmax gives semantic no gradient. The backward recomputes the classes from semantic.
    Non-contiguous inputs are copied.
    """
    fg_class, unknown_class = _check_inputs(semantic, detail, fg_class, unknown_class)
    choice = BACKENDS.resolve(detail.device, backend)
    if choice == "torch":
        return reference.trimap_fusion(semantic, detail, fg_class, unknown_class)
    fusion = torch.ops.fastmatte.trimap_fusion_triton if choice == "triton" else torch.ops.fastmatte.trimap_fusion
    # The per-instance form is the 4-D op over B * N planes.
    alpha = fusion(semantic.flatten(0, -4).contiguous(), detail.flatten(0, -4).contiguous(),
                   fg_class, unknown_class)
    return alpha.view(detail.shape)


def _check_inputs(semantic, detail, fg_class, unknown_class):
    """Every argument of trimap_fusion; returns (fg_class, unknown_class) as Python ints."""
    op = "trimap_fusion"
    unknown_class = _check_tensors(semantic, detail, unknown_class, op, "detail")
    fg_class = check_int(op, "fg_class", fg_class, 0, CLASSES - 1)
    if fg_class == unknown_class:
        fail(op, f"fg_class and unknown_class must differ, both are {fg_class}")
    return fg_class, unknown_class


def _check_tensors(semantic, detail, unknown_class, op, detail_name):
    """Both tensors and unknown_class (the backward passes grad_alpha as detail); returns
    unknown_class as a Python int."""
    check_tensor(op, "semantic", semantic)
    rank = semantic.dim()
    if rank not in (4, 5):
        fail(op, f"semantic must be 4-D [B, 3, h, w] or 5-D [B, N, 3, h, w], got {list(semantic.shape)}")
    layout = "[B, 3, h, w]" if rank == 4 else "[B, N, 3, h, w]"
    check_tensor(op, "semantic", semantic, floating=True)
    check_tensor(op, detail_name, detail, rank=rank, layout=layout.replace("3, h, w", "1, H, W"),
                 floating=True, device=semantic.device)
    for name, t in (("semantic", semantic), (detail_name, detail)):
        if t.dtype not in FLOAT_DTYPES:
            fail(op, f"{name} must be float32, float64, float16 or bfloat16, got {t.dtype}")
    lead = semantic.shape[:-3]
    if semantic.shape[-3] != CLASSES or semantic.shape[-2] == 0 or semantic.shape[-1] == 0:
        fail(op, f"semantic must be {layout} with 3 class channels (fg, unknown, bg scores) and "
                 f"h, w >= 1, got {list(semantic.shape)}")
    if detail.shape[:-3] != lead or detail.shape[-3] != 1 or detail.shape[-2] == 0 or detail.shape[-1] == 0:
        names = "B" if rank == 4 else "B, N"
        fail(op, f"{detail_name} must be [{', '.join(map(str, lead))}, 1, H, W] (semantic's {names}, one "
                 f"channel) with H, W >= 1, got {list(detail.shape)}")
    return check_int(op, "unknown_class", unknown_class, 0, CLASSES - 1)


@torch.library.custom_op("fastmatte::trimap_fusion_triton", mutates_args=())
def _trimap_fusion_triton(semantic: torch.Tensor, detail: torch.Tensor, fg_class: int = 0,
                          unknown_class: int = 1) -> torch.Tensor:
    """fastmatte::trimap_fusion with the Triton kernel (same arguments and semantics)."""
    _check_inputs(semantic, detail, fg_class, unknown_class)  # called directly too
    from fastmatte.kernels.trimap_fusion import trimap_fusion_forward  # after TRITON_INTERPRET

    return trimap_fusion_forward(semantic, detail, fg_class, unknown_class)


@torch.library.custom_op("fastmatte::trimap_fusion_backward_triton", mutates_args=())
def _trimap_fusion_backward_triton(grad_alpha: torch.Tensor, semantic: torch.Tensor,
                                   unknown_class: int) -> torch.Tensor:
    """fastmatte::trimap_fusion_backward with the Triton kernel."""
    _check_tensors(semantic, grad_alpha, unknown_class, "trimap_fusion_backward", "grad_alpha")
    from fastmatte.kernels.trimap_fusion import trimap_fusion_backward

    return trimap_fusion_backward(grad_alpha, semantic, unknown_class)


def _forward_fake(semantic, detail, fg_class=0, unknown_class=1):
    return torch.empty_like(detail, memory_format=torch.contiguous_format)


def _backward_fake(grad_alpha, semantic, unknown_class):
    return torch.empty_like(grad_alpha, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    semantic, _, _, unknown_class = inputs
    ctx.save_for_backward(semantic)
    ctx.unknown_class = unknown_class


def _backward_calling(backward_op):
    """The autograd backward of a forward op: backward_op recomputes the classes from semantic."""
    def backward(ctx, grad_alpha):
        (semantic,) = ctx.saved_tensors
        return None, backward_op(grad_alpha.contiguous(), semantic, ctx.unknown_class), None, None

    return backward


_trimap_fusion_triton.register_fake(_forward_fake)
_trimap_fusion_backward_triton.register_fake(_backward_fake)
torch.library.register_autograd("fastmatte::trimap_fusion_triton",
                                _backward_calling(torch.ops.fastmatte.trimap_fusion_backward_triton),
                                setup_context=_setup_context)
if HAS_C:
    torch.library.register_fake("fastmatte::trimap_fusion", _forward_fake)
    torch.library.register_fake("fastmatte::trimap_fusion_backward", _backward_fake)
    torch.library.register_autograd("fastmatte::trimap_fusion",
                                    _backward_calling(torch.ops.fastmatte.trimap_fusion_backward),
                                    setup_context=_setup_context)
