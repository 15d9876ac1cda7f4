"""fastmatte.io.video: frames written and read back through OpenCV, and damaged files."""
import warnings

import cv2
import numpy as np
import pytest

from fastmatte.io.atomic import PARTIAL
from fastmatte.io.video import UnreadableVideo, VideoEndedEarly, VideoReader, VideoWriter

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
