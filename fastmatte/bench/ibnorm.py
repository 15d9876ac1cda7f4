"""Benchmark cases of MODNet's IBNorm + ReLU (fastmatte.ops.ibnorm) at the network's size.

MODNet runs at the size ZHKKKe's demo gives the photo: short side 512, both sides floored to a
multiple of 32, so 512 x 896 for HD and 4K alike. Its largest IBNorms are the fusion branch's last
one at full network resolution (C = hr_channels / 2 = 16, 8 of them BatchNorm) and the
high-resolution branch's 2x ones at half of it (C = 2 * hr_channels = 64, 32 BatchNorm);
channels-last, as MODNet runs. A forward and backward case (training) follows each."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, OpCase
from fastmatte.models.modnet.recipe import zhkkke_size

# (case name, channels, stride from the network size, with backward)
CASES = [("ibnorm C=16 1/1", 16, 1, False), ("ibnorm C=16 1/1 fwd+bwd", 16, 1, True),
         ("ibnorm C=64 1/2", 64, 2, False), ("ibnorm C=64 1/2 fwd+bwd", 64, 2, True)]


def ibnorm_cases(resolution: str, device, dtype=torch.float32):
    """fastmatte.ops.ibnorm vs its eager reference, batch 1, channels-last, K = C / 2: x like a
    conv's output (per-channel offsets and scales), BatchNorm and InstanceNorm parameters around
    1 and 0, the ReLU on."""
    height, width = zhkkke_size(*RESOLUTIONS[resolution])
    gen = torch.Generator().manual_seed(11)
    elt = torch.finfo(dtype).bits // 8
    cases = []
    for name, channels, stride, backward in CASES:
        size = (1, channels, height // stride, width // stride)
        k = channels // 2
        x = (torch.randn(size, generator=gen) * (0.5 + torch.rand(1, channels, 1, 1, generator=gen))
             + torch.randn(1, channels, 1, 1, generator=gen))
        x = x.to(device, dtype).contiguous(memory_format=torch.channels_last).requires_grad_(backward)
        params = [1 + 0.5 * torch.randn(n, generator=gen) if scale else 0.5 * torch.randn(n, generator=gen)
                  for n in (k, channels - k) for scale in (True, False)]  # scale, shift, weight, bias
        params = [p.to(device, dtype).requires_grad_(backward) for p in params]
        grad = torch.randn(size, generator=gen).to(device, dtype)
        grad = grad.contiguous(memory_format=torch.channels_last)
        # x read once, y written once (backward: x and the incoming gradient read once more, x's
        # gradient written once).
        min_bytes = (5 if backward else 2) * x.numel() * elt

        def run(api, inputs=(x, *params), grad=grad, backward=backward):
            if not backward:
                with torch.no_grad():
                    return api.ibnorm(*inputs)
            return torch.autograd.grad(api.ibnorm(*inputs), inputs, grad)

        cases.append(OpCase(name, lambda run=run: run(ops), lambda run=run: run(reference), min_bytes, 0))
    return cases
