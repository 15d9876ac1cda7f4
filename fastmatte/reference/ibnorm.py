"""Reference of fastmatte.ops.ibnorm: MODNet's IBNorm in inference with its ReLU, eager."""
import torch


def ibnorm(x: torch.Tensor, bn_scale: torch.Tensor, bn_shift: torch.Tensor, in_weight: torch.Tensor,
           in_bias: torch.Tensor, eps: float = 1e-5, relu: bool = True) -> torch.Tensor:
    """x [B, C, H, W]; bn_scale, bn_shift [K]; in_weight, in_bias [C - K] -> [B, C, H, W]:
      channels [0, K): x * bn_scale + bn_shift (a BatchNorm in eval, folded);
      channels [K, C): (x - mean) / sqrt(var + eps) * in_weight + in_bias, mean and biased
        variance over H x W per sample and channel (InstanceNorm);
      concatenated in that order, then max(y, 0) when relu.
    Half types compute in float32; the output is in x's dtype."""
    compute = torch.promote_types(x.dtype, torch.float32)
    k = bn_scale.shape[0]
    xf = x.to(compute)
    bn = xf[:, :k] * bn_scale.to(compute)[:, None, None] + bn_shift.to(compute)[:, None, None]
    instance = xf[:, k:]
    if instance.numel() > 0:  # var_mean warns on an empty reduction
        var, mean = torch.var_mean(instance, dim=(2, 3), correction=0, keepdim=True)
        instance = (instance - mean) * torch.rsqrt(var + eps)
        instance = instance * in_weight.to(compute)[:, None, None] + in_bias.to(compute)[:, None, None]
    y = torch.cat([bn, instance], dim=1)
    if relu:
        y = torch.relu(y)
    return y.to(x.dtype)
