"""CRAMatting: shapes at any size, the fused model against its eager twin (backend="torch"), the
refinement's contract with the coarse stage, gradients, configuration and input errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from fastmatte.bench.cases import portrait_trimap
from fastmatte.models import MODELS, CRAMatting, build_model


def tiny(**overrides):
    return CRAMatting.tiny(**overrides).eval()


def band_trimap(H, W, band=0.3, seed=0):
    """Trimap logits on the model's 1/8 grid with a wide unknown band (many tiles to refine)."""
    return portrait_trimap(math.ceil(H / 16) * 16, math.ceil(W / 16) * 16, band=band, seed=seed)


@pytest.mark.parametrize("H,W", [(16, 16), (37, 53), (64, 40), (5, 3)])
def test_outputs_have_the_documented_shapes_at_any_size(H, W):
    out = tiny()(torch.rand(2, 3, H, W))
    h, w = math.ceil(H / 16) * 2, math.ceil(W / 16) * 2
    assert out["alpha"].shape == (2, 1, H, W)
    assert out["coarse_alpha"].shape == (2, 1, h, w) and out["trimap"].shape == (2, 3, h, w)
    assert out["alpha"].min() >= 0 and out["alpha"].max() <= 1
    assert out["coarse_alpha"].min() >= 0 and out["coarse_alpha"].max() <= 1
    selection = out["selection"]
    assert selection.tiles.shape == (math.ceil(0.1 * 2 * h * w), 3) and selection.tile_map.shape == (2, h, w)


@pytest.mark.parametrize("given_trimap", [False, True], ids=["predicted-trimap", "given-trimap"])
def test_fused_model_equals_its_eager_twin(given_trimap):
    model = tiny(tile_capacity=1.0)
    image = torch.rand(2, 3, 45, 70)
    trimap = band_trimap(45, 70).expand(2, -1, -1, -1) if given_trimap else None
    with torch.no_grad():
        fused, eager = model(image, trimap), model(image, trimap, backend="torch")
    assert int(fused["selection"].count) > 0
    for name in ("alpha", "coarse_alpha", "trimap"):
        torch.testing.assert_close(fused[name], eager[name], atol=1e-5, rtol=1e-5)
    for a, b in zip(fused["selection"], eager["selection"]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", [None, "torch"])
def test_cpu_refiner_skips_padding_rows_without_changing_the_output(backend, monkeypatch):
    import fastmatte.models.cra.model as cra

    model = tiny(tile_capacity=1.0)
    H, W = 48, 64
    image, trimap = torch.rand(2, 3, H, W), band_trimap(H, W).repeat(2, 1, 1, 1)
    seen = []
    model.refiner.register_forward_hook(lambda module, args, out: seen.append(out.shape[0]))
    with torch.no_grad():
        cut = model(image, trimap, backend=backend)
        monkeypatch.setattr(cra, "_selected_rows", lambda selection, image: selection)  # full capacity
        whole = model(image, trimap, backend=backend)
    count, capacity = int(cut["selection"].count), cut["selection"].tiles.shape[0]
    assert 0 < count < capacity and seen == [count, capacity]
    torch.testing.assert_close(cut["alpha"], whole["alpha"], atol=1e-6, rtol=1e-6)


def test_refinement_changes_only_the_selected_tiles():
    model = tiny(tile_capacity=1.0)
    H, W = 48, 64
    trimap = band_trimap(H, W)
    with torch.no_grad():
        out = model(torch.rand(1, 3, H, W), trimap)
    unknown = trimap.argmax(1) == 1
    # Every tile whose given trimap says unknown is selected, and nothing else.
    assert int(out["selection"].count) == int(unknown.sum())
    assert torch.equal(out["selection"].tile_map >= 0, unknown)
    upsampled = F.interpolate(out["coarse_alpha"], scale_factor=8, mode="bilinear", align_corners=False)
    pixel_unknown = unknown[:, None].repeat_interleave(8, 2).repeat_interleave(8, 3)[..., :H, :W]
    kept = ~pixel_unknown
    torch.testing.assert_close(out["alpha"][kept], upsampled[..., :H, :W][kept], atol=1e-6, rtol=0)
    assert (out["alpha"][pixel_unknown] - upsampled[..., :H, :W][pixel_unknown]).abs().max() > 1e-4


def test_capacity_int_and_fraction():
    image = torch.rand(1, 3, 64, 64)  # an 8 x 8 grid of tiles
    assert tiny(tile_capacity=5)(image)["selection"].tiles.shape[0] == 5
    assert tiny(tile_capacity=0.3)(image)["selection"].tiles.shape[0] == math.ceil(0.3 * 64)
    assert tiny(tile_capacity=1.0).capacity(2, 10, 12) == 240
    assert tiny(tile_capacity=0.1).capacity(1, 14, 20) == 28  # 10% of 280, not ceil(28.000000000000004)
    out = tiny(tile_capacity=0)(image)  # nothing refined: the upsampled coarse alpha
    upsampled = F.interpolate(out["coarse_alpha"], scale_factor=8, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["alpha"], upsampled, atol=1e-6, rtol=0)


def test_refines_the_most_uncertain_tiles_when_over_capacity():
    H = W = 64
    trimap = band_trimap(H, W, band=0.5)
    candidates = int((trimap.argmax(1) == 1).sum())
    out = tiny(tile_capacity=3)(torch.rand(1, 3, H, W), trimap)
    assert int(out["selection"].count) == 3 and int(out["selection"].candidates) == candidates > 3
    chosen = out["selection"].tiles.long()
    chosen_scores = trimap[0, 1][chosen[:, 1], chosen[:, 2]]
    others = trimap[0, 1][(trimap.argmax(1)[0] == 1) & (out["selection"].tile_map[0] < 0)]
    assert chosen_scores.min() >= others.max()


def test_downsample_two_with_patch_eight_is_the_same_pipeline():
    model = tiny(downsample=2, patch_size=8, tile_capacity=1.0)
    image = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        fused, eager = model(image), model(image, backend="torch")
    assert fused["coarse_alpha"].shape == (1, 1, 6, 8)
    torch.testing.assert_close(fused["alpha"], eager["alpha"], atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter_and_match_the_eager_model():
    torch.manual_seed(1)
    model = CRAMatting.tiny(tile_capacity=1.0)
    image, target = torch.rand(1, 3, 48, 64), torch.rand(1, 1, 48, 64)
    trimap = band_trimap(48, 64)
    grads = []
    for backend in (None, "torch"):
        model.zero_grad()
        out = model(image, trimap, backend=backend)
        loss = (out["alpha"] - target).abs().mean() + out["trimap"].square().mean()
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    fused, eager = grads
    assert fused.keys() == {name for name, _ in model.named_parameters()}
    for name, grad in fused.items():
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, eager[name], atol=1e-5, rtol=1e-4, msg=name)
    silent = [name for name, grad in fused.items() if not grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"


def test_half_precision_follows_float32():
    model = tiny(tile_capacity=1.0)
    image, trimap = torch.rand(1, 3, 48, 64), band_trimap(48, 64)
    with torch.no_grad():
        reference = model(image, trimap)["alpha"]
        low = model.to(torch.bfloat16)(image.bfloat16(), trimap.bfloat16())["alpha"]
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, atol=3e-2, rtol=0)


def test_whole_forward_traces_without_graph_breaks():
    # fullgraph=True fails on any host synchronization (.item(), data-dependent Python branches).
    model = tiny()
    image = torch.rand(1, 3, 32, 48)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(image)["alpha"], model(image)["alpha"], atol=0, rtol=0)


def test_registry_builds_the_model():
    assert MODELS["cra"].build is CRAMatting
    assert isinstance(build_model("cra", embed_dim=8, depths=(2, 2), num_heads=(1, 2)), CRAMatting)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope")


def test_imagenet_backbone_weights_load_into_the_patch16_model(tmp_path):
    from fastmatte.models.backbones.swin import SwinTransformer

    imagenet = SwinTransformer(embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4, patch_size=4)
    state = {k: v for k, v in imagenet.state_dict().items() if not k.startswith(("norm0", "norm1"))}
    torch.save({"model": state}, tmp_path / "swin.pth")
    model = CRAMatting.tiny()
    report = model.load_backbone(tmp_path / "swin.pth")
    assert report.resampled == ["patch_embed.proj.weight"]
    block = "layers.1.blocks.1.attn.qkv.weight"
    assert torch.equal(model.backbone.state_dict()[block], state[block])
    assert model.backbone.patch_embed.proj.weight.shape[-2:] == (16, 16)


def test_default_is_the_papers_model():
    model = CRAMatting()
    assert model.backbone.out_channels == [96, 192, 384, 768]
    assert model.backbone.patch_embed.proj.kernel_size == (16, 16)
    attention = model.refiner.attention
    assert (attention.k, attention.search_range, attention.heads, attention.head_dim) == (8, 4, 8, 16)
    assert attention.norm1.normalized_shape == (128,)


@pytest.mark.parametrize("make, message", [
    (lambda m: m(torch.rand(1, 4, 16, 16)), r"image must be a float \[B, 3, H, W\]"),
    (lambda m: m(torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8)), "image must be a float"),
    (lambda m: m(torch.rand(3, 16, 16)), "image must be a float"),
    (lambda m: m(torch.rand(1, 3, 0, 16)), "must not be empty"),
    (lambda m: m(torch.rand(1, 3, 16, 16).double()), "the model is torch.float32"),
    (lambda m: m(torch.rand(1, 3, 30, 30), torch.rand(1, 3, 4, 3)),
     r"trimap must be float logits .*\[1, 3, 4, 4\]"),
])
def test_bad_input_names_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make(tiny())


@pytest.mark.parametrize("config, error, message", [
    (dict(tile_capacity=1.5), ValueError, "tile_capacity"),
    (dict(tile_capacity=-1), ValueError, "tile_capacity"),
    (dict(tile_capacity="10%"), TypeError, "tile_capacity"),
    (dict(patch_size=8), ValueError, "downsample \\* patch_size must be 16"),
])
def test_bad_configuration_is_refused(config, error, message):
    with pytest.raises(error, match=message):
        CRAMatting.tiny(**config)
