"""E2E-HIM trains: the model (4 queries instead of 20, at 64x64) on synthetic multi-person
composites, e2ehim_loss with its Hungarian matching, a few Adam steps through the fused path's
backward (window_attention, the batched per-query kernels): the loss falls."""
import torch

from fastmatte.io.sample import synthetic_instance_composites
from fastmatte.losses import e2ehim_loss
from fastmatte.models import E2EHIM


def test_a_few_steps_on_synthetic_multi_person_composites_lower_the_loss():
    torch.manual_seed(0)
    images, alphas = synthetic_instance_composites(2, 64)
    assert {len(a) for a in alphas} <= {2, 3}
    model = E2EHIM(num_queries=4).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(8):
        total, parts = e2ehim_loss(model(images), alphas)
        assert all(torch.isfinite(v) for v in parts.values()), parts
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(total.item())
    assert sum(losses[-2:]) / 2 < 0.8 * sum(losses[:2]) / 2, losses
