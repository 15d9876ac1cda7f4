"""fastmatte.Matter against the model called directly with preprocessing written here, the
composite against a NumPy formula, input kinds and layouts, weights files, and errors. The
model is CRAMatting.tiny(); "cra" by name is pointed at it for these tests."""
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import fastmatte.models
from fastmatte import Matter
from fastmatte.matter import RandomWeightsWarning
from fastmatte.models import CRAMatting, WeightsError

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


@pytest.fixture
def tiny_by_name(monkeypatch):
    """build_model("cra", ...) makes CRAMatting.tiny(...) in this test."""
    tiny = replace(fastmatte.models.MODELS["cra"], build=CRAMatting.tiny)
    monkeypatch.setitem(fastmatte.models.MODELS, "cra", tiny)


def frame(h=37, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def direct_alpha(model, rgb):
    """The model's predict on float [1, 3, H, W] = rgb / 255, made with NumPy (float64 division)."""
    image = torch.from_numpy((rgb.astype(np.float64) / 255).astype(np.float32).transpose(2, 0, 1).copy())
    with torch.no_grad():
        return model.eval().predict(image[None])[0, 0].numpy()


def test_alpha_equals_the_model_called_directly():
    model = CRAMatting.tiny(tile_capacity=1.0)  # every unknown tile refined: the refiner counts
    matter = Matter(model)
    rgb = frame()
    alpha = matter(rgb)
    assert alpha.dtype == np.float32 and alpha.shape == rgb.shape[:2]
    np.testing.assert_allclose(alpha, direct_alpha(model, rgb), atol=1e-6, rtol=0)
    assert 0 <= alpha.min() and alpha.max() <= 1


def test_every_input_kind_gives_the_same_alpha():
    matter = Matter(CRAMatting.tiny(tile_capacity=1.0))  # a batch's tiles are then chosen per image
    rgb = frame(40, 29)
    expected = matter(rgb)
    hwc = torch.from_numpy(rgb)
    chw = hwc.permute(2, 0, 1)
    cases = {"uint8 HWC": hwc, "uint8 CHW": chw, "uint8 CHW contiguous": chw.contiguous(),
             "float CHW": chw.float() / 255, "float64 HWC": hwc.double() / 255}
    for name, tensor in cases.items():
        got = matter(tensor)
        assert torch.is_tensor(got) and got.shape == (40, 29) and got.dtype == torch.float32, name
        np.testing.assert_allclose(got.numpy(), expected, atol=1e-6, rtol=0, err_msg=name)
    batch = torch.stack([chw, torch.from_numpy(frame(40, 29, seed=1)).permute(2, 0, 1)])
    got = matter(batch)
    assert got.shape == (2, 1, 40, 29)
    np.testing.assert_allclose(got[0, 0].numpy(), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got[1, 0].numpy(), matter(frame(40, 29, seed=1)), atol=1e-6, rtol=0)
    read_only = np.broadcast_to(rgb, rgb.shape)  # a view torch cannot share
    np.testing.assert_array_equal(matter(read_only), expected)
    np.testing.assert_array_equal(matter(rgb[::-1].copy()[::-1]), expected)  # negative strides


def test_alpha_uint8_and_alpha_tensor():
    matter = Matter(CRAMatting.tiny())
    rgb = frame()
    alpha = matter(rgb).astype(np.float64)
    quantized = matter.alpha_uint8(rgb)
    assert quantized.dtype == np.uint8 and quantized.shape == rgb.shape[:2]
    difference = np.abs(quantized.astype(int) - np.floor(alpha * 255 + 0.5))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # only ties may round apart
    tensor = matter.alpha_tensor(rgb)
    assert tensor.shape == (1, 1, *rgb.shape[:2]) and tensor.device.type == "cpu"
    np.testing.assert_array_equal(tensor[0, 0].numpy(), matter(rgb))
    batch = torch.from_numpy(np.stack([rgb, rgb])).permute(0, 3, 1, 2)
    assert matter.alpha_uint8(batch).shape == (2, *rgb.shape[:2])


def numpy_composite(alpha, fg, bg):
    a = alpha.astype(np.float64)[..., None]
    return np.clip(np.floor(a * fg + (1 - a) * bg + 0.5), 0, 255).astype(np.uint8)


def assert_composite(got, expected):
    difference = np.abs(got.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.999  # float rounding at ties only


def test_composite_over_a_colour_and_an_image():
    matter = Matter(CRAMatting.tiny())
    rgb = frame()
    alpha = matter(rgb)
    over_colour = matter.composite(rgb, (10, 200, 30))
    assert over_colour.dtype == np.uint8 and over_colour.shape == rgb.shape
    assert_composite(over_colour, numpy_composite(alpha, rgb, np.array([10, 200, 30])))
    background = frame(seed=5)
    assert_composite(matter.composite(rgb, background), numpy_composite(alpha, rgb, background))
    quantized, composite = matter.alpha_and_composite(rgb, background)
    np.testing.assert_array_equal(quantized, matter.alpha_uint8(rgb))
    np.testing.assert_array_equal(composite, matter.composite(rgb, background))


def test_composite_of_tensors_keeps_their_layout():
    matter = Matter(CRAMatting.tiny())
    rgb = frame()
    expected = matter.composite(rgb, (0, 0, 255))
    hwc = torch.from_numpy(rgb)
    np.testing.assert_array_equal(matter.composite(hwc, (0, 0, 255)).numpy(), expected)
    chw = matter.composite(hwc.permute(2, 0, 1).float() / 255, (0, 0, 255))
    assert chw.dtype == torch.uint8 and chw.shape == (3, *rgb.shape[:2])
    assert_composite(chw.permute(1, 2, 0).numpy(), expected)
    bchw = matter.composite(hwc.permute(2, 0, 1)[None], torch.from_numpy(frame(seed=2)))
    assert bchw.shape == (1, 3, *rgb.shape[:2])


def test_bad_frames_and_backgrounds_are_refused():
    matter = Matter(CRAMatting.tiny())
    with pytest.raises(ValueError, match="NumPy frame must be uint8 RGB"):
        matter(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="NumPy frame must be uint8 RGB"):
        matter(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="could be HWC or CHW"):
        matter(torch.zeros(3, 8, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="tensor frame must be uint8 or float"):
        matter(torch.zeros(8, 8, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="tensor frame must be uint8 or float"):
        matter(torch.zeros(8, 8, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match="NumPy array or a torch tensor"):
        matter([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"\(r, g, b\) ints in 0..255"):
        matter.composite(frame(), (0, 0, 256))
    with pytest.raises(ValueError, match=r"uint8 RGB image \[37, 50, 3\]"):
        matter.composite(frame(), frame(20, 20))


def test_construction_errors():
    with pytest.raises(ValueError, match="precision 'fp16' needs device='cuda'"):
        Matter(CRAMatting.tiny(), precision="fp16")
    with pytest.raises(ValueError, match="precision 'bf16' needs device='cuda'"):
        Matter(CRAMatting.tiny(), precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, bf16"):
        Matter(CRAMatting.tiny(), precision="int8")
    with pytest.raises(ValueError, match="device must be"):
        Matter(CRAMatting.tiny(), device="gpu")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        Matter("nope")
    with pytest.raises(TypeError, match="model name or an nn.Module"):
        Matter(3)
    with pytest.raises(ValueError, match="tile_capacity applies to a model built by name"):
        Matter(CRAMatting.tiny(), tile_capacity=4)
    with pytest.raises(TypeError, match="must have predict.*Conv2d has none"):
        Matter(torch.nn.Conv2d(3, 1, 1))
    with pytest.raises(ValueError, match="cannot be built with colour=3"):
        Matter("cra", colour=3)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        Matter(CRAMatting.tiny(), device="cuda")


def test_random_weights_are_announced(tiny_by_name, tmp_path):
    with pytest.warns(RandomWeightsWarning, match="random weights"):
        matter = Matter("cra", tile_capacity=3)
    assert matter.random_weights and matter.model.tile_capacity == 3
    path = tmp_path / "w.pt"
    torch.save(CRAMatting.tiny().state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        assert not Matter("cra", weights=path).random_weights
        assert not Matter(CRAMatting.tiny()).random_weights  # a module's weights are the caller's


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_file_round_trip(tiny_by_name, tmp_path, suffix):
    trained = CRAMatting.tiny()
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save({"state_dict": state}, path)
    rgb = frame()
    alpha = Matter("cra", weights=path)(rgb)
    np.testing.assert_allclose(alpha, direct_alpha(trained, rgb), atol=1e-6, rtol=0)
    with pytest.warns(RandomWeightsWarning):
        assert np.abs(Matter("cra")(rgb) - alpha).max() > 1e-3  # the file mattered


def test_weights_that_do_not_fit_are_refused(tiny_by_name, tmp_path):
    path = tmp_path / "other.pt"
    torch.save(CRAMatting.tiny(embed_dim=16).state_dict(), path)
    with pytest.raises(WeightsError, match="wrong shape"):
        Matter("cra", weights=path)
    with pytest.raises(WeightsError, match="does not exist"):
        Matter("cra", weights=tmp_path / "missing.pt")


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_graph_replays_match_eager_frames(precision):
    model = CRAMatting.tiny(tile_capacity=16)
    eager = Matter(CRAMatting.tiny(tile_capacity=16), device="cuda", precision=precision, cuda_graph=False)
    eager.model.load_state_dict(model.state_dict())
    graphed = Matter(model, device="cuda", precision=precision)
    frames = [frame(72, 100, seed=s) for s in range(5)]
    # Without syncing in between: the pinned staging buffers must not be overwritten in flight.
    tensors = [graphed.alpha_tensor(f) for f in frames]
    assert len(graphed._graphs) == 1 and graphed._graphs[next(iter(graphed._graphs))] is not None
    atol = 2e-3 if precision == "fp32" else 2e-2
    for f, t in zip(frames, tensors):
        torch.testing.assert_close(t, eager.alpha_tensor(f), atol=atol, rtol=0)
    fp32 = Matter(CRAMatting.tiny(tile_capacity=16), device="cuda", cuda_graph=False)
    fp32.model.load_state_dict(model.state_dict())
    # Lower precisions may rank a few tiles differently; on average they must agree.
    assert np.abs(graphed(frames[0]) - fp32(frames[0])).mean() < 0.02
    a, b = [torch.from_numpy(f).cuda().permute(2, 0, 1) for f in frames[1:3]]
    graphed(a)  # CHW frames on the GPU: a new key, eager the first time,
    from_graph = graphed(b)  # captured and replayed the second,
    graphed(a)  # and replayed again: the result above must not change.
    assert from_graph.device.type == "cuda" and from_graph.shape == (72, 100)
    torch.testing.assert_close(from_graph, eager(b), atol=atol, rtol=0)


@needs_cuda
@pytest.mark.cuda
def test_failed_capture_falls_back_to_eager_with_a_warning(monkeypatch):
    matter = Matter(CRAMatting.tiny(), device="cuda")
    rgb = frame()
    expected = matter(rgb)

    def refuse(*args, **kwargs):
        raise RuntimeError("capture refused for the test")

    monkeypatch.setattr(torch.cuda, "graph", refuse)
    with pytest.warns(UserWarning, match="CUDA graph capture failed .*capture refused for the test"):
        np.testing.assert_allclose(matter(rgb), expected, atol=1e-5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(matter(rgb), expected, atol=1e-5)  # eager from now on, no new warning
