"""The Swin backbone against a plain re-implementation of the official algorithm, its behaviour
on sizes that are no multiple of the window, its state-dict names, and ImageNet weight loading."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastmatte.models.backbones.swin_weights import load_backbone_weights
from fastmatte.models.backbones.swin import SwinTransformer
from fastmatte.models.weights import WeightsError

TINY = dict(embed_dim=8, depths=(2, 2, 2), num_heads=(1, 2, 2), window_size=3)


# ---- reference: the official algorithm, written out step by step on the state dict ----------

def _window_partition(x, wh, ww):  # [B, H, W, C] -> [B * nW, wh * ww, C], windows in raster order
    b, h, w, c = x.shape
    return x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, wh * ww, c)


def _window_reverse(windows, wh, ww, b, h, w):
    return windows.view(b, h // wh, w // ww, wh, ww, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


def _bias_index(wh, ww, window):
    # Official: pairwise (query - key) coordinates, shifted to >= 0, row-major into the
    # (2*window-1)^2 table (a smaller wh x ww window reads the same table with the same offsets).
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _layer_norm(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=1e-5)


def _reference_block(x, sd, p, heads, window, shifted):
    """One block on real tokens x [B, H, W, C]: norm1, zero-pad to the window, cyclic shift,
    window attention with img_mask (by slices) and a mask on padded keys, reverse, MLP."""
    b, h, w, c = x.shape
    wh, ww = min(window, h), min(window, w)
    sh = window // 2 if shifted and h > window else 0
    sw = window // 2 if shifted and w > window else 0
    hp, wp = math.ceil(h / wh) * wh, math.ceil(w / ww) * ww
    y = F.pad(_layer_norm(x, sd, p + "norm1"), (0, 0, 0, wp - w, 0, hp - h))
    pad = torch.zeros(1, hp, wp, 1)
    pad[:, h:], pad[:, :, w:] = 1, 1
    img_mask = torch.zeros(1, hp, wp, 1)
    if sh or sw:
        y, pad = torch.roll(y, (-sh, -sw), (1, 2)), torch.roll(pad, (-sh, -sw), (1, 2))
        rows = (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)) if sh else (slice(None),)
        cols = (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)) if sw else (slice(None),)
        cnt = 0
        for r in rows:
            for s in cols:
                img_mask[:, r, s] = cnt
                cnt += 1
    regions = _window_partition(img_mask, wh, ww).squeeze(-1)
    mask = (regions[:, None, :] - regions[:, :, None]).ne(0).float() * -100.0
    padded_keys = _window_partition(pad, wh, ww).squeeze(-1)[:, None, :].bool()
    mask = mask.masked_fill(padded_keys, float("-inf"))  # [nW, N, N]

    windows = _window_partition(y, wh, ww)
    n, d = wh * ww, c // heads
    qkv = F.linear(windows, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"])
    q, k, v = qkv.reshape(-1, n, 3, heads, d).permute(2, 0, 3, 1, 4)
    attn = (q * d ** -0.5) @ k.transpose(-2, -1)
    table = sd[p + "attn.relative_position_bias_table"]
    attn = attn + table[_bias_index(wh, ww, window).reshape(-1)].view(n, n, heads).permute(2, 0, 1)
    nw = mask.shape[0]
    attn = attn.view(b, nw, heads, n, n) + mask[None, :, None]
    out = (attn.view(-1, heads, n, n).softmax(-1) @ v).transpose(1, 2).reshape(-1, n, c)
    out = F.linear(out, sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
    out = _window_reverse(out, wh, ww, b, hp, wp)
    if sh or sw:
        out = torch.roll(out, (sh, sw), (1, 2))
    x = x + out[:, :h, :w]
    hidden = F.linear(_layer_norm(x, sd, p + "norm2"), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])
    hidden = F.gelu(hidden)
    return x + F.linear(hidden, sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])


def _reference_merge(x, sd, p):
    b, h, w, c = x.shape
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    return F.linear(_layer_norm(x, sd, p + "norm"), sd[p + "reduction.weight"])


def reference_swin(image, model, depths, num_heads, window, patch):
    """The feature pyramid of `model`'s weights computed by the reference functions above."""
    sd = model.state_dict()
    h, w = image.shape[-2:]
    x = F.pad(image, (0, -w % patch, 0, -h % patch))
    x = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)
    x = _layer_norm(x.permute(0, 2, 3, 1), sd, "patch_embed.norm")
    features = []
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        for j in range(depth):
            x = _reference_block(x, sd, f"layers.{i}.blocks.{j}.", heads, window, shifted=j % 2 == 1)
        features.append(_layer_norm(x, sd, f"norm{i}").permute(0, 3, 1, 2))
        if i + 1 < len(depths):
            x = _reference_merge(x, sd, f"layers.{i}.downsample.")
    return features


def _randomize(model):
    # Non-trivial LayerNorms and bias tables, so that a wrong name or order would show.
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if "norm" in name or "relative_position_bias_table" in name:
                tensor.add_(torch.randn_like(tensor) * 0.5)
    return model.eval()


# ---- (a) and (b): outputs ------------------------------------------------------------------

@pytest.mark.parametrize("config, size", [
    (dict(embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=7), (56, 56)),  # 14x14, 7x7
    (dict(embed_dim=8, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4), window_size=3), (96, 192)),
    (dict(embed_dim=8, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=2, patch_size=2), (32, 32)),
])
def test_matches_official_algorithm_on_window_multiples(config, size):
    # Token maps that are a multiple of the window at every stage: no padding, the official case.
    model = _randomize(SwinTransformer(**config))
    image = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = model(image)
        ref = reference_swin(image, model, config["depths"], config["num_heads"], config["window_size"],
                             config.get("patch_size", 4))
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(50, 37), (41, 70), (13, 9)])
def test_any_size_matches_reference_with_padded_keys_masked(size):
    # 50x37 -> tokens 13x10, 7x5, 4x3 with window 3: padding and masking at every stage; the
    # reference pads after norm1 in every block, the model once per stage.
    model = _randomize(SwinTransformer(**TINY))
    image = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = model(image)
        ref = reference_swin(image, model, TINY["depths"], TINY["num_heads"], TINY["window_size"], 4)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, patch", [((1, 1), 4), ((17, 5), 4), ((1080, 1920), 16), ((33, 65), 16)])
def test_output_shapes(size, patch):
    model = SwinTransformer(embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), patch_size=patch)
    h, w = math.ceil(size[0] / patch), math.ceil(size[1] / patch)
    with torch.no_grad():
        features = model(torch.rand(1, 3, *size))
    assert model.out_channels == [8, 16, 32, 64]
    for i, f in enumerate(features):
        assert f.shape == (1, 8 * 2 ** i, h, w) and f.is_contiguous() and torch.isfinite(f).all()
        h, w = math.ceil(h / 2), math.ceil(w / 2)


def test_real_tokens_ignore_whatever_fills_the_padding():
    # Inside a stage the model pads its token map to the window and masks the padded keys: fill
    # those padded tokens with huge noise before every block and the real tokens must not move.
    model = _randomize(SwinTransformer(**TINY))
    image = torch.randn(1, 3, 50, 37)
    with torch.no_grad():
        clean = model(image)
    real = [(c.shape[2], c.shape[3]) for c in clean]

    def noisy(stage):
        def hook(_, args):
            x, h, w = args[0].clone(), *real[stage]
            x[:, h:], x[:, :, w:] = 1e3 * torch.randn_like(x[:, h:]), 1e3 * torch.randn_like(x[:, :, w:])
            return (x, *args[1:])
        return hook

    handles = [block.register_forward_pre_hook(noisy(i)) for i, layer in enumerate(model.layers)
               for block in layer.blocks]
    with torch.no_grad():
        noisy_out = model(image)
    for handle in handles:
        handle.remove()
    for a, b in zip(clean, noisy_out):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_extra_zero_rows_are_content_not_padding():
    # What does NOT hold, on purpose: zero rows added to the image are real (black) pixels that
    # real tokens attend to, unlike the masked padding, so the features of the original area change.
    model = _randomize(SwinTransformer(**TINY))
    image = torch.rand(1, 3, 36, 36)
    with torch.no_grad():
        alone = model(image)[0]
        extended = model(F.pad(image, (0, 0, 0, 12)))[0][:, :, :9]
    assert (alone - extended).abs().max() > 1e-3


# ---- (c) names -----------------------------------------------------------------------------

def official_swin_t_names(depths=(2, 2, 6, 2)):
    """Parameter names of microsoft/Swin-Transformer's SwinTransformer (Swin-T), from its public
    layout, without its buffers and classifier, plus the backbone's out norms norm0..norm3."""
    names = [f"patch_embed.{m}.{t}" for m in ("proj", "norm") for t in ("weight", "bias")]
    block = ["norm1.weight", "norm1.bias", "attn.relative_position_bias_table", "attn.qkv.weight",
             "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
             "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    for i, depth in enumerate(depths):
        names += [f"layers.{i}.blocks.{j}.{n}" for j in range(depth) for n in block]
        if i < len(depths) - 1:
            names += [f"layers.{i}.downsample.{n}" for n in ("reduction.weight", "norm.weight", "norm.bias")]
    return names + [f"norm{i}.{t}" for i in range(len(depths)) for t in ("weight", "bias")]


def test_swin_t_state_dict_names_and_sizes():
    model = SwinTransformer()
    state = model.state_dict()
    assert sorted(state) == sorted(official_swin_t_names())
    assert state["layers.2.blocks.5.attn.relative_position_bias_table"].shape == (13 * 13, 12)
    assert state["layers.1.downsample.reduction.weight"].shape == (384, 768)
    assert state["patch_embed.proj.weight"].shape == (96, 3, 4, 4)
    published = 28_288_354  # Swin-T with its classifier head and final norm
    own_norms = 2 * sum((96, 192, 384, 768))
    assert sum(p.numel() for p in model.parameters()) == published - (1000 * 768 + 1000) - 2 * 768 + own_norms


# ---- (d) ImageNet weights -------------------------------------------------------------------

def _official_checkpoint(tmp_path, config, drop=(), name="swin_tiny_patch4_window3.pth"):
    """A file laid out like swin_*_patch4_window*.pth: {"model": weights}, with the buffers and
    the classifier, without the backbone's out norms."""
    source = _randomize(SwinTransformer(**config))
    state = {k: v for k, v in source.state_dict().items() if not k.startswith(("norm0.", "norm1.", "norm2."))}
    for i, depth in enumerate(config["depths"]):
        for j in range(depth):
            state[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = torch.randint(0, 9, (9, 9))
        state[f"layers.{i}.blocks.1.attn_mask"] = torch.zeros(4, 9, 9)
    width = config["embed_dim"] * 2 ** (len(config["depths"]) - 1)
    state |= {"norm.weight": torch.ones(width), "norm.bias": torch.zeros(width),
              "head.weight": torch.randn(1000, width), "head.bias": torch.zeros(1000)}
    for dropped in drop:
        del state[dropped]
    path = tmp_path / name
    torch.save({"model": state}, path)
    return source, path


def test_imagenet_checkpoint_loads_into_patch16_backbone(tmp_path):
    source, path = _official_checkpoint(tmp_path, TINY)
    target = SwinTransformer(**TINY, patch_size=16)
    norms_before = target.norm0.weight.clone()
    report = load_backbone_weights(target, path)
    own, src = target.state_dict(), source.state_dict()
    for name in own:
        if name.startswith("norm") or name == "patch_embed.proj.weight":
            continue
        torch.testing.assert_close(own[name], src[name], rtol=0, atol=0)
    torch.testing.assert_close(target.norm0.weight, norms_before)  # not in the file: kept
    assert report.resampled == ["patch_embed.proj.weight"]
    assert sorted(report.missing) == sorted(f"norm{i}.{t}" for i in range(3) for t in ("weight", "bias"))
    assert "head.weight" in report.ignored and "layers.0.blocks.1.attn_mask" in report.ignored
    assert "layers.0.blocks.0.attn.relative_position_index" in report.ignored

    # CRA's authors' resampling: each weight repeated over a 4x4 block, times (4/16)^2.
    expected = src["patch_embed.proj.weight"].repeat_interleave(4, 2).repeat_interleave(4, 3) / 16
    torch.testing.assert_close(own["patch_embed.proj.weight"], expected, rtol=1e-5, atol=1e-7)

    # A patch of one colour: the 16x16 embedding gives the token the 4x4 one gave.
    colour = torch.rand(5, 3, 1, 1)
    with torch.no_grad():
        small = source.patch_embed(colour.expand(5, 3, 4, 4))
        large = target.patch_embed(colour.expand(5, 3, 16, 16))
    torch.testing.assert_close(large, small, rtol=1e-5, atol=1e-5)


def test_patch_kernel_resampling_keeps_the_sum_for_whole_ratios(tmp_path):
    source, path = _official_checkpoint(tmp_path, TINY)
    for patch in (8, 12):
        target = SwinTransformer(**TINY, patch_size=patch)
        load_backbone_weights(target, path)
        kernel = target.patch_embed.proj.weight
        assert kernel.shape[2:] == (patch, patch)
        torch.testing.assert_close(kernel.sum((2, 3)), source.patch_embed.proj.weight.sum((2, 3)),
                                   rtol=1e-5, atol=1e-6)


def test_state_dict_with_backbone_prefix_loads():
    source = _randomize(SwinTransformer(**TINY))
    state = {"backbone." + k: v for k, v in source.state_dict().items()} | {"decoder.weight": torch.ones(3)}
    target = SwinTransformer(**TINY)
    report = load_backbone_weights(target, state)
    assert report.missing == [] and report.ignored == ["decoder.weight"]
    with torch.no_grad():
        image = torch.rand(1, 3, 20, 24)
        for a, b in zip(target.eval()(image), source(image)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_loader_errors(tmp_path):
    _, path = _official_checkpoint(tmp_path, TINY)
    with pytest.raises(WeightsError, match="does not exist"):
        load_backbone_weights(SwinTransformer(**TINY), tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(WeightsError, match="notes.pth"):
        load_backbone_weights(SwinTransformer(**TINY), text)
    other = tmp_path / "resnet.pth"
    resnet = {"conv1.weight": torch.ones(4, 3, 7, 7), "fc.weight": torch.ones(10, 4)}
    torch.save({"state_dict": resnet}, other)
    with pytest.raises(WeightsError, match="no Swin backbone tensor.*missing: patch_embed.*unexpected: conv"):
        load_backbone_weights(SwinTransformer(**TINY), other)
    wider = r"wrong shape: patch_embed\.proj\.weight \(8, 3, 4, 4\) \(backbone \(16, 3, 4, 4\)\)"
    with pytest.raises(WeightsError, match=wider):
        load_backbone_weights(SwinTransformer(**(TINY | dict(embed_dim=16))), path)
    with pytest.raises(WeightsError, match="patch_embed.proj.weight is \\(8, 3, 4, 4\\)"):
        load_backbone_weights(SwinTransformer(**TINY, in_chans=4, patch_size=16), path)
    with pytest.raises(WeightsError, match=r"unexpected: layers\.1\.downsample\..*layers\.2\.blocks\."):
        load_backbone_weights(SwinTransformer(**(TINY | dict(depths=(2, 2), num_heads=(1, 2)))), path)
    _, short = _official_checkpoint(tmp_path, TINY, drop=["layers.1.blocks.0.mlp.fc1.bias"], name="short.pth")
    with pytest.raises(WeightsError, match=r"missing: layers\.1\.blocks\.0\.mlp\.fc1\.bias\. "):
        load_backbone_weights(SwinTransformer(**TINY), short)
    report = load_backbone_weights(SwinTransformer(**TINY), short, strict=False)
    assert "layers.1.blocks.0.mlp.fc1.bias" in report.missing
    with pytest.raises(TypeError, match="backbone"):
        load_backbone_weights({}, path)
    with pytest.raises(WeightsError, match="path_or_state_dict"):
        load_backbone_weights(SwinTransformer(**TINY), 3)


# ---- (e) training and precisions ------------------------------------------------------------

def test_gradients_reach_every_parameter_and_match_finite_differences():
    model = _randomize(SwinTransformer(**TINY)).train()
    image = torch.randn(2, 3, 50, 37, requires_grad=True)
    weights = [torch.randn(f.shape) for f in model(image)]
    sum((f * w).sum() for f, w in zip(model(image), weights)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().max() > 0, name
    assert torch.isfinite(image.grad).all()

    # Exact gradients w.r.t. the input on a padded, shifted configuration (float64).
    small = SwinTransformer(embed_dim=4, depths=(2,), num_heads=(2,), window_size=2, patch_size=2).double()
    x = torch.randn(1, 3, 9, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: small(t)[0], (x,), eps=1e-6, atol=1e-5)


def test_drop_path_only_in_training():
    model = SwinTransformer(**TINY, drop_path_rate=0.5)
    image = torch.randn(4, 3, 24, 24)
    with torch.no_grad():
        first, second = model.eval()(image)[-1], model(image)[-1]
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        assert (model.train()(image)[-1] - first).abs().max() > 1e-3


@pytest.mark.parametrize("dtype, tolerance", [(torch.float16, 0.02), (torch.bfloat16, 0.1)])
def test_half_precision_close_to_float32(dtype, tolerance):
    model = _randomize(SwinTransformer(**TINY))
    image = torch.randn(1, 3, 50, 37)
    with torch.no_grad():
        exact = model(image)
        half = model.to(dtype)(image.to(dtype))
    for a, b in zip(exact, half):
        assert b.dtype == dtype and torch.isfinite(b).all()
        error = (a - b.float()).abs()
        assert error.mean() < tolerance / 4 and error.max() < 2.5 * tolerance, (dtype, error.max())


def test_bad_arguments():
    model = SwinTransformer(**TINY)
    with pytest.raises(ValueError, match=r"float \[B, 3, H, W\]"):
        model(torch.zeros(1, 4, 8, 8))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one entry per stage"):
        SwinTransformer(depths=(2, 2), num_heads=(1,))
    with pytest.raises(ValueError, match="heads"):
        SwinTransformer(embed_dim=10, depths=(2,), num_heads=(3,))
    with pytest.raises(ValueError, match="window_size"):
        SwinTransformer(window_size=0)
    with pytest.raises(ValueError, match="drop_path_rate"):
        SwinTransformer(drop_path_rate=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_capture_replays_the_eager_result():
    model = _randomize(SwinTransformer(**TINY, patch_size=16)).cuda().half()
    image = torch.rand(1, 3, 270, 480, device="cuda", dtype=torch.half)
    with torch.no_grad():
        expected = model(image)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            model(image)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = model(image)
        graph.replay()
    for a, b in zip(expected, captured):
        torch.testing.assert_close(a, b)
