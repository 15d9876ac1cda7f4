"""Image files through OpenCV (PNG, JPEG, TIFF, BMP, WebP, ...): mattes and RGB photos in,
8-bit images out, each whole or absent (written beside the target, then renamed). Paths are
read and written as bytes, since cv2.imread/imwrite fail silently on some paths."""
from pathlib import Path

import cv2
import numpy as np

from fastmatte.io.atomic import atomic_path

MATTE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class UnreadableImage(OSError):
    """A file that cannot be read as a matte; the message says which file and why."""


def read_image(path) -> np.ndarray:
    """The photo stored in an image file, as uint8 RGB [H, W, 3].

    Gray files are repeated into three channels; an alpha channel is dropped (the stored colors
    are kept as they are, not composited over anything); 16-bit samples are scaled to 8 bits
    (round(v / 257)); float images (TIFF) are taken as 0..1 and clipped. EXIF orientation is
    applied, as photo viewers do. Raises UnreadableImage naming the file when it is missing,
    empty, or not an image OpenCV can decode.
    """
    image = _decode(path, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image.dtype == np.uint16:
        image = np.rint(image / 257.0)
    elif image.dtype.kind == "f":
        image = np.rint(np.clip(np.nan_to_num(image), 0.0, 1.0) * 255)
    elif image.dtype != np.uint8:
        raise UnreadableImage(f"{path}: samples of type {image.dtype} are not supported (expected 8- or "
                              "16-bit integers or floats)")
    return cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_BGR2RGB)


def write_image(path, image: np.ndarray, overwrite: bool = False):
    """Write uint8 RGB [H, W, 3] or gray [H, W] `image` to `path`, in the format its suffix names.

    The file is whole or absent: it is written to a hidden temporary file beside `path` and
    renamed into place once complete (fastmatte.io.atomic), so an interrupted write leaves no
    partial image and concurrent writers leave one complete one. An existing file is never
    replaced unless overwrite (FileExistsError naming it, also when it appears while this one
    is written); ValueError for another dtype or shape, or a suffix OpenCV cannot encode.
    """
    path = Path(path)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or image.ndim == 3 and image.shape[2] == 3) or 0 in image.shape:
        got = f"{image.dtype} {list(image.shape)}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"write_image: image must be a uint8 [H, W, 3] RGB or [H, W] gray array, got {got}")
    bgr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    try:
        ok, encoded = cv2.imencode(path.suffix, bgr)
    except cv2.error:  # raised instead of returning False for a suffix without an encoder
        ok = False
    if not ok:
        raise ValueError(f"write_image: OpenCV cannot encode {path} (suffix {path.suffix!r}); use e.g. .png")
    with atomic_path(path, replace=overwrite) as temporary:
        encoded.tofile(temporary)


def read_matte(path) -> np.ndarray:
    """The matte stored in an image file, as a 2-D array [H, W].

    8-bit files give uint8 (0..255, as the metrics read uint8); 16-bit files give float32
    v / 65535 (0..1); float TIFFs give float32 as stored (meant to be 0..1). A matte saved with
    several channels is accepted when its color channels are identical (a gray matte saved as
    RGB) and any alpha channel is fully opaque; other multi-channel files are refused, since
    which channel holds the matte would be a guess. Raises UnreadableImage otherwise.
    """
    image = _decode(path, cv2.IMREAD_UNCHANGED)
    if image.ndim == 3:
        image = _single_channel(path, image)
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535
    if image.dtype in (np.float32, np.float64):
        return image.astype(np.float32)
    raise UnreadableImage(f"{path}: samples of type {image.dtype} are not a matte (expected 8- or "
                          "16-bit integers or floats)")


def _decode(path, flags) -> np.ndarray:
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise UnreadableImage(f"{path}: cannot be read ({error.strerror or error})") from error
    if not data.size:
        raise UnreadableImage(f"{path}: not an image: the file is empty")
    image = cv2.imdecode(data, flags)
    if image is None:
        raise UnreadableImage(f"{path}: not an image OpenCV can decode")
    return image


def _single_channel(path, image):
    channels = image.shape[2]
    if channels == 4 or channels == 2:  # the last channel is alpha: fine if fully opaque
        opaque = np.iinfo(image.dtype).max if image.dtype.kind == "u" else 1.0
        if not (image[..., -1] == opaque).all():
            raise UnreadableImage(f"{path}: has an alpha channel that is not opaque; save the matte "
                                  "as a single-channel (grayscale) image")
        image = image[..., :-1]
    if not (image == image[..., :1]).all():
        raise UnreadableImage(f"{path}: has {image.shape[2]} different color channels; save the "
                              "matte as a single-channel (grayscale) image")
    return np.ascontiguousarray(image[..., 0])
