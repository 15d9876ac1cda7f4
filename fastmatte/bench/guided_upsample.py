"""Benchmark cases of the guided-filter upsampler (RVM's full-resolution end) at HD/4K.

RVM runs its network at a downsample ratio that brings the frame's long side to about 512 (0.25
at HD, 0.125 at 4K), so the coefficients are 1/4 (HD) or 1/8 (4K) of the frame; a forward and
backward case (training) follows."""
import math

import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, OpCase
from fastmatte.models.rvm import auto_downsample_ratio

# (case name, with backward)
CASES = [("guided_upsample", False), ("guided_upsample fwd+bwd", True)]


def guided_upsample_cases(resolution: str, device, dtype=torch.float32):
    """fastmatte.ops.guided_upsample vs its eager reference, batch 1, a uniform random frame and
    coefficients at RVM's recommended ratio for the resolution."""
    height, width = RESOLUTIONS[resolution]
    ratio = auto_downsample_ratio(height, width)
    low = (math.floor(height * ratio), math.floor(width * ratio))  # as RVM.forward sizes it
    gen = torch.Generator().manual_seed(7)
    elt = torch.finfo(dtype).bits // 8
    cases = []
    for name, backward in CASES:
        image = torch.rand(1, 3, height, width, generator=gen).to(device, dtype).requires_grad_(backward)
        coef_a = (torch.randn(1, 4, *low, generator=gen) * 0.5).to(device, dtype).requires_grad_(backward)
        coef_b = (torch.randn(1, 4, *low, generator=gen) * 0.4).to(device, dtype).requires_grad_(backward)
        grads = (torch.rand(1, 3, height, width, generator=gen).to(device, dtype),
                 torch.rand(1, 1, height, width, generator=gen).to(device, dtype))
        # Frame read once, foreground and alpha written once (backward: the frame and both
        # incoming gradients read once more, the frame's gradient written once).
        min_bytes = (7 if not backward else 14) * height * width * elt + 8 * low[0] * low[1] * elt

        def run(api, inputs=(image, coef_a, coef_b), grads=grads, backward=backward):
            if not backward:
                with torch.no_grad():
                    return api.guided_upsample(*inputs)
            return torch.autograd.grad(api.guided_upsample(*inputs), inputs, grads)

        cases.append(OpCase(name, lambda run=run: run(ops), lambda run=run: run(reference), min_bytes, 0))
    return cases
