"""`fastmatte matte` on files in a temporary folder: outputs checked against Matter called on
the same pixels, every refusal (missing inputs, clobbering, clashing names, bad arguments and
output folders: exit status 2, one line, before any model is built) and re-runs into the input
folder. Interrupted, killed and concurrent runs are in test_matte_interrupts.py; recurrent (video)
models and --foreground in test_matter_video.py."""
import os
import subprocess
import sys
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

import fastmatte.models
from fastmatte import Matter
import fastmatte.matter
from fastmatte.cli import main
from fastmatte.io import read_image, read_matte, write_image
from fastmatte.cli.matte import fit_background
from fastmatte.models import CRAMatting
from fastmatte.io.video import VideoReader, VideoWriter


@pytest.fixture
def weights(monkeypatch, tmp_path):
    """"cra" is CRAMatting.tiny in this test; returns a weights file for it and a Matter with them."""
    tiny = replace(fastmatte.models.MODELS["cra"], build=CRAMatting.tiny)
    monkeypatch.setitem(fastmatte.models.MODELS, "cra", tiny)
    path = tmp_path / "tiny.pt"
    torch.save(CRAMatting.tiny().state_dict(), path)
    return str(path), Matter("cra", weights=path)


def photo(path, h=40, w=56, seed=0):
    write_image(path, np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def matte(*args):
    return main(["matte", *map(str, args)])


def test_images_give_alpha_pngs_equal_to_matter(weights, tmp_path, capsys):
    path, matter = weights
    a, b = photo(tmp_path / "a.png"), photo(tmp_path / "b.jpg", 33, 20, seed=1)
    assert matte(a, b, "-o", tmp_path / "out", "--weights", path) == 0
    for source in (a, b):
        alpha = read_matte(tmp_path / "out" / f"{source.stem}_alpha.png")
        np.testing.assert_array_equal(alpha, matter.alpha_uint8(read_image(source)))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_alpha.png", "b_alpha.png"]
    captured = capsys.readouterr()
    assert "wrote 2 file(s)" in captured.out and "random weights" not in captured.err


def test_a_folder_is_taken_in_name_order_and_other_files_ignored(weights, tmp_path):
    path, _ = weights
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("c.png", "a.bmp", "b.jpg"):
        photo(folder / name)
    (folder / "notes.txt").write_text("not a photo")
    assert matte(folder, "-o", tmp_path / "out", "--weights", path) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["a_alpha.png", "b_alpha.png", "c_alpha.png"]


def test_background_colour_forms_and_image(weights, tmp_path):
    path, matter = weights
    source = photo(tmp_path / "a.png")
    rgb = read_image(source)
    for i, colour in enumerate(["green", "#00ff00", "0,255,0"]):
        out = tmp_path / f"out{i}"
        assert matte(source, "-o", out, "--weights", path, "--background", colour) == 0
        np.testing.assert_array_equal(read_image(out / "a_composite.png"), matter.composite(rgb, (0, 255, 0)))
        np.testing.assert_array_equal(read_matte(out / "a_alpha.png"), matter.alpha_uint8(rgb))
    backdrop = photo(tmp_path / "backdrop.png", 20, 120, seed=3)  # another size and shape
    assert matte(source, "-o", tmp_path / "img", "--weights", path, "--background", backdrop) == 0
    fitted = fit_background(read_image(backdrop), 40, 56)
    composite = read_image(tmp_path / "img" / "a_composite.png")
    np.testing.assert_array_equal(composite, matter.composite(rgb, fitted))


def test_fit_background_covers_and_center_crops():
    image = np.random.default_rng(0).integers(0, 256, (10, 40, 3), dtype=np.uint8)
    fitted = fit_background(image, 20, 20)  # scaled x2 to 20 x 80, then columns 30..50
    scaled = cv2.resize(image, (80, 20), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(fitted, scaled[:, 30:50])
    assert fit_background(image, 5, 20).shape == (5, 20, 3)


def test_bad_background_is_refused(weights, tmp_path, capsys):
    assert matte(photo(tmp_path / "a.png"), "-o", tmp_path / "out", "--background", "chartreuse-ish") == 2
    assert "--background must be a colour" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def write_video(path, frames=6, h=36, w=52):
    rng = np.random.default_rng(0)
    with VideoWriter(path, 10, (w, h)) as writer:
        for _ in range(frames):
            writer.write(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    return path


def test_a_video_gives_alpha_and_composite_videos(weights, tmp_path):
    path, matter = weights
    video = write_video(tmp_path / "clip.avi")
    assert matte(video, "-o", tmp_path / "out", "--weights", path, "--background", "blue") == 0
    with VideoReader(video) as reader:
        expected = [matter.alpha_uint8(f) for f in reader]
    for kind in ("alpha", "composite"):
        with VideoReader(tmp_path / "out" / f"clip_{kind}.mp4") as reader:
            assert (reader.frame_count, reader.size, reader.fps) == (6, (52, 36), 10.0)
            frames = list(reader)
        assert len(frames) == 6
    for got, alpha in zip(VideoReader(tmp_path / "out" / "clip_alpha.mp4"), expected):
        assert np.abs(got[..., 0].astype(int) - alpha).mean() < 6  # mp4v is lossy


def test_truncated_video_keeps_its_frames_and_fails_at_the_end(weights, tmp_path, capsys):
    path, _ = weights
    full = tmp_path / "full.avi"
    writer = cv2.VideoWriter(str(full), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    rng = np.random.default_rng(0)
    for _ in range(20):
        writer.write(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert matte(cut, photo(tmp_path / "a.png"), "-o", tmp_path / "out", "--weights", path) == 1
    err = capsys.readouterr().err
    assert "cut.avi: only" in err and "of the 20 frames" in err
    with VideoReader(tmp_path / "out" / "cut_alpha.mp4") as reader:
        assert 0 < reader.frame_count < 20
    assert (tmp_path / "out" / "a_alpha.png").exists()


def test_missing_input_stops_before_writing_anything(weights, tmp_path, capsys):
    assert matte(photo(tmp_path / "a.png"), tmp_path / "gone.png", "-o", tmp_path / "out") == 2
    assert "gone.png: no such file or folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unreadable_input_is_reported_and_the_others_done(weights, tmp_path, capsys):
    path, _ = weights
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    code = matte(tmp_path / "broken.png", tmp_path / "fake.mp4", photo(tmp_path / "a.png"), "-o",
                 tmp_path / "out", "--weights", path)
    err = capsys.readouterr().err
    assert code == 1 and "2 problem(s)" in err
    assert "broken.png: not an image OpenCV can decode" in err and "fake.mp4: not a video" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a_alpha.png"]


def test_never_overwrites_an_input_even_with_force(weights, tmp_path, capsys):
    path, _ = weights
    x, previous = photo(tmp_path / "x.png"), photo(tmp_path / "x_alpha.png", seed=9)
    before = previous.read_bytes()
    assert matte(x, previous, "-o", tmp_path, "--weights", path, "--force") == 2
    assert "it is one of the inputs" in capsys.readouterr().err
    assert previous.read_bytes() == before
    backdrop = photo(tmp_path / "y_composite.png", seed=4)  # the composite of an input y.png would be it
    before = backdrop.read_bytes()
    (tmp_path / "other").mkdir()
    code = matte(photo(tmp_path / "other" / "y.png"), "-o", tmp_path, "--background", backdrop, "--force")
    assert code == 2 and "y_composite.png: it is one of the inputs" in capsys.readouterr().err
    assert backdrop.read_bytes() == before


def test_existing_outputs_need_force(weights, tmp_path, capsys):
    path, matter = weights
    source = photo(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    old = tmp_path / "out" / "a_alpha.png"
    old.write_bytes(b"keep me")
    assert matte(source, "-o", tmp_path / "out", "--weights", path) == 2
    assert "a_alpha.png already exist" in capsys.readouterr().err and old.read_bytes() == b"keep me"
    assert matte(source, "-o", tmp_path / "out", "--weights", path, "--force") == 0
    np.testing.assert_array_equal(read_matte(old), matter.alpha_uint8(read_image(source)))


def test_same_stem_inputs_do_not_overwrite_each_other(weights, tmp_path, capsys):
    path, matter = weights
    png, jpg = photo(tmp_path / "x.png"), photo(tmp_path / "x.jpg", seed=2)
    assert matte(png, jpg, png, "-o", tmp_path / "out", "--weights", path) == 0  # x.png twice: once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x_jpg_alpha.png", "x_png_alpha.png"]
    for source, name in ((png, "x_png"), (jpg, "x_jpg")):
        np.testing.assert_array_equal(read_matte(tmp_path / "out" / f"{name}_alpha.png"),
                                      matter.alpha_uint8(read_image(source)))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    same = [photo(tmp_path / d / "y.png") for d in "ab"]
    assert matte(*same, "-o", tmp_path / "out2") == 2
    assert "would both write" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_random_weights_said_and_cpu_half_precision_refused(weights, tmp_path, capsys):
    source = photo(tmp_path / "a.png")
    assert matte(source, "-o", tmp_path / "out") == 0
    assert "random weights" in capsys.readouterr().err
    assert matte(source, "-o", tmp_path / "out2", "--device", "cpu", "--precision", "fp16") == 2
    assert "needs device='cuda'" in capsys.readouterr().err


def test_python_dash_m_is_the_same_command(tmp_path):
    """The default (full-size) model, in a fresh interpreter, on a small photo."""
    source = photo(tmp_path / "a.png", 48, 64)
    command = [sys.executable, "-m", "fastmatte", "matte", str(source), "-o", str(tmp_path / "out"),
               "--device", "cpu"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert read_matte(tmp_path / "out" / "a_alpha.png").shape == (48, 64)


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the command gets as far as building a model."""
    def build(*args, **kwargs):
        pytest.fail("the model was built before the arguments were checked")
    monkeypatch.setattr(fastmatte.matter, "Matter", build)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fastmatte matte: "), err
    return err


def test_empty_background_is_a_usage_error(no_model, tmp_path, capsys):
    assert matte(photo(tmp_path / "a.png"), "-o", tmp_path / "out", "--background", "") == 2
    assert "--background must be a colour" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


def test_an_output_folder_that_cannot_be_made_is_refused_first(no_model, tmp_path, capsys):
    source = photo(tmp_path / "a.png")
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    assert matte(source, "-o", blocker / "out", "--force") == 2
    err = one_line_error(capsys)
    assert f"cannot create the output folder {blocker / 'out'}: a file is in the way ({blocker})" in err
    assert matte(source, "-o", blocker, "--force") == 2
    assert f"cannot write into {blocker}: it is a file, not a folder" in one_line_error(capsys)
    assert blocker.read_text() == "a file"


def test_an_unwritable_output_folder_is_refused_first(no_model, tmp_path, capsys, monkeypatch):
    # Tests may run as root, for whom chmod takes nothing away: os.access stands in for the kernel.
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    assert matte(photo(tmp_path / "a.png"), "-o", tmp_path / "out") == 2
    assert f"no permission to write in {tmp_path}" in one_line_error(capsys)


def test_an_output_name_taken_by_a_folder_is_refused_even_with_force(no_model, tmp_path, capsys):
    (tmp_path / "out" / "a_alpha.png").mkdir(parents=True)
    assert matte(photo(tmp_path / "a.png"), "-o", tmp_path / "out", "--force") == 2
    assert "a_alpha.png: a folder of that name is in the way" in one_line_error(capsys)


def write_inputs(folder):
    """Two photos sharing a stem, one more, and a video: every naming form of the outputs."""
    folder.mkdir()
    sources = [photo(folder / "x.png"), photo(folder / "x.jpg", seed=1), photo(folder / "y.bmp", seed=2),
               write_video(folder / "clip.avi", frames=3)]
    return {p.name: p.read_bytes() for p in sources}


def test_output_folder_equal_to_the_input_folder_can_be_run_again(weights, tmp_path, capsys):
    path, matter = weights
    folder = tmp_path / "photos"
    inputs = write_inputs(folder)
    outputs = ["clip_alpha.mp4", "clip_composite.mp4", "x_jpg_alpha.png", "x_jpg_composite.png",
               "x_png_alpha.png", "x_png_composite.png", "y_alpha.png", "y_composite.png"]
    assert matte(folder, "-o", folder, "--weights", path, "--background", "green") == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted([*inputs, *outputs])
    capsys.readouterr()
    assert matte(folder, "-o", folder, "--weights", path, "--background", "green") == 2
    assert "already exist(s); pass --force" in capsys.readouterr().err
    (folder / "y_alpha.png").write_bytes(b"stale")
    assert matte(folder, "-o", folder, "--weights", path, "--background", "green", "--force") == 0
    captured = capsys.readouterr()
    assert "wrote 8 file(s)" in captured.out and "4 of 4 input(s)" in captured.out
    assert "left out 8 file(s) named as the outputs of other inputs" in captured.err
    assert sorted(p.name for p in folder.iterdir()) == sorted([*inputs, *outputs])  # no y_alpha_alpha.png
    assert {name: (folder / name).read_bytes() for name in inputs} == inputs
    np.testing.assert_array_equal(read_matte(folder / "y_alpha.png"),
                                  matter.alpha_uint8(read_image(folder / "y.bmp")))
    # Named on the command line, an output-like file is an input, and so it is never replaced.
    assert matte(folder / "y.bmp", folder / "y_alpha.png", "-o", folder, "--weights", path, "--force") == 2
    assert "y_alpha.png: it is one of the inputs" in capsys.readouterr().err


def test_leftover_temporary_files_are_neither_inputs_nor_outputs(weights, tmp_path):
    path, _ = weights
    folder = tmp_path / "photos"
    folder.mkdir()
    source = photo(folder / "a.png")
    leftover = folder / ".a_alpha.4242-0badcafe.partial.png"  # as a SIGKILLed run leaves it
    leftover.write_bytes(b"")
    assert matte(folder, "-o", folder, "--weights", path) == 0
    assert sorted(p.name for p in folder.iterdir()) == sorted([leftover.name, "a.png", "a_alpha.png"])
    assert matte(folder, "-o", folder, "--weights", path, "--force") == 0
    assert source.exists() and leftover.read_bytes() == b""
