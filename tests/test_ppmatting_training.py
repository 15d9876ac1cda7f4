"""PP-Matting and PP-MattingV2 train with PaddleSeg's losses (fastmatte.losses.ppmatting_loss,
ppmattingv2_loss; their formulas are checked in tests/test_ppmatting_losses.py): the training
forward gives what the losses need, gradients reach every trained parameter, and a few steps on
synthetic composites lower the loss."""
import re

import pytest
import torch

from fastmatte.io.sample import synthetic_composites
from fastmatte.losses import ppmatting_loss, ppmattingv2_loss, trimap_from_alpha
from fastmatte.models import build_model

# A multiple of 32, both networks' stride, and large enough that PP-MattingV2's 1/64 pyramid is 2x2:
# on a 1x1 map its pooled attention sees identical tokens and its queries and keys learn nothing
SIZE = 128
STEPS = 8


def trimap_of(alpha):
    """fastmatte's float trimap (0 background, 0.5 unknown, 1 foreground) from the classes
    trimap_from_alpha makes (0 foreground, 1 unknown, 2 background)."""
    classes = trimap_from_alpha(alpha)[:, None]
    return (1 - classes.float() / 2).to(alpha.dtype)


def train(name, loss, steps=STEPS, **config):
    """(the model, the losses of each step, the parameters without a gradient at the first step)."""
    torch.manual_seed(0)
    batch = synthetic_composites(2, SIZE, SIZE, generator=0)
    trimap = trimap_of(batch["alpha"])
    model = build_model(name, **config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, idle = [], None
    for _ in range(steps):
        outputs = model(batch["image"])
        total, parts = loss(outputs, batch, trimap)
        assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
        optimizer.zero_grad()
        total.backward()
        if idle is None:
            idle = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        optimizer.step()
        losses.append(total.item())
    return model, losses, idle


def ppmatting(outputs, batch, trimap):
    return ppmatting_loss(outputs, batch["alpha"], trimap, None, batch["fg"], batch["bg"])


def ppmattingv2(outputs, batch, trimap):
    return ppmattingv2_loss(outputs, batch["alpha"], trimap)


@pytest.mark.parametrize("name, loss, keys", [
    ("ppmatting", ppmatting, {"alpha", "semantic", "detail"}),
    ("ppmattingv2", ppmattingv2, {"alpha", "alpha_8x"})])
def test_training_mode_returns_what_the_loss_needs(name, loss, keys):
    model = build_model(name).train()
    image = synthetic_composites(2, SIZE, SIZE, generator=1)["image"]  # 2: BatchNorms of 1x1 pyramid bins
    outputs = model(image)
    assert set(outputs) == keys
    assert outputs["alpha"].shape == (2, 1, SIZE, SIZE)
    if name == "ppmatting":
        assert outputs["semantic"].shape == (2, 3, SIZE, SIZE)
        assert 0 < outputs["detail"].min() and outputs["detail"].max() < 1
    else:
        assert outputs["alpha_8x"].shape == (2, 1, SIZE // 8, SIZE // 8)
    assert set(model.eval()(image)) == {"alpha"}


# PP-Matting uses HRNet's outputs 0 (stem), 1 (1/4, the detail branch) and 4 (1/32, the SCB): the
# last stage-4 module's fuse rows for the 1/8 and 1/16 outputs feed nothing, in PaddleSeg's model too
UNUSED = {"ppmatting": r"backbone\.stage4\.2\.fuse\.[12]\.", "ppmattingv2": None}


@pytest.mark.parametrize("name, loss", [("ppmatting", ppmatting), ("ppmattingv2", ppmattingv2)])
def test_a_few_steps_on_synthetic_composites_lower_the_loss(name, loss):
    _, losses, idle = train(name, loss)
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.8 * first, losses
    unreached = [n for n in idle if UNUSED[name] is None or not re.match(UNUSED[name], n)]
    assert unreached == [], f"parameters the loss does not reach: {unreached}"
    if UNUSED[name]:
        assert idle, "the unused HRNet outputs' layers got a gradient"
