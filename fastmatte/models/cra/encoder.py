"""CRA's encoder: Swin-T over 16x16 patches, as the authors' (unpublished) Swin fork runs it on
inputs of any size.

The authors' code pads every block's token map to whole 7x7 windows and switches a stage's
shift off for small inputs; the fork that does it is not public. What is implemented here is
the reconstruction of ../shared/oracles/cra/notes.md, the only one consistent with how CRA
builds its attention masks (the unpadded map's shift regions, then padded with label 0):

  LayerNorm -> cyclic shift by (-3, -3) of the UNPADDED map (when the shift is on) -> zero
  padding CENTRED (pad // 2 before, the rest after) -> 7x7 window attention, where padded
  tokens are zeros after the norm, so they are attended as keys (k = k bias, v = v bias) and
  kept apart only by the shift mask -> crop -> reverse shift -> residual -> MLP.

The shift is off in a stage whose smaller side is <= 7, decided per input (the authors' code
switches it off for good once a small input was seen; fastmatte does not copy that).
Where a stage's map is a multiple of 7 on both sides (an input whose sides are multiples of
896, the training size), nothing is padded and this is plain Swin: fastmatte.ops.window_attention
runs it. Elsewhere the padded windows run through scaled_dot_product_attention with the bias
and mask of that size (backend="torch": the official matmul-softmax-matmul).
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.backbones.swin import PatchEmbed, init_swin_weights
from fastmatte.models.backbones.swin_blocks import PatchMerging, SwinBlock
from fastmatte.models.dense import dense
from fastmatte.ops import window_attention
from fastmatte.reference.window_attention import window_relative_index

WINDOW = 7
MASKED = -100.0  # Swin's value between shift regions


def stage_layout(height: int, width: int, window: int = WINDOW):
    """(shift, (top, bottom), (left, right)) of a height x width token map in the fork."""
    shift = window // 2 if min(height, width) > window else 0
    pad_h, pad_w = -height % window, -width % window
    return shift, (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)


def shift_labels(height, width, shift, pads, window=WINDOW, device=None):
    """[Hp, Wp] region labels of the padded map: the 3 x 3 shift regions of the unpadded rolled
    map (0..8; all 0 without shift), padded tokens 0, as the authors' mask is built."""
    def regions(n):
        r = torch.arange(n, device=device)
        return (r >= n - window).long() + (r >= n - shift).long() if shift else torch.zeros_like(r)
    labels = regions(height)[:, None] * 3 + regions(width)[None, :]
    (top, bottom), (left, right) = pads
    return F.pad(labels, (left, right, top, bottom))


def windowed(x, window=WINDOW):
    """[B, Hp, Wp, *rest] -> [B * nW, window * window, *rest] (row-major windows)."""
    B, Hp, Wp = x.shape[:3]
    rest = x.shape[3:]
    x = x.reshape(B, Hp // window, window, Wp // window, window, *rest).transpose(2, 3)
    return x.reshape(B * (Hp // window) * (Wp // window), window * window, *rest)


def unwindowed(x, B, Hp, Wp, window=WINDOW):
    """Inverse of windowed."""
    rest = x.shape[2:]
    x = x.reshape(B, Hp // window, Wp // window, window, window, *rest).transpose(2, 3)
    return x.reshape(B, Hp, Wp, *rest)


def padded_bias(table, index, labels, window=WINDOW):
    """[nW, heads, N, N] additive attention bias of one stage: table[index] per head plus
    MASKED between tokens of different shift labels (N = window * window)."""
    heads = table.shape[1]
    bias = table[index.reshape(-1)].reshape(window * window, window * window, heads).permute(2, 0, 1)
    lab = windowed(labels[None])  # [nW, N]
    mask = torch.where(lab[:, :, None] != lab[:, None, :], MASKED, 0.0).to(table.dtype)
    return bias[None] + mask[:, None]


class CRAStage(nn.Module):
    """Swin blocks, then patch merging (not in the last stage); names as microsoft/Swin-Transformer.

    forward(x[B, H, W, C], backend=None) -> (out[B, H, W, C], merged[B, H/2, W/2, 2C] or None).
    H and W must be even when there is a merging (the official model needs it too).
    """

    def __init__(self, dim, depth, num_heads, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(SwinBlock(dim, num_heads, WINDOW, 4.0, 0.0) for _ in range(depth))
        self.downsample = PatchMerging(dim) if downsample else None
        self.register_buffer("relative_position_index", window_relative_index(WINDOW), persistent=False)

    def forward(self, x, backend=None):
        B, H, W, _ = x.shape
        shift, pad_h, pad_w = stage_layout(H, W)
        padded = sum(pad_h) + sum(pad_w) > 0
        if padded:
            labels = shift_labels(H, W, shift, (pad_h, pad_w), device=x.device)
            plain = shift_labels(H, W, 0, (pad_h, pad_w), device=x.device)
        for j, block in enumerate(self.blocks):
            s = shift if j % 2 else 0
            attn, h = block.attn, block.norm1(x)
            if padded:
                bias = padded_bias(attn.relative_position_bias_table, self.relative_position_index,
                                   labels if s else plain)
                h = _padded_attention(attn, h, s, pad_h, pad_w, bias, backend)
            elif backend == "torch":
                h = attn(h, (WINDOW, WINDOW), (s, s), backend)
            else:
                h = window_attention(dense(attn.qkv, h), attn.relative_position_bias_table, WINDOW,
                                     (WINDOW, WINDOW), (s, s), backend=backend)
                h = dense(attn.proj, h)
            x = x + h
            mlp = block.mlp
            x = x + dense(mlp.fc2, F.gelu(dense(mlp.fc1, block.norm2(x), backend)), backend)
        if self.downsample is None:
            return x, None
        return x, _merge(self.downsample, x, backend)


def _merge(merging, x, backend):
    """PatchMerging's forward with the reduction through `dense`."""
    return dense(merging.reduction, merging.norm(merging.gather(x)), backend)


def _padded_attention(attn, h, shift, pad_h, pad_w, bias, backend):
    """The fork's window attention of normalized tokens h [B, H, W, C] (module attn's qkv, proj)."""
    B, H, W, C = h.shape
    if shift:
        h = torch.roll(h, (-shift, -shift), (1, 2))
    h = F.pad(h, (0, 0, *pad_w, *pad_h))
    Hp, Wp = h.shape[1], h.shape[2]
    heads = attn.relative_position_bias_table.shape[1]
    qkv = windowed(dense(attn.qkv, h, backend))
    qkv = qkv.reshape(-1, WINDOW * WINDOW, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # [B * nW, heads, N, D]
    nW = bias.shape[0]
    if backend == "torch":  # the official computation: the projection on the padded windows
        scores = (q * (C // heads) ** -0.5) @ k.transpose(-2, -1)
        scores = scores.view(B, nW, heads, *scores.shape[-2:]) + bias[None]
        out = scores.view(B * nW, heads, *scores.shape[-2:]).softmax(-1) @ v
        out = attn.proj(out.transpose(1, 2).reshape(-1, WINDOW * WINDOW, C))
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.repeat(B, 1, 1, 1))
        out = out.transpose(1, 2).reshape(-1, WINDOW * WINDOW, C)
    out = unwindowed(out, B, Hp, Wp)[:, pad_h[0]:pad_h[0] + H, pad_w[0]:pad_w[0] + W]
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out if backend == "torch" else dense(attn.proj, out)


class CRAEncoder(nn.Module):
    """ImageNet normalization, then Swin (Swin-T by default) over patch_size x patch_size patches.

    forward(image[B, 3, H, W] in [0, 1], backend=None) -> list of len(depths) maps
    [B, C_i, H / (p * 2**i), W / (p * 2**i)], C_i = embed_dim * 2**i: each stage's raw residual
    stream before its patch merging (no norm, as the authors take them). H and W must be
    multiples of p * 2**(len(depths) - 1) (128 for the official model).
    """

    def __init__(self, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), patch_size=16):
        super().__init__()
        self.patch_embed = PatchEmbed(3, embed_dim, patch_size)
        self.layers = nn.ModuleList(CRAStage(embed_dim * 2 ** i, depth, heads, i < len(depths) - 1)
                                    for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.out_channels = [embed_dim * 2 ** i for i in range(len(depths))]
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.apply(init_swin_weights)

    def forward(self, image, backend=None):
        if backend == "torch":
            x = self.patch_embed((image - self.mean) / self.std)
        else:  # the normalization folded into the patch kernel: no full-resolution passes
            proj, scale = self.patch_embed.proj, 1 / self.std.view(1, 3, 1, 1)
            weight = proj.weight * scale
            bias = proj.bias - (weight * self.mean.view(1, 3, 1, 1)).sum((1, 2, 3))
            x = F.conv2d(image, weight, bias, stride=proj.stride)
            x = self.patch_embed.norm(x.permute(0, 2, 3, 1))
        features = []
        for stage in self.layers:
            out, x = stage(x, backend)
            features.append(out.permute(0, 3, 1, 2))
        return features
