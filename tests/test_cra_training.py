"""A tiny CRAMatting trains: a few Adam steps on synthetic composites lower cra_loss, through the
fused operators' backward passes."""
import torch
import torch.nn.functional as F

from fastmatte.losses import coarse_trimap_target, cra_loss
from fastmatte.models import CRAMatting
from fastmatte.io.sample import synthetic_composites


def test_a_few_steps_on_synthetic_composites_lower_the_loss():
    torch.manual_seed(0)
    batch = synthetic_composites(2, 64, 64, generator=0)
    model = CRAMatting.tiny(tile_capacity=0.5).train()
    # Tiles chosen from the ground truth, as in training: the refiner learns the true band.
    classes = coarse_trimap_target(batch["alpha"])
    given = F.one_hot(classes, 3).permute(0, 3, 1, 2).float() * 4
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        out = model(batch["image"], given)
        total, parts = cra_loss(out, batch["alpha"], batch["fg"], batch["bg"], batch["image"])
        assert all(torch.isfinite(value) for value in parts.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert int(out["selection"].count) > 0
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses
