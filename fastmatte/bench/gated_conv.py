"""Benchmark cases of PP-Matting's gated convolution at HD/4K for C = 8, 16, 32 (the detail
branch's widths), with the guidance map at 1/4 resolution: inference, and a training step
(forward + backward to every input) for each width."""
import torch

from fastmatte import ops, reference
from fastmatte.bench.cases import RESOLUTIONS
from fastmatte.bench.cases import OpCase

CHANNELS = (8, 16, 32)
GUIDE_STRIDE = 4


def gated_conv_cases(resolution: str, device, dtype=torch.float32):
    """Per width: fastmatte.ops.gated_conv vs its eager reference with the same
    (BatchNorm-folded) weights, batch 1, under torch.no_grad and as forward + backward."""
    height, width = RESOLUTIONS[resolution]
    device = torch.device(device)
    gen = torch.Generator().manual_seed(4)
    elt = torch.finfo(dtype).bits // 8
    cases = []
    for channels in CHANNELS:
        shapes = [(1, channels, height, width), (1, 1, height // GUIDE_STRIDE, width // GUIDE_STRIDE),
                  (channels + 1, channels + 1), (channels + 1,), (channels + 1,), (1,),
                  (channels, channels)]
        args = [(torch.randn(s, generator=gen) / (s[-1] ** 0.5 if len(s) == 2 else 1)).to(device, dtype)
                for s in shapes]
        grad = torch.randn(shapes[0], generator=gen).to(device, dtype)
        trainable = [t.clone().requires_grad_() for t in args]
        x_bytes, guide_bytes = args[0].numel() * elt, args[1].numel() * elt
        # x read once, the low-res guide read once, the output written once (weights are noise).
        min_bytes = 2 * x_bytes + guide_bytes
        # ... and backward: grad_out, x and the guide read, grad_x and grad_guide written.
        train_bytes = min_bytes + 3 * x_bytes + 2 * guide_bytes

        def run(api, args=args):
            with torch.no_grad():
                return api.gated_conv(*args)

        def train(api, args=trainable, grad=grad):
            return torch.autograd.grad(api.gated_conv(*args), args, grad)

        cases.append(OpCase(f"gated_conv C={channels}", lambda run=run: run(ops),
                            lambda run=run: run(reference), min_bytes, 0))
        cases.append(OpCase(f"gated_conv C={channels} fwd+bwd", lambda train=train: train(ops),
                            lambda train=train: train(reference), train_bytes, 0))
    return cases
