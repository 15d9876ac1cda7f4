"""CRA's encoder at 896x896 (the training size: every stage's token map is a multiple of the 7x7
window, so the authors' Swin fork pads nothing and is plain Swin) against a step-by-step Swin
written here from microsoft/Swin-Transformer's algorithm, on the oracle's official weights (their
names: split q/k/v, patch-merging norm in four chunks)."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fastmatte.models import load_model
from fastmatte.models.cra.encoder import stage_layout

sys.path.insert(0, str(Path(__file__).parent))
from oracle_weights import load_manifest, make_weights, write_checkpoint  # noqa: E402

ORACLE = Path(__file__).parent / "data" / "cra_official"
SWIN = "lowres_model.encoder.model.swin."
WINDOW, SHIFT = 7, 3


def window_partition(x):  # [B, H, W, C] -> [B * nW, 49, C]
    B, H, W, C = x.shape
    x = x.view(B, H // WINDOW, WINDOW, W // WINDOW, WINDOW, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, WINDOW * WINDOW, C)


def window_reverse(windows, B, H, W):
    C = windows.shape[-1]
    x = windows.view(B, H // WINDOW, W // WINDOW, WINDOW, WINDOW, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, C)


def shift_mask(H, W):
    labels = torch.zeros(1, H, W, 1)
    cuts = (slice(0, -WINDOW), slice(-WINDOW, -SHIFT), slice(-SHIFT, None))
    for i, (hs, ws) in enumerate((h, w) for h in cuts for w in cuts):
        labels[:, hs, ws, :] = i
    windows = window_partition(labels).squeeze(-1)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def relative_index():
    coords = torch.stack(torch.meshgrid(torch.arange(WINDOW), torch.arange(WINDOW), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + WINDOW - 1
    return rel[0] * (2 * WINDOW - 1) + rel[1]


def block(x, w, p, heads, shifted):
    B, H, W, C = x.shape
    shortcut = x
    x = F.layer_norm(x, (C,), w[p + "norm1.weight"], w[p + "norm1.bias"])
    if shifted:
        x = torch.roll(x, (-SHIFT, -SHIFT), (1, 2))
    windows = window_partition(x)
    qkv_w = torch.cat([w[p + f"attn.qkv.{n}_weight"] for n in "qkv"])
    qkv_b = torch.cat([w[p + f"attn.qkv.{n}_bias"] for n in "qkv"])
    n = windows.shape[0]
    qkv = F.linear(windows, qkv_w, qkv_b).view(n, 49, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0] * (C // heads) ** -0.5, qkv[1], qkv[2]
    attn = q @ k.transpose(-2, -1)
    table = w[p + "attn.relative_position_bias_table"]
    attn = attn + table[relative_index().flatten()].view(49, 49, heads).permute(2, 0, 1)[None]
    if shifted:
        mask = shift_mask(H, W)
        attn = attn.view(B, mask.shape[0], heads, 49, 49) + mask[None, :, None]
        attn = attn.view(n, heads, 49, 49)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(n, 49, C)
    out = F.linear(out, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
    x = window_reverse(out, B, H, W)
    if shifted:
        x = torch.roll(x, (SHIFT, SHIFT), (1, 2))
    x = shortcut + x
    h = F.layer_norm(x, (C,), w[p + "norm2.weight"], w[p + "norm2.bias"])
    h = F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                 w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])
    return x + h


def merge(x, w, p):
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    weight = torch.cat([w[p + f"norm.weights.{i}"] for i in range(4)])
    bias = torch.cat([w[p + f"norm.biases.{i}"] for i in range(4)])
    x = F.layer_norm(x, (x.shape[-1],), weight, bias)
    return F.linear(x, w[p + "reduction.weight"])


def swin_reference(image, w):
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = F.conv2d((image - mean) / std, w[SWIN + "patch_embed.proj.weight"], w[SWIN + "patch_embed.proj.bias"],
                 stride=16).permute(0, 2, 3, 1)
    x = F.layer_norm(x, (96,), w[SWIN + "patch_embed.norm.weight"], w[SWIN + "patch_embed.norm.bias"])
    features = []
    for i, (depth, heads) in enumerate(zip((2, 2, 6, 2), (3, 6, 12, 24))):
        H, W = x.shape[1:3]
        for j in range(depth):
            x = block(x, w, f"{SWIN}layers.{i}.blocks.{j}.", heads, j % 2 == 1 and min(H, W) > WINDOW)
        features.append(x.permute(0, 3, 1, 2))
        if i < 3:
            x = merge(x, w, f"{SWIN}layers.{i}.downsample.")
    return features


def test_layout_at_the_training_size_pads_nothing():
    assert [stage_layout(n, n) for n in (56, 28, 14, 7)] == [
        (3, (0, 0), (0, 0)), (3, (0, 0), (0, 0)), (3, (0, 0), (0, 0)), (0, (0, 0), (0, 0))]
    # The oracle's 256x384 input: every stage padded, the shift off from stage 3 on.
    assert [stage_layout(h, w) for h, w in ((16, 24), (8, 12), (4, 6), (2, 3))] == [
        (3, (2, 3), (2, 2)), (3, (3, 3), (1, 1)), (0, (1, 2), (0, 1)), (0, (2, 3), (2, 2))]


@pytest.mark.parametrize("backend", [None, "torch"])
def test_encoder_at_896_equals_plain_swin(tmp_path, backend):
    manifest = load_manifest(ORACLE)
    weights = {k: torch.from_numpy(v) for k, v in make_weights(manifest).items()}
    model = load_model("cra", weights=write_checkpoint(manifest, tmp_path / "cra.pth")).eval()
    image = torch.rand(1, 3, 896, 896, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = model.encoder(image, backend)
        want = swin_reference(image, weights)
    for g, e in zip(got, want, strict=True):
        assert g.shape == e.shape
        assert (g - e).abs().max().item() <= 1e-4 * max(1.0, e.abs().max().item())
