"""Files in and out: images and mattes (images), video frames (video), and the procedural
sample portrait with synthetic training composites (sample). Errors name the file and say why."""
from fastmatte.io.images import MATTE_SUFFIXES, UnreadableImage, read_image, read_matte, write_image
from fastmatte.io.video import VIDEO_SUFFIXES, UnreadableVideo, VideoEndedEarly, VideoReader, VideoWriter

__all__ = ["MATTE_SUFFIXES", "VIDEO_SUFFIXES", "UnreadableImage", "UnreadableVideo", "VideoEndedEarly",
           "VideoReader", "VideoWriter", "read_image", "read_matte", "write_image"]
