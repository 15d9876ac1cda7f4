"""GatedConv2d: PP-Matting's gated spatial convolution (guidance flow into the detail branch)."""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte import ops
from fastmatte.ops._backend import check_backend


class GatedConv2d(nn.Module):
    """Modulates detail features x [B, C, H, W] by a one-channel guidance map [B, 1, h, w].

    ``gate = sigmoid(BN(conv1x1(relu(conv1x1(BN(cat[x, g]))))))`` with hidden width C+1 and
    g the guide resized to H x W (bilinear, align_corners=False); ``out = conv(x * (gate + 1))``
    with a C -> C 1x1 conv without bias.

    Parameters use PaddleSeg's GatedSpatialConv2d layout, so a PP-Matting checkpoint converted
    to PyTorch names loads as is: ``_gate_conv.0`` BatchNorm2d(C+1), ``_gate_conv.1``
    Conv2d(C+1, C+1, 1), ``_gate_conv.2`` ReLU, ``_gate_conv.3`` Conv2d(C+1, 1, 1),
    ``_gate_conv.4`` BatchNorm2d(1), ``_gate_conv.5`` Sigmoid, ``conv`` Conv2d(C, C, 1,
    bias=False). (Paddle's BatchNorm ``_mean``/``_variance`` are ``running_mean``/``running_var``.)

    When both BatchNorms use running statistics (``eval()``, or frozen BatchNorms) the forward
    folds them into the convolutions and runs the fused operator ``fastmatte.ops.gated_conv``:
    one pass over x, differentiable in every parameter and both inputs. When a BatchNorm uses
    batch statistics (training mode) the forward runs the layers one by one, so statistics and
    running averages behave exactly as in PyTorch. ``backend="torch"`` always runs the layers
    one by one (the eager baseline).
    """

    def __init__(self, channels: int):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"fastmatte.nn.GatedConv2d: channels must be an int >= 1, got {channels!r}")
        self.channels = channels
        self._gate_conv = nn.Sequential(
            nn.BatchNorm2d(channels + 1),
            nn.Conv2d(channels + 1, channels + 1, 1),
            nn.ReLU(),
            nn.Conv2d(channels + 1, 1, 1),
            nn.BatchNorm2d(1),
            nn.Sigmoid(),
        )
        self.conv = nn.Conv2d(channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor, guide: torch.Tensor, backend=None) -> torch.Tensor:
        """x [B, C, H, W], guide [B, 1, h, w] (same dtype and device) -> [B, C, H, W]."""
        check_backend("fastmatte.nn.GatedConv2d", backend)
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"fastmatte.nn.GatedConv2d: x must be [B, {self.channels}, H, W] "
                             f"(channels={self.channels}), got {list(x.shape)}")
        if backend == "torch" or self._uses_batch_statistics():
            return self._layer_by_layer(x, guide)
        return ops.gated_conv(x, guide, *self.folded_weights(x.dtype), backend=backend)

    def folded_weights(self, dtype: torch.dtype):
        """(w_hidden, b_hidden, w_gate, b_gate, w_out) of ops.gated_conv with both BatchNorms'
        running statistics folded in, computed in fp32 (fp64 for fp64), returned in `dtype`.
        Differentiable: gradients reach the convolutions' and BatchNorms' parameters."""
        bn_in, hidden, _, gate, bn_gate = self._gate_conv[:5]
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        scale_in, shift_in = _scale_shift(bn_in, compute)
        scale_gate, shift_gate = _scale_shift(bn_gate, compute)
        w_hidden = hidden.weight.to(compute).flatten(1)
        b_hidden = hidden.bias.to(compute) + w_hidden @ shift_in
        w_gate = gate.weight.to(compute).flatten() * scale_gate
        b_gate = gate.bias.to(compute) * scale_gate + shift_gate
        folded = (w_hidden * scale_in, b_hidden, w_gate, b_gate, self.conv.weight.to(compute).flatten(1))
        return tuple(t.to(dtype) for t in folded)

    def _uses_batch_statistics(self):
        return any(bn.training or bn.running_mean is None for bn in (self._gate_conv[0], self._gate_conv[4]))

    def _layer_by_layer(self, x, guide):
        guide = F.interpolate(guide, size=x.shape[-2:], mode="bilinear", align_corners=False)
        gate = self._gate_conv(torch.cat([x, guide], 1))
        return self.conv(x * (gate + 1))


def _scale_shift(bn: nn.BatchNorm2d, dtype):
    """BatchNorm with running statistics as y = x * scale + shift."""
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    return scale, shift
