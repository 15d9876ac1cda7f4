"""fastmatte.io.video: frames written and read back through OpenCV, damaged files, and PNG
sequences (folders of frames) written whole or not at all."""
import os
import signal
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastmatte.io.atomic import PARTIAL, Interrupted
from fastmatte.io.video import (PngSequenceWriter, UnreadableVideo, VideoEndedEarly, VideoReader, VideoWriter,
                                foreign_files)

H, W, FRAMES = 48, 64, 12


def flat_frames(n=FRAMES):
    """Frames of one colour each (mp4v keeps flat colours within a few levels)."""
    colours = [((37 * i) % 200 + 20, (91 * i) % 200 + 20, (53 * i) % 200 + 20) for i in range(n)]
    return [np.broadcast_to(np.array(c, np.uint8), (H, W, 3)).copy() for c in colours]


def test_write_then_read_back(tmp_path):
    path = tmp_path / "v.mp4"
    frames = flat_frames()
    with VideoWriter(path, 12.5, (W, H)) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == FRAMES
    with VideoReader(path) as reader:
        assert (reader.fps, reader.frame_count, reader.size) == (12.5, FRAMES, (W, H))
        got = list(reader)
    assert reader.frames_read == FRAMES and not reader.ended_early
    assert len(got) == FRAMES and all(g.shape == (H, W, 3) and g.dtype == np.uint8 for g in got)
    for g, f in zip(got, frames):  # RGB order kept: each frame's mean colour is the one written
        np.testing.assert_allclose(g.reshape(-1, 3).mean(0), f[0, 0], atol=4)


def test_gray_frames_come_back_gray(tmp_path):
    path = tmp_path / "g.mp4"
    with VideoWriter(path, 10, (W, H)) as writer:
        for level in (30, 200):
            writer.write(np.full((H, W), level, np.uint8))
    got = list(VideoReader(path))
    for g, level in zip(got, (30, 200)):  # within mp4v's YUV 4:2:0 rounding of a flat gray
        assert abs(g.astype(int) - level).max() <= 6


def test_writer_refuses_overwrite_wrong_frames_and_bad_arguments(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="v.mp4 already exists"):
        VideoWriter(path, 10, (W, H))
    assert path.read_bytes() == b"precious"
    with pytest.raises(ValueError, match="fps must be a number > 0"):
        VideoWriter(tmp_path / "w.mp4", 0, (W, H))
    with pytest.raises(ValueError, match="size must be \\(width, height\\)"):
        VideoWriter(tmp_path / "w.mp4", 10, (W, H, 3))
    with VideoWriter(path, 10, (W, H), overwrite=True) as writer:
        with pytest.raises(ValueError, match=f"frame must be uint8 \\[{H}, {W}, 3\\]"):
            writer.write(np.zeros((W, H, 3), np.uint8))  # transposed: OpenCV would drop it silently
        with pytest.raises(ValueError, match="frame must be uint8"):
            writer.write(np.zeros((H, W, 3), np.float32))
        writer.write(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="is closed"):
        writer.write(np.zeros((H, W, 3), np.uint8))
    assert writer.frames_written == 1 and list(tmp_path.iterdir()) == [path]


def write_frames(writer, frames):
    for frame in frames:
        writer.write(frame)


def test_the_file_appears_whole_at_close_under_a_hidden_partial_name_until_then(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"the old file")
    writer = VideoWriter(path, 10, (W, H), overwrite=True)
    write_frames(writer, flat_frames())
    temporary = [p for p in tmp_path.iterdir() if p != path]
    assert len(temporary) == 1 and temporary[0].name.startswith(".v.")
    assert temporary[0].name.endswith(f"{PARTIAL}.mp4")
    assert path.read_bytes() == b"the old file"  # untouched while frames are written
    writer.close()
    assert list(tmp_path.iterdir()) == [path]
    with VideoReader(path) as reader:
        assert reader.frame_count == FRAMES and len(list(reader)) == FRAMES
    writer.close()  # a second close does nothing


def test_an_exception_in_the_with_block_or_discard_leaves_no_file(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError, match="stopped"):
        with VideoWriter(path, 10, (W, H)) as writer:
            write_frames(writer, flat_frames(3))
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []
    path.write_bytes(b"the old file")
    writer = VideoWriter(path, 10, (W, H), overwrite=True)
    write_frames(writer, flat_frames(3))
    writer.discard()
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"the old file"


def test_a_video_without_frames_is_not_made(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"the old file")
    with pytest.raises(ValueError, match="v.mp4\\): no frame was written, so no video was made"):
        with VideoWriter(path, 10, (W, H), overwrite=True):
            pass  # OpenCV would leave a file that no reader opens
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"the old file"


def test_a_file_that_appears_while_writing_is_not_replaced_without_overwrite(tmp_path):
    path = tmp_path / "v.mp4"
    writer = VideoWriter(path, 10, (W, H))
    write_frames(writer, flat_frames(3))
    path.write_bytes(b"another program's file")  # e.g. a second run that finished first
    with pytest.raises(FileExistsError, match="v.mp4 already exists"):
        writer.close()
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"another program's file"


def test_missing_and_non_video_files_are_named(tmp_path):
    with pytest.raises(UnreadableVideo, match="nothing.mp4: no such file"):
        VideoReader(tmp_path / "nothing.mp4")
    (tmp_path / "text.mp4").write_text("not a video at all")
    with pytest.raises(UnreadableVideo, match="text.mp4: not a video OpenCV can open"):
        VideoReader(tmp_path / "text.mp4")


def write_avi(path, n=20):
    """An MJPEG AVI of noise frames: every frame a separate JPEG, so a cut file keeps its first frames."""
    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    for _ in range(n):
        writer.write(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    writer.release()


def test_truncated_video_yields_what_it_has_and_warns(tmp_path):
    full, cut = tmp_path / "full.avi", tmp_path / "cut.avi"
    write_avi(full)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reader = VideoReader(cut)
    assert reader.frame_count == 20  # the header still claims them all
    with pytest.warns(VideoEndedEarly, match=r"cut.avi: only \d+ of the 20 frames"):
        frames = list(reader)
    assert 0 < len(frames) < 20 and reader.frames_read == len(frames) and reader.ended_early
    with VideoReader(full) as whole:  # the frames that came are the file's first ones (the last,
        for got, expected in zip(frames[:-1], whole):  # cut in the middle, may be partly damaged)
            np.testing.assert_array_equal(got, expected)


def test_mp4_cut_before_its_index_cannot_be_opened(tmp_path):
    path = tmp_path / "v.mp4"
    with VideoWriter(path, 10, (W, H)) as writer:
        for frame in flat_frames():
            writer.write(frame)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # mp4v files keep their index (moov) at the end
    with pytest.raises(UnreadableVideo, match="v.mp4: not a video OpenCV can open"):
        VideoReader(path)


def test_stopping_early_is_not_a_truncation(tmp_path):
    path = tmp_path / "full.avi"
    write_avi(path)
    reader = VideoReader(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i, _ in enumerate(reader):
            if i == 2:
                break
    assert reader.frames_read == 3 and not reader.ended_early
    with pytest.raises(ValueError, match="closed or was iterated already"):
        next(iter(reader))


def rgba_frames(n=3, h=H, w=W):
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (h, w, 4), dtype=np.uint8) for _ in range(n)]


def read_sequence(folder):
    """The frames of a PNG sequence as stored, RGB(A) order: {name: array}."""
    frames = {}
    for path in sorted(folder.iterdir()):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        frames[path.name] = image if image.ndim == 2 else cv2.cvtColor(
            image, cv2.COLOR_BGRA2RGBA if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return frames


def test_png_sequence_holds_exactly_the_frames_and_appears_whole_at_close(tmp_path):
    folder = tmp_path / "fg"
    frames = rgba_frames()
    writer = PngSequenceWriter(folder)
    for frame in frames:
        writer.write(frame)
    assert not folder.exists()  # until close(), only a hidden temporary folder
    (temporary,) = tmp_path.iterdir()
    assert temporary.name.startswith(".fg.") and temporary.name.endswith(PARTIAL)
    writer.close()
    assert list(tmp_path.iterdir()) == [folder] and writer.frames_written == 3
    stored = read_sequence(folder)
    assert list(stored) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    for got, frame in zip(stored.values(), frames):
        np.testing.assert_array_equal(got, frame)  # lossless, RGBA order kept
    writer.close()  # a second close does nothing
    with pytest.raises(ValueError, match="is closed"):
        writer.write(frames[0])
    for name, frame in (("rgb", frames[0][..., :3]), ("gray", frames[0][..., 3])):
        with PngSequenceWriter(tmp_path / name) as writer:
            writer.write(np.ascontiguousarray(frame))
        np.testing.assert_array_equal(read_sequence(tmp_path / name)["frame_000000.png"], frame)


def test_png_sequence_refuses_bad_frames(tmp_path):
    with PngSequenceWriter(tmp_path / "fg") as writer:
        with pytest.raises(ValueError, match=r"frame must be uint8 \[H, W, 4\] RGBA"):
            writer.write(np.zeros((H, W, 2), np.uint8))
        with pytest.raises(ValueError, match="frame must be uint8"):
            writer.write(np.zeros((H, W, 4), np.float32))
        writer.write(np.zeros((H, W, 4), np.uint8))
        with pytest.raises(ValueError, match=rf"frame must be uint8 \[{H}, {W}, 4\], as the first frame"):
            writer.write(np.zeros((H, W, 3), np.uint8))
    assert len(read_sequence(tmp_path / "fg")) == 1


def test_png_sequence_without_frames_or_after_an_exception_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="no frame was written, so no sequence was made"):
        with PngSequenceWriter(tmp_path / "fg"):
            pass
    with pytest.raises(RuntimeError, match="stopped"):
        with PngSequenceWriter(tmp_path / "fg") as writer:
            writer.write(rgba_frames(1)[0])
            raise RuntimeError("stopped")
    writer = PngSequenceWriter(tmp_path / "fg")
    writer.write(rgba_frames(1)[0])
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def write_sequence(folder, frames, overwrite=False):
    with PngSequenceWriter(folder, overwrite=overwrite) as writer:
        for frame in frames:
            writer.write(frame)


def test_png_sequence_replaces_an_earlier_one_whole_and_only_when_told(tmp_path):
    folder = tmp_path / "fg"
    old = rgba_frames(5)
    write_sequence(folder, old)
    with pytest.raises(FileExistsError, match="fg already exists; not overwritten"):
        PngSequenceWriter(folder)
    new = rgba_frames(2, 20, 30)
    write_sequence(folder, new, overwrite=True)
    stored = read_sequence(folder)  # the new two frames only: none of the old five left behind
    assert list(stored) == ["frame_000000.png", "frame_000001.png"]
    np.testing.assert_array_equal(stored["frame_000001.png"], new[1])
    assert list(tmp_path.iterdir()) == [folder]  # the old one moved aside was deleted
    writer = PngSequenceWriter(tmp_path / "late")
    writer.write(new[0])
    write_sequence(tmp_path / "late", old[:1])  # another run's, finished first
    with pytest.raises(FileExistsError, match="late already exists"):
        writer.close()
    np.testing.assert_array_equal(read_sequence(tmp_path / "late")["frame_000000.png"], old[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fg", "late"]


def test_png_sequence_never_replaces_what_is_not_a_sequence(tmp_path):
    folder = tmp_path / "fg"
    write_sequence(folder, rgba_frames(2))
    (folder / "notes.txt").write_text("mine")
    assert foreign_files(folder) == ["notes.txt"]
    with pytest.raises(FileExistsError, match=r"holds files other than frame_NNNNNN.png \(notes.txt\)"):
        PngSequenceWriter(folder, overwrite=True)
    writer = PngSequenceWriter(tmp_path / "other", overwrite=True)
    writer.write(rgba_frames(1)[0])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "frame_000000.png.bak").write_text("mine")  # appeared while writing
    with pytest.raises(FileExistsError, match="holds files other than"):
        writer.close()
    assert (tmp_path / "other" / "frame_000000.png.bak").read_text() == "mine"
    (tmp_path / "file").write_text("a file")
    with pytest.raises(FileExistsError, match="is not a folder"):
        PngSequenceWriter(tmp_path / "file", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fg", "file", "other"]


@pytest.mark.parametrize("failure", [OSError(5, "simulated I/O error"), Interrupted(signal.SIGTERM)])
def test_png_sequence_keeps_the_old_one_when_the_last_rename_fails(tmp_path, monkeypatch, failure):
    folder = tmp_path / "fg"
    old = rgba_frames(2)
    write_sequence(folder, old)
    writer = PngSequenceWriter(folder, overwrite=True)
    writer.write(rgba_frames(1, 20, 30)[0])
    rename = os.rename

    def fail_into_place(source, target):
        if Path(target) == folder and PARTIAL in Path(source).name and not str(source).endswith("-old"):
            raise failure
        rename(source, target)

    monkeypatch.setattr(os, "rename", fail_into_place)
    with pytest.raises(type(failure)):
        writer.close()
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [folder]
    stored = read_sequence(folder)
    assert len(stored) == 2 and np.array_equal(stored["frame_000001.png"], old[1])
