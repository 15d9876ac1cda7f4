"""Benchmark cases of the semantic-detail fusion at HD/4K on a portrait-like trimap.

PaddleSeg's PP-Matting fuses its semantic branch's output at full resolution (the SCB's five
x2 upsamplings bring HRNet's 1/32 features back to H x W before softmax and fusion), so that is
the first case; a semantic map at 1/4 (a model that stops the SCB early and lets the fusion
upsample), its forward + backward (training), and E2E-HIM's per-instance form (trimaps at 1/2,
two instances) follow."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, portrait_trimap
from fastmatte.bench.cases import OpCase

# (case name, semantic stride, instances, with backward)
CASES = [("trimap_fusion full-res", 1, 0, False), ("trimap_fusion 1/4", 4, 0, False),
         ("trimap_fusion 1/4 fwd+bwd", 4, 0, True), ("trimap_fusion 1/2 N=2", 2, 2, False)]


def trimap_fusion_cases(resolution: str, device, dtype=torch.float32):
    """fastmatte.ops.trimap_fusion vs its eager reference, batch 1, semantic = softmax of
    portrait-trimap logits, detail uniform in [0, 1]."""
    height, width = RESOLUTIONS[resolution]
    device = torch.device(device)
    gen = torch.Generator().manual_seed(5)
    elt = torch.finfo(dtype).bits // 8
    cases = []
    for name, stride, instances, backward in CASES:
        semantic = portrait_trimap(height, width, stride, batch=max(instances, 1)).softmax(1)
        detail = torch.rand(max(instances, 1), 1, height, width, generator=gen)
        if instances:  # [B=1, N, C, H, W]
            semantic, detail = semantic[None], detail[None]
        semantic = semantic.to(device, dtype)
        detail = detail.to(device, dtype).requires_grad_(backward)
        grad = torch.rand(detail.shape, generator=gen).to(device, dtype)
        # semantic and detail read once, alpha written once (backward: semantic and the incoming
        # gradient read once more, the detail gradient written once).
        min_bytes = (semantic.numel() + 2 * detail.numel()) * elt * (2 if backward else 1)

        def run(api, semantic=semantic, detail=detail, grad=grad, backward=backward):
            if not backward:
                with torch.no_grad():
                    return api.trimap_fusion(semantic, detail)
            return torch.autograd.grad(api.trimap_fusion(semantic, detail), detail, grad)

        cases.append(OpCase(name, lambda run=run: run(ops), lambda run=run: run(reference), min_bytes, 0))
    return cases
