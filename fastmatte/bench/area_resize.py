"""Benchmark cases of area_resize: MODNet's resizes of ZHKKKe's inference recipe, the photo down
to the network size and the matte back up with F.interpolate(mode="area")
(= F.adaptive_avg_pool2d). The network size is 512 x 896 at HD and at 4K (short side 512, both
sides floored to a multiple of 32); batch 1, NCHW as the recipe's tensors are."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, OpCase
from fastmatte.models.modnet.recipe import zhkkke_size

# (case name, channels, "down" (frame -> network size) or "up" (network size -> frame))
CASES = [
    ("area_resize photo down", 3, "down"),
    ("area_resize matte up", 1, "up"),
]


def area_resize_cases(resolution: str, device, dtype=torch.float32):
    """fastmatte.ops.area_resize vs its eager reference (F.adaptive_avg_pool2d), normal random
    NCHW inputs."""
    frame = RESOLUTIONS[resolution]
    network = zhkkke_size(*frame)
    gen = torch.Generator().manual_seed(13)
    elt = torch.finfo(dtype).bits // 8
    cases = []
    for name, channels, direction in CASES:
        source, size = (frame, network) if direction == "down" else (network, frame)
        x = torch.randn(1, channels, *source, generator=gen).to(device, dtype)
        # the input read once, the output written once
        min_bytes = (x.numel() + channels * size[0] * size[1]) * elt

        def run(api, x=x, size=size):
            with torch.no_grad():
                return api.area_resize(x, size)

        cases.append(OpCase(name, lambda run=run: run(ops), lambda run=run: run(reference), min_bytes, 0))
    return cases
