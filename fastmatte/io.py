"""Reading mattes from image files (OpenCV decodes PNG, JPEG, TIFF, BMP, ...)."""
from pathlib import Path

import cv2
import numpy as np

MATTE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")


class UnreadableImage(OSError):
    """A file that cannot be read as a matte; the message says which file and why."""


def read_matte(path) -> np.ndarray:
    """The matte stored in an image file, as a 2-D array [H, W].

    8-bit files give uint8 (0..255, as the metrics read uint8); 16-bit files give float32
    v / 65535 (0..1); float TIFFs give float32 as stored (meant to be 0..1). A matte saved with
    several channels is accepted when its color channels are identical (a gray matte saved as
    RGB) and any alpha channel is fully opaque; other multi-channel files are refused, since
    which channel holds the matte would be a guess. Raises UnreadableImage otherwise.
    """
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # not cv2.imread: that fails on some paths silently
    except OSError as error:
        raise UnreadableImage(f"{path}: cannot be read ({error.strerror or error})") from error
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise UnreadableImage(f"{path}: not an image OpenCV can decode")
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
