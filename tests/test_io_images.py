"""fastmatte.io.read_image / write_image on files in a temporary folder, checked against
pixels written by cv2 directly (BGR order on disk) or read back by Pillow."""
import cv2
import numpy as np
import pytest
from PIL import Image

from fastmatte.io import UnreadableImage, read_image, write_image

RNG = np.random.default_rng(0)


def cv2_write(path, bgr_or_gray):
    ok, encoded = cv2.imencode(path.suffix, bgr_or_gray)
    assert ok
    encoded.tofile(path)
    return path


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tiff"])
def test_rgb_round_trip_is_exact_for_lossless_formats(tmp_path, suffix):
    rgb = RNG.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = tmp_path / f"a{suffix}"
    write_image(path, rgb)
    np.testing.assert_array_equal(read_image(path), rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), rgb)  # RGB order on disk


def test_gray_written_as_one_channel_and_read_as_three(tmp_path):
    gray = RNG.integers(0, 256, (5, 6), dtype=np.uint8)
    path = tmp_path / "g.png"
    write_image(path, gray)
    assert Image.open(path).mode == "L"
    np.testing.assert_array_equal(read_image(path), np.repeat(gray[..., None], 3, axis=2))


def test_sixteen_bit_is_scaled_to_eight_bits(tmp_path):
    rgb16 = RNG.integers(0, 65536, (4, 5, 3), dtype=np.uint16)
    rgb16[0, 0] = (0, 65535, 32767)
    path = cv2_write(tmp_path / "a16.png", rgb16[..., ::-1])
    got = read_image(path)
    assert got.dtype == np.uint8
    expected = np.floor(rgb16.astype(np.float64) * 255 / 65535 + 0.5)
    np.testing.assert_array_equal(got, expected)
    assert tuple(got[0, 0]) == (0, 255, 127)


def test_alpha_channel_is_dropped_and_colours_kept(tmp_path):
    rgba = RNG.integers(0, 256, (6, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 0  # even fully transparent pixels keep their stored colour
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(read_image(path), rgba[..., :3])


def test_float_tiff_is_taken_as_zero_to_one(tmp_path):
    values = np.array([[[0.0, 0.5, 1.0], [2.0, -1.0, 0.25]]], np.float32)
    path = cv2_write(tmp_path / "f.tiff", values[..., ::-1].copy())
    np.testing.assert_array_equal(read_image(path), [[[0, 128, 255], [255, 0, 64]]])


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(UnreadableImage, match="missing.png: cannot be read"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty.png: not an image: the file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "text.jpg").write_text("hello")
    with pytest.raises(UnreadableImage, match="text.jpg: not an image OpenCV can decode"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(UnreadableImage, match="cannot be read"):
        read_image(tmp_path)  # a folder


def test_write_refuses_to_overwrite_unless_told(tmp_path):
    path = tmp_path / "a.png"
    first, second = np.zeros((3, 3), np.uint8), np.full((3, 3), 200, np.uint8)
    write_image(path, first)
    with pytest.raises(FileExistsError, match="a.png already exists"):
        write_image(path, second)
    np.testing.assert_array_equal(read_image(path)[..., 0], first)  # untouched
    write_image(path, second, overwrite=True)
    np.testing.assert_array_equal(read_image(path)[..., 0], second)


@pytest.mark.parametrize("bad", [np.zeros((3, 3, 4), np.uint8), np.zeros((3, 3), np.float32),
                                 np.zeros((0, 3), np.uint8), [[0, 1]]])
def test_write_refuses_what_it_cannot_store(tmp_path, bad):
    with pytest.raises(ValueError, match="uint8 \\[H, W, 3\\] RGB or \\[H, W\\] gray"):
        write_image(tmp_path / "a.png", bad)
    assert not (tmp_path / "a.png").exists()


def test_write_refuses_an_unknown_suffix(tmp_path):
    with pytest.raises(ValueError, match="cannot encode .*a.xyz"):
        write_image(tmp_path / "a.xyz", np.zeros((2, 2), np.uint8))


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    write_image(path, np.zeros((3, 3), np.uint8))
    before = path.read_bytes()

    class HalfWritten:
        def tofile(self, target):
            with open(target, "wb") as half:
                half.write(before[:10])
            raise OSError("disk full")

    monkeypatch.setattr(cv2, "imencode", lambda suffix, image: (True, HalfWritten()))
    with pytest.raises(OSError, match="disk full"):
        write_image(path, np.full((3, 3), 9, np.uint8), overwrite=True)
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == before


def test_a_file_that_appears_meanwhile_is_not_replaced_without_overwrite(tmp_path, monkeypatch):
    path = tmp_path / "a.png"
    encode = cv2.imencode

    def encode_then_race(suffix, image):  # another program writes the file while this one encodes
        path.write_bytes(b"theirs")
        return encode(suffix, image)

    monkeypatch.setattr(cv2, "imencode", encode_then_race)
    with pytest.raises(FileExistsError, match="a.png already exists"):
        write_image(path, np.zeros((3, 3), np.uint8))
    assert list(tmp_path.iterdir()) == [path] and path.read_bytes() == b"theirs"
