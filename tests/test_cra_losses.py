"""CRAMatting's official training loss (fastmatte.losses.cra, fastmatte.losses.focal) against float64
NumPy / SciPy implementations written from the formulas of yataoz/lightweight_portrait_matting
(trainer.py, losses.py, P3MData/img_proc.py): per-pixel loops, OpenCV's ellipse and SciPy's
binary morphology, and autograd's gradcheck."""
import math

import cv2
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from fastmatte.losses import (CRA_LOSS_WEIGHTS, CRA_WEIGHT_DECAY, cra_class_weights, cra_laplacian_loss,
                              cra_loss, cra_seg_target, cra_trimap, cra_trimap_target, cra_weight_penalty,
                              focal_loss)


def soft_alpha(B, H, W, seed=0):
    """[B, 1, H, W] float64 mattes: solid 0 and exactly-1 regions with a soft band between them."""
    gen = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                          indexing="ij")
    out = []
    for _ in range(B):
        cy, cx = (torch.rand(2, generator=gen, dtype=torch.float64) * 0.5 + 0.25) * torch.tensor([H, W])
        r = (((y - cy) / (0.3 * H)) ** 2 + ((x - cx) / (0.3 * W)) ** 2).sqrt()
        noise = 0.1 * torch.rand(H, W, generator=gen, dtype=torch.float64)
        out.append(((1.15 - r + noise) / 0.2).clamp(0, 1))
    return torch.stack(out)[:, None]


# --- float64 references -----------------------------------------------------------------------

def ref_trimap(alpha):
    """gen_trimap_with_dilation(alpha, 7): OpenCV's 7x7 ellipse, outside pixels ignored."""
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)).astype(bool)
    out = np.zeros(alpha.shape, np.int64)
    for b in range(alpha.shape[0]):
        a = alpha[b, 0]
        dilated = ndi.binary_dilation(a != 0, ellipse, border_value=0)
        eroded = ndi.binary_erosion(a == 1, ellipse, border_value=1)
        out[b, 0] = eroded * 2 + (dilated & ~eroded) * 1
    return out


def ref_block_means(x, s=8):
    B, C, H, W = x.shape
    out = np.zeros((B, C, H // s, W // s))
    for b, c, i, j in np.ndindex(*out.shape):
        out[b, c, i, j] = x[b, c, i * s:(i + 1) * s, j * s:(j + 1) * s].mean()
    return out


def ref_bilinear(x, size):
    """F.interpolate(x, size, mode='bilinear', align_corners=False), one pixel at a time."""
    B, C, H, W = x.shape
    out = np.zeros((B, C, *size))

    def taps(o, n_in, n_out):
        src = max((o + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(math.floor(src))
        return i0, min(i0 + 1, n_in - 1), src - i0

    for i, j in np.ndindex(*size):
        y0, y1, ly = taps(i, H, size[0])
        x0, x1, lx = taps(j, W, size[1])
        out[:, :, i, j] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                           + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


def ref_class_weights(classes, power):
    counts = np.array([(classes == k).sum() for k in range(3)], np.float64)
    w = np.array([c ** -power if c > 0 else 0.0 for c in counts])
    return w / (w.sum() + 1e-8)


def ref_focal(logits, target, weights, gamma=2.0):
    B, C = logits.shape[:2]
    num = 0.0
    pixels = 0
    for b in range(B):
        for pos in np.ndindex(*logits.shape[2:]):
            z = logits[(b, slice(None), *pos)]
            p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            pixels += 1
            for c in range(C):
                y = target[(b, c, *pos)]
                p_t = p[c] * y + (1 - p[c]) * (1 - y)
                num += weights[c] * -y * np.log(p[c]) * (1 - p_t) ** gamma
    return num / (pixels * weights.sum() + 1e-8)


def ref_laplacian(pred, gt, mask, levels=5):
    """losses.laplacian_loss of the official code: build_gaussian_kernel(5, 1.0), replicate padding,
    avg_pool2d by 2, bilinear masks, the remainder included, weighted_loss(F.l1_loss, ...)."""
    g = [math.exp((i - 2) ** 2 / (-2 * 1.0 ** 2)) ** 2 for i in range(5)]
    kernel = np.array([[g[j] + g[i] for j in range(5)] for i in range(5)])
    kernel /= kernel.sum()

    def pyramid(img):
        current, pyr = img, []
        for _ in range(levels):
            filtered = np.stack([np.stack([ndi.correlate(ch, kernel, mode="nearest") for ch in im])
                                 for im in current])
            pyr.append(current - filtered)
            h, w = filtered.shape[2] // 2, filtered.shape[3] // 2
            current = filtered[:, :, :2 * h, :2 * w].reshape(*filtered.shape[:2], h, 2, w, 2).mean((3, 5))
        return pyr + [current]

    total = 0.0
    for a, b in zip(pyramid(gt), pyramid(pred)):
        w = mask if a.shape == mask.shape else ref_bilinear(mask, a.shape[2:])
        total += (w * np.abs(b - a)).sum() / (w.sum() + 1e-12)
    return total


def ref_cra_loss(outputs, alpha, image, fg, bg, trimap):
    """FullGenerator.forward's losses (unweighted), from NumPy arrays."""
    seg_t = ref_block_means(alpha)
    tri_t = ref_block_means(np.concatenate([(trimap == k) * 1.0 for k in range(3)], axis=1))
    classes = tri_t.argmax(1)
    parts = {}
    for i, z in enumerate(outputs["seg_logits"]):
        z = z if z.shape[2:] == seg_t.shape[2:] else ref_bilinear(z, seg_t.shape[2:])
        bce = np.maximum(z, 0) - z * seg_t + np.log1p(np.exp(-np.abs(z)))
        parts[f"lowres_seg_{i}"] = bce.mean()
    for i, z in enumerate(outputs["trimap_logits"]):
        z = z if z.shape[2:] == seg_t.shape[2:] else ref_bilinear(z, seg_t.shape[2:])
        parts[f"lowres_trimap_{i}"] = ref_focal(z, tri_t, ref_class_weights(classes, 0.5))
    u = ref_class_weights(classes, 2.0)[1]
    mask = np.where(trimap == 1, u, 1 - u)
    pred = outputs["alpha"]
    parts["highres_matte"] = (mask * np.sqrt((pred - alpha) ** 2 + 1e-12)).sum() / (mask.sum() + 1e-12)
    parts["highres_lap"] = ref_laplacian(pred, alpha, mask)
    comp = fg * pred + bg * (1 - pred)
    m3 = np.broadcast_to(mask, comp.shape)
    parts["highres_comp"] = (m3 * np.sqrt((comp - image) ** 2 + 1e-12)).sum() / (m3.sum() + 1e-12)
    return parts


def fake_outputs(B, H, W, seed=0, dtype=torch.float64, strides=(32, 16, 8)):
    gen = torch.Generator().manual_seed(seed)
    def logits(C):
        return [torch.randn(B, C, H // s, W // s, generator=gen, dtype=dtype) * 2 for s in strides]

    out = {"alpha": torch.rand(B, 1, H, W, generator=gen, dtype=dtype), "seg_logits": logits(1),
           "trimap_logits": logits(3)}
    for t in [out["alpha"], *out["seg_logits"], *out["trimap_logits"]]:
        t.requires_grad_()
    return out


def as_numpy(outputs):
    return {k: (v.detach().numpy() if torch.is_tensor(v) else [t.detach().numpy() for t in v])
            for k, v in outputs.items()}


# --- ground-truth trimap ----------------------------------------------------------------------

def test_cra_trimap_matches_scipy_morphology_with_the_opencv_ellipse():
    alpha = soft_alpha(2, 37, 45)
    alpha[0, 0, :5, :] = 1  # solid along the border: outside pixels must not erode it
    trimap = cra_trimap(alpha)
    assert trimap.dtype == torch.int64 and trimap.shape == (2, 1, 37, 45)
    expected = ref_trimap(alpha.numpy())
    np.testing.assert_array_equal(trimap.numpy(), expected)
    assert set(np.unique(expected).tolist()) == {0, 1, 2}
    torch.testing.assert_close(cra_trimap(alpha.float()), trimap, rtol=0, atol=0)


def test_cra_trimap_on_hand_made_mattes():
    # A hard vertical edge: 3 pixels of unknown on each side (the ellipse's radius).
    edge = torch.zeros(1, 1, 12, 24)
    edge[..., 10:] = 1
    assert cra_trimap(edge)[0, 0, 6].tolist() == [0] * 7 + [1] * 6 + [2] * 11
    # One soft pixel: the unknown region is the ellipse itself, nothing is foreground.
    dot = torch.zeros(1, 1, 15, 15)
    dot[..., 7, 7] = 0.5
    ellipse = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    expected = np.zeros((15, 15), np.int64)
    expected[4:11, 4:11] = ellipse
    np.testing.assert_array_equal(cra_trimap(dot)[0, 0].numpy(), expected)
    # Opaque everywhere: all foreground (the border does not erode).
    assert (cra_trimap(torch.ones(1, 1, 9, 9)) == 2).all()
    assert (cra_trimap(torch.zeros(1, 1, 9, 9)) == 0).all()


# --- low-resolution targets and class weights -------------------------------------------------

def test_lowres_targets_match_block_loops():
    alpha = soft_alpha(2, 40, 56, seed=3)
    trimap = cra_trimap(alpha)
    np.testing.assert_allclose(cra_seg_target(alpha).numpy(), ref_block_means(alpha.numpy()), rtol=1e-12)
    one_hot = np.concatenate([(trimap.numpy() == k) * 1.0 for k in range(3)], axis=1)
    target = cra_trimap_target(trimap)
    assert target.shape == (2, 3, 5, 7) and target.dtype == torch.float32
    np.testing.assert_allclose(target.numpy(), ref_block_means(one_hot), rtol=1e-7)


def test_trimap_target_ties_go_to_the_lower_class():
    trimap = torch.zeros(1, 1, 8, 32, dtype=torch.int64)
    trimap[..., 0:4, 0:8] = 2       # cell 0: 32 background, 32 foreground -> background
    trimap[..., 0:4, 8:16] = 1      # cell 1: 32 unknown, 32 foreground -> unknown
    trimap[..., 4:8, 8:16] = 2
    trimap[..., :, 16:24] = 2       # cell 2: all foreground
    trimap[..., 0:3, 24:32] = 1     # cell 3: 24 unknown, 40 background -> background
    target = cra_trimap_target(trimap.float())  # a float trimap (the official dtype) works the same
    assert target.argmax(1)[0, 0].tolist() == [0, 1, 2, 0]
    torch.testing.assert_close(target[0, :, 0, 3], torch.tensor([40 / 64, 24 / 64, 0.0]))


def test_class_weights_follow_the_formula_and_give_absent_classes_zero():
    classes = torch.tensor([[[0, 0, 0, 1], [2, 2, 0, 0]]])
    for power in (0.5, 2.0):
        np.testing.assert_allclose(cra_class_weights(classes, power).numpy(),
                                   ref_class_weights(classes.numpy(), power), rtol=1e-15)
    w = cra_class_weights(torch.zeros(2, 3, 3, dtype=torch.int64), 2.0)
    assert w.tolist() == pytest.approx([1.0, 0.0, 0.0], abs=1e-4) and torch.isfinite(w).all()


# --- focal loss -------------------------------------------------------------------------------

def test_focal_loss_matches_per_pixel_loops():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 3, 5, generator=gen, dtype=torch.float64) * 2
    target = torch.softmax(torch.randn(2, 3, 3, 5, generator=gen, dtype=torch.float64) * 3, 1)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    for w in (weights, None):
        expected = ref_focal(logits.numpy(), target.numpy(), np.ones(3) if w is None else w.numpy())
        assert focal_loss(logits, target, w).item() == pytest.approx(expected, rel=1e-12)
    # gamma 0, a one-hot target and no class weights: the cross entropy over C (the official divisor
    # is the sum of the weights over pixels and classes).
    classes = torch.randint(0, 3, (2, 3, 5), generator=gen)
    one_hot = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).double()
    ce = torch.nn.functional.cross_entropy(logits, classes)
    assert focal_loss(logits, one_hot, gamma=0).item() == pytest.approx(ce.item() / 3, rel=1e-7)
    assert focal_loss(logits.half(), target.half(), weights.half()).dtype == torch.float32


def test_focal_loss_with_zero_weights_is_zero_not_nan():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    value = focal_loss(logits, torch.softmax(torch.randn(1, 3, 4, 4), 1), torch.zeros(3))
    value.backward()
    assert value.item() == 0.0 and (logits.grad == 0).all()


# --- Laplacian loss ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape,levels", [((1, 1, 32, 32), 5), ((2, 1, 37, 45), 5), ((1, 1, 20, 28), 3)])
def test_cra_laplacian_matches_the_official_formula(shape, levels):
    gen = torch.Generator().manual_seed(shape[2])
    pred, gt = (torch.rand(shape, generator=gen, dtype=torch.float64) for _ in range(2))
    mask = torch.rand(shape, generator=gen, dtype=torch.float64)
    expected = ref_laplacian(pred.numpy(), gt.numpy(), mask.numpy(), levels)
    assert cra_laplacian_loss(pred, gt, mask, levels).item() == pytest.approx(expected, rel=1e-10)
    binary = mask > 0.5
    expected = ref_laplacian(pred.numpy(), gt.numpy(), binary.double().numpy(), levels)
    assert cra_laplacian_loss(pred, gt, binary, levels).item() == pytest.approx(expected, rel=1e-10)


def test_cra_laplacian_empty_mask_and_small_images():
    pred = torch.rand(1, 1, 32, 32, requires_grad=True)
    value = cra_laplacian_loss(pred, torch.rand(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
    value.backward()
    assert value.item() == 0.0 and (pred.grad == 0).all()
    with pytest.raises(ValueError, match="H, W >= 2\\^levels = 32"):
        cra_laplacian_loss(torch.rand(1, 1, 31, 40), torch.rand(1, 1, 31, 40), torch.ones(1, 1, 31, 40))


# --- cra_loss ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given_trimap", [False, True])
def test_cra_loss_parts_match_the_official_trainer(given_trimap):
    B, H, W = 2, 64, 96
    alpha = soft_alpha(B, H, W, seed=5)
    gen = torch.Generator().manual_seed(1)
    fg, bg = (torch.rand(B, 3, H, W, generator=gen, dtype=torch.float64) for _ in range(2))
    image = alpha * fg + (1 - alpha) * bg + 0.02 * torch.rand(B, 3, H, W, generator=gen, dtype=torch.float64)
    trimap = cra_trimap(alpha)
    if given_trimap:  # e.g. a trimap warped apart from alpha: the loss must use the one given
        trimap = torch.roll(trimap, 5, dims=3)
    outputs = fake_outputs(B, H, W)
    total, parts = cra_loss(outputs, alpha, image, fg, bg, trimap if given_trimap else None)
    expected = ref_cra_loss(as_numpy(outputs), alpha.numpy(), image.numpy(), fg.numpy(), bg.numpy(),
                            trimap.numpy())
    assert set(parts) == set(expected)
    for name, value in expected.items():
        assert parts[name].item() == pytest.approx(value, rel=1e-10), name
    assert total.item() == pytest.approx(sum(expected.values()), rel=1e-10)
    total.backward()
    leaves = [outputs["alpha"], *outputs["seg_logits"], *outputs["trimap_logits"]]
    assert all(t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0 for t in leaves)


def test_cra_loss_weights_composition_and_dtypes():
    B, H, W = 1, 32, 48
    alpha = soft_alpha(B, H, W).float()
    outputs = fake_outputs(B, H, W, dtype=torch.float32)
    assert CRA_LOSS_WEIGHTS == {"lowres_seg": 1.0, "lowres_trimap": 1.0, "highres_matte": 1.0,
                                "highres_lap": 1.0, "highres_comp": 1.0}
    total, parts = cra_loss(outputs, alpha, weights={"lowres_trimap": 0.0, "highres_lap": 2.5})
    assert "highres_comp" not in parts and total.dtype == torch.float32
    expected = sum(parts[f"lowres_seg_{i}"] for i in range(3)) + parts["highres_matte"] \
        + 2.5 * parts["highres_lap"]
    torch.testing.assert_close(total, expected)
    # Without image, the composite of the true colors is the target of the composition term.
    fg, bg = torch.rand(B, 3, H, W), torch.rand(B, 3, H, W)
    _, with_default = cra_loss(outputs, alpha, None, fg, bg)
    _, with_image = cra_loss(outputs, alpha, alpha * fg + (1 - alpha) * bg, fg, bg)
    torch.testing.assert_close(with_default["highres_comp"], with_image["highres_comp"])
    half = {"alpha": outputs["alpha"].half(), "seg_logits": [t.half() for t in outputs["seg_logits"]],
            "trimap_logits": [t.bfloat16() for t in outputs["trimap_logits"]]}
    assert cra_loss(half, alpha)[0].dtype == torch.float32


def test_cra_loss_on_an_empty_background_matte_is_finite():
    outputs = fake_outputs(1, 32, 32)
    total, parts = cra_loss(outputs, torch.zeros(1, 1, 32, 32, dtype=torch.float64))
    total.backward()
    assert all(torch.isfinite(v) for v in parts.values())
    assert torch.isfinite(outputs["alpha"].grad).all()


def test_cra_loss_refuses_bad_arguments():
    outputs, alpha = fake_outputs(1, 32, 32), torch.rand(1, 1, 32, 32, dtype=torch.float64)
    with pytest.raises(ValueError, match="unknown terms"):
        cra_loss(outputs, alpha, weights={"discrim": 1.0})
    with pytest.raises(ValueError, match="fg and bg go together"):
        cra_loss(outputs, alpha, fg=torch.rand(1, 3, 32, 32))
    with pytest.raises(TypeError, match="outputs must be CRAMatting's dict"):
        cra_loss(outputs["alpha"], alpha)
    with pytest.raises(ValueError, match="multiples of 8"):
        cra_loss(outputs, torch.rand(1, 1, 36, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"seg_logits'\]\[0\] must be \[1, 1, h, w\]"):
        cra_loss({**outputs, "seg_logits": [torch.rand(1, 3, 4, 4)]}, alpha)
    with pytest.raises(ValueError, match="trimap must be"):
        cra_loss(outputs, alpha, trimap=torch.zeros(1, 1, 16, 16))


@pytest.mark.parametrize("name", ["focal", "laplacian", "cra_loss"])
def test_gradcheck_float64(name):
    gen = torch.Generator().manual_seed(2)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    if name == "focal":
        target = torch.softmax(rand(2, 3, 2, 3) * 4, 1)
        weights = torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64)
        fn, inputs = (lambda z: focal_loss(z, target, weights)), (torch.randn(2, 3, 2, 3, generator=gen,
                                                                             dtype=torch.float64),)
    elif name == "laplacian":
        gt, mask = rand(1, 1, 16, 16), rand(1, 1, 16, 16)
        fn, inputs = (lambda p: cra_laplacian_loss(p, gt, mask, levels=4)), (rand(1, 1, 16, 16),)
    else:
        alpha, fg, bg = soft_alpha(1, 32, 32, seed=7), rand(1, 3, 32, 32), rand(1, 3, 32, 32)
        outputs = fake_outputs(1, 32, 32, seed=3, strides=(16, 8))
        leaves = (outputs["alpha"], *outputs["seg_logits"], *outputs["trimap_logits"])

        def fn(a, s0, s1, t0, t1):
            return cra_loss({"alpha": a, "seg_logits": [s0, s1], "trimap_logits": [t0, t1]},
                            alpha, None, fg, bg)[0]
        inputs = leaves
    inputs = tuple(t.detach().requires_grad_() for t in inputs)
    # cra_loss has 1,000+ inputs: check a random projection of its Jacobian (fast mode).
    assert torch.autograd.gradcheck(fn, inputs, fast_mode=name == "cra_loss")


# --- regularizer and a short training run -----------------------------------------------------

def test_weight_penalty_sums_the_squares_of_weights_only():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3)
            self.norm = torch.nn.BatchNorm2d(3)
            self.rel_pos_bias_table = torch.nn.Parameter(torch.ones(5, 2))

    net = Net()
    expected = sum((p.double() ** 2).sum().item() for p in (net.conv.weight, net.norm.weight))
    assert CRA_WEIGHT_DECAY == 1e-6
    assert cra_weight_penalty(net).item() == pytest.approx(1e-6 * expected, rel=1e-6)
    assert cra_weight_penalty(net, 0.5).item() == pytest.approx(0.5 * expected, rel=1e-6)
    assert cra_weight_penalty(torch.nn.ReLU()).item() == 0.0


class StandIn(torch.nn.Module):
    """A tiny model with CRAMatting's training outputs: alpha, and seg / trimap logits at strides
    32, 16, 8 (until the real model is here)."""

    def __init__(self):
        super().__init__()
        self.fine = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, 1, 3, padding=1))
        self.heads = torch.nn.ModuleList(torch.nn.Conv2d(3, 4, 3, padding=1) for _ in range(3))

    def forward(self, image):
        logits = [head(torch.nn.functional.avg_pool2d(image, s)) for head, s in zip(self.heads, (32, 16, 8))]
        return {"alpha": torch.sigmoid(self.fine(image)), "seg_logits": [z[:, :1] for z in logits],
                "trimap_logits": [z[:, 1:] for z in logits]}


def test_cra_loss_trains_a_stand_in_on_synthetic_composites():
    from fastmatte.io.sample import synthetic_composites

    torch.manual_seed(0)
    model = StandIn()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    data = synthetic_composites(4, 64, 96, generator=0)
    losses = []
    for _ in range(40):
        total, _ = cra_loss(model(data["image"]), data["alpha"], data["image"], data["fg"], data["bg"])
        total = total + cra_weight_penalty(model)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < 0.7 * losses[0], losses
