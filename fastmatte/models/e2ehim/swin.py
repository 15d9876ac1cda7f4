"""E2E-HIM's Swin-T, the mmdetection-style Swin of the authors' swin.py: tokens at 1/4 from a 1x1
stride-1 patchify conv on the CNN stem's 128-channel 1/4 map, every block zero-padding its
normalized tokens at the bottom/right to multiples of the window and shifting by window // 2 in
every other block of every stage (no small-map rule), padded tokens taking part as keys and values
(k = v = the projections' biases) with only the shift regions masked (-100), a LayerNorm per
stage output (norm0..3). Parameter names are the checkpoint's (trans.layers.{s}.blocks.{b}...).

Token maps are channels-last [B, H, W, C].
"""
import torch
import torch.nn.functional as F
from torch import nn

from fastmatte.models.backbones.swin_blocks import PatchMerging, SwinBlock, drop_path
from fastmatte.models.dense import dense
from fastmatte.ops import window_attention
from fastmatte.reference.window_attention import padded_size, window_relative_index

DEPTHS = (2, 2, 6, 2)
HEADS = (3, 6, 12, 24)
EMBED = 96
WINDOW = 7
DROP_PATH = 0.2
MASKED = -100.0  # the official shift-mask value


def shift_mask(hp: int, wp: int, window: int, shift: int, device) -> torch.Tensor:
    """The official attention mask of shifted windows on the padded hp x wp grid: [nW, N, N],
    0 within a shift region, -100 across (regions: the slices [0:-w], [-w:-s], [-s:] per axis)."""
    labels = torch.zeros(hp, wp, device=device)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, rows in enumerate(cuts):
        for j, cols in enumerate(cuts):
            labels[rows, cols] = 3 * i + j
    windows = partition(labels[None, :, :, None], window).flatten(1)  # [nW, N]
    return (windows[:, None, :] != windows[:, :, None]).float() * MASKED


def partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[B, Hp, Wp, C] -> [B * nW, window, window, C], windows in raster order."""
    batch, hp, wp, channels = x.shape
    x = x.view(batch, hp // window, window, wp // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)


def merge(windows: torch.Tensor, batch: int, hp: int, wp: int) -> torch.Tensor:
    """partition's inverse: [B * nW, window, window, C] -> [B, Hp, Wp, C]."""
    window = windows.shape[1]
    x = windows.view(batch, hp // window, wp // window, window, window, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, hp, wp, -1)


class PaddedSwinBlock(SwinBlock):
    """SwinBlock (same parameters) with the mmdetection padding: forward(x[B, H, W, C], shift,
    backend, mask) -> [B, H, W, C]. shift: 0 or window // 2. backend "torch": the official
    algorithm (pad, roll, partition, qkv, q * D^-0.5 @ k^T + bias + mask, softmax, @ v, proj,
    merge, roll back, crop), `mask` the stage's shift_mask; otherwise the padded map goes through
    fastmatte.ops.window_attention, which then pads nothing and whose shift regions on the
    padded length are the official mask's."""

    def forward(self, x, shift, backend=None, mask=None):
        height, width = x.shape[1:3]
        window = self.attn.window
        hp, wp = padded_size(height, width, (window, window))
        h = F.pad(self.norm1(x), (0, 0, 0, wp - width, 0, hp - height))
        if backend == "torch":
            h = self._official_attention(h, shift, mask)
        else:  # the Linear layers through fastmatte.models.dense (oneDNN on the CPU)
            h = window_attention(dense(self.attn.qkv, h), self.attn.relative_position_bias_table,
                                 window, (window, window), (shift, shift), backend=backend)
            h = dense(self.attn.proj, h[:, :height, :width])
        if backend == "torch":
            h = h[:, :height, :width]
        x = x + drop_path(h, self.drop_path_rate, self.training)
        mlp = self.mlp
        h = self.norm2(x)
        h = mlp(h) if backend == "torch" else dense(mlp.fc2, F.gelu(dense(mlp.fc1, h)))
        return x + drop_path(h, self.drop_path_rate, self.training)

    def _official_attention(self, x, shift, mask):
        batch, hp, wp, channels = x.shape
        attn, window = self.attn, self.attn.window
        heads = attn.relative_position_bias_table.shape[1]
        if shift:
            x = torch.roll(x, shifts=(-shift, -shift), dims=(1, 2))
        windows = partition(x, window).view(-1, window * window, channels)
        n = window * window
        qkv = attn.qkv(windows).reshape(-1, n, 3, heads, channels // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * (channels // heads) ** -0.5, qkv[1], qkv[2]
        scores = q @ k.transpose(-2, -1)
        index = window_relative_index(window, x.device).flatten()  # the official relative_position_index
        scores = scores + attn.relative_position_bias_table[index].view(n, n, heads).permute(2, 0, 1)[None]
        if shift:
            nw = mask.shape[0]
            scores = (scores.view(-1, nw, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
        out = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(-1, n, channels)
        out = merge(attn.proj(out).view(-1, window, window, channels), batch, hp, wp)
        return torch.roll(out, shifts=(shift, shift), dims=(1, 2)) if shift else out


class PatchEmbed(nn.Module):
    """The authors' replacement patchify: 1x1 stride-1 conv 128 -> 96 (`proj`), then LayerNorm
    (`norm`). forward(x[B, 128, H, W]) -> [B, H, W, 96]."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class Stage(nn.Module):
    """One stage: `blocks` (shift 0, window // 2, 0, ...) and, but for the last, `downsample`
    (PatchMerging). forward(x[B, H, W, C], backend) -> (out [B, H, W, C] before merging, next
    [B, ceil(H/2), ceil(W/2), 2C] or None)."""

    def __init__(self, dim: int, depth: int, heads: int, drop_rates, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(PaddedSwinBlock(dim, heads, WINDOW, 4.0, rate) for rate in drop_rates)
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x, backend):
        mask = None
        if backend == "torch":  # the official stage makes its mask once for its blocks
            mask = shift_mask(*padded_size(x.shape[1], x.shape[2], (WINDOW, WINDOW)), WINDOW, WINDOW // 2,
                              x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, WINDOW // 2 if i % 2 else 0, backend, mask)
        return x, (self.downsample(x) if self.downsample is not None else None)


class E2ESwin(nn.Module):
    """Swin-T (depths 2, 2, 6, 2; heads 3, 6, 12, 24; window 7; drop path 0.2) over the 1/4 CNN map.

    forward(x[B, 128, H, W], backend=None) -> [x4 [B, 96, H, W], x8 [B, 192, H/2, W/2],
    x16 [B, 384, H/4, W/4], x32 [B, 768, H/8, W/8]] (ceil for odd sizes), each stage's output
    through its own LayerNorm norm{i}.
    """

    def __init__(self, cin: int = 128):
        super().__init__()
        self.patch_embed = PatchEmbed(cin, EMBED)
        rates = torch.linspace(0, DROP_PATH, sum(DEPTHS)).tolist()
        starts = [sum(DEPTHS[:i]) for i in range(len(DEPTHS))]
        self.layers = nn.ModuleList(
            Stage(EMBED * 2 ** i, depth, heads, rates[start:start + depth], i < len(DEPTHS) - 1)
            for i, (depth, heads, start) in enumerate(zip(DEPTHS, HEADS, starts)))
        for i in range(len(DEPTHS)):
            self.add_module(f"norm{i}", nn.LayerNorm(EMBED * 2 ** i))

    def forward(self, x, backend=None):
        x = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x, backend)
            outs.append(getattr(self, f"norm{i}")(out).permute(0, 3, 1, 2))
        return outs
