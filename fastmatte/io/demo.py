"""The inputs of the video demo (`make demo`): a real photograph and a clip made from it.

    python -m fastmatte.io.demo OUT_DIR [--force]

writes OUT_DIR/astronaut.png, scikit-image's `astronaut` (Eileen Collins, a NASA portrait in the
public domain; 512x512 RGB, shipped inside scikit-image, so nothing is downloaded), and
OUT_DIR/astronaut_pan.mp4, 48 frames at 24 fps, 1280x720, a slow tilt up to her face zooming in
by 15% (fastmatte.io.sample.write_pan_zoom_clip). Each file is whole or absent; existing files
are kept unless --force. scikit-image is optional for fastmatte (it comes with the test extras):
without it the command says so (exit status 2).
"""
import argparse
import sys
from pathlib import Path

from fastmatte.io.atomic import Interrupted, check_output_folder, stop_on_signals
from fastmatte.io.images import write_image
from fastmatte.io.sample import write_pan_zoom_clip

PHOTO, CLIP = "astronaut.png", "astronaut_pan.mp4"
CLIP_FRAMES, CLIP_FPS = 48, 24.0


def astronaut():
    """scikit-image's astronaut photograph, uint8 RGB [512, 512, 3]. ImportError saying what to
    install when scikit-image is missing."""
    try:
        from skimage import data
    except ImportError as error:
        raise ImportError("the demo photo is scikit-image's astronaut, and scikit-image is not installed: "
                          "pip install scikit-image (or fastmatte's test extras, '.[test]')") from error
    return data.astronaut()


def write_demo_inputs(out_dir, force=False) -> tuple[Path, Path]:
    """Writes OUT_DIR/astronaut.png and OUT_DIR/astronaut_pan.mp4 (see the module) into out_dir
    (created if missing), each whole or absent. Before anything is made: an OSError saying why
    when out_dir cannot be created or written, FileExistsError naming the existing files when
    they are not to be overwritten (no force), ImportError without scikit-image. Returns the
    two paths."""
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    paths = out_dir / PHOTO, out_dir / CLIP
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{' and '.join(existing)} already exist(s); pass --force to overwrite")
    photo = astronaut()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_image(paths[0], photo, overwrite=force)
    write_pan_zoom_clip(photo, paths[1], fps=CLIP_FPS, frames=CLIP_FRAMES, overwrite=force)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastmatte.io.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", metavar="OUT_DIR", help="created if missing")
    parser.add_argument("--force", action="store_true", help="overwrite existing demo inputs")
    args = parser.parse_args(argv)
    with stop_on_signals():  # Ctrl-C removes an unfinished clip, as fastmatte's commands do
        try:
            photo, clip = write_demo_inputs(args.out_dir, args.force)
        except (OSError, ImportError) as error:
            print(f"{parser.prog}: {error}", file=sys.stderr)
            return 2
        except Interrupted as stop:
            print(f"{parser.prog}: interrupted by {stop.name}; unfinished files removed", file=sys.stderr)
            return stop.status
    print(f"wrote {photo} (scikit-image's astronaut photograph) and {clip} ({CLIP_FRAMES} frames at "
          f"{CLIP_FPS:g} fps, a slow pan and zoom made from it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
