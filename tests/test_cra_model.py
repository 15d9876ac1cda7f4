"""CRAMatting's own contract on the tiny configuration: shapes at any size, the fused model against
its eager twin (the authors' computation), gradients, torch.compile, tile capacity, the authors'
neighbour lists, the inference resize against SciPy, configuration and input errors, and files of
the earlier (paper-derived) CRAMatting refused."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_running_statistics

from fastmatte.models import MODELS, CRAMatting, WeightsError, build_model, load_model
from fastmatte.models.cra.roi_head import official_neighbours
from fastmatte.models.cra.skimage_resize import resize


def tiny(**overrides):
    torch.manual_seed(0)
    model = CRAMatting.tiny(**overrides).eval()
    with torch.no_grad():
        model.rel_pos_bias_table.normal_(0, 0.5)  # zeros at init: make the bias matter
    return randomize_running_statistics(model)


def band(H, W, width=3, seed=0):
    """One-hot trimap [1, 3, H/8, W/8] (0 bg, 1 unknown, 2 fg): a band of unknown cells."""
    h, w = H // 8, W // 8
    g = torch.Generator().manual_seed(seed)
    edge = torch.randint(w // 4, 3 * w // 4, (h, 1), generator=g)
    cols = torch.arange(w)[None]
    classes = torch.where(cols < edge, 2, 0)
    classes = torch.where((cols - edge).abs() < width, 1, classes)
    return F.one_hot(classes, 3).permute(2, 0, 1)[None].float()


@pytest.mark.parametrize("H,W", [(128, 128), (100, 150), (5, 3)])
def test_outputs_have_the_documented_shapes(H, W):
    out = tiny()(torch.rand(2, 3, H, W), aux=True)
    Hp, Wp = math.ceil(H / 128) * 128, math.ceil(W / 128) * 128
    assert out["alpha"].shape == (2, 1, H, W)
    assert [t.shape for t in out["seg_logits"]] == [(2, 1, Hp // s, Wp // s) for s in (32, 16, 8)]
    assert [t.shape for t in out["trimap_logits"]] == [(2, 3, Hp // s, Wp // s) for s in (32, 16, 8)]
    assert out["seg"].shape == (2, 1, Hp // 8, Wp // 8) and out["trimap"].shape == (2, 3, Hp // 8, Wp // 8)
    count = int(out["selection"].count)
    assert out["refined"].shape == (count, 1, 8, 8)
    assert out["selection"].tiles.shape == (2 * Hp * Wp // 64, 3)  # default: room for every cell
    assert 0 <= out["alpha"].min() and out["alpha"].max() <= 1
    assert set(tiny()(torch.rand(1, 3, H, W))) == {"alpha", "selection"}


@pytest.mark.parametrize("given", [False, True], ids=["predicted-trimap", "given-trimap"])
def test_fused_model_equals_its_eager_twin(given):
    model = tiny()
    image = torch.rand(2, 3, 128, 256)
    trimap = band(128, 256).repeat(2, 1, 1, 1) if given else None
    with torch.no_grad():
        fused, eager = model(image, trimap, aux=True), model(image, trimap, aux=True, backend="torch")
    assert int(fused["selection"].count) > 8
    for key in ("alpha", "seg", "trimap", "refined"):
        torch.testing.assert_close(fused[key], eager[key], atol=2e-5, rtol=1e-5, msg=key)
    for a, b in zip(fused["selection"], eager["selection"]):
        assert torch.equal(a, b)


def test_gradients_reach_every_parameter_and_match_the_eager_model():
    model = tiny().train()
    image, target = torch.rand(2, 3, 128, 128), torch.rand(2, 1, 128, 128)
    trimap = band(128, 128).repeat(2, 1, 1, 1)
    grads = []
    for backend in (None, "torch"):
        model.zero_grad()
        out = model(image, trimap, aux=True, backend=backend)
        logits = out["trimap_logits"] + out["seg_logits"]
        loss = (out["alpha"] - target).abs().mean() + sum(t.square().mean() for t in logits)
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters()})
    fused, eager = grads
    assert fused.keys() == {name for name, _ in model.named_parameters()}
    for name, grad in fused.items():
        assert torch.isfinite(grad).all(), name
        torch.testing.assert_close(grad, eager[name], atol=1e-5, rtol=1e-4, msg=name)
    silent = [name for name, grad in fused.items() if not grad.abs().sum() > 0]
    assert not silent, f"no gradient reaches {silent}"


def test_whole_forward_traces_without_graph_breaks():
    model = tiny()
    image = torch.rand(1, 3, 128, 128)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(image)["alpha"], model(image)["alpha"], atol=0, rtol=0)


def test_capacity_and_the_most_uncertain_cells():
    image, trimap = torch.rand(1, 3, 128, 128), band(128, 128)
    assert tiny(tile_capacity=5)(image)["selection"].tiles.shape[0] == 5
    assert tiny(tile_capacity=0.3)(image)["selection"].tiles.shape[0] == math.ceil(0.3 * 256)
    assert tiny().capacity(1, 14, 20) == 280 and tiny(tile_capacity=0.1).capacity(1, 14, 20) == 28
    soft = trimap + 0.1 * torch.rand(trimap.shape, generator=torch.Generator().manual_seed(1))
    out = tiny(tile_capacity=3)(image, soft, aux=True)
    assert int(out["selection"].count) == 3 < int(out["selection"].candidates)
    chosen = out["selection"].tiles.long()
    scores = soft[0, 1][chosen[:, 1], chosen[:, 2]]
    others = soft[0, 1][(soft.argmax(1)[0] == 1) & (out["selection"].tile_map[0] < 0)]
    assert scores.min() >= others.max()
    nothing = tiny(tile_capacity=0)(image, aux=True)  # the nearest x8 seg (the authors' background)
    background = F.interpolate(nothing["seg"], scale_factor=8, mode="nearest")
    torch.testing.assert_close(nothing["alpha"], background)


def test_only_the_selected_cells_are_replaced_by_their_refinement():
    trimap = band(128, 128)
    with torch.no_grad():
        out = tiny()(torch.rand(1, 3, 128, 128), trimap, aux=True)
    background = F.interpolate(out["seg"], scale_factor=8, mode="nearest")
    unknown = (trimap.argmax(1, keepdim=True) == 1).repeat_interleave(8, 2).repeat_interleave(8, 3)
    assert torch.equal(out["alpha"][~unknown], background[~unknown])
    cells = out["selection"].tiles[:int(out["selection"].count)].long()
    for row, (b, ty, tx) in enumerate(cells.tolist()):
        assert torch.equal(out["alpha"][b, :, ty * 8:ty * 8 + 8, tx * 8:tx * 8 + 8], out["refined"][row])


def authors_neighbours(positions, k=8):
    """The authors' per-image search: dense distances + 1e6 on the diagonal, topk of min(k, n),
    repeated to k."""
    yx = torch.tensor(positions, dtype=torch.float32)
    dist = torch.cdist(yx, yx) + torch.eye(len(positions)) * 1e6
    kk = min(k, len(positions))
    idx = torch.topk(dist, kk, largest=False).indices
    return torch.cat([idx] * math.ceil(k / kk), 1)[:, :k]


@pytest.mark.parametrize("positions", [
    [(0, 0)], [(0, 0), (0, 3)], [(0, 0), (1, 0), (0, 3)], [(0, 0), (1, 0), (3, 0), (0, 6), (5, 5)],
    [(0, i * i) for i in range(9)], [(i, (i * 7) % 11) for i in range(12)]])
def test_neighbour_lists_are_the_authors(positions):
    from fastmatte.ops import knn_tiles

    tiles = torch.tensor([(0, y, x) for y, x in positions], dtype=torch.int32)
    nbr = official_neighbours(knn_tiles(tiles, torch.tensor([len(positions)], dtype=torch.int32), 8))
    want = authors_neighbours(positions)
    assert torch.equal(nbr.sort(1).values, want.sort(1).values)


@pytest.mark.parametrize("size,to", [((37, 50), (20, 64)), ((256, 300), (128, 256)), ((130, 90), (300, 91))])
def test_resize_is_skimages(size, to):
    from scipy import ndimage

    image = np.random.default_rng(0).random((*size, 3))
    factors = [a / b for a, b in zip(size, to)]
    sigma = [max(0.0, (f - 1) / 2) for f in factors] + [0.0]
    filtered = ndimage.gaussian_filter(image, sigma, mode="mirror")
    zoomed = ndimage.zoom(filtered, [b / a for a, b in zip(size, to)] + [1.0], order=1, mode="mirror",
                          grid_mode=True)
    want = np.clip(zoomed, image.min(), image.max())
    got = resize(torch.from_numpy(image).permute(2, 0, 1)[None], to)[0].permute(1, 2, 0).numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_resize_equals_skimage_itself():
    transform = pytest.importorskip("skimage.transform")
    image = np.random.default_rng(1).random((90, 140, 3))
    for to in ((64, 128), (200, 141)):
        got = resize(torch.from_numpy(image).permute(2, 0, 1)[None], to)[0].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, transform.resize(image, to), atol=1e-9)


def test_predict_follows_the_authors_benchmark_sizes():
    model = tiny()
    image = torch.rand(1, 3, 300, 270)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        alpha = model.predict(image)
        want = resize(model(resize(image, (256, 256)))["alpha"], (300, 270))
    assert seen[0] == (256, 256) and alpha.shape == (1, 1, 300, 270)
    torch.testing.assert_close(alpha, want)


def test_default_is_the_authors_model():
    model = CRAMatting()
    assert model.encoder.out_channels == [96, 192, 384, 768] and model.stride == 128
    assert model.encoder.patch_embed.proj.kernel_size == (16, 16)
    assert model.rel_pos_bias_table.shape == (50, 8) and model.tile_capacity == 1.0
    assert [c.out_channels for c in model.decoder.convs] == [256, 128, 64]
    assert MODELS["cra"].build is CRAMatting
    assert isinstance(build_model("cra", **MODELS["cra"].configurations["tiny"]), CRAMatting)


@pytest.mark.parametrize("make, message", [
    (lambda m: m(torch.rand(1, 4, 16, 16)), r"image must be a float \[B, 3, H, W\]"),
    (lambda m: m(torch.rand(3, 16, 16)), "image must be a float"),
    (lambda m: m(torch.rand(1, 3, 0, 16)), "must not be empty"),
    (lambda m: m(torch.rand(1, 3, 16, 16).double()), "the model is torch.float32"),
    (lambda m: m(torch.rand(1, 3, 130, 30), torch.rand(1, 3, 4, 3)),
     r"trimap must be float .*\[1, 3, 32, 16\]"),
])
def test_bad_input_names_the_argument(make, message):
    with pytest.raises(ValueError, match=message):
        make(tiny())


@pytest.mark.parametrize("config, error, message", [
    (dict(tile_capacity=1.5), ValueError, "tile_capacity"),
    (dict(tile_capacity="10%"), TypeError, "tile_capacity"),
    (dict(depths=(2, 2)), ValueError, "need 4 stages"),
    (dict(patch_size=7), ValueError, "patch_size must be even"),
])
def test_bad_configuration_is_refused(config, error, message):
    with pytest.raises(error, match=message):
        CRAMatting.tiny(**config)


def test_files_of_the_earlier_cra_are_refused(tmp_path):
    from safetensors.torch import save_file

    old = {"backbone.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16),
           "refiner.encode1.weight": torch.zeros(1)}
    torch.save(old, tmp_path / "old.pth")
    with pytest.raises(WeightsError, match="earlier, paper-derived CRAMatting"):
        load_model("cra", weights=tmp_path / "old.pth")
    save_file(old, tmp_path / "old.safetensors",
              metadata={"fastmatte.model": "cra", "fastmatte.config": '{"token_dim": 16}'})
    with pytest.raises(WeightsError, match="old.safetensors: .*earlier, paper-derived CRAMatting"):
        load_model("cra", weights=tmp_path / "old.safetensors")


def test_imagenet_swin_initializes_the_encoder(tmp_path):
    model = tiny()
    state = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    state["patch_embed.proj.weight"] = torch.randn(8, 3, 4, 4)
    torch.save({"model": state}, tmp_path / "swin.pth")
    report = CRAMatting.tiny().load_backbone(tmp_path / "swin.pth")
    assert report.resampled == ["patch_embed.proj.weight"]


def test_half_precision_follows_float32():
    model = tiny()
    image, trimap = torch.rand(1, 3, 128, 128), band(128, 128)
    with torch.no_grad():
        reference = model(image, trimap)["alpha"]
        low = model.to(torch.bfloat16)(image.bfloat16(), trimap.bfloat16())["alpha"]
    assert low.dtype == torch.bfloat16
    assert (low.float() - reference).abs().mean() < 2e-2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_forward_equals_the_eager_twin_replays_as_a_graph_and_runs_in_half():
    from fastmatte.matter import capture_graph

    model = tiny(tile_capacity=96).cuda()
    image, trimap = torch.rand(1, 3, 128, 256, device="cuda"), band(128, 256).cuda()
    with torch.no_grad():
        fused = model(image, trimap, aux=True)
        eager = model(image, trimap, aux=True, backend="torch")
        count = int(fused["selection"].count)
        assert 0 < count <= 96
        torch.testing.assert_close(fused["alpha"], eager["alpha"], atol=2e-3, rtol=0)
        torch.testing.assert_close(fused["refined"][:count], eager["refined"][:count], atol=2e-3, rtol=0)
        graph, out = capture_graph(lambda: model(image, trimap))
        image.copy_(torch.rand_like(image))
        graph.replay()
        torch.testing.assert_close(out["alpha"], model(image, trimap)["alpha"], atol=1e-5, rtol=0)
        half = model.half()(image.half(), trimap.half())["alpha"]
    assert (half.float() - model.float()(image, trimap)["alpha"]).abs().mean() < 2e-2
