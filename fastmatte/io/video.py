"""Video files through OpenCV: RGB frames in (any container and codec its FFmpeg build reads),
MPEG-4 Part 2 ("mp4v", the encoder opencv-python-headless ships with) out, each file whole or
absent (written beside the target, then renamed); and PNG sequences out (a folder of lossless
frames, RGBA among them), each folder whole or absent in the same way."""
import errno
import math
import os
import re
import secrets
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np

from fastmatte.io.atomic import PARTIAL, PartialFile

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv")


class UnreadableVideo(OSError):
    """A video file that cannot be opened or decoded; the message names the file."""


class VideoEndedEarly(UserWarning):
    """Fewer frames could be decoded than the container claims (a truncated or damaged file)."""


class _OpenCVFile:
    """An OpenCV video handle (self._handle) released by close() or at the end of a with block."""

    _handle = None

    def close(self):
        if self._handle is not None:
            self._handle.release()
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoReader(_OpenCVFile):
    """The frames of a video file, each uint8 RGB [H, W, 3], in order; iterate once.

    Attributes: fps (float; 0.0 when the container does not say), frame_count (the count the
    container claims, None when it claims none; OpenCV estimates it for some formats),
    width, height, size = (width, height), frames_read (how many frames iteration has
    yielded so far). Raises UnreadableVideo naming the file when it is missing or cannot be
    opened (including an MP4 cut short before its index, which sits at the end).

    When the frames run out before frame_count, iteration ends normally after the frames that
    could be decoded (the decoder conceals what it can, so the last of them may be partly
    damaged), and a VideoEndedEarly warning says how many of how many were read;
    `ended_early` is then True (breaking out of the loop yourself does not set it).
    Use as a context manager, or call close().
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise UnreadableVideo(f"{self.path}: no such file")
        self._handle = cv2.VideoCapture(str(self.path))
        if not self._handle.isOpened():
            raise UnreadableVideo(f"{self.path}: not a video OpenCV can open (unknown format, or damaged)")
        fps = self._handle.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if math.isfinite(fps) and fps > 0 else 0.0
        count = int(self._handle.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.width = int(self._handle.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._handle.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.size = (self.width, self.height)
        self.frames_read = 0
        self.ended_early = False

    def __iter__(self):
        if self._handle is None:
            raise ValueError(f"VideoReader({self.path}) is closed or was iterated already; open it again")
        try:
            while True:
                ok, frame = self._handle.read()
                if not ok:
                    break
                self.frames_read += 1
                yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        finally:
            self.close()
        self.ended_early = self.frame_count is not None and self.frames_read < self.frame_count
        if self.ended_early:
            warnings.warn(VideoEndedEarly(f"{self.path}: only {self.frames_read} of the {self.frame_count} "
                                          "frames its container claims could be decoded"), stacklevel=2)


class VideoWriter(_OpenCVFile):
    """Writes uint8 frames to a new video file: RGB [H, W, 3], or gray [H, W] (stored as three
    equal channels, so that every player shows it).

    fps: frames per second (> 0); size: (width, height) of every frame, as OpenCV orders it.
    fourcc: the codec; "mp4v" is what opencv-python-headless can encode (no H.264), lossy, so
    an alpha video is an approximate alpha (write PNGs for exact values).
    The file is whole or absent: frames go to a hidden temporary file beside `path`, with the
    same suffix (OpenCV picks the container from it), and close() releases it (which writes the
    container's index) and then renames it to `path` (ValueError if no frame was written);
    until then `path` does not exist, or still holds the old file. discard(), or an exception
    leaving a with block, removes the temporary file instead. An existing file is never
    replaced unless overwrite (FileExistsError, here or at close() when it appeared
    meanwhile); OSError naming the file when OpenCV cannot open it for writing. write()
    refuses a frame of another size (OpenCV would drop it silently).
    """

    def __init__(self, path, fps: float, size, overwrite: bool = False, fourcc: str = "mp4v"):
        self.path = Path(path)
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"VideoWriter: fps must be a number > 0, got {fps!r}")
        if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
            raise ValueError(f"VideoWriter: size must be (width, height), positive ints, got {size!r}")
        self.size = tuple(size)
        self.frames_written = 0
        self._partial = PartialFile(self.path, replace=overwrite)
        try:
            self._handle = cv2.VideoWriter(str(self._partial.temporary), cv2.VideoWriter_fourcc(*fourcc),
                                           float(fps), self.size)
            if not self._handle.isOpened():
                raise OSError(f"{self.path}: OpenCV cannot write a {fourcc!r} video there")
        except BaseException:  # no caller holds this writer yet to discard it
            self.discard()
            raise

    def write(self, frame: np.ndarray):
        if self._handle is None:
            raise ValueError(f"VideoWriter({self.path}) is closed")
        width, height = self.size
        is_array = isinstance(frame, np.ndarray)
        if not is_array or frame.dtype != np.uint8 or frame.shape[:2] != (height, width) \
                or not (frame.ndim == 2 or frame.ndim == 3 and frame.shape[2] == 3):
            got = f"{frame.dtype} {list(frame.shape)}" if is_array else type(frame).__name__
            raise ValueError(f"VideoWriter({self.path}): frame must be uint8 [{height}, {width}, 3] RGB or "
                             f"[{height}, {width}] gray, got {got}")
        code = cv2.COLOR_GRAY2BGR if frame.ndim == 2 else cv2.COLOR_RGB2BGR
        self._handle.write(cv2.cvtColor(frame, code))
        self.frames_written += 1

    def close(self):
        """Finish the file and put it in place at `path` (nothing more happens on a second call).
        Without any frame written, nothing is put in place and ValueError says so: OpenCV would
        leave a file no reader can open."""
        if self._handle is not None and self.frames_written == 0:
            self.discard()
            raise ValueError(f"VideoWriter({self.path}): no frame was written, so no video was made")
        super().close()
        self._partial.commit()

    def discard(self):
        """Stop writing and remove the unfinished file; `path` is left as it was."""
        super().close()
        self._partial.discard()

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.discard()


FRAME_NAME = "frame_{:06d}.png"  # the frames of a PNG sequence, numbered from 0
_FRAME = re.compile(r"frame_\d{6}\.png")


def foreign_files(folder) -> list[str]:
    """The names in `folder` (sorted) that are not frames of a PNG sequence (frame_NNNNNN.png
    files): what replacing the folder would destroy besides an earlier sequence."""
    return sorted(entry.name for entry in os.scandir(folder)
                  if not (_FRAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False)))


class PngSequenceWriter:
    """Writes uint8 frames as a folder of PNG files, frame_000000.png, frame_000001.png, ...:
    RGBA [H, W, 4] (straight, not premultiplied, alpha in the 4th channel), RGB [H, W, 3] or
    gray [H, W]; every frame of the first one's shape (ValueError otherwise). PNG is lossless:
    the files hold exactly the values written.

    The folder is whole or absent, as VideoWriter's file is: the frames go to a hidden temporary
    folder beside `folder` (.NAME.<pid>-<random>.partial, made at the first frame), and close()
    renames it to `folder` (ValueError if no frame was written). An existing `folder` is never
    replaced unless overwrite (FileExistsError, here or at close() when it appeared meanwhile),
    and never when it is not a folder or holds anything but frames (FileExistsError naming the
    first of them, see foreign_files): an earlier sequence is moved aside, the new one renamed
    into place and the old one deleted, so that `folder` holds at every moment the old sequence,
    nothing, or the new one (the old one again if the last rename fails or is interrupted; a
    folder another run puts there between the two renames is kept, and FileExistsError raised).
    discard(), or an exception leaving a with block, removes the temporary folder; `folder` is
    left as it was.
    """

    def __init__(self, folder, overwrite: bool = False):
        self.path = Path(folder)
        self.overwrite = overwrite
        self.frames_written = 0
        self._shape = None  # the first frame's
        self._temporary = None  # made at the first frame
        self._closed = False
        self._check_replaceable()

    def write(self, frame: np.ndarray):
        if self._closed:
            raise ValueError(f"PngSequenceWriter({self.path}) is closed")
        is_array = isinstance(frame, np.ndarray)
        if not is_array or frame.dtype != np.uint8 or 0 in frame.shape \
                or not (frame.ndim == 2 or frame.ndim == 3 and frame.shape[2] in (3, 4)) \
                or self._shape not in (None, frame.shape):
            got = f"{frame.dtype} {list(frame.shape)}" if is_array else type(frame).__name__
            want = "uint8 [H, W, 4] RGBA, [H, W, 3] RGB or [H, W] gray" if self._shape is None \
                else f"uint8 {list(self._shape)}, as the first frame"
            raise ValueError(f"PngSequenceWriter({self.path}): frame must be {want}, got {got}")
        shape = frame.shape
        if frame.ndim == 3:  # OpenCV stores BGR(A)
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR if shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
        ok, encoded = cv2.imencode(".png", frame)
        if not ok:
            raise OSError(f"{self.path}: OpenCV could not encode frame {self.frames_written} as PNG")
        if self._temporary is None:
            # Named before it exists, so that discard() removes it wherever an interruption lands.
            self._temporary = self.path.with_name(
                f".{self.path.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")
            os.mkdir(self._temporary)
        encoded.tofile(self._temporary / FRAME_NAME.format(self.frames_written))
        self._shape = shape
        self.frames_written += 1

    def close(self):
        """Put the folder in place at `path` (nothing more happens on a second call). Without any
        frame written, nothing is put in place and ValueError says so."""
        if self._closed:
            return
        self._closed = True
        if self._temporary is None:
            raise ValueError(f"PngSequenceWriter({self.path}): no frame was written, so no sequence was made")
        try:
            self._commit()
        except BaseException:
            self.discard()
            raise
        self._temporary = None

    def _commit(self):
        aside = None
        try:
            if os.path.lexists(self.path):
                self._check_replaceable()
                aside = self._temporary.with_name(self._temporary.name + "-old")
                os.rename(self.path, aside)
            os.rename(self._temporary, self.path)
        except BaseException as error:  # an interruption too: the old sequence back rather than nothing
            if aside is not None and not os.path.lexists(self.path):
                os.rename(aside, self.path)
                aside = None
            if isinstance(error, OSError) and error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise FileExistsError(f"{self.path} appeared while this sequence was written; not "
                                      "replaced") from error  # another run's, put there meanwhile
            raise
        finally:
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)

    def _check_replaceable(self):
        if not os.path.lexists(self.path):
            return
        if not self.overwrite:
            raise FileExistsError(f"{self.path} already exists; not overwritten (pass overwrite=True / "
                                  "--force)")
        if not self.path.is_dir() or self.path.is_symlink():
            raise FileExistsError(f"{self.path} exists and is not a folder; not replaced by a PNG sequence")
        foreign = foreign_files(self.path)
        if foreign:
            raise FileExistsError(f"{self.path} holds files other than frame_NNNNNN.png ({foreign[0]}"
                                  f"{' and more' if len(foreign) > 1 else ''}); not replaced")

    def discard(self):
        """Stop writing and remove the unfinished folder; `path` is left as it was."""
        self._closed = True
        if self._temporary is not None:
            shutil.rmtree(self._temporary, ignore_errors=True)
            self._temporary = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.discard()
