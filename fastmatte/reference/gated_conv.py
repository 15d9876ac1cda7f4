"""Reference of fastmatte.ops.gated_conv: PP-Matting's gated convolution, eager, op by op."""
import torch
import torch.nn.functional as F


def gated_conv(x: torch.Tensor, guide: torch.Tensor, w_hidden: torch.Tensor, b_hidden: torch.Tensor,
               w_gate: torch.Tensor, b_gate: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W], guide [B, 1, h, w], w_hidden [C+1, C+1], b_hidden [C+1], w_gate [C+1],
    b_gate [1], w_out [C, C] -> [B, C, H, W]: the guide resized to H x W, concatenated after x,
    1x1 conv + bias, ReLU, 1x1 conv to one channel + bias, sigmoid, x * (gate + 1), 1x1 conv."""
    channels = x.shape[1]
    guide = F.interpolate(guide, size=x.shape[-2:], mode="bilinear", align_corners=False)
    hidden = F.relu(F.conv2d(torch.cat([x, guide], 1), w_hidden[:, :, None, None], b_hidden))
    gate = torch.sigmoid(F.conv2d(hidden, w_gate.view(1, channels + 1, 1, 1), b_gate))
    return F.conv2d(x * (gate + 1), w_out[:, :, None, None])
