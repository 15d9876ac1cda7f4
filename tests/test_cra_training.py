"""A tiny CRAMatting trains as the authors' trainer does it: cells chosen from the model's own
predicted trimap (their trainer never overrides it), cra_loss on the three low-resolution scales
and the full-resolution alpha, plus the weight penalty; a few Adam steps on synthetic composites
lower the loss, through the fused operators' backward passes."""
import torch

from fastmatte.io.sample import synthetic_composites
from fastmatte.losses import CRA_WEIGHT_DECAY, cra_loss, cra_weight_penalty
from fastmatte.models import CRAMatting


def test_a_few_steps_on_synthetic_composites_lower_the_loss():
    torch.manual_seed(0)
    batch = synthetic_composites(2, 128, 128, generator=0)
    model = CRAMatting.tiny().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses, refined = [], 0
    for _ in range(12):
        out = model(batch["image"], aux=True)
        total, parts = cra_loss(out, batch["alpha"], batch["image"], batch["fg"], batch["bg"])
        assert all(torch.isfinite(value) for value in parts.values()), parts
        total = total + CRA_WEIGHT_DECAY * cra_weight_penalty(model)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
        refined += int(out["selection"].count)
    assert refined > 0  # the region head took part
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.8 * first, losses
