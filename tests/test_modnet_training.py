"""MODNet's training objectives (fastmatte.losses.modnet, fastmatte.models.modnet.soc) against
NumPy / SciPy float64 transcriptions of ZHKKKe/MODNet's src/trainer.py (supervised_training_iter,
soc_adaptation_iter, GaussianBlurLayer), hand-made cases, and a few real training and SOC steps."""
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.io.sample import synthetic_composites
from fastmatte.losses import (MODNET_LOSS_WEIGHTS, boundary_from_alpha, modnet_loss, modnet_semantic_target,
                              modnet_soc_boundary, modnet_soc_loss)
from fastmatte.models import build_model
from fastmatte.models.modnet.soc import backup_copy, freeze_norm, soc_step

# --- float64 references, written from the official trainer ------------------------------------


def official_blur(x):
    """GaussianBlurLayer(1, 3): the kernel scipy's gaussian_filter makes of a 3x3 delta with sigma
    0.3 * ((3 - 1) * 0.5 - 1) + 0.8, after ReflectionPad2d(1) (scipy's 'mirror')."""
    delta = np.zeros((3, 3))
    delta[1, 1] = 1
    kernel = ndi.gaussian_filter(delta, 0.3 * ((3 - 1) * 0.5 - 1) + 0.8)
    return ndi.correlate(x, kernel[None, None], mode="mirror")


def down16(x):
    """Bilinear 1/16, align_corners=False: output i samples 16 i + 7.5, the mean of pixels 16i+7, 16i+8."""
    return (x[..., 7::16, 7::16] + x[..., 8::16, 7::16] + x[..., 7::16, 8::16] + x[..., 8::16, 8::16]) / 4


def up16(x):
    """Bilinear x16, align_corners=False, as separable interpolation matrices."""
    def matrix(n):
        src = np.clip((np.arange(16 * n) + 0.5) / 16 - 0.5, 0, None)
        low = np.floor(src).astype(int)
        m = np.zeros((16 * n, n))
        np.add.at(m, (np.arange(16 * n), low), 1 - (src - low))
        np.add.at(m, (np.arange(16 * n), np.minimum(low + 1, n - 1)), src - low)
        return m
    return matrix(x.shape[-2]) @ x @ matrix(x.shape[-1]).T


def reference_loss(semantic, detail, alpha, gt, image, trimap):
    """supervised_training_iter's three scaled losses (image: in [0, 1], normalized as the trainer's)."""
    known = (trimap < 0.5) | (trimap > 0.5)
    semantic_loss = 10 * np.mean((semantic - official_blur(down16(gt))) ** 2)
    detail_loss = 10 * np.mean(np.abs(np.where(known, trimap, detail) - np.where(known, trimap, gt)))
    boundary_alpha = np.where(known, trimap, alpha)
    img = (image - 0.5) / 0.5
    matte_loss = (np.mean(np.abs(alpha - gt)) + 4 * np.mean(np.abs(boundary_alpha - gt))
                  + np.mean(np.abs(img * alpha - img * gt))
                  + 4 * np.mean(np.abs(img * boundary_alpha - img * gt)))
    return semantic_loss, detail_loss, matte_loss


def reference_soc_boundary(alpha, semantic):
    fg = (alpha > 0.1) * up16((semantic > 0.1).astype(np.float64))
    h, w = alpha.shape[-2:]
    side = int((h + w) / 2 * 0.05)
    return np.stack([[(ndi.grey_dilation(f, size=(side, side)) - ndi.grey_erosion(f, size=(side, side))) != 0
                      for f in sample] for sample in fg])


def reference_soc(semantic, detail, alpha, backup_detail, backup_alpha):
    """soc_adaptation_iter's (unscaled) semantic and detail consistency losses."""
    boundary = reference_soc_boundary(alpha, semantic)
    matte_small = official_blur(down16(alpha))
    pseudo_semantic = matte_small * (matte_small > 0.01)
    pseudo_matte = semantic * (semantic > 0.01)
    semantic_loss = np.mean((semantic - pseudo_semantic) ** 2) + np.mean((matte_small - pseudo_matte) ** 2)

    def boundary_mean(d):
        return np.mean(np.sum(boundary * np.abs(d), axis=(1, 2, 3)) / np.sum(boundary, axis=(1, 2, 3)))
    return semantic_loss, boundary_mean(detail - backup_detail) + boundary_mean(alpha - backup_alpha)


def blob_alpha(B, H, W, seed=0):
    """[B, 1, H, W] float64 mattes: solid 0 and 1 regions and a soft ramp between them."""
    gen = np.random.default_rng(seed)
    y, x = np.mgrid[:H, :W]
    out = []
    for _ in range(B):
        cy, cx = gen.uniform(0.4, 0.6, 2) * (H, W)
        out.append(np.clip((1.2 - np.hypot((y - cy) / (0.3 * H), (x - cx) / (0.3 * W))) / 0.3, 0, 1))
    return np.stack(out)[:, None]


def outputs_for(gt, seed=1):
    """Random MODNet-like outputs for ground truth gt (NumPy [B, 1, H, W])."""
    gen = np.random.default_rng(seed)
    B, _, H, W = gt.shape
    return {"semantic": gen.uniform(0, 1, (B, 1, H // 16, W // 16)), "detail": gen.uniform(0, 1, gt.shape),
            "alpha": np.clip(gt + gen.normal(0, 0.2, gt.shape), 0.001, 0.999)}


def tensors(arrays, dtype=torch.float32):
    return {k: torch.tensor(v, dtype=dtype) for k, v in arrays.items()}


# --- supervised loss ----------------------------------------------------------------------------

def test_semantic_target_is_the_blurred_bilinear_downsample():
    gt = blob_alpha(2, 64, 96)
    got = modnet_semantic_target(torch.tensor(gt, dtype=torch.float32))
    assert got.shape == (2, 1, 4, 6) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), official_blur(down16(gt)), atol=1e-6)
    constant = modnet_semantic_target(torch.full((1, 1, 32, 48), 0.3, dtype=torch.float64))
    np.testing.assert_allclose(constant.numpy(), 0.3, rtol=1e-12)  # the kernel sums to 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_loss_parts_match_the_official_formulas_with_a_given_trimap(dtype):
    gt = blob_alpha(2, 64, 64)
    outputs = outputs_for(gt)
    image = np.random.default_rng(2).uniform(0, 1, (2, 3, 64, 64))
    band = (gt > 0.2) & (gt < 0.8)
    trimap = np.where(band, 0.5, np.round(gt))  # known pixels where trimap != gt add a constant
    assert np.any(~band & (trimap != gt))
    total, parts = modnet_loss(tensors(outputs, dtype), torch.tensor(gt, dtype=dtype),
                               torch.tensor(image, dtype=dtype), trimap=torch.tensor(trimap, dtype=dtype))
    expected = reference_loss(outputs["semantic"], outputs["detail"], outputs["alpha"], gt, image, trimap)
    got = [MODNET_LOSS_WEIGHTS[name] * parts[name].item() for name in ("semantic", "detail", "matte")]
    np.testing.assert_allclose(got, expected, rtol=1e-5 if dtype == torch.float32 else 1e-12)
    assert total.dtype == dtype and total.dim() == 0
    assert total.item() == pytest.approx(sum(expected), rel=1e-5)


def test_default_boundary_is_dilation_minus_erosion_of_the_matte():
    gt = blob_alpha(2, 64, 64, seed=3)
    outputs = outputs_for(gt, seed=4)
    image = np.random.default_rng(5).uniform(0, 1, (2, 3, 64, 64))
    band = ndi.grey_dilation(gt > 0, size=(1, 1, 5, 5), mode="nearest") & \
        ~ndi.grey_erosion(gt >= 1, size=(1, 1, 5, 5), mode="nearest")
    expected = reference_loss(outputs["semantic"], outputs["detail"], outputs["alpha"], gt, image,
                              np.where(band, 0.5, gt))
    _, parts = modnet_loss(tensors(outputs), torch.tensor(gt).float(), torch.tensor(image).float())
    _, with_mask = modnet_loss(tensors(outputs), torch.tensor(gt).float(), torch.tensor(image).float(),
                               trimap=torch.tensor(band))
    for given in (parts, with_mask):
        got = [MODNET_LOSS_WEIGHTS[name] * given[name].item() for name in ("semantic", "detail", "matte")]
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_boundary_from_alpha_of_a_square_and_a_soft_pixel():
    alpha = torch.zeros(1, 1, 32, 32)
    alpha[..., 10:20, 10:20] = 1
    alpha[..., 0, 31] = 0.5
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[8:22, 8:22] = True  # two pixels out of the hard edge ...
    expected[12:18, 12:18] = False  # ... and two in
    expected[0:3, 29:32] = True  # the soft pixel and two pixels around it, clipped by the border
    assert torch.equal(boundary_from_alpha(alpha, 5)[0, 0], expected)
    assert torch.equal(boundary_from_alpha(alpha, 1)[0, 0], alpha[0, 0] == 0.5)


def test_detail_loss_is_a_mean_over_every_pixel_with_gradient_in_the_boundary_only():
    gt = torch.zeros(1, 1, 32, 32)
    boundary = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    boundary[..., 3, 4:7] = True
    detail = torch.full((1, 1, 32, 32), 0.25, requires_grad=True)
    outputs = {"semantic": torch.zeros(1, 1, 2, 2), "detail": detail, "alpha": gt.clone()}
    _, parts = modnet_loss(outputs, gt, torch.zeros(1, 3, 32, 32), trimap=boundary)
    assert parts["detail"].item() == pytest.approx(3 * 0.25 / 1024)
    parts["detail"].backward()
    assert torch.equal(detail.grad != 0, boundary)
    _, empty = modnet_loss(outputs, gt, torch.zeros(1, 3, 32, 32), trimap=torch.zeros_like(boundary))
    assert empty["detail"].item() == 0 and empty["matte"].item() == 0


def test_weights_scale_the_parts_and_unknown_names_are_refused():
    gt = blob_alpha(1, 32, 32)
    outputs, gt, image = tensors(outputs_for(gt)), torch.tensor(gt).float(), torch.rand(1, 3, 32, 32)
    total, parts = modnet_loss(outputs, gt, image, weights={"semantic": 1.0, "matte": 0.0})
    assert total.item() == pytest.approx(parts["semantic"].item() + 10 * parts["detail"].item(), rel=1e-6)
    with pytest.raises(ValueError, match="weights has unknown parts \\['alpha'\\]"):
        modnet_loss(outputs, gt, image, weights={"alpha": 1.0})


def test_half_precision_is_computed_in_float32():
    gt = torch.tensor(blob_alpha(1, 32, 32)).bfloat16()
    outputs = {k: v.bfloat16() for k, v in tensors(outputs_for(gt.double().numpy())).items()}
    total, _ = modnet_loss(outputs, gt, torch.rand(1, 3, 32, 32).bfloat16())
    assert total.dtype == torch.float32


def _good():
    return {"semantic": torch.rand(2, 1, 4, 4), "detail": torch.rand(2, 1, 64, 64),
            "alpha": torch.rand(2, 1, 64, 64)}


@pytest.mark.parametrize("change, error, message", [
    (lambda a: a.update(outputs={"alpha": torch.rand(2, 1, 64, 64)}), TypeError,
     "outputs must be MODNet's training"),
    (lambda a: a["outputs"].update(semantic=torch.rand(2, 1, 8, 8)), ValueError,
     r"outputs\['semantic'\] must be \[2, 1, 4, 4\]"),
    (lambda a: a["outputs"].update(detail=torch.rand(2, 1, 64)), ValueError, r"outputs\['detail'\] must be"),
    (lambda a: a.update(image=torch.rand(2, 1, 64, 64)), ValueError, "image must be \\[2, 3, 64, 64\\]"),
    (lambda a: a.update(gt_alpha=torch.rand(2, 1, 64, 72)), ValueError, "gt_alpha must be .*multiples of 16"),
    (lambda a: a.update(gt_alpha=torch.rand(2, 1, 16, 16)), ValueError, "at least 32"),
    (lambda a: a.update(gt_alpha=torch.rand(2, 64, 64)), ValueError, "gt_alpha must be 4-D"),
    (lambda a: a.update(trimap=torch.rand(2, 1, 32, 32)), ValueError, "trimap must be \\[B, 1, H, W\\]"),
    (lambda a: a.update(trimap=torch.zeros(2, 1, 64, 64, dtype=torch.int64)), ValueError,
     "trimap must be bool"),
    (lambda a: a.update(trimap=np.zeros((2, 1, 64, 64))), TypeError, "trimap must be a torch.Tensor"),
])
def test_wrong_arguments_are_named(change, error, message):
    args = {"outputs": _good(), "gt_alpha": torch.rand(2, 1, 64, 64), "image": torch.rand(2, 3, 64, 64),
            "trimap": None}
    change(args)
    with pytest.raises(error, match=message):
        modnet_loss(**args)


def test_soc_loss_wrong_arguments_are_named():
    with pytest.raises(TypeError, match="backup_outputs must be MODNet's training dict with alpha, detail"):
        modnet_soc_loss(_good(), {"alpha": torch.rand(2, 1, 64, 64)})
    with pytest.raises(ValueError, match=r"backup_outputs\['detail'\] must be \[2, 1, 64, 64\]"):
        modnet_soc_loss(_good(), {"alpha": torch.rand(2, 1, 64, 64), "detail": torch.rand(1, 1, 64, 64)})
    with pytest.raises(ValueError, match="alpha must be .*multiples of 16"):
        modnet_semantic_target(torch.rand(1, 1, 40, 64))


# --- SOC ------------------------------------------------------------------------------------------

def soc_outputs(B, H, W, seed):
    """Outputs with a foreground blob (so the SOC boundary is not empty) and a backup's."""
    gen = np.random.default_rng(seed)
    alpha = np.clip(blob_alpha(B, H, W, seed) + gen.normal(0, 0.05, (B, 1, H, W)), 0.001, 0.999)
    semantic = official_blur(down16(alpha)) + gen.normal(0, 0.1, (B, 1, H // 16, W // 16))
    backup_alpha = np.clip(alpha + gen.normal(0, 0.1, alpha.shape), 0, 1)
    outputs = {"semantic": np.clip(semantic, 0.001, 0.999), "detail": gen.uniform(0, 1, alpha.shape),
               "alpha": alpha}
    return outputs, {"detail": gen.uniform(0, 1, alpha.shape), "alpha": backup_alpha}


@pytest.mark.parametrize("H, W", [(64, 64), (64, 96), (96, 128)])  # window sides 3, 4 (even), 5
def test_soc_boundary_is_scipys_dilation_minus_erosion(H, W):
    outputs, _ = soc_outputs(2, H, W, seed=H + W)
    expected = reference_soc_boundary(outputs["alpha"], outputs["semantic"])
    got = modnet_soc_boundary(*(torch.tensor(outputs[k]).float() for k in ("alpha", "semantic")))
    assert expected.any() and torch.equal(got, torch.tensor(expected))


@pytest.mark.parametrize("H, W", [(64, 64), (64, 96)])
def test_soc_loss_matches_the_official_formulas(H, W):
    outputs, backup = soc_outputs(2, H, W, seed=7)
    semantic = torch.tensor(outputs["semantic"], requires_grad=True)
    alpha = torch.tensor(outputs["alpha"], requires_grad=True)
    given = tensors(outputs, torch.float64) | {"semantic": semantic, "alpha": alpha}
    total, parts = modnet_soc_loss(given, tensors(backup, torch.float64), semantic_scale=100.0,
                                   detail_scale=2.0)
    expected = reference_soc(outputs["semantic"], outputs["detail"], outputs["alpha"], backup["detail"],
                             backup["alpha"])
    np.testing.assert_allclose([parts["semantic"].item(), parts["detail"].item()], expected, rtol=1e-10)
    assert total.item() == pytest.approx(100 * expected[0] + 2 * expected[1], rel=1e-10)
    # The pseudo targets are detached: the semantic head's gradient is 2 (s - m*) / n only, and
    # alpha's is that of sum(c * m) with c = 2 (m - s*) / n, m = blur(down16(alpha)) being linear.
    parts["semantic"].backward()
    s, small = outputs["semantic"], official_blur(down16(outputs["alpha"]))
    np.testing.assert_allclose(semantic.grad.numpy(), 2 * (s - small * (small > 0.01)) / s.size, rtol=1e-10)
    c = 2 * (small - s * (s > 0.01)) / s.size
    expected = np.zeros_like(outputs["alpha"])
    for index in zip(*np.nonzero(np.ones_like(expected))):
        if index[2] % 16 in (7, 8) and index[3] % 16 in (7, 8):  # the pixels down16 reads
            probe = np.zeros_like(expected)
            probe[index] = 1
            expected[index] = np.sum(c * official_blur(down16(probe)))
    np.testing.assert_allclose(alpha.grad.numpy(), expected, rtol=1e-9, atol=1e-15)


def test_soc_loss_without_boundary_is_zero_not_nan():
    alpha = torch.full((1, 1, 64, 64), 0.05, requires_grad=True)
    outputs = {"semantic": torch.full((1, 1, 4, 4), 0.05), "detail": torch.rand(1, 1, 64, 64), "alpha": alpha}
    backup = {"detail": torch.rand(1, 1, 64, 64), "alpha": torch.rand(1, 1, 64, 64)}
    _, parts = modnet_soc_loss(outputs, backup)
    assert parts["detail"].item() == 0
    parts["detail"].backward()
    assert torch.equal(alpha.grad, torch.zeros_like(alpha))


class StubModel(nn.Module):
    """A MODNet-shaped model: alpha, detail and semantic from one logit map plus a BatchNorm."""

    def __init__(self, H, W):
        super().__init__()
        y, x = torch.meshgrid(torch.arange(H) - H / 2, torch.arange(W) - W / 2, indexing="ij")
        self.logit = nn.Parameter((H / 3 - (y ** 2 + x ** 2).sqrt())[None, None] / 3)
        self.norm = nn.BatchNorm2d(1)
        self.norm.running_mean.fill_(0.2)

    def forward(self, image, aux=False, backend=None):
        x = self.logit + 0.5 * self.norm(image.mean(1, keepdim=True))
        return {"alpha": torch.sigmoid(x), "detail": torch.sigmoid(x + 0.3),
                "semantic": torch.sigmoid(F.avg_pool2d(x, 16))}


def test_soc_step_on_a_stub_takes_one_step_on_the_official_losses():
    model, image = StubModel(64, 64), torch.rand(2, 3, 64, 64)
    backup = backup_copy(model)
    with torch.no_grad():
        backup.logit.add_(torch.randn(1, 1, 64, 64))
        before = {k: v.double().numpy() for k, v in model.eval()(image).items()}  # BatchNorm on running stats
        after_backup = {k: v.double().numpy() for k, v in backup(image).items()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    losses = soc_step(model, backup, torch.optim.SGD(model.parameters(), lr=1.0), image)
    expected = reference_soc(before["semantic"], before["detail"], before["alpha"], after_backup["detail"],
                             after_backup["alpha"])
    np.testing.assert_allclose([losses["semantic"].item(), losses["detail"].item()], expected, rtol=1e-4)
    assert losses["total"].item() == pytest.approx(100 * expected[0] + expected[1], rel=1e-4)
    assert model.training and not model.norm.training
    assert torch.equal(model.norm.running_mean, state["norm.running_mean"])
    assert not torch.equal(model.logit, state["logit"])


# --- real MODNet ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """MODNet after 10 Adam steps on two synthetic composites at 64 x 64: (model, losses, batch)."""
    torch.manual_seed(0)
    batch = synthetic_composites(2, 64, 64, generator=0)
    model = build_model("modnet").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        total, parts = modnet_loss(model(batch["image"], backend="torch"), batch["alpha"], batch["image"])
        assert all(torch.isfinite(value) for value in parts.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    return model, losses, batch


def test_a_few_steps_on_synthetic_composites_lower_the_loss(trained):
    _, losses, _ = trained
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses


def test_freeze_norm_puts_only_the_norms_in_eval():
    model = freeze_norm(build_model("modnet").train())
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d))]
    assert norms and not any(m.training for m in norms)
    assert model.training and model.lr_branch.training


def test_soc_step_adapts_the_model_and_keeps_norms_and_backup_fixed(trained):
    model, _, batch = trained
    backup, image = backup_copy(model), batch["image"][:1]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    backup_state = {k: v.clone() for k, v in backup.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.99))
    first = soc_step(model, backup, optimizer, image)  # the backup on fastmatte's inference path
    assert first["detail"].item() < 1e-4 and first["semantic"].item() > 0  # the model is still its backup
    with torch.no_grad():  # eval: BatchNorm on its running statistics, as frozen
        before = {k: v.double().numpy() for k, v in model.eval()(image, aux=True, backend="torch").items()}
        from_backup = {k: v.double().numpy() for k, v in backup(image, aux=True, backend="torch").items()}
    second = soc_step(model, backup, optimizer, image, backend="torch")
    assert all(torch.isfinite(v) for v in second.values()) and second["detail"].item() > 0
    expected = reference_soc(before["semantic"], before["detail"], before["alpha"], from_backup["detail"],
                             from_backup["alpha"])
    np.testing.assert_allclose([second["semantic"].item(), second["detail"].item()], expected, rtol=1e-3)
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers())  # BatchNorm statistics frozen
    assert any(not torch.equal(v, params[k]) for k, v in model.named_parameters())
    assert all(torch.equal(v, backup_state[k]) for k, v in backup.state_dict().items())
    assert not any(p.requires_grad for p in backup.parameters())
