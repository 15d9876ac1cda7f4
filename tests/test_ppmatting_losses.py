"""PP-Matting's and PP-MattingV2's losses (fastmatte.losses.ppmatting) against NumPy float64
transcriptions of PaddleSeg's MRSD, GradientLoss (Sobel by explicit loops), PPMatting.loss and
PPMattingV2.loss, hand-made cases, and autograd's gradcheck in float64."""
import numpy as np
import pytest
import torch

from fastmatte.losses import (PPMATTING_LOSS_WEIGHTS, gradient_loss, mrsd_loss, ppmatting_loss,
                              ppmatting_semantic_target, ppmattingv2_loss)

# --- float64 references, written from the official code ---------------------------------------

KERNEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8  # / sum |k|
KERNEL_Y = KERNEL_X.T


def sobel(x):
    """sqrt(gx^2 + gy^2 + 1e-6) per [B, C] plane, edge-replicated by 1, one pixel at a time."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.empty_like(x)
    for i in range(x.shape[2]):
        for j in range(x.shape[3]):
            window = padded[:, :, i:i + 3, j:j + 3]
            gx, gy = (window * KERNEL_X).sum((2, 3)), (window * KERNEL_Y).sum((2, 3))
            out[:, :, i, j] = np.sqrt(gx ** 2 + gy ** 2 + 1e-6)
    return out


def mrsd(pred, gt, mask=None):
    loss = np.sqrt((pred - gt) ** 2 + 1e-6)
    return loss.mean() if mask is None else (loss * mask).sum() / (mask.sum() + 1e-6)


def grad(pred, gt, mask=None):
    if mask is None:
        return np.abs(sobel(pred) - sobel(gt)).mean()
    return np.abs(sobel(pred * mask) - sobel(gt * mask)).sum() / (mask.sum() + 1e-6)


def reference_ppmatting(logits, detail, alpha, gt, trimap255, fg, bg):
    """PPMatting.loss; trimap255 holds 0 / 128 / 255, fg and bg are in 0..1 (Normalize: 2x - 1)."""
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    label = (trimap255[:, 0] == 128) * 1 + (trimap255[:, 0] == 0) * 2
    picked = np.take_along_axis(prob + 1e-6, label[:, None], 1)
    trans = (trimap255 == 128).astype(np.float64)
    f, b = (fg - 0.5) / 0.5, (bg - 0.5) / 0.5
    parts = {"semantic": -np.log(picked).mean(),
             "detail_alpha": mrsd(detail, gt, trans), "detail_gradient": grad(detail, gt, trans),
             "fusion_alpha": mrsd(alpha, gt), "fusion_gradient": grad(alpha, gt),
             "fusion_composition": mrsd(alpha * f + (1 - alpha) * b, gt * f + (1 - gt) * b)}
    parts["detail"] = parts["detail_alpha"] + parts["detail_gradient"]
    parts["fusion"] = parts["fusion_alpha"] + parts["fusion_composition"] + parts["fusion_gradient"]
    return 0.25 * parts["semantic"] + 0.25 * parts["detail"] + 0.25 * parts["fusion"], parts


def area(x, h, w):
    """Paddle's / torch's 'area' resize: bins [floor(i H / h), ceil((i + 1) H / h))."""
    H, W = x.shape[-2:]
    out = np.empty(x.shape[:2] + (h, w))
    for i in range(h):
        for j in range(w):
            rows = slice(i * H // h, -(-(i + 1) * H // h))
            cols = slice(j * W // w, -(-(j + 1) * W // w))
            out[:, :, i, j] = x[:, :, rows, cols].mean((2, 3))
    return out


def reference_ppmattingv2(alpha, alpha_8x, gt, trimap255):
    gt8 = area(gt, *alpha_8x.shape[-2:])
    trans = (trimap255 == 128).astype(np.float64)
    parts = {"alpha_8x_mrsd": mrsd(alpha_8x, gt8), "alpha_8x_grad": grad(alpha_8x, gt8),
             "alpha_mrsd": mrsd(alpha, gt) + 2 * mrsd(alpha, gt, trans),
             "alpha_grad": grad(alpha, gt) + 2 * grad(alpha, gt, trans)}
    parts["alpha_8x"] = parts["alpha_8x_mrsd"] + parts["alpha_8x_grad"]
    parts["alpha"] = parts["alpha_mrsd"] + parts["alpha_grad"]
    return parts["alpha"] + parts["alpha_8x"], parts


def trimaps(B, H, W, seed=0):
    """(uint8 0/128/255, fastmatte float 0/0.5/1) versions of one random trimap."""
    gen = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 3, (B, 1, H, W), generator=gen)
    return (torch.tensor([0, 128, 255], dtype=torch.uint8)[levels],
            torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)[levels])


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def ppm_inputs(B=2, H=8, W=10):
    outputs = {"alpha": rand(B, 1, H, W, seed=1), "detail": rand(B, 1, H, W, seed=2),
               "semantic": torch.randn(B, 3, H, W, generator=torch.Generator().manual_seed(3),
                                       dtype=torch.float64)}
    return outputs, rand(B, 1, H, W, seed=4), rand(B, 3, H, W, seed=5), rand(B, 3, H, W, seed=6)


def assert_parts(parts, expected):
    assert parts.keys() == expected.keys()
    for name, value in expected.items():
        assert parts[name].dim() == 0
        assert parts[name].item() == pytest.approx(value, rel=1e-12, abs=1e-15), name


# --- building blocks --------------------------------------------------------------------------

@pytest.mark.parametrize("mask_kind", [None, "bool", "weights", "broadcast"])
def test_mrsd_matches_the_hand_formula(mask_kind):
    pred, gt = rand(2, 1, 5, 7, seed=1), rand(2, 1, 5, 7, seed=2)
    mask = {None: None, "bool": rand(2, 1, 5, 7, seed=3) > 0.5, "weights": rand(2, 1, 5, 7, seed=3),
            "broadcast": rand(1, 1, 1, 7, seed=3) > 0.5}[mask_kind]
    m = None if mask is None else np.broadcast_to(mask.double().numpy(), pred.shape)
    assert mrsd_loss(pred, gt, mask).item() == pytest.approx(mrsd(pred.numpy(), gt.numpy(), m), rel=1e-12)
    assert mrsd_loss(gt, gt).item() == pytest.approx(1e-3, rel=1e-9)  # the minimum is sqrt(1e-6)


@pytest.mark.parametrize("shape", [(2, 1, 6, 9), (1, 3, 5, 4), (1, 1, 1, 3)])
@pytest.mark.parametrize("masked", [False, True])
def test_gradient_loss_matches_a_looped_sobel(shape, masked):
    pred, gt = rand(*shape, seed=1), rand(*shape, seed=2)
    mask = (rand(*shape, seed=3) > 0.4) if masked else None
    m = None if mask is None else mask.double().numpy()
    expected = grad(pred.numpy(), gt.numpy(), m)
    assert gradient_loss(pred, gt, mask).item() == pytest.approx(expected, rel=1e-12)


def test_gradient_loss_sobel_is_normalized_by_eight():
    # A horizontal ramp of slope s: gx = s inside, s / 2 on the replicated left/right columns.
    s = 0.3
    ramp = (torch.arange(6, dtype=torch.float64) * s).expand(1, 1, 4, 6)
    gx = np.array([s / 2, s, s, s, s, s / 2])
    expected = (np.sqrt(gx ** 2 + 1e-6) - 1e-3).mean()
    assert gradient_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(expected, rel=1e-12)
    assert gradient_loss(ramp, ramp + 0.7).item() == pytest.approx(0, abs=1e-15)  # offsets: no gradient


def test_masked_losses_use_only_the_mask_and_an_empty_one_gives_zero():
    pred, gt = rand(1, 1, 9, 9, seed=1), rand(1, 1, 9, 9, seed=2)
    mask = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    mask[..., 3:6, 2:7] = True
    changed = torch.where(mask, pred, rand(1, 1, 9, 9, seed=5))  # other values outside the mask
    for loss in (mrsd_loss, gradient_loss):
        assert loss(changed, gt, mask).item() == pytest.approx(loss(pred, gt, mask).item(), rel=1e-14)
        assert loss(changed, gt).item() != pytest.approx(loss(pred, gt).item(), rel=1e-3)
        p = pred.clone().requires_grad_()
        value = loss(p, gt, torch.zeros_like(mask))
        value.backward()
        assert value.item() == 0.0 and torch.isfinite(p.grad).all() and (p.grad == 0).all()


def test_semantic_target_maps_trimap_values_to_classes():
    as_uint8 = torch.tensor([0, 128, 255, 7], dtype=torch.uint8).reshape(1, 1, 2, 2)
    as_float = torch.tensor([0.0, 0.5, 1.0, 0.25]).reshape(1, 1, 2, 2)
    # 255 -> 0 foreground, 128 -> 1 transition, 0 -> 2 background; other values are foreground.
    for trimap in (as_uint8, as_float):
        target = ppmatting_semantic_target(trimap)
        assert target.dtype == torch.int64 and target.tolist() == [[[2, 1], [0, 0]]]


# --- the model losses -------------------------------------------------------------------------

def test_ppmatting_loss_matches_the_official_formulas():
    outputs, gt, fg, bg = ppm_inputs()
    as_uint8, as_float = trimaps(2, 8, 10)
    expected_total, expected = reference_ppmatting(outputs["semantic"].numpy(), outputs["detail"].numpy(),
                                                   outputs["alpha"].numpy(), gt.numpy(), as_uint8.numpy(),
                                                   fg.numpy(), bg.numpy())
    for trimap in (as_uint8, as_float):
        total, parts = ppmatting_loss(outputs, gt, trimap, None, fg, bg)
        assert total.dtype == torch.float64 and total.item() == pytest.approx(expected_total, rel=1e-12)
        assert_parts(parts, expected)
    # An image equal to the gt composite is the same target; the weights scale the three parts.
    image = gt * fg + (1 - gt) * bg
    total, parts = ppmatting_loss(outputs, gt, as_float, image, fg, bg, weights={"detail": 2.0})
    assert parts["fusion_composition"].item() == pytest.approx(expected["fusion_composition"], rel=1e-12)
    expected_total = 0.25 * expected["semantic"] + 2 * expected["detail"] + 0.25 * expected["fusion"]
    assert total.item() == pytest.approx(expected_total, rel=1e-12)
    assert PPMATTING_LOSS_WEIGHTS == {"semantic": 0.25, "detail": 0.25, "fusion": 0.25}


@pytest.mark.parametrize("H,W,h,w", [(16, 24, 2, 3), (19, 13, 3, 2)])
def test_ppmattingv2_loss_matches_the_official_formulas(H, W, h, w):
    alpha, small, gt = rand(2, 1, H, W, seed=1), rand(2, 1, h, w, seed=2), rand(2, 1, H, W, seed=3)
    as_uint8, as_float = trimaps(2, H, W)
    expected_total, expected = reference_ppmattingv2(alpha.numpy(), small.numpy(), gt.numpy(),
                                                     as_uint8.numpy())
    for trimap in (as_uint8, as_float):
        total, parts = ppmattingv2_loss({"alpha": alpha, "alpha_8x": small}, gt, trimap)
        assert total.item() == pytest.approx(expected_total, rel=1e-12)
        assert_parts(parts, expected)


def test_detail_terms_see_only_the_transition_region():
    outputs, gt, fg, bg = ppm_inputs()
    _, trimap = trimaps(2, 8, 10)
    changed = dict(outputs, detail=torch.where(trimap == 0.5, outputs["detail"], rand(2, 1, 8, 10, seed=9)))
    _, parts = ppmatting_loss(outputs, gt, trimap, None, fg, bg)
    _, other = ppmatting_loss(changed, gt, trimap, None, fg, bg)
    torch.testing.assert_close(other["detail"], parts["detail"], rtol=1e-14, atol=0)
    # Without a transition pixel the detail terms are 0, with a zero (not NaN) gradient.
    detail = outputs["detail"].clone().requires_grad_()
    _, parts = ppmatting_loss(dict(outputs, detail=detail), gt, (trimap > 0.5).double(), None, fg, bg)
    parts["detail"].backward()
    assert parts["detail"].item() == 0.0 and (detail.grad == 0).all()


def test_half_precision_inputs_are_upcast():
    outputs, gt, fg, bg = ppm_inputs(1, 16, 16)
    uint8, trimap = trimaps(1, 16, 16)
    half = {k: v.half() for k, v in outputs.items()}
    total, _ = ppmatting_loss(half, gt.bfloat16(), uint8, None, fg.half(), bg.bfloat16())
    reference, _ = ppmatting_loss({k: v.float() for k, v in half.items()}, gt.bfloat16().float(), uint8, None,
                                  fg.half().float(), bg.bfloat16().float())
    assert total.dtype == torch.float32
    torch.testing.assert_close(total, reference, rtol=1e-6, atol=0)
    v2 = {"alpha": outputs["alpha"].half(), "alpha_8x": outputs["detail"][..., ::8, ::8].bfloat16()}
    assert ppmattingv2_loss(v2, gt.half(), trimap)[0].dtype == torch.float32
    assert mrsd_loss(gt.half(), gt.half()).dtype == torch.float32


def test_bad_arguments_are_refused_with_a_clear_error():
    outputs, gt, fg, bg = ppm_inputs()
    _, trimap = trimaps(2, 8, 10)
    with pytest.raises(TypeError, match="outputs must be PP-Matting's training dict"):
        ppmatting_loss({"alpha": outputs["alpha"]}, gt, trimap, None, fg, bg)
    with pytest.raises(ValueError, match=r"outputs\['semantic'\] must be \[2, 3, 8, 10\]"):
        ppmatting_loss(dict(outputs, semantic=outputs["semantic"][:, :1]), gt, trimap, None, fg, bg)
    with pytest.raises(ValueError, match="weights has unknown parts"):
        ppmatting_loss(outputs, gt, trimap, None, fg, bg, weights={"alpha": 1.0})
    with pytest.raises(ValueError, match="trimap must be float"):
        ppmatting_loss(outputs, gt, trimap > 0, None, fg, bg)
    with pytest.raises(ValueError, match=r"trimap must be \[B, 1, H, W\] = \[2, 1, 8, 10\]"):
        ppmatting_loss(outputs, gt, trimap[..., :4], None, fg, bg)
    with pytest.raises(ValueError, match="fg must be"):
        ppmatting_loss(outputs, gt, trimap, None, fg[:, :1], bg)
    with pytest.raises(TypeError, match="PP-MattingV2's training dict with alpha, alpha_8x"):
        ppmattingv2_loss(outputs, gt, trimap)
    with pytest.raises(ValueError, match="1 <= h <= H = 8"):
        ppmattingv2_loss({"alpha": gt, "alpha_8x": rand(2, 1, 9, 1)}, gt, trimap)
    with pytest.raises(ValueError, match="gradient_loss: pred must be 4-D"):
        gradient_loss(gt[0], gt[0])
    with pytest.raises(ValueError, match="mask must broadcast"):
        mrsd_loss(gt, gt, torch.ones(3, 1, 1, 1, dtype=torch.bool))


@pytest.mark.parametrize("name", ["mrsd", "gradient", "ppmatting", "ppmattingv2"])
def test_gradcheck_float64(name):
    _, trimap = trimaps(1, 6, 7, seed=2)
    mask = trimap == 0.5
    if name == "mrsd":
        fn, inputs = (lambda p: mrsd_loss(p, rand(1, 1, 6, 7, seed=9), mask)), (rand(1, 1, 6, 7),)
    elif name == "gradient":
        fn, inputs = (lambda p: gradient_loss(p, rand(1, 1, 6, 7, seed=9), mask)), (rand(1, 1, 6, 7),)
    elif name == "ppmatting":
        outputs, gt, fg, bg = ppm_inputs(1, 6, 7)

        def fn(alpha, semantic, detail):
            return ppmatting_loss({"alpha": alpha, "semantic": semantic, "detail": detail}, gt, trimap,
                                  None, fg, bg)[0]
        inputs = (outputs["alpha"], outputs["semantic"], outputs["detail"])
    else:
        gt = rand(1, 1, 6, 7, seed=9)
        fn = (lambda a, s: ppmattingv2_loss({"alpha": a, "alpha_8x": s}, gt, trimap)[0])
        inputs = (rand(1, 1, 6, 7), rand(1, 1, 2, 3, seed=1))
    inputs = tuple(t.clone().requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(fn, inputs)
    fn(*inputs).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in inputs)
