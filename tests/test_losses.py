"""fastmatte.losses against independent formulations: NumPy formulas, OpenCV's image pyramids,
SciPy's morphology, and autograd's gradcheck in float64 (CRA's loss: tests/test_cra_losses.py)."""
import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from fastmatte.losses import alpha_l1_loss, composition_loss, laplacian_loss, trimap_from_alpha


def soft_alpha(B, H, W, seed=0):
    """[B, 1, H, W] float64 mattes with solid 0 and 1 regions and a soft band between them."""
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    out = []
    for _ in range(B):
        cy, cx = torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([H, W]) * 0.5 + \
            torch.tensor([H, W]) * 0.25
        r = (((y - cy) / (0.3 * H)) ** 2 + ((x - cx) / (0.3 * W)) ** 2).sqrt()
        noise = torch.rand(H, W, generator=gen, dtype=torch.float64) * 0.1
        out.append(((1.15 - r + noise) / 0.2).clamp(0, 1))
    return torch.stack(out)[:, None]


# --- alpha L1 and composition -----------------------------------------------------------------

def test_alpha_l1_matches_numpy_formula():
    pred, gt = torch.rand(2, 1, 9, 13), torch.rand(2, 1, 9, 13)
    expected = np.sqrt((pred.numpy().astype(np.float64) - gt.numpy()) ** 2 + 1e-6).mean()
    assert alpha_l1_loss(pred, gt).item() == pytest.approx(expected, rel=1e-6)
    assert alpha_l1_loss(gt, gt).item() == pytest.approx(1e-3, rel=1e-4)  # the minimum is eps


@pytest.mark.parametrize("mask_kind", ["bool", "weights", "broadcast"])
def test_alpha_l1_mask_is_a_weighted_mean(mask_kind):
    pred, gt = torch.rand(2, 1, 7, 11, dtype=torch.float64), torch.rand(2, 1, 7, 11, dtype=torch.float64)
    if mask_kind == "bool":
        mask = torch.rand(2, 1, 7, 11) > 0.6
    elif mask_kind == "weights":
        mask = torch.rand(2, 1, 7, 11, dtype=torch.float64)
    else:
        mask = torch.rand(1, 1, 1, 11) > 0.5
    per_pixel = np.sqrt((pred.numpy() - gt.numpy()) ** 2 + 0.01 ** 2)
    w = np.broadcast_to(mask.numpy().astype(np.float64), per_pixel.shape)
    expected = (per_pixel * w).sum() / w.sum()
    assert alpha_l1_loss(pred, gt, mask, eps=0.01).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("loss", ["alpha", "laplacian", "composition"])
def test_empty_mask_gives_zero_with_a_zero_gradient(loss):
    pred = torch.rand(1, 1, 35, 36, requires_grad=True)
    gt = torch.rand(1, 1, 35, 36)
    empty = torch.zeros(1, 1, 35, 36, dtype=torch.bool)
    if loss == "alpha":
        value = alpha_l1_loss(pred, gt, empty)
    elif loss == "laplacian":
        value = laplacian_loss(pred, gt, mask=empty)
    else:
        value = composition_loss(pred, gt, torch.rand(1, 3, 35, 36), torch.rand(1, 3, 35, 36), mask=empty)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(pred.grad).all() and (pred.grad == 0).all()


def test_composition_matches_numpy_and_defaults_to_the_gt_composite():
    B, H, W = 2, 8, 10
    pred, gt = torch.rand(B, 1, H, W), torch.rand(B, 1, H, W)
    fg, bg = torch.rand(B, 3, H, W), torch.rand(B, 3, H, W)
    p, g, f, b = (t.numpy().astype(np.float64) for t in (pred, gt, fg, bg))
    image = g * f + (1 - g) * b
    expected = np.sqrt((p * f + (1 - p) * b - image) ** 2 + 1e-6).mean()
    assert composition_loss(pred, gt, fg, bg).item() == pytest.approx(expected, rel=1e-5)
    observed = torch.rand(B, 3, H, W)
    expected = np.sqrt((p * f + (1 - p) * b - observed.numpy()) ** 2 + 1e-6).mean()
    assert composition_loss(pred, gt, fg, bg, observed).item() == pytest.approx(expected, rel=1e-5)
    # A [B, 1, H, W] mask counts a pixel once per color channel.
    mask = torch.rand(B, 1, H, W) > 0.5
    per = np.sqrt((p * f + (1 - p) * b - image) ** 2 + 1e-6)
    m = np.broadcast_to(mask.numpy(), per.shape)
    assert composition_loss(pred, gt, fg, bg, mask=mask).item() == pytest.approx(per[m].mean(), rel=1e-5)


def test_half_precision_inputs_are_upcast():
    pred, gt = torch.rand(1, 1, 40, 40).half(), torch.rand(1, 1, 40, 40).half()
    fg, bg = torch.rand(1, 3, 40, 40).bfloat16(), torch.rand(1, 3, 40, 40).bfloat16()
    for value, reference in [
        (alpha_l1_loss(pred, gt), alpha_l1_loss(pred.float(), gt.float())),
        (laplacian_loss(pred, gt), laplacian_loss(pred.float(), gt.float())),
        (composition_loss(pred, gt, fg, bg),
         composition_loss(pred.float(), gt.float(), fg.float(), bg.float())),
    ]:
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, reference, rtol=1e-6, atol=0)
    # Tiny errors that fp16 arithmetic would round away still count.
    close = torch.full((1, 1, 40, 40), 0.5, dtype=torch.float16)
    assert alpha_l1_loss(close + 2 ** -11, close, eps=1e-6).item() == pytest.approx(2 ** -11, rel=1e-3)


# --- Laplacian pyramid ------------------------------------------------------------------------

def laplacian_reference(pred, gt, levels, mask=None):
    """The loss with OpenCV's pyrDown / pyrUp, one [H, W] float64 image at a time."""
    pred, gt = pred.double().numpy(), gt.double().numpy()
    weights = None if mask is None else np.broadcast_to(mask.double().numpy(), pred.shape)
    total = 0.0
    for level in range(levels):
        sums = counts = 0.0
        for idx in np.ndindex(*pred.shape[:2]):
            bands = []
            for x in (pred[idx], gt[idx]):
                for _ in range(level):
                    x = cv2.pyrDown(x)
                down = cv2.pyrDown(x)
                bands.append(x - cv2.pyrUp(down, dstsize=(x.shape[1], x.shape[0])))
            w = np.ones_like(bands[0]) if weights is None else weights[idx]
            for _ in range(level if weights is not None else 0):
                w = cv2.pyrDown(w)
            sums += (np.abs(bands[0] - bands[1]) * w).sum()
            counts += w.sum()
        total += 2 ** level * sums / counts
    return total


@pytest.mark.parametrize("shape,levels", [((1, 1, 37, 45), 5), ((2, 1, 40, 64), 5), ((1, 3, 33, 50), 5),
                                          ((1, 1, 13, 9), 2)])
def test_laplacian_matches_opencv_pyramids(shape, levels):
    pred, gt = torch.rand(shape, dtype=torch.float64), torch.rand(shape, dtype=torch.float64)
    expected = laplacian_reference(pred, gt, levels)
    assert laplacian_loss(pred, gt, levels).item() == pytest.approx(expected, rel=1e-10)


def test_laplacian_mask_weighs_each_level_by_the_mask_pyramid():
    pred, gt = torch.rand(2, 1, 39, 42, dtype=torch.float64), torch.rand(2, 1, 39, 42, dtype=torch.float64)
    mask = torch.rand(2, 1, 39, 42) > 0.7
    expected = laplacian_reference(pred, gt, 4, mask)
    assert laplacian_loss(pred, gt, 4, mask).item() == pytest.approx(expected, rel=1e-10)


def test_laplacian_ignores_a_constant_offset_and_sees_detail():
    gt = soft_alpha(1, 48, 52)
    assert laplacian_loss(gt * 0.9 + 0.05, gt * 0.9).item() < 1e-12  # bands carry no DC
    assert laplacian_loss(gt + 0.01 * torch.randn_like(gt), gt).item() > 1e-3


def test_laplacian_refuses_images_too_small_for_the_levels():
    laplacian_loss(torch.rand(1, 1, 33, 33), torch.rand(1, 1, 33, 33), levels=5)  # smallest for 5
    with pytest.raises(ValueError, match="levels=5 needs"):
        laplacian_loss(torch.rand(1, 1, 32, 40), torch.rand(1, 1, 32, 40), levels=5)


@pytest.mark.parametrize("name", ["alpha", "laplacian", "composition"])
def test_gradcheck_float64(name):
    gen = torch.Generator().manual_seed(1)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    if name == "alpha":
        gt, mask = rand(1, 1, 5, 7), rand(1, 1, 5, 7)
        fn, inputs = (lambda p: alpha_l1_loss(p, gt, mask, eps=0.05)), (rand(1, 1, 5, 7),)
    elif name == "laplacian":
        gt, mask = rand(1, 1, 13, 11), rand(1, 1, 13, 11) > 0.3
        fn, inputs = (lambda p: laplacian_loss(p, gt, 3, mask)), (rand(1, 1, 13, 11),)
    else:
        gt, fg, bg, image = rand(1, 1, 4, 5), rand(1, 3, 4, 5), rand(1, 3, 4, 5), rand(1, 3, 4, 5)
        fn, inputs = (lambda p, f: composition_loss(p, gt, f, bg, image, eps=0.05)), (rand(1, 1, 4, 5), fg)
    inputs = tuple(t.requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(fn, inputs)


# --- trimaps ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kernel_size,iterations", [(1, 1), (3, 1), (3, 3), (5, 1), (7, 2), (5, 0)])
def test_trimap_from_alpha_matches_scipy_morphology(kernel_size, iterations):
    alpha = soft_alpha(2, 31, 40)
    alpha[0, 0, :6, :] = 1  # a solid region on the image border must not erode from outside
    classes = trimap_from_alpha(alpha, kernel_size, iterations)
    assert classes.dtype == torch.int64 and classes.shape == (2, 31, 40)
    square = np.ones((kernel_size, kernel_size), bool)
    for b in range(2):
        a = alpha[b, 0].numpy()
        if iterations == 0 or kernel_size == 1:
            covered, solid = a > 0, a >= 1
        else:
            covered = ndi.binary_dilation(a > 0, square, iterations=iterations)
            solid = ndi.binary_erosion(a >= 1, square, iterations=iterations, border_value=1)
        expected = np.where(solid, 0, np.where(covered, 1, 2))
        np.testing.assert_array_equal(classes[b].numpy(), expected)


def test_trimap_from_alpha_accepts_uint8_and_marks_hard_edges():
    alpha = (soft_alpha(1, 30, 30) * 255).round().to(torch.uint8)
    as_float = alpha.double() / 255
    torch.testing.assert_close(trimap_from_alpha(alpha), trimap_from_alpha(as_float), rtol=0, atol=0)
    # A hard 0/1 edge gets a band r = iterations * (kernel_size // 2) pixels each side of it.
    hard = torch.zeros(1, 1, 12, 20)
    hard[..., 10:] = 1
    row = trimap_from_alpha(hard, kernel_size=5, iterations=1)[0, 0]
    assert row.tolist() == [2] * 8 + [1] * 4 + [0] * 8
    # Which is what scipy's grey (max / min) filters over a 5x5 square give.
    a = hard[0, 0].numpy()
    expected = np.where(ndi.grey_erosion(a, size=5) >= 1, 0, np.where(ndi.grey_dilation(a, size=5) > 0, 1, 2))
    np.testing.assert_array_equal(trimap_from_alpha(hard)[0].numpy(), expected)


def test_trimap_from_alpha_refuses_an_even_kernel():
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        trimap_from_alpha(torch.rand(1, 1, 8, 8), kernel_size=4)
