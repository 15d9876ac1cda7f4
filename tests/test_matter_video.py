"""Video matting with recurrent models: Matter carrying the state from frame to frame (checked
against the model run by hand with its state fed back), resets, the predicted foreground, the
call options; `fastmatte matte` with a recurrent model and --foreground; and the demo clip made
from a still photograph. The model is FakeRVM below, in RVM's contract, so that these tests do
not depend on the real one."""
import signal
import sys
import warnings
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastmatte.models
from fastmatte import Matter
from fastmatte.cli import main
from fastmatte.io import read_image, read_matte, write_image
from fastmatte.io.atomic import Interrupted
from fastmatte.io.demo import main as demo_main
from fastmatte.io.sample import pan_zoom_frames, pan_zoom_windows, write_pan_zoom_clip
from fastmatte.io.video import VideoReader, VideoWriter
from fastmatte.matter import RandomWeightsWarning
from fastmatte.models import CRAMatting

HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


class FakeRVM(torch.nn.Module):
    """A recurrent model in RVM's contract. Its state is four running averages (weight 1/2 per
    frame) of the frame's grey level, at 1, 1/2, 1/4 and 1/8 of the frame's size with 1, 2, 4
    and 8 channels (so its shapes depend on the frame's, as RVM's do); alpha = sigmoid(gain *
    (full-size average - 0.5)), and the foreground is (frame + that average) / 2. A carried
    state therefore changes every output, and a zero state halves the first frame's average."""
    recurrent = True

    def __init__(self):
        super().__init__()
        self.gain = torch.nn.Parameter(torch.tensor(8.0))
        self.calls = []  # (downsample_ratio, the state passed in, the state returned) of every call

    def forward(self, image, state=None, downsample_ratio=None, backend=None):
        grey = image.mean(1, keepdim=True)
        levels = [grey] + [F.avg_pool2d(grey, 2 ** i, ceil_mode=True) for i in (1, 2, 3)]
        levels = [level.expand(-1, 2 ** i, -1, -1) for i, level in enumerate(levels)]
        old = [torch.zeros_like(level) for level in levels] if state is None else state
        new = tuple(0.5 * o + 0.5 * level for o, level in zip(old, levels))
        self.calls.append((downsample_ratio, state, new))
        average = new[0]
        return {"alpha": torch.sigmoid(self.gain * (average - 0.5)), "foreground": (image + average) / 2,
                "state": new}

    def predict(self, image):
        return self(image)["alpha"]


def frame(h=30, w=44, seed=0, level=None):
    """uint8 RGB noise, or noise around a grey `level` (0..255)."""
    rng = np.random.default_rng(seed)
    if level is None:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.clip(rng.normal(level, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def model_input(rgb):
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def by_hand(model, frames, state=None):
    """The model's outputs on `frames`, its state fed back by hand from `state`."""
    outputs = []
    with torch.no_grad():
        for rgb in frames:
            out = model(model_input(rgb), state=state)
            state = out["state"]
            outputs.append(out)
    return outputs


def test_state_is_carried_from_frame_to_frame_as_returned():
    model = FakeRVM()
    matter = Matter(model)
    assert matter.recurrent and matter.predicts_foreground
    frames = [frame(seed=i) for i in range(5)]
    expected = by_hand(FakeRVM(), frames)
    for rgb, out in zip(frames, expected):
        np.testing.assert_allclose(matter(rgb), out["alpha"][0, 0].numpy(), atol=1e-6, rtol=0)
    # Each call was given the state the previous one returned, the very tensors (nothing copied).
    assert model.calls[0][1] is None
    for (_, _, returned), (_, passed, _) in zip(model.calls, model.calls[1:]):
        assert len(passed) == 4 and all(a is b for a, b in zip(passed, returned))


def alpha_after(frames):
    """The alpha [H, W] of the last of `frames`, the model run by hand from a zero state."""
    return by_hand(FakeRVM(), frames)[-1]["alpha"][0, 0].numpy()


def test_reset_and_a_new_shape_dtype_or_layout_start_from_a_zero_state():
    matter = Matter(FakeRVM())
    clip = [frame(seed=i, level=200) for i in range(3)]
    assert not np.allclose(alpha_after(clip), alpha_after(clip[-1:]), atol=1e-3)  # the state matters
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new clip is said by nothing
        for rgb in clip:
            matter(rgb)
        matter.reset()
        np.testing.assert_allclose(matter(clip[0]), alpha_after(clip[:1]), atol=1e-6)
        np.testing.assert_allclose(matter(clip[1]), alpha_after(clip[:2]), atol=1e-6)  # carried again
        other = frame(20, 44, seed=9, level=40)  # another size: a new clip, then carried again
        np.testing.assert_allclose(matter(other), alpha_after([other]), atol=1e-6)
        np.testing.assert_allclose(matter(other), alpha_after([other, other]), atol=1e-6)
        hwc = torch.from_numpy(clip[0])
        news = {"dtype": hwc.float() / 255, "layout": hwc.permute(2, 0, 1),
                "batch": hwc.permute(2, 0, 1)[None]}
        for name, tensor in news.items():
            for rgb in clip:
                matter(rgb)
            got = matter(tensor).reshape(clip[0].shape[:2]).numpy()
            np.testing.assert_allclose(got, alpha_after(clip[:1]), atol=1e-6, err_msg=name)


def test_a_batch_is_clips_side_by_side():
    matter = Matter(FakeRVM())
    clips = [[frame(seed=10 * c + i) for i in range(3)] for c in range(2)]
    for i in range(3):
        batch = torch.stack([torch.from_numpy(clips[c][i]).permute(2, 0, 1) for c in range(2)])
        got = matter(batch)
    for c in range(2):
        expected = by_hand(FakeRVM(), clips[c])[-1]["alpha"][0, 0]
        torch.testing.assert_close(got[c, 0], expected, atol=1e-6, rtol=0)


def test_a_refused_frame_or_background_leaves_the_state_as_it_was():
    matter = Matter(FakeRVM())
    clip = [frame(seed=i) for i in range(3)]
    matter(clip[0])
    with pytest.raises(ValueError, match="background"):
        matter.composite(clip[1], frame(5, 5))
    with pytest.raises(ValueError, match="NumPy frame must be uint8 RGB"):
        matter(clip[1].astype(np.float32))
    np.testing.assert_allclose(matter(clip[1]), alpha_after(clip[:2]), atol=1e-6)


def test_foreground_outputs_and_composite_come_from_one_run():
    model = FakeRVM()
    matter = Matter(model)
    clip = [frame(seed=i) for i in range(3)]
    expected = by_hand(FakeRVM(), clip)
    background = frame(seed=7)
    for i, (rgb, out) in enumerate(zip(clip, expected)):
        calls = len(model.calls)
        result = matter.outputs(rgb, background, foreground=True)
        assert len(model.calls) == calls + 1  # alpha, composite and foreground from one run
        alpha = out["alpha"][0, 0].numpy().astype(np.float64)
        fg = out["foreground"][0].permute(1, 2, 0).numpy().astype(np.float64)
        assert result.alpha.dtype == np.uint8 and result.alpha.shape == rgb.shape[:2]
        assert np.abs(result.alpha.astype(int) - np.floor(alpha * 255 + 0.5)).max() <= 1
        assert result.foreground.dtype == np.uint8 and result.foreground.shape == (*rgb.shape[:2], 4)
        np.testing.assert_array_equal(result.foreground[..., 3], result.alpha)
        assert np.abs(result.foreground[..., :3].astype(int) - np.floor(fg * 255 + 0.5)).max() <= 1
        # The composite is made with the predicted foreground, not the frame (RVM's authors' way).
        composite = np.floor(alpha[..., None] * fg * 255 + (1 - alpha[..., None]) * background + 0.5)
        assert np.abs(result.composite.astype(int) - composite).max() <= 1
    only_alpha = Matter(FakeRVM()).outputs(clip[0])
    assert only_alpha.composite is None and only_alpha.foreground is None


def test_foreground_in_every_frame_kind():
    clip = [frame(seed=i) for i in range(2)]
    fg = by_hand(FakeRVM(), clip)[-1]["foreground"][0]  # [3, H, W]
    hwc = [torch.from_numpy(rgb) for rgb in clip]
    cases = {"numpy": (clip, fg.permute(1, 2, 0).numpy()),
             "hwc": (hwc, fg.permute(1, 2, 0)),
             "chw": ([t.permute(2, 0, 1) for t in hwc], fg),
             "bchw": ([t.permute(2, 0, 1)[None] for t in hwc], fg[None])}
    for name, (frames, expected) in cases.items():
        matter = Matter(FakeRVM())
        matter.foreground(frames[0])
        got = matter.foreground(frames[1])
        assert type(got) is type(expected) and got.shape == expected.shape, name
        assert got.dtype == expected.dtype, name
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), atol=1e-6, err_msg=name)


def test_models_without_a_foreground_say_so(monkeypatch):
    monkeypatch.setitem(fastmatte.models.MODELS, "cra", replace(fastmatte.models.MODELS["cra"],
                                                                build=CRAMatting.tiny))
    with pytest.warns(RandomWeightsWarning):
        by_name = Matter("cra")
    for matter, name in ((Matter(CRAMatting.tiny()), "CRAMatting"), (by_name, "cra")):
        assert not matter.recurrent and not matter.predicts_foreground
        with pytest.raises(ValueError, match=f"model {name} predicts no foreground"):
            matter.foreground(frame())
        with pytest.raises(ValueError, match=f"model {name} predicts no foreground"):
            matter.outputs(frame(), foreground=True)
        matter.reset()  # nothing to reset, and no error
        result = matter.outputs(frame(), (0, 255, 0))  # the composite of the frame's own colours
        np.testing.assert_array_equal(result.composite, matter.composite(frame(), (0, 255, 0)))
        np.testing.assert_array_equal(result.alpha, matter.alpha_uint8(frame()))


def test_call_options_reach_every_call_and_are_checked():
    model = FakeRVM()
    matter = Matter(model, call_options={"downsample_ratio": 0.25})
    matter(frame())
    matter.outputs(frame(seed=1), (0, 0, 0), foreground=True)
    assert [call[0] for call in model.calls] == [0.25, 0.25]
    Matter(model)(frame())
    assert model.calls[-1][0] is None  # not given: the model picks
    with pytest.raises(ValueError, match=r"call_options 'ratio' is not an argument of FakeRVM.forward "
                                         r"\(it takes downsample_ratio, backend\)"):
        Matter(FakeRVM(), call_options={"ratio": 0.5})
    with pytest.raises(ValueError, match="call_options cannot set 'state'"):
        Matter(FakeRVM(), call_options={"state": None})
    with pytest.raises(ValueError, match="call_options 'downsample_ratio' is not an argument of "
                                         "CRAMatting.predict"):
        Matter(CRAMatting.tiny(), call_options={"downsample_ratio": 0.5})
    tiny = CRAMatting.tiny()
    eager = Matter(CRAMatting.tiny(), call_options={"backend": "torch"})  # a per-frame model's predict
    eager.model.load_state_dict(tiny.state_dict())
    np.testing.assert_allclose(eager(frame()), Matter(tiny)(frame()), atol=1e-4)


def test_a_recurrent_model_must_return_its_state():
    class Stateless(FakeRVM):
        def forward(self, image, state=None, downsample_ratio=None, backend=None):
            return {"alpha": super().forward(image)["alpha"]}

    with pytest.raises(TypeError, match="recurrent model Stateless must return a dict with 'alpha', "
                                        "'foreground' and 'state', got \\['alpha'\\]"):
        Matter(Stateless())(frame())


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replays_carry_the_state_as_eager_runs_do(precision):
    eager = Matter(FakeRVM(), device="cuda", precision=precision, cuda_graph=False)
    graphed = Matter(FakeRVM(), device="cuda", precision=precision)
    clip = [frame(72, 100, seed=s) for s in range(6)]
    atol = 1 if precision == "fp32" else 2  # uint8 levels

    def same(a, b):
        assert np.abs(a.alpha.astype(int) - b.alpha).max() <= atol
        assert np.abs(a.foreground.astype(int) - b.foreground).max() <= atol
        assert np.abs(a.composite.astype(int) - b.composite).max() <= atol

    for rgb in clip:  # the first frame eager, the second captured, then replays
        same(graphed.outputs(rgb, (0, 255, 0), True), eager.outputs(rgb, (0, 255, 0), True))
    (graph,) = graphed._graphs.values()
    assert graph is not None and graph.state_in is not None
    graphed.reset()
    eager.reset()
    for rgb in clip[:3]:  # replays from a zero state
        same(graphed.outputs(rgb, (0, 255, 0), True), eager.outputs(rgb, (0, 255, 0), True))
    # Without syncing in between: state copies and replays must stay in stream order.
    tensors = [graphed.alpha_tensor(rgb) for rgb in clip]
    expected = [eager.alpha_tensor(rgb) for rgb in clip]
    for got, want in zip(tensors, expected):
        torch.testing.assert_close(got, want, atol=2e-3 if precision == "fp32" else 1e-2, rtol=0)
    small = frame(40, 60, seed=9)  # a new size: a new clip, from zero
    atol = 2e-3 if precision == "fp32" else 1e-2
    np.testing.assert_allclose(graphed(small), alpha_after([small]), atol=atol)


# `fastmatte matte` with a recurrent model.

@pytest.fixture
def fake_rvm(monkeypatch):
    """"fakervm" is FakeRVM in the zoo for this test (its weights are its initial ones)."""
    entry = replace(fastmatte.models.MODELS["cra"], build=FakeRVM, summary="a fake recurrent model",
                    default_weights=None)
    monkeypatch.setitem(fastmatte.models.MODELS, "fakervm", entry)
    return "fakervm"


def matte(*args):
    return main(["matte", *map(str, args)])


def write_clip(path, frames, fps=10):
    h, w = frames[0].shape[:2]
    with VideoWriter(path, fps, (w, h)) as writer:
        for rgb in frames:
            writer.write(rgb)
    return path


def read_sequence(folder):
    """The RGBA frames of a foreground folder, in order, and their names."""
    names = sorted(p.name for p in folder.iterdir())
    frames = [cv2.cvtColor(cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
              for name in names]
    return names, frames


def test_two_clips_in_one_call_each_start_from_a_zero_state(fake_rvm, tmp_path, capsys):
    bright = write_clip(tmp_path / "bright.mp4", [frame(36, 52, seed=i, level=220) for i in range(7)])
    dark = write_clip(tmp_path / "dark.avi", [frame(36, 52, seed=i, level=30) for i in range(5)], fps=12.5)
    out = tmp_path / "out"
    assert matte(bright, dark, "-o", out, "--model", fake_rvm, "--foreground", "--background", "green") == 0
    err = capsys.readouterr().err
    assert "| 12/12 [" in err  # the progress bar counted every frame of both clips
    for clip, n, fps in ((bright, 7, 10.0), (dark, 5, 12.5)):
        with VideoReader(clip) as reader:
            decoded = list(reader)
        fresh = Matter(FakeRVM())  # from a zero state, as if this clip were the only input
        expected = [fresh.outputs(rgb, (0, 255, 0), foreground=True) for rgb in decoded]
        names, frames = read_sequence(out / f"{clip.stem}_foreground")
        assert names == [f"frame_{i:06d}.png" for i in range(n)]
        for got, want in zip(frames, expected):
            np.testing.assert_array_equal(got, want.foreground)  # PNG: exactly
        for kind in ("alpha", "composite"):
            with VideoReader(out / f"{clip.stem}_{kind}.mp4") as reader:
                assert (reader.frame_count, reader.fps, reader.size) == (n, fps, (52, 36))
                video = list(reader)
            assert len(video) == n
        with VideoReader(out / f"{clip.stem}_alpha.mp4") as reader:
            for got, rgba in zip(reader, frames):  # the alpha video's frames are the RGBA alpha, mp4v-lossy
                assert np.abs(got[..., 0].astype(int) - rgba[..., 3]).mean() < 4
    # Carried over from the bright clip, the dark clip's first frames would have come out otherwise.
    carried = Matter(FakeRVM())
    for rgb in VideoReader(bright):
        carried.outputs(rgb)
    first_dark = next(iter(VideoReader(dark)))
    _, dark_frames = read_sequence(out / "dark_foreground")
    assert np.abs(carried.outputs(first_dark).alpha.astype(int) - dark_frames[0][..., 3]).max() > 50


def test_photos_are_one_frame_clips_from_a_zero_state(fake_rvm, tmp_path):
    photos = [tmp_path / "a.png", tmp_path / "b.png"]
    for i, path in enumerate(photos):
        write_image(path, frame(36, 52, seed=i, level=60 + 120 * i))
    out = tmp_path / "out"
    assert matte(*photos, "-o", out, "--model", fake_rvm, "--foreground") == 0
    model = FakeRVM()
    for path in photos:
        rgb = read_image(path)
        with torch.no_grad():
            expected = (model.predict(model_input(rgb))[0, 0] * 255).round().to(torch.uint8).numpy()
        alpha = read_matte(out / f"{path.stem}_alpha.png")
        np.testing.assert_array_equal(alpha, expected)
        names, frames = read_sequence(out / f"{path.stem}_foreground")
        assert names == ["frame_000000.png"]
        np.testing.assert_array_equal(frames[0][..., 3], alpha)  # the same alpha, exactly
    assert sorted(p.name for p in out.iterdir()) == ["a_alpha.png", "a_foreground", "b_alpha.png",
                                                      "b_foreground"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastmatte matte: "), err
    return err


def test_foreground_with_a_per_frame_model_is_refused_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(fastmatte.models.MODELS, "cra", replace(fastmatte.models.MODELS["cra"],
                                                                build=CRAMatting.tiny))
    write_image(tmp_path / "a.png", frame())
    assert matte(tmp_path / "a.png", "-o", tmp_path / "out", "--foreground") == 2
    assert "--foreground: model 'cra' predicts no foreground" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_foreground_folders_are_checked_like_every_output(fake_rvm, tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.mp4", [frame(36, 52, seed=i) for i in range(3)])
    out = tmp_path / "out"
    folder = out / "clip_foreground"
    folder.mkdir(parents=True)
    for i in range(6):  # an earlier, longer sequence
        write_image(folder / f"frame_{i:06d}.png", frame(36, 52, seed=i))
    assert matte(clip, "-o", out, "--model", fake_rvm, "--foreground") == 2
    assert "clip_foreground already exist(s); pass --force" in one_line_error(capsys)
    assert matte(clip, "-o", out, "--model", fake_rvm, "--foreground", "--force") == 0
    assert read_sequence(folder)[0] == [f"frame_{i:06d}.png" for i in range(3)]  # replaced whole
    capsys.readouterr()
    (folder / "notes.txt").write_text("mine")
    assert matte(clip, "-o", out, "--model", fake_rvm, "--foreground", "--force") == 2
    assert "refusing to replace" in one_line_error(capsys)
    (folder / "notes.txt").unlink()
    frame0 = folder / "frame_000000.png"
    assert matte(clip, frame0, "-o", out, "--model", fake_rvm, "--foreground", "--force") == 2
    assert f"refusing to replace {folder}: it holds one of the inputs" in one_line_error(capsys)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "clip_foreground").write_text("a file")
    assert matte(clip, "-o", blocked, "--model", fake_rvm, "--foreground", "--force") == 2
    assert "clip_foreground: a file of that name is in the way" in one_line_error(capsys)
    assert (blocked / "clip_foreground").read_text() == "a file"


@pytest.mark.parametrize("stop", ["error", "signal"])
def test_a_clip_stopped_midway_leaves_no_foreground_folder(fake_rvm, tmp_path, capsys, monkeypatch, stop):
    clip = write_clip(tmp_path / "clip.mp4", [frame(36, 52, seed=i) for i in range(6)])
    write_image(tmp_path / "a.png", frame(36, 52))
    outputs = Matter.outputs

    def fail_at_the_fourth_frame(self, *args, **kwargs):
        if len(self.model.calls) == 4:
            raise ValueError("stopped for the test") if stop == "error" else Interrupted(signal.SIGINT)
        return outputs(self, *args, **kwargs)

    monkeypatch.setattr(Matter, "outputs", fail_at_the_fourth_frame)
    out = tmp_path / "out"
    code = matte(tmp_path / "a.png", clip, "-o", out, "--model", fake_rvm, "--foreground",
                 "--background", "red")
    assert code == (1 if stop == "error" else 130)
    # The photo's outputs were finished and are kept; nothing of the clip, not even a temporary.
    assert sorted(p.name for p in out.iterdir()) == ["a_alpha.png", "a_composite.png", "a_foreground"]


# The demo clip.

def test_pan_zoom_windows_move_smoothly_inside_the_photo():
    windows = pan_zoom_windows((512, 600), frames=48, aspect=16 / 9, zoom=1.15)
    assert windows.shape == (48, 4)
    np.testing.assert_allclose(windows[0, 2:], [600, 600 / (16 / 9)])  # the widest 16:9 window
    np.testing.assert_allclose(windows[-1, 2:], windows[0, 2:] / 1.15)  # zoomed in by 15%
    np.testing.assert_allclose(windows[:, 2] / windows[:, 3], 16 / 9)
    assert (windows[:, :2] >= 0).all() and (windows[:, 0] + windows[:, 2] <= 600 + 1e-9).all()
    assert (windows[:, 1] + windows[:, 3] <= 512 + 1e-9).all()
    step = np.diff(windows, axis=0)
    speed = np.abs(step).max(axis=0)
    assert (np.abs(np.diff(step, axis=0)) <= 0.15 * speed).all()  # no jerks: speeds change slowly
    assert (np.abs(step[[0, -1]]) <= 0.1 * speed + 1e-9).all()  # it starts and stops gently
    assert (np.diff(windows[:, 1]) < 0).all()  # the default tilts up, all the way to the top
    assert windows[-1, 1] == 0
    with pytest.raises(ValueError, match="zoom must be a number >= 1"):
        pan_zoom_windows((512, 512), zoom=0.9)
    with pytest.raises(ValueError, match="start must be"):
        pan_zoom_windows((512, 512), start=(0.5, 2))


def test_pan_zoom_clip_is_deterministic_and_smooth(tmp_path):
    y, x = np.mgrid[0:300, 0:400]
    # Ramps: a frame's change is then proportional to how far the window moved (texture would saturate).
    photo = np.stack([y * 0.8, x * 0.6, np.full_like(x, 128)], axis=-1).astype(np.uint8)
    frames = list(pan_zoom_frames(photo, frames=12, size=(160, 90)))
    assert len(frames) == 12 and all(f.shape == (90, 160, 3) and f.dtype == np.uint8 for f in frames)
    again = list(pan_zoom_frames(photo, frames=12, size=(160, 90)))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again))
    steps = [np.abs(b.astype(int) - a).mean() for a, b in zip(frames, frames[1:])]
    total = np.abs(frames[-1].astype(int) - frames[0]).mean()
    assert total > 10 and max(steps) < 0.2 * total  # it moves, in small steps (11 even ones would be 0.09)
    path = write_pan_zoom_clip(photo, tmp_path / "pan.mp4", fps=24.0, frames=12, size=(160, 90))
    with VideoReader(path) as reader:
        assert (reader.frame_count, reader.fps, reader.size) == (12, 24.0, (160, 90))
        assert len(list(reader)) == 12
    with pytest.raises(FileExistsError, match="pan.mp4 already exists"):
        write_pan_zoom_clip(photo, path)
    with pytest.raises(ValueError, match="photo must be uint8 RGB"):
        pan_zoom_frames(photo[..., 0])
    assert list(tmp_path.iterdir()) == [path]


def test_demo_inputs_are_the_astronaut_and_its_clip(tmp_path, capsys, monkeypatch):
    skimage_data = pytest.importorskip("skimage.data")
    out = tmp_path / "demo"
    assert demo_main([str(out)]) == 0
    np.testing.assert_array_equal(read_image(out / "astronaut.png"), skimage_data.astronaut())
    with VideoReader(out / "astronaut_pan.mp4") as reader:
        assert (reader.frame_count, reader.fps, reader.size) == (48, 24.0, (1280, 720))
        assert len(list(reader)) == 48
    assert demo_main([str(out)]) == 2
    assert "already exist(s); pass --force" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if scikit-image were not installed
    assert demo_main([str(out), "--force"]) == 2
    assert "pip install scikit-image" in capsys.readouterr().err
