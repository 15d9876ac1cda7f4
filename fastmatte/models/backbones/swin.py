"""Swin Transformer backbone (Liu et al., ICCV 2021) for inputs of any size, with the state-dict
names of microsoft/Swin-Transformer (swin_tiny_patch4_window7_224.pth and its siblings).

Any size works without changing what real tokens see: the image is zero-padded to a multiple of
the patch size; each block's window attention (fastmatte.ops.window_attention) zero-pads the
token map to a multiple of the window and masks the padded tokens as keys, so they never change
a real token's features; everything else runs on the real tokens only.
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.backbones.swin_blocks import PatchMerging, SwinBlock, window_layout
from fastmatte.ops._backend import check_backend
from fastmatte.reference.window_attention import blocked_keys, padded_size, window_relative_index


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: a Conv2d with kernel = stride = patch_size (the
    pixel-unshuffle + linear of the papers), then LayerNorm.

    forward(x[B, C_in, H, W]) -> [B, ceil(H/p), ceil(W/p), embed_dim], zero-padding the image at
    the bottom/right to a multiple of p first.
    """

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x):
        p = self.patch_size
        x = F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class SwinStage(nn.Module):
    """`depth` Swin blocks, alternately in regular and shifted windows, then optional patch merging.

    forward(x[B, H, W, C], backend=None) -> (out[B, H, W, C], next[B, ceil(H/2), ceil(W/2), 2C] or
    None): out is the blocks' output, next the merged map for the following stage. The window
    layout comes from the actual H and W at every call (see swin_blocks.window_layout); backend
    is window_attention's.
    """

    def __init__(self, dim, depth, num_heads, window_size, mlp_ratio, drop_path_rates, downsample):
        super().__init__()
        self.window_size = window_size
        self.blocks = nn.ModuleList(SwinBlock(dim, num_heads, window_size, mlp_ratio, rate)
                                    for rate in drop_path_rates[:depth])
        self.downsample = PatchMerging(dim) if downsample else None
        # For the eager twin (backend="torch"); not persistent: official checkpoints store one
        # per block, and it follows from window_size.
        self.register_buffer("relative_position_index", window_relative_index(window_size), persistent=False)

    def forward(self, x, backend=None):
        height, width = x.shape[1], x.shape[2]
        window, shift = window_layout(height, width, self.window_size)
        shifts = [(0, 0), shift]
        masks = [None, None]
        if backend == "torch":  # the eager twin makes the masks once for all blocks of the stage
            (wh, ww), size = window, (height, width)
            index = self.relative_position_index[:wh, :ww, :wh, :ww].reshape(-1)
            padded = padded_size(height, width, window)
            blocked = {s: blocked_keys(padded, window, s, size, x.device) for s in set(shifts)}
            masks = [(index, blocked[s]) for s in shifts]
        for j, block in enumerate(self.blocks):
            x = block(x, window, shifts[j % 2], backend, masks[j % 2])
        return x, (self.downsample(x) if self.downsample is not None else None)


class SwinTransformer(nn.Module):
    """Swin Transformer feature pyramid (Swin-T by default) for images of any size.

    Args:
        in_chans: image channels. embed_dim: C_0, the width of stage 0 (96 for Swin-T).
        depths, num_heads: blocks and attention heads per stage; stage i has C_i = embed_dim * 2**i.
        window_size: attention window (7). patch_size: the stride of the patch embedding (4 in
            the ImageNet models, 16 in CRAMatting). mlp_ratio: MLP hidden width / C_i.
        drop_path_rate: stochastic depth, rising linearly from 0 to this over all blocks
            (training only).

    forward(x[B, in_chans, H, W] float, backend=None) -> list of len(depths) maps [B, C_i, H_i, W_i]
    (contiguous, x's dtype), H_0 = ceil(H / patch_size), H_{i+1} = ceil(H_i / 2), same for W;
    stage i's output before its patch merging, through its own LayerNorm `norm{i}`.

    Parameters are named as in microsoft/Swin-Transformer (patch_embed.*, layers.{i}.blocks.{j}.*,
    layers.{i}.downsample.*); its classification `norm` and `head` are not part of the backbone;
    the out norms norm0..norm3 are named as in the mmseg/mmdet Swin backbones.
    Attribute out_channels: [C_0, ..., C_{n-1}].
    """

    def __init__(self, in_chans=3, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24),
                 window_size=7, patch_size=4, mlp_ratio=4.0, drop_path_rate=0.0):
        super().__init__()
        if len(depths) != len(num_heads) or not depths:
            raise ValueError(f"SwinTransformer: depths and num_heads must have one entry per stage, "
                             f"got depths={tuple(depths)}, num_heads={tuple(num_heads)}")
        self.out_channels = [embed_dim * 2 ** i for i in range(len(depths))]
        for dim, heads in zip(self.out_channels, num_heads):
            if dim % heads:
                raise ValueError(f"SwinTransformer: a stage of width {dim} cannot have {heads} heads "
                                 f"(num_heads must divide embed_dim * 2**i)")
        if window_size < 1 or patch_size < 1:
            raise ValueError(f"SwinTransformer: window_size and patch_size must be >= 1, "
                             f"got {window_size} and {patch_size}")
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"SwinTransformer: drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.in_chans = in_chans
        self.patch_embed = PatchEmbed(in_chans, embed_dim, patch_size)
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        self.layers = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(depths, num_heads)):
            first = sum(depths[:i])
            self.layers.append(SwinStage(self.out_channels[i], depth, heads, window_size, mlp_ratio,
                                         rates[first:first + depth], downsample=i < len(depths) - 1))
        for i, dim in enumerate(self.out_channels):
            self.add_module(f"norm{i}", nn.LayerNorm(dim))
        self.apply(init_swin_weights)

    def forward(self, x, backend=None):
        check_backend("SwinTransformer", backend)
        if x.ndim != 4 or x.shape[1] != self.in_chans or not x.is_floating_point():
            raise ValueError(f"SwinTransformer: x must be a float [B, {self.in_chans}, H, W] tensor, "
                             f"got {x.dtype} {list(x.shape)}")
        x = self.patch_embed(x)
        features = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x, backend)
            features.append(getattr(self, f"norm{i}")(out).permute(0, 3, 1, 2).contiguous())
        return features


def init_swin_weights(module):
    # The official initialisation: truncated-normal Linear weights, zero biases, unit LayerNorms.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

