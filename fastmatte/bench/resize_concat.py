"""Benchmark cases of resize_concat: MODNet's concatenations of bilinearly resized feature maps.

MODNet runs its network at the size ZHKKKe's recipe gives the frame (short side 512, both sides
floored to a multiple of 32: 512 x 896 at HD and at 4K), so the cases are the same at both
resolutions. Each torch.cat([F.interpolate(...), ...]) of its high-resolution and fusion branches
feeds a convolution, channels-last; batch 1, channels-last inputs."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS, OpCase
from fastmatte.models.modnet.recipe import zhkkke_size

# (case name, [(channels, stride of the input relative to the network input)], stride of the output)
CASES = [
    # fusion branch: cat([up2(f2x), img]) -> conv_f
    ("resize_concat fusion up2(f2x)+img", [(32, 2), (3, 1)], 1),
    # high-resolution branch: cat([up2(hr4x), enc2x]) -> conv_hr2x
    ("resize_concat hr2x up2(hr4x)+enc2x", [(32, 4), (32, 2)], 2),
    # high-resolution branch: cat([hr4x, up2(lr8x), down4(img)]) -> conv_hr4x
    ("resize_concat hr4x hr4x+up2(lr8x)+down4(img)", [(32, 4), (32, 8), (3, 1)], 4),
]


def resize_concat_cases(resolution: str, device, dtype=torch.float32):
    """fastmatte.ops.resize_concat vs its eager reference (torch.cat of F.interpolate, made
    channels-last), normal random channels-last inputs."""
    height, width = zhkkke_size(*RESOLUTIONS[resolution])
    gen = torch.Generator().manual_seed(11)
    elt = torch.finfo(dtype).bits // 8
    cases = []
    for name, inputs, stride in CASES:
        tensors = [torch.randn(1, channels, height // s, width // s, generator=gen).to(device, dtype)
                   .contiguous(memory_format=torch.channels_last) for channels, s in inputs]
        size = (height // stride, width // stride)
        # each input read once, the concatenation written once
        channels = sum(c for c, _ in inputs)
        min_bytes = (sum(t.numel() for t in tensors) + channels * size[0] * size[1]) * elt

        def run(api, tensors=tensors, size=size):
            with torch.no_grad():
                return api.resize_concat(tensors, size)

        cases.append(OpCase(name, lambda run=run: run(ops), lambda run=run: run(reference), min_bytes, 0))
    return cases
