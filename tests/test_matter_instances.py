"""Matter with an instance model (instances = True; predict -> a list of [n_i, H, W] per image):
a small fake model whose instances are thresholded colour channels, through every frame kind
and every method; the composite uses the union matte."""
import numpy as np
import pytest
import torch

from fastmatte import Matter


class Blobs(torch.nn.Module):
    """Instance k of an image (k = red, green, blue channel) is channel * (channel > 0.5),
    present when any pixel of it is above 0.5; in channel order."""
    instances = True

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.ones(()))

    def predict(self, image):
        out = []
        for x in image:
            mattes = x * (x > 0.5) * self.gain
            out.append(mattes[(x > 0.5).flatten(1).any(1)])
        return out


def expected(frame):
    """The fake model's instances of a uint8 [H, W, 3] frame, float32 [n, H, W], in float64 math."""
    x = frame.astype(np.float32).transpose(2, 0, 1) / 255
    mattes = x * (x > 0.5)
    return mattes[(x > 0.5).reshape(3, -1).any(1)]


def frame(seed=0, h=12, w=17, drop=()):
    f = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    for c in drop:  # no instance in this channel
        f[..., c] //= 3
    return f


@pytest.fixture
def matter():
    return Matter(Blobs())


def test_flags_and_no_graph(matter):
    assert matter.instances and not matter.recurrent and not matter.predicts_foreground
    assert matter.cuda_graph is False


def test_numpy_frame_gives_a_list_of_float32_mattes(matter):
    f = frame(drop=(1,))
    mattes = matter(f)
    want = expected(f)
    assert isinstance(mattes, list) and len(mattes) == 2 == len(want)
    for got, w in zip(mattes, want):
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == f.shape[:2]
        np.testing.assert_allclose(got, w, atol=1e-6)
    uint8 = matter.alpha_uint8(f)
    assert isinstance(uint8, list) and len(uint8) == 2
    for got, w in zip(uint8, want):
        assert got.dtype == np.uint8 and got.shape == f.shape[:2]
        np.testing.assert_array_equal(got, np.round(w * 255).astype(np.uint8))


@pytest.mark.parametrize("layout", ["hwc", "chw"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_tensor_frames_give_lists_of_hw_tensors(matter, layout, dtype):
    f = frame(seed=1)
    t = torch.from_numpy(f)
    t = t if layout == "hwc" else t.permute(2, 0, 1)
    t = t if dtype == torch.uint8 else t.float() / 255
    mattes = matter(t)
    want = expected(f)
    assert isinstance(mattes, list) and len(mattes) == len(want) == 3
    for got, w in zip(mattes, want):
        assert torch.is_tensor(got) and got.dtype == torch.float32 and got.shape == f.shape[:2]
        np.testing.assert_allclose(got.numpy(), w, atol=1e-6)


def test_bchw_batch_gives_a_list_per_image(matter):
    frames = [frame(seed=2), frame(seed=3, drop=(0, 2)), frame(seed=4, drop=(0, 1, 2))]
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    mattes = matter(batch)
    uint8 = matter.alpha_uint8(batch)
    tensors = matter.alpha_tensor(batch)
    assert [m.shape[0] for m in mattes] == [3, 1, 0]
    for f, got, got8, raw in zip(frames, mattes, uint8, tensors):
        want = expected(f)
        assert got.shape == (len(want), *f.shape[:2]) and got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
        np.testing.assert_array_equal(got8, np.round(want * 255).astype(np.uint8))
        assert raw.shape == got.shape


def test_no_instance_gives_an_empty_list(matter):
    f = frame(drop=(0, 1, 2))
    assert matter(f) == [] and matter.alpha_uint8(f) == []
    np.testing.assert_array_equal(matter.composite(f, (1, 2, 3)), np.broadcast_to([1, 2, 3], f.shape))


def union_composite(f, background):
    want = expected(f)
    union = want.max(0) if len(want) else np.zeros(f.shape[:2], np.float32)
    return np.round(union[..., None] * f + (1 - union[..., None]) * np.float32(background)).astype(np.uint8)


def test_composite_uses_the_union_matte(matter):
    f = frame(seed=5, drop=(2,))
    out = matter.composite(f, (0, 255, 0))
    assert out.dtype == np.uint8 and out.shape == f.shape
    np.testing.assert_allclose(out.astype(int), union_composite(f, (0, 255, 0)).astype(int), atol=1)
    alphas, composite = matter.alpha_and_composite(f, (0, 255, 0))
    np.testing.assert_array_equal(composite, out)
    assert len(alphas) == 2
    bg = np.random.default_rng(9).integers(0, 256, f.shape, dtype=np.uint8)
    np.testing.assert_allclose(matter.composite(f, bg).astype(int), union_composite(f, bg).astype(int),
                               atol=1)


def test_composite_of_a_batch(matter):
    frames = [frame(seed=6), frame(seed=7, drop=(0, 1, 2))]
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).contiguous()
    out = matter.composite(batch, (10, 20, 30))
    assert out.shape == batch.shape and out.dtype == torch.uint8
    for f, got in zip(frames, out):
        np.testing.assert_allclose(got.permute(1, 2, 0).numpy().astype(int),
                                   union_composite(f, (10, 20, 30)).astype(int), atol=1)


def test_outputs_and_foreground(matter):
    f = frame(seed=8)
    result = matter.outputs(f, (0, 0, 0))
    assert isinstance(result.alpha, list) and len(result.alpha) == 3 and result.foreground is None
    np.testing.assert_array_equal(result.composite, matter.composite(f, (0, 0, 0)))
    assert matter.outputs(f).composite is None
    with pytest.raises(ValueError, match="predicts no foreground"):
        matter.foreground(f)
    with pytest.raises(ValueError, match="predicts no foreground"):
        matter.outputs(f, foreground=True)


def test_a_wrong_predict_output_is_a_clear_error():
    class Wrong(Blobs):
        def predict(self, image):
            return torch.zeros(image.shape[0], 1, *image.shape[2:])

    with pytest.raises(TypeError, match="must return a list of 1 tensors"):
        Matter(Wrong())(frame())


def test_instances_and_recurrent_is_refused():
    class Both(Blobs):
        recurrent = True

    with pytest.raises(ValueError, match="cannot be recurrent"):
        Matter(Both())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_eagerly_frame_after_frame():
    matter = Matter(Blobs(), device="cuda")
    assert matter.cuda_graph is False
    f = frame(seed=10)
    for _ in range(3):  # the third frame of a shape would replay a graph for other models
        got = matter(f)
        for g, w in zip(got, expected(f)):
            np.testing.assert_allclose(g, w, atol=1e-6)
    t = torch.from_numpy(f).cuda()
    assert all(m.device == t.device for m in matter(t))
    np.testing.assert_allclose(matter.composite(t, (0, 255, 0)).cpu().numpy().astype(int),
                               union_composite(f, (0, 255, 0)).astype(int), atol=1)
